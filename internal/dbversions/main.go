// Command dbversions prints the Go, database server and driver versions
// that a test run exercises, read from the servers behind the test DSNs
// (OUTBOX_TEST_POSTGRES_DSN, OUTBOX_TEST_MYSQL_DSN) and from the SQLite
// library linked into the tests. .ci/run prints its output so that the
// versions README.md names are checked rather than remembered.
//
// A backend whose variable is unset is reported as "not tested"; a set
// variable whose server cannot be queried is an error (exit status 1).
//
// With -readme FILE it also fails unless FILE names the tested versions in
// their short form ("Go 1.26, PostgreSQL 15, MariaDB 10.11, SQLite 3.54":
// the major version for PostgreSQL, major.minor for the others), so the
// README's Compatibility section cannot drift from what CI runs.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	_ "github.com/go-sql-driver/mysql" // MySQL/MariaDB driver
	_ "github.com/lib/pq"              // PostgreSQL driver
	_ "modernc.org/sqlite"             // SQLite driver

	"github.com/modkit-go/db/internal/testdb"
)

func main() {
	readme := flag.String("readme", "", "fail unless this file names the tested versions (short form)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err := run(ctx, *readme)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dbversions:", err)
		os.Exit(1)
	}
}

// version is one tested component: its full version for the log and its
// short form for the README.
type version struct{ full, short string }

func run(ctx context.Context, readme string) error {
	goVersion := strings.TrimPrefix(runtime.Version(), "go")
	tested := []version{{runtime.Version(), "Go " + majorMinor(goVersion)}}
	for _, get := range []func(context.Context) (version, error){postgresVersion, mysqlVersion, sqliteVersion} {
		v, err := get(ctx)
		if err != nil {
			return err
		}
		tested = append(tested, v)
	}
	var full, short []string
	for _, v := range tested {
		full = append(full, v.full)
		short = append(short, v.short)
	}
	fmt.Println("tested:", strings.Join(full, ", "))
	fmt.Println("drivers:", drivers())
	if readme == "" {
		return nil
	}
	want := strings.Join(short, ", ")
	b, err := os.ReadFile(readme)
	if err != nil {
		return err
	}
	// Markdown may wrap the line anywhere: compare with runs of white space
	// folded to one space.
	if !strings.Contains(strings.Join(strings.Fields(string(b)), " "), want) {
		return fmt.Errorf("%s does not say %q: update its Compatibility section to the versions tested", readme, want)
	}
	return nil
}

// majorMinor returns "10.11" for "10.11.19".
func majorMinor(v string) string {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

// query returns the single text value of query on the database at dsn.
func query(ctx context.Context, driver, dsn, query string) (string, error) {
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return "", err
	}
	defer db.Close()
	var v string
	if err := db.QueryRowContext(ctx, query).Scan(&v); err != nil {
		return "", fmt.Errorf("%s: %s: %w", driver, query, err)
	}
	return v, nil
}

// untested is the short form of a backend whose variable is unset: it
// matches no README.
const untested = "not tested"

// postgresVersion returns "PostgreSQL 15.20" (server_version without the
// packager's suffix), short form "PostgreSQL 15".
func postgresVersion(ctx context.Context) (version, error) {
	dsn := os.Getenv(testdb.PostgresEnv)
	if dsn == "" {
		return version{"PostgreSQL not tested (" + testdb.PostgresEnv + " unset)", untested}, nil
	}
	v, err := query(ctx, "postgres", dsn, "SHOW server_version")
	if err != nil {
		return version{}, err
	}
	num := strings.Fields(v)[0]
	major, _, _ := strings.Cut(num, ".")
	return version{"PostgreSQL " + num, "PostgreSQL " + major}, nil
}

// mysqlVersion returns "MariaDB 10.11.19" or "MySQL 8.4.3": VERSION() up
// to its first suffix, named after the server it reports; short form
// "MariaDB 10.11".
func mysqlVersion(ctx context.Context) (version, error) {
	dsn := os.Getenv(testdb.MySQLEnv)
	if dsn == "" {
		return version{"MySQL/MariaDB not tested (" + testdb.MySQLEnv + " unset)", untested}, nil
	}
	v, err := query(ctx, "mysql", dsn, "SELECT VERSION()")
	if err != nil {
		return version{}, err
	}
	name := "MySQL"
	if strings.Contains(strings.ToLower(v), "mariadb") {
		name = "MariaDB"
	}
	num, _, _ := strings.Cut(v, "-")
	return version{name + " " + num, name + " " + majorMinor(num)}, nil
}

// sqliteVersion returns the version of the SQLite library the tests link,
// short form "SQLite 3.54".
func sqliteVersion(ctx context.Context) (version, error) {
	v, err := query(ctx, "sqlite", ":memory:", "SELECT sqlite_version()")
	if err != nil {
		return version{}, err
	}
	if v == "" {
		return version{}, errors.New("sqlite: empty sqlite_version()")
	}
	return version{"SQLite " + v, "SQLite " + majorMinor(v)}, nil
}

// drivers lists the database/sql drivers this build links, with versions:
// the ones go.mod pins for the tests too.
func drivers() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown (no build info)"
	}
	var out []string
	for _, m := range info.Deps {
		switch m.Path {
		case "github.com/lib/pq", "github.com/jackc/pgx/v5", "github.com/go-sql-driver/mysql", "modernc.org/sqlite":
			out = append(out, m.Path+" "+m.Version)
		}
	}
	return strings.Join(out, ", ")
}
