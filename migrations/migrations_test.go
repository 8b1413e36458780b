package migrations_test

import (
	"database/sql"
	"errors"
	"testing"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/mysql"
	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/internal/testdb"
	"github.com/modkit-go/db/migrations"
)

// TestUpWrongDatabase: a dialect over another kind of database reports the
// mismatch (dialect.ErrWrongDatabase) before goose runs, and creates
// nothing.
func TestUpWrongDatabase(t *testing.T) {
	type pool struct {
		name string
		open func(testing.TB) func() *sql.DB
	}
	pools := []pool{
		{"sqlite", testdb.SQLite},
		{"postgres", testdb.Postgres},
		{"mysql", testdb.MySQL},
	}
	dialects := map[string]dialect.Schema{"sqlite": sqlite.New(), "postgres": postgres.New(), "mysql": mysql.New()}
	for _, p := range pools {
		for name, d := range dialects {
			if name == p.name {
				continue
			}
			t.Run(name+"_over_"+p.name, func(t *testing.T) {
				db := p.open(t)() // skips, naming the variable, when the server is not enabled

				err := migrations.Up(t.Context(), db, d)
				if !errors.Is(err, dialect.ErrWrongDatabase) {
					t.Fatalf("Up: %v, want dialect.ErrWrongDatabase", err)
				}
				if rows, err := db.QueryContext(t.Context(), "SELECT 1 FROM "+d.Prefix()+"schema_version"); err == nil {
					_ = rows.Close()
					t.Fatal("the version table was created")
				}
			})
		}
	}
}

// TestUpInvalidDialect: nil and typed-nil dialects are typed errors, not
// panics.
func TestUpInvalidDialect(t *testing.T) {
	db := testdb.SQLite(t)()
	for name, d := range map[string]dialect.Schema{
		"nil":          nil,
		"nil postgres": (*postgres.Dialect)(nil),
		"nil mysql":    (*mysql.Dialect)(nil),
		"nil sqlite":   (*sqlite.Dialect)(nil),
	} {
		t.Run(name, func(t *testing.T) {
			if err := migrations.Up(t.Context(), db, d); !errors.Is(err, migrations.ErrInvalidDialect) {
				t.Fatalf("Up: %v, want ErrInvalidDialect", err)
			}
		})
	}
	if err := migrations.Up(t.Context(), nil, sqlite.New()); !errors.Is(err, migrations.ErrInvalidDialect) {
		t.Fatalf("Up(nil db): %v, want ErrInvalidDialect", err)
	}
}

// TestUpZeroDialect: a zero-value dialect either means the default prefix
// or is ErrInvalidDialect; it never creates unprefixed tables.
func TestUpZeroDialect(t *testing.T) {
	db := testdb.SQLite(t)()
	err := migrations.Up(t.Context(), db, &sqlite.Dialect{})
	if err != nil && !errors.Is(err, migrations.ErrInvalidDialect) {
		t.Fatalf("Up: %v, want nil or ErrInvalidDialect", err)
	}
	if rows, err := db.QueryContext(t.Context(), "SELECT 1 FROM queues"); err == nil {
		_ = rows.Close()
		t.Fatal("a zero-value dialect created the unprefixed table queues")
	}
}
