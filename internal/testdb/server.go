package testdb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// RestartEnv opts into the server-restart test: set it to "postgres" or
// "mysql" and run only that case (see docs/testing.md). It stops and
// starts the local server, so every other user of it sees an outage.
const RestartEnv = "OUTBOX_TEST_RESTART"

// ServerControl returns functions that stop and start the local server of
// backend ("postgres" or "mysql"), or nils unless RestartEnv names it.
func ServerControl(backend string) (stop, start func(context.Context) error) {
	if os.Getenv(RestartEnv) != backend {
		return nil, nil
	}
	switch backend {
	case "postgres":
		return postgresStop, postgresStart
	case "mysql":
		return mariadbStop, mariadbStart
	}
	return nil, nil
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// waitFor runs a probe command until it succeeds, for up to a minute.
func waitFor(ctx context.Context, name string, args ...string) error {
	deadline := time.Now().Add(time.Minute)
	for {
		err := run(ctx, name, args...)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// postgresVersion is the newest cluster version in /etc/postgresql.
func postgresVersion() (string, error) {
	ents, err := os.ReadDir("/etc/postgresql")
	if err != nil {
		return "", err
	}
	var vs []int
	for _, e := range ents {
		if v, err := strconv.Atoi(e.Name()); err == nil {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return "", errors.New("no cluster in /etc/postgresql")
	}
	return strconv.Itoa(slices.Max(vs)), nil
}

func postgresStop(ctx context.Context) error {
	v, err := postgresVersion()
	if err != nil {
		return err
	}
	return run(ctx, "pg_ctlcluster", "--skip-systemctl-redirect", v, "main", "stop", "-m", "fast")
}

func postgresStart(ctx context.Context) error {
	v, err := postgresVersion()
	if err != nil {
		return err
	}
	if err := run(ctx, "pg_ctlcluster", "--skip-systemctl-redirect", v, "main", "start"); err != nil {
		return err
	}
	return waitFor(ctx, "pg_isready", "-h", "127.0.0.1", "-p", "5432")
}

// mariadbStop sends SIGTERM to the server's process (found by its pid, not
// by a name pattern) and waits until it has exited.
func mariadbStop(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "pidof", "mariadbd").Output()
	if err != nil {
		return fmt.Errorf("pidof mariadbd: %w", err)
	}
	fields := strings.Fields(string(out))
	if len(fields) != 1 {
		return fmt.Errorf("pidof mariadbd: %q, want one pid", out)
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("kill %d: %w", pid, err)
	}
	deadline := time.Now().Add(time.Minute)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("mariadbd %d still running after a minute", pid)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

func mariadbStart(ctx context.Context) error {
	if err := os.MkdirAll("/run/mysqld", 0o755); err != nil {
		return err
	}
	_ = run(ctx, "chown", "mysql:mysql", "/run/mysqld")
	if err := run(ctx, "start-stop-daemon", "--start", "--oknodo", "--background",
		"--exec", "/usr/sbin/mariadbd", "--", "--user=mysql"); err != nil {
		return err
	}
	return waitFor(ctx, "mariadb-admin", "-uroot", "-h127.0.0.1", "ping")
}
