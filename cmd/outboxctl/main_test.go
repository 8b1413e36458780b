package main_test

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/mysql"
	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/internal/testdb"
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
