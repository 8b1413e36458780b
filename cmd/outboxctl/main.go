// Command outboxctl inspects and repairs an outbox from the command line:
// it applies the schema, shows each queue's status, and lists, counts,
// requeues, discards and cleans up dead letters, and retries or skips the
// head of a blocked partition; serve runs the operator console (package
// console) on a local address; relay publishes queues to a broker
// (package relay, docs/relay.md) until SIGTERM.
//
//	outboxctl --dialect postgres --dsn 'postgres://postgres@127.0.0.1/app?sslmode=disable' status
//	OUTBOX_DIALECT=sqlite OUTBOX_DSN=app.db outboxctl status --queue orders --json
//	outboxctl dead-letters list --queue orders --status pending --limit 20
//	outboxctl dead-letters requeue --queue orders
//	outboxctl partition retry --queue orders --partition 3
//	outboxctl serve --addr 127.0.0.1:8080
//	outboxctl relay --queue orders --to nats://127.0.0.1:4222 --route 'orders.{partition}'
//
// The connection flags may come before or after the command: --dialect
// (postgres, mysql or sqlite; or $OUTBOX_DIALECT), --dsn (or $OUTBOX_DSN; for
// SQLite a file path or a file: URI), --prefix (the table prefix, default
// outbox_; or $OUTBOX_PREFIX), --driver (PostgreSQL only: pq, the default,
// or pgx) and --timeout (per command, default 30s).
//
// Exit codes: 0 success; 1 a database error; 2 a usage error; 3 the database
// cannot be reached or is of another kind; 4 the schema is not migrated (run
// outboxctl migrate); 5 an unknown queue, partition or dead letter; 6 the
// row is not in a state that allows the action (for example retrying a
// partition that is not blocked).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitConnect     = 3
	exitNotMigrated = 4
	exitNotFound    = 5
	exitConflict    = 6
)

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	cancel()
	os.Exit(code)
}

// command is one subcommand: it parses its own flags (the connection flags
// are added to fs) and runs.
type command struct {
	summary string
	run     func(ctx context.Context, c *cli, args []string) error
}

// commands by name; a group such as "dead-letters" dispatches again on its
// first argument.
var commands = map[string]command{
	"migrate":      {"apply the outbox schema (idempotent)", runMigrate},
	"status":       {"queue and partition status", runStatus},
	"dead-letters": {"list|show|count|requeue|discard|cleanup dead letters", runDeadLetters},
	"partition":    {"retry|skip the head of a blocked partition", runPartition},
	"serve":        {"serve the operator console (web pages and JSON API) on --addr", runServe},
	"relay":        {"publish queues to a broker (NATS, RabbitMQ, Redis, Kafka, webhooks) until stopped", runRelay},
}

// cli is one invocation: the connection settings and the output streams.
type cli struct {
	conn   connFlags
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// exitError carries an exit code through the command's error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitf(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	c := &cli{stdout: stdout, stderr: stderr, getenv: getenv}
	c.conn.defaults(getenv)
	top := flag.NewFlagSet("outboxctl", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	c.conn.register(top)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.usage(stdout)
			return exitOK
		}
		fmt.Fprintf(stderr, "outboxctl: %v\n", err)
		c.usage(stderr)
		return exitUsage
	}
	rest := top.Args()
	if len(rest) == 0 {
		c.usage(stderr)
		return exitUsage
	}
	name := rest[0]
	if name == "help" {
		c.usage(stdout)
		return exitOK
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "outboxctl: unknown command %q\n", name)
		c.usage(stderr)
		return exitUsage
	}
	if name != "serve" && name != "relay" { // these run until interrupted
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.conn.timeout)
		defer cancel()
	}
	err := cmd.run(ctx, c, rest[1:])
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintf(stderr, "outboxctl %s: %v\n", name, err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitFailed
}

func (c *cli) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: outboxctl [--dialect D] [--dsn DSN] [--prefix P] <command> [flags]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-13s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nenvironment: OUTBOX_DIALECT, OUTBOX_DSN, OUTBOX_PREFIX\n")
}

// flags returns a FlagSet for a subcommand that also accepts the connection
// flags.
func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("outboxctl "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	c.conn.register(fs)
	return fs
}

// parse parses a subcommand's flags; extra positional arguments are a usage
// error unless allowed.
func parse(fs *flag.FlagSet, args []string, positional int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{code: exitUsage, err: err}
	}
	if fs.NArg() > positional {
		return exitf(exitUsage, "unexpected arguments: %s", strings.Join(fs.Args()[positional:], " "))
	}
	return nil
}
