package migrations_test

import (
	"database/sql"
	"errors"
	"os"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/mysql"
	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/internal/testdb"
	"github.com/modkit-go/db/migrations"
)

// TestStatusAndCheck: Status reads the version without writing (a second
// read, after it, still finds no version table and Check still fails), and
// after Up the database is at the latest version.
func TestStatusAndCheck(t *testing.T) {
	backends := []struct {
		name string
		open func(testing.TB) func() *sql.DB
		d    dialect.Schema
	}{
		{"sqlite", testdb.SQLite, sqlite.New()},
		{"postgres", testdb.Postgres, postgres.New()},
		{"mysql", testdb.MySQL, mysql.New()},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)()
			ctx := t.Context()
			for range 2 {
				v, err := migrations.Status(ctx, db, b.d)
				if err != nil {
					t.Fatalf("Status: %v", err)
				}
				if v.Current != 0 || v.Latest < 1 || !v.Pending() {
					t.Fatalf("Status before Up = %+v, want current 0 and pending", v)
				}
				if err := migrations.Check(ctx, db, b.d); !errors.Is(err, migrations.ErrNotMigrated) {
					t.Fatalf("Check before Up: %v, want ErrNotMigrated", err)
				}
			}
			if err := migrations.Up(ctx, db, b.d); err != nil {
				t.Fatalf("Up: %v", err)
			}
			v, err := migrations.Status(ctx, db, b.d)
			if err != nil || v.Pending() || v.Current != v.Latest {
				t.Fatalf("Status after Up = %+v, %v; want current = latest", v, err)
			}
			if err := migrations.Check(ctx, db, b.d); err != nil {
				t.Fatalf("Check after Up: %v", err)
			}
			if _, err := migrations.Status(ctx, db, nil); !errors.Is(err, migrations.ErrInvalidDialect) {
				t.Fatalf("Status(nil dialect): %v, want ErrInvalidDialect", err)
			}
		})
	}
}

// TestUpAgainWithoutParseTime: on MariaDB/MySQL the dialect does not need
// parseTime=true, so neither may a second Up (goose's applied-version check
// scans a DATETIME into time.Time, which fails without it).
func TestUpAgainWithoutParseTime(t *testing.T) {
	db := testdb.MySQL(t)()
	var name string
	if err := db.QueryRowContext(t.Context(), "SELECT DATABASE()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	cfg, err := gomysql.ParseDSN(os.Getenv(testdb.MySQLEnv))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DBName, cfg.ParseTime = name, false
	plain, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	for i := range 3 {
		if err := migrations.Up(t.Context(), plain, mysql.New()); err != nil {
			t.Fatalf("Up #%d without parseTime: %v", i+1, err)
		}
	}
}
