package main_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/mysql"
	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/internal/testdb"
	"github.com/modkit-go/db/outbox"
)

// binary is the outboxctl built once for the package's tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "outboxctl-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binary = filepath.Join(dir, "outboxctl")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build outboxctl: %v\n", err)
		os.Exit(2)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// backend is a fresh database of one kind: an opener for the test's own
// pools and what outboxctl is given to reach the same database.
type backend struct {
	name string // --dialect
	dsn  string // --dsn
	open func() *sql.DB
	d    interface {
		dialect.Dialect
		dialect.Schema
	}
}

// backends returns the three kinds; PostgreSQL and MariaDB skip (naming
// their variable) when their server is not configured.
func backends() []struct {
	name string
	make func(t *testing.T) backend
} {
	return []struct {
		name string
		make func(t *testing.T) backend
	}{
		{"sqlite", func(t *testing.T) backend {
			path := filepath.Join(t.TempDir(), "outbox.db")
			open := func() *sql.DB {
				db, err := sql.Open("sqlite", testdb.SQLiteDSN(path))
				if err != nil {
					t.Fatal(err)
				}
				db.SetMaxOpenConns(1)
				t.Cleanup(func() { _ = db.Close() })
				return db
			}
			if err := open().Ping(); err != nil { // creates the file
				t.Fatal(err)
			}
			return backend{name: "sqlite", dsn: path, open: open, d: sqlite.New()}
		}},
		{"postgres", func(t *testing.T) backend {
			open, dsn := testdb.PostgresDSN(t)
			return backend{name: "postgres", dsn: dsn, open: open, d: postgres.New()}
		}},
		{"mysql", func(t *testing.T) backend {
			open, dsn := testdb.MySQLDSN(t)
			return backend{name: "mysql", dsn: dsn, open: open, d: mysql.New()}
		}},
	}
}

// result is one run of outboxctl.
type result struct {
	stdout, stderr string
	code           int
}

// ctl runs outboxctl with args, connected to b through the environment.
func (b backend) ctl(t *testing.T, args ...string) result {
	t.Helper()
	return run(t, []string{"OUTBOX_DIALECT=" + b.name, "OUTBOX_DSN=" + b.dsn}, args...)
}

func run(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run outboxctl %v: %v", args, err)
	}
	return r
}

// want fails the test unless r exited with code and stdout/stderr hold
// every given fragment.
func (r result) want(t *testing.T, code int, fragments ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, f := range fragments {
		if !strings.Contains(r.stdout+r.stderr, f) {
			t.Fatalf("output lacks %q\nstdout:\n%s\nstderr:\n%s", f, r.stdout, r.stderr)
		}
	}
}

// TestMigrate: a command on an unmigrated database says so (exit 4) and
// changes nothing; migrate applies the schema once, and again is a no-op.
func TestMigrate(t *testing.T) {
	for _, bk := range backends() {
		t.Run(bk.name, func(t *testing.T) {
			b := bk.make(t)
			b.ctl(t, "status").want(t, 4, "not migrated", "run outboxctl migrate")
			b.ctl(t, "migrate").want(t, 0, "migrated from version 0 to")
			b.ctl(t, "migrate").want(t, 0, "already at version")
			b.ctl(t, "--prefix", "other_", "status").want(t, 4, "not migrated")
		})
	}
}

// TestUsageAndConnectionErrors: bad flags and commands exit 2, a database
// that cannot be reached or is of another kind exits 3, each with a message
// that says what to do.
func TestUsageAndConnectionErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.db")
	cases := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"no command", nil, nil, 2, "usage: outboxctl"},
		{"unknown command", nil, []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"no dialect", nil, []string{"status"}, 2, "no dialect"},
		{"unknown dialect", nil, []string{"--dialect", "oracle", "--dsn", "x", "status"}, 2, `unknown --dialect "oracle"`},
		{"no dsn", []string{"OUTBOX_DIALECT=sqlite"}, []string{"status"}, 2, "no DSN"},
		{"bad prefix", nil, []string{"--dialect", "sqlite", "--dsn", missing, "--prefix", "Bad-Prefix", "status"}, 2, "invalid --prefix"},
		{"unknown flag", nil, []string{"status", "--frobnicate"}, 2, "frobnicate"},
		{"missing sqlite file", nil, []string{"--dialect", "sqlite", "--dsn", missing, "status"}, 3, "missing.db"},
		{"unreachable postgres", nil, []string{"--dialect", "postgres", "--dsn", "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2", "status"}, 3, "connect to postgres"},
		{"bad mysql dsn", nil, []string{"--dialect", "mysql", "--dsn", "not a dsn", "status"}, 3, "mysql"},
		{"help", nil, []string{"help"}, 0, "commands:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := append([]string{"OUTBOX_DIALECT=", "OUTBOX_DSN=", "OUTBOX_PREFIX="}, c.env...)
			run(t, env, c.args...).want(t, c.code, c.want)
		})
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a command other than migrate created %s (%v)", missing, err)
	}
}

