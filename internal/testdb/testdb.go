// Package testdb gives each test an isolated, empty database on a real
// server: a PostgreSQL schema, a MariaDB/MySQL database, or a SQLite file.
// Servers are enabled by environment variables; without one, tests skip
// with a message naming the variable, except under CI (CI set), where a
// missing or unreachable server fails the test.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver "pgx"
	_ "github.com/lib/pq"              // PostgreSQL driver "postgres"
	_ "modernc.org/sqlite"             // SQLite driver
)

// Environment variables that enable the server backends.
const (
	PostgresEnv = "OUTBOX_TEST_POSTGRES_DSN"
	MySQLEnv    = "OUTBOX_TEST_MYSQL_DSN"
)

// DSN returns the DSN in env. When it is empty the test is skipped with a
// message naming env, or fails when CI is set.
func DSN(t testing.TB, env string) string {
	t.Helper()
	dsn := os.Getenv(env)
	if dsn == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set and CI is: this backend must run in CI", env)
		}
		t.Skipf("backend skipped: set %s to run it (see docs/testing.md)", env)
	}
	return dsn
}

func name() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "obt_" + hex.EncodeToString(b[:])
}

func ping(t testing.TB, db *sql.DB, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("%s unreachable: %v", what, err)
	}
}

// opener returns a function that opens a new pool to one test's database;
// each call is like another process connecting. Pools close at the test's end.
func opener(t testing.TB, open func() (*sql.DB, error)) func() *sql.DB {
	return func() *sql.DB {
		t.Helper()
		db, err := open()
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
}

// Postgres creates a fresh schema on the server in PostgresEnv and returns an
// opener whose pools (lib/pq) use it as search_path. The schema is dropped
// at the end. Every session of the test carries the schema's name as
// application_name, so a test can find (and terminate) its own sessions.
func Postgres(t testing.TB) func() *sql.DB {
	t.Helper()
	open, _ := postgres(t, "postgres", nil)
	return open
}

// PostgresDSN is Postgres that also returns the DSN of the fresh schema (for
// a command under test to open).
func PostgresDSN(t testing.TB) (func() *sql.DB, string) {
	t.Helper()
	return postgres(t, "postgres", nil)
}

// PostgresPGX is Postgres through pgx's database/sql driver
// (github.com/jackc/pgx/v5/stdlib), which sends search_path and
// application_name as runtime parameters. lib/pq-only DSN parameters
// (binary_parameters) are dropped.
func PostgresPGX(t testing.TB) func() *sql.DB {
	t.Helper()
	open, _ := postgres(t, "pgx", []string{"binary_parameters", "disable_prepared_binary_result"})
	return open
}

// PostgresAt is Postgres on the server at dsn (lib/pq) rather than the
// one in PostgresEnv: a fresh schema, dropped at the end.
func PostgresAt(t testing.TB, dsn string) func() *sql.DB {
	t.Helper()
	open, _ := postgresAt(t, dsn, "postgres", nil)
	return open
}

func postgres(t testing.TB, driver string, drop []string) (func() *sql.DB, string) {
	t.Helper()
	return postgresAt(t, DSN(t, PostgresEnv), driver, drop)
}

func postgresAt(t testing.TB, dsn, driver string, drop []string) (func() *sql.DB, string) {
	t.Helper()
	admin, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	ping(t, admin, "postgres")
	schema := name()
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("postgres: create schema: %v", err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec("DROP SCHEMA " + schema + " CASCADE")
		_ = admin.Close()
	})
	u := dsn
	for _, k := range drop {
		if u, err = withParam(u, k, ""); err != nil {
			t.Fatalf("postgres: %v", err)
		}
	}
	for k, v := range map[string]string{"search_path": schema, "application_name": schema} {
		if u, err = withParam(u, k, v); err != nil {
			t.Fatalf("postgres: %v", err)
		}
	}
	return opener(t, func() (*sql.DB, error) { return sql.Open(driver, u) }), u
}

// withParam sets (or, with an empty v, removes) a parameter of a URL or
// key=value DSN.
func withParam(dsn, k, v string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", err
		}
		q := u.Query()
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	var kept []string
	for _, f := range strings.Fields(dsn) {
		if !strings.HasPrefix(f, k+"=") {
			kept = append(kept, f)
		}
	}
	if v != "" {
		kept = append(kept, k+"="+v)
	}
	return strings.Join(kept, " "), nil
}

// MySQL creates a fresh database on the server in MySQLEnv and returns an
// opener for it. The database is dropped at the end.
func MySQL(t testing.TB) func() *sql.DB {
	t.Helper()
	open, _ := mysqlDB(t, true)
	return open
}

// MySQLNoParseTime is MySQL with parseTime=false in the DSN: the driver
// then returns DATETIME values as text, which a dialect must read too.
func MySQLNoParseTime(t testing.TB) func() *sql.DB {
	t.Helper()
	open, _ := mysqlDB(t, false)
	return open
}

// MySQLDSN is MySQL that also returns the DSN of the fresh database.
func MySQLDSN(t testing.TB) (func() *sql.DB, string) {
	t.Helper()
	return mysqlDB(t, true)
}

// MySQLAt is MySQL on the server at dsn rather than the one in MySQLEnv:
// a fresh database, dropped at the end.
func MySQLAt(t testing.TB, dsn string) func() *sql.DB {
	t.Helper()
	open, _ := mysqlAt(t, dsn, true)
	return open
}

func mysqlDB(t testing.TB, parseTime bool) (func() *sql.DB, string) {
	t.Helper()
	return mysqlAt(t, DSN(t, MySQLEnv), parseTime)
}

func mysqlAt(t testing.TB, dsn string, parseTime bool) (func() *sql.DB, string) {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("mysql: DSN: %v", err)
	}
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatalf("mysql: %v", err)
	}
	ping(t, admin, "mysql")
	db := name()
	if _, err := admin.Exec("CREATE DATABASE " + db); err != nil {
		t.Fatalf("mysql: create database: %v", err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec("DROP DATABASE " + db)
		_ = admin.Close()
	})
	cfg.DBName = db
	cfg.ParseTime = parseTime
	cfg.InterpolateParams = true
	u := cfg.FormatDSN()
	return opener(t, func() (*sql.DB, error) { return sql.Open("mysql", u) }), u
}

// SQLiteDSN is the DSN the project recommends for a SQLite file: WAL,
// a busy timeout, and BEGIN IMMEDIATE so a transaction takes the write lock
// before it reads.
func SQLiteDSN(path string) string {
	return "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"
}

// SQLite creates a database file under t.TempDir() and returns an opener.
// Pools have one connection: SQLite has one writer, and a single connection
// queues writers in Go instead of in busy-wait loops.
func SQLite(t testing.TB) func() *sql.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outbox.db")
	return opener(t, func() (*sql.DB, error) {
		db, err := sql.Open("sqlite", SQLiteDSN(path))
		if err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
		db.SetMaxOpenConns(1)
		return db, nil
	})
}

// MainSkipUnless is for a package whose tests all need the server named by
// env. When env is unset (and CI is not), it prints why and which variable
// enables the backend, and runs no test, so even a plain `go test ./...`
// marks the package "[no tests to run]" instead of a silent "ok".
func MainSkipUnless(m *testing.M, env, backend string) {
	flag.Parse()
	if os.Getenv(env) == "" && os.Getenv("CI") == "" {
		fmt.Printf("%s backend skipped: set %s to run it (see docs/testing.md)\n", backend, env)
		_ = flag.Set("test.run", "^$")
	}
	os.Exit(m.Run())
}