// seeded is a database in a known state: queue orders (4 partitions) with
// two rejected messages dead-lettered (partitions 0 and 2), partitions 1
// and 3 blocked at a poison head by PoisonBlock (with a message waiting
// behind the one in partition 1), and queue emails with a backlog of three
// messages and no worker.
func seed(t *testing.T, b backend) *sql.DB {
	t.Helper()
	ctx := t.Context()
	db := b.open()
	b.ctl(t, "migrate").want(t, 0, "migrated")
	ob, err := outbox.New(db, b.d, outbox.Config{PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for q, n := range map[string]int{"orders": 4, "emails": 2} {
		if err := ob.DeclareQueue(ctx, q, n); err != nil {
			t.Fatal(err)
		}
	}
	err = ob.Handle("orders", outbox.PerMessage(func(_ context.Context, d outbox.Delivery) outbox.Result {
		switch p := string(d.Payload); {
		case strings.HasPrefix(p, "bad"):
			return outbox.Reject("invalid order " + p)
		case strings.HasPrefix(p, "poison"):
			return outbox.Retry("downstream refuses " + p)
		}
		return outbox.Success()
	}), outbox.WithPoisonPolicy(outbox.PoisonBlock), outbox.WithMaxAttempts(2),
		outbox.WithRetryBackoff(time.Millisecond, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	enqueue(t, ob, "orders", map[int][]string{0: {"o1", "bad-1", "o2"}, 1: {"poison-1", "o3"}, 2: {"bad-2"}, 3: {"poison-3"}})
	enqueue(t, ob, "emails", map[int][]string{0: {"e1", "e2"}, 1: {"e3"}})
	if err := ob.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Wait (polling the state, bounded by the test's deadline) until the
	// rejects are dead letters and both poison heads are blocked.
	for {
		n, err := ob.CountDeadLetters(ctx, outbox.DeadLetterFilter{Queue: "orders"})
		if err != nil {
			t.Fatal(err)
		}
		p1, err1 := ob.PartitionStatus(ctx, "orders", 1)
		p3, err3 := ob.PartitionStatus(ctx, "orders", 3)
		if err1 != nil || err3 != nil {
			t.Fatal(err1, err3)
		}
		if n == 2 && p1.Blocked && p3.Blocked {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("seed: not settled (dead letters %d, blocked %v %v)", n, p1.Blocked, p3.Blocked)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := ob.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	return db
}

func enqueue(t *testing.T, ob *outbox.Outbox, queue string, byPartition map[int][]string) {
	t.Helper()
	err := ob.InTx(t.Context(), func(tx *sql.Tx) error {
		for p := range 4 {
			for _, payload := range byPartition[p] {
				if err := ob.Enqueue(t.Context(), tx, outbox.Message{Queue: queue, Partition: p, Payload: []byte(payload), PayloadType: "text/plain"}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestOperatorSession: outboxctl's view of a seeded database, and what its
// actions change: status (table and JSON), dead letters listed, counted
// and shown, a blocked partition retried and another skipped, every dead
// letter requeued and then delivered in its partition's order, cleanup.
func TestOperatorSession(t *testing.T) {
	for _, bk := range backends() {
		t.Run(bk.name, func(t *testing.T) {
			b := bk.make(t)
			db := seed(t, b)

			r := b.ctl(t, "status")
			r.want(t, 0, "QUEUE", "orders", "emails", "blocked", "downstream refuses poison-1", "2/0/0/0")
			t.Logf("outboxctl status:\n%s", r.stdout)
			var st []struct {
				Queue       string           `json:"queue"`
				Backlog     int64            `json:"backlog"`
				Blocked     int              `json:"blocked"`
				DeadLetters map[string]int64 `json:"dead_letters"`
				Partitions  []struct {
					Partition int    `json:"partition"`
					Blocked   bool   `json:"blocked"`
					Attempts  int    `json:"attempts"`
					LastError string `json:"last_error"`
				} `json:"partitions"`
			}
			r = b.ctl(t, "status", "--json")
			r.want(t, 0)
			if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
				t.Fatalf("status --json: %v\n%s", err, r.stdout)
			}
			byQueue := map[string]int{}
			for i, q := range st {
				byQueue[q.Queue] = i
			}
			orders, emails := st[byQueue["orders"]], st[byQueue["emails"]]
			if orders.Blocked != 2 || orders.DeadLetters["pending"] != 2 || orders.Backlog != 3 ||
				!orders.Partitions[1].Blocked || orders.Partitions[1].Attempts != 2 || emails.Backlog != 3 {
				t.Fatalf("status --json: %+v", st)
			}
			b.ctl(t, "status", "--queue", "nope").want(t, 5, "nope")
			b.ctl(t, "status", "--queue", "bad name").want(t, 2)

			b.ctl(t, "dead-letters", "count", "--queue", "orders").want(t, 0, "2\n")
			b.ctl(t, "dead-letters", "count", "--queue", "orders", "--partition", "2").want(t, 0, "1\n")
			r = b.ctl(t, "dead-letters", "list", "--queue", "orders")
			r.want(t, 0, "ID", "invalid order bad-1", "invalid order bad-2", "pending")
			t.Logf("outboxctl dead-letters list --queue orders:\n%s", r.stdout)
			b.ctl(t, "dead-letters", "list", "--status", "bogus").want(t, 2, "bogus")
			r = b.ctl(t, "dead-letters", "list", "--queue", "orders", "--limit", "1")
			r.want(t, 0, "more: --after ")
			ids := deadLetterIDs(t, db, b)
			b.ctl(t, "dead-letters", "show", fmt.Sprint(ids["bad-1"])).want(t, 0, "payload (5 bytes):\nbad-1", "invalid order bad-1")
			b.ctl(t, "dead-letters", "show", "999999").want(t, 5, "999999")

			b.ctl(t, "partition", "retry", "--queue", "orders", "--partition", "0").want(t, 6, "not blocked")
			b.ctl(t, "partition", "retry", "--queue", "orders", "--partition", "9").want(t, 5, "does not exist")
			b.ctl(t, "partition", "retry", "--queue", "orders", "--partition", "3").want(t, 0, "unblocked")
			b.ctl(t, "partition", "skip", "--queue", "orders", "--partition", "1", "--reason", "operator skipped").want(t, 0, "dead letters")
			b.ctl(t, "dead-letters", "count", "--queue", "orders").want(t, 0, "3\n")

			b.ctl(t, "dead-letters", "requeue").want(t, 2, "--id")
			r = b.ctl(t, "dead-letters", "requeue", "--queue", "orders")
			r.want(t, 0, "requeued 3 dead letters")
			t.Logf("outboxctl dead-letters requeue --queue orders:\n%s", r.stdout)
			b.ctl(t, "dead-letters", "requeue", "--id", fmt.Sprint(ids["bad-1"])).want(t, 6)
			b.ctl(t, "dead-letters", "requeue", "--id", "999999").want(t, 5)
			b.ctl(t, "dead-letters", "count", "--status", "resolved").want(t, 0, "3\n")

			// The fixed handler receives what was requeued and retried, in
			// each partition's order: o3 was waiting behind the skipped
			// poison-1, which comes back after it.
			got := deliverAll(t, db, b, 5)
			want := map[int][]string{0: {"bad-1"}, 1: {"o3", "poison-1"}, 2: {"bad-2"}, 3: {"poison-3"}}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("delivered after requeue %v, want %v", got, want)
			}
			b.ctl(t, "dead-letters", "cleanup", "--older-than", "0s").want(t, 0, "deleted 3")
			b.ctl(t, "dead-letters", "count").want(t, 0, "0\n")
		})
	}
}

// deadLetterIDs returns the dead letters' ids by payload.
func deadLetterIDs(t *testing.T, db *sql.DB, b backend) map[string]int64 {
	t.Helper()
	ob, err := outbox.New(db, b.d, outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dlsPage, err := ob.DeadLetterPage(t.Context(), outbox.DeadLetterFilter{Queue: "orders"})
	dls := dlsPage.DeadLetters
	if err != nil {
		t.Fatal(err)
	}
	ids := make(map[string]int64, len(dls))
	for _, d := range dls {
		ids[string(d.Payload)] = d.ID
	}
	return ids
}

// deliverAll runs a handler that accepts everything on queue orders until
// n messages arrived, and returns their payloads by partition.
func deliverAll(t *testing.T, db *sql.DB, b backend, n int) map[int][]string {
	t.Helper()
	ctx := t.Context()
	ob, err := outbox.New(db, b.d, outbox.Config{PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[int][]string{}
	done := make(chan struct{})
	count := 0
	err = ob.Handle("orders", outbox.PerMessage(func(_ context.Context, d outbox.Delivery) outbox.Result {
		mu.Lock()
		defer mu.Unlock()
		got[d.Partition] = append(got[d.Partition], string(d.Payload))
		if count++; count == n {
			close(done)
		}
		return outbox.Success()
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Start(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatalf("delivered %v, want %d messages", got, n)
	}
	if err := ob.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return got
}

// TestServe: serve refuses an address other than loopback without a
// token; on loopback it serves the console (the JSON API answers with the
// seeded queues) until interrupted; elsewhere, with the token from the
// environment, every request must carry it.
func TestServe(t *testing.T) {
	b := backends()[0].make(t)
	seed(t, b)
	b.ctl(t, "serve", "--addr", "0.0.0.0:0").want(t, 2, "not a loopback address", "OUTBOX_CONSOLE_TOKEN")
	b.ctl(t, "serve", "--addr", "nonsense").want(t, 2, "--addr")

	serve := func(t *testing.T, env []string, args ...string) string {
		// Not CommandContext: t's context ends before its cleanups, which
		// interrupt the server and check that it exits cleanly.
		cmd := exec.Command(binary, append([]string{"serve"}, args...)...)
		cmd.Env = append(os.Environ(), append([]string{"OUTBOX_DIALECT=" + b.name, "OUTBOX_DSN=" + b.dsn}, env...)...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var errOut bytes.Buffer
		cmd.Stderr = &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			t.Fatalf("serve printed no address: %v\n%s", err, errOut.String())
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			kill := time.AfterFunc(20*time.Second, func() { _ = cmd.Process.Kill() })
			defer kill.Stop()
			if err := cmd.Wait(); err != nil {
				t.Errorf("serve after an interrupt: %v\n%s", err, errOut.String())
			}
		})
		_, u, ok := strings.Cut(strings.TrimSpace(line), " on ")
		if !ok {
			t.Fatalf("serve printed %q", line)
		}
		return u
	}
	getStatus := func(t *testing.T, u, token string) (int, string) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u+"api/status", nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	t.Run("loopback", func(t *testing.T) {
		u := serve(t, nil, "--addr", "127.0.0.1:0")
		if code, body := getStatus(t, u, ""); code != 200 || !strings.Contains(body, `"queue": "orders"`) {
			t.Fatalf("GET api/status: %d %s", code, body)
		}
	})
	t.Run("token", func(t *testing.T) {
		u := serve(t, []string{"OUTBOX_CONSOLE_TOKEN=t0ken"}, "--addr", "0.0.0.0:0", "--read-only")
		u = strings.Replace(u, "0.0.0.0", "127.0.0.1", 1)
		if code, _ := getStatus(t, u, ""); code != 401 {
			t.Fatalf("without the token: %d, want 401", code)
		}
		if code, body := getStatus(t, u, "t0ken"); code != 200 || !strings.Contains(body, `"queue": "orders"`) {
			t.Fatalf("with the token: %d %s", code, body)
		}
	})
}
