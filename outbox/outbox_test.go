package outbox_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"testing"
	"time"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/mysql"
	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/internal/testdb"
	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
)

// A dialect over a database of another kind is a typed error before any
// schema access, from every entry point that touches the schema.
func TestWrongDialect(t *testing.T) {
	db, cleanup := openSQLite()
	defer cleanup()
	ctx := context.Background()
	for _, d := range []dialect.Dialect{postgres.New(), mysql.New()} {
		ob, err := outbox.New(db, d, outbox.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if err := ob.DeclareQueue(ctx, "q", 1); !errors.Is(err, outbox.ErrWrongDialect) || !errors.Is(err, dialect.ErrWrongDatabase) {
			t.Errorf("%s: DeclareQueue: %v", d.Name(), err)
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = ob.Enqueue(ctx, tx, outbox.Message{Queue: "q", Payload: []byte("x"), PayloadType: "t"})
		_ = tx.Rollback()
		if !errors.Is(err, outbox.ErrWrongDialect) {
			t.Errorf("%s: Enqueue: %v", d.Name(), err)
		}
		_ = ob.Handle("q", outbox.Batch(func(context.Context, []outbox.Delivery) outbox.Result { return outbox.Success() }))
		if err := ob.Start(ctx); !errors.Is(err, outbox.ErrWrongDialect) {
			t.Errorf("%s: Start: %v", d.Name(), err)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	db, cleanup := openSQLite()
	defer cleanup()
	for name, cfg := range map[string]outbox.Config{
		"negative lease":            {LeaseDuration: -1},
		"negative concurrency":      {MaxConcurrency: -1},
		"cap below base":            {RetryBase: 10, RetryMax: 5},
		"huge batch":                {BatchSize: 1 << 20},
		"negative handler timeout":  {HandlerTimeout: -1},
		"handler timeout below 1ms": {HandlerTimeout: time.Microsecond},
	} {
		if _, err := outbox.New(db, postgres.New(), cfg); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := outbox.New(nil, postgres.New(), outbox.Config{}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("nil db: %v", err)
	}
	if _, err := outbox.New(db, nil, outbox.Config{}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("nil dialect: %v", err)
	}
}

// A real mismatch is ErrWrongDialect for every pair of built-in dialect and
// database; the dialect of the database's own kind passes the check (and
// then fails only because this database has no schema).
func TestWrongDialectEveryPair(t *testing.T) {
	dialects := []dialect.Dialect{postgres.New(), mysql.New(), sqlite.New()}
	for _, db := range []struct {
		kind string
		open func(testing.TB) func() *sql.DB
	}{{"postgres", testdb.Postgres}, {"mysql", testdb.MySQL}, {"sqlite", testdb.SQLite}} {
		t.Run(db.kind, func(t *testing.T) {
			pool := db.open(t)()
			for _, d := range dialects {
				ob, err := outbox.New(pool, d, outbox.Config{})
				if err != nil {
					t.Fatal(err)
				}
				err = ob.DeclareQueue(t.Context(), "q", 1)
				if d.Name() == db.kind {
					if err == nil || errors.Is(err, outbox.ErrWrongDialect) {
						t.Errorf("%s dialect on its own database: got %v, want a missing-table error", d.Name(), err)
					}
					continue
				}
				if !errors.Is(err, outbox.ErrWrongDialect) || !errors.Is(err, dialect.ErrWrongDatabase) {
					t.Errorf("%s dialect on %s: got %v, want ErrWrongDialect", d.Name(), db.kind, err)
				}
			}
		})
	}
}

// Enqueue with a transaction of another kind of database, on an outbox
// whose queue is declared (so nothing is looked up first), reports
// ErrWrongDialect and dialect.ErrWrongDatabase, as migrations.Up and the
// database check do, for every pair of built-in dialect and database: the
// dialect classifies the other driver's error (dialect.ErrorWrongDatabase).
func TestEnqueueWrongDatabaseEveryPair(t *testing.T) {
	kinds := []struct {
		d    dialect.Dialect
		open func(testing.TB) func() *sql.DB
	}{{postgres.New(), testdb.Postgres}, {mysql.New(), testdb.MySQL}, {sqlite.New(), testdb.SQLite}}
	pools := make([]*sql.DB, len(kinds))
	obs := make([]*outbox.Outbox, len(kinds))
	for i, k := range kinds {
		pools[i] = k.open(t)()
		if err := migrations.Up(t.Context(), pools[i], k.d); err != nil {
			t.Fatal(err)
		}
		ob, err := outbox.New(pools[i], k.d, outbox.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if err := ob.DeclareQueue(t.Context(), "q", 1); err != nil {
			t.Fatal(err)
		}
		obs[i] = ob
	}
	for i, k := range kinds {
		for j, other := range kinds {
			if i == j {
				continue
			}
			tx, err := pools[j].BeginTx(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			err = obs[i].Enqueue(t.Context(), tx, outbox.Message{Queue: "q", Payload: []byte("x"), PayloadType: "t"})
			_ = tx.Rollback()
			if !errors.Is(err, outbox.ErrWrongDialect) || !errors.Is(err, dialect.ErrWrongDatabase) {
				t.Errorf("%s outbox, %s transaction: Enqueue: %v, want ErrWrongDialect and dialect.ErrWrongDatabase", k.d.Name(), other.d.Name(), err)
			}
		}
	}
}

// Typed-nil dialects are an error from New, not a panic later; zero-value
// dialects mean New(): the default prefix and the same migrations.
func TestNilAndZeroDialects(t *testing.T) {
	db, cleanup := openSQLite()
	defer cleanup()
	type builtin interface {
		dialect.Dialect
	}
	for _, c := range []struct{ typedNil, zero, def builtin }{
		{(*postgres.Dialect)(nil), &postgres.Dialect{}, postgres.New()},
		{(*mysql.Dialect)(nil), &mysql.Dialect{}, mysql.New()},
		{(*sqlite.Dialect)(nil), &sqlite.Dialect{}, sqlite.New()},
	} {
		if _, err := outbox.New(db, c.typedNil, outbox.Config{}); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("New(%T(nil)): got %v, want ErrInvalidConfig", c.typedNil, err)
		}
		if p := c.zero.Prefix(); p != "outbox_" {
			t.Errorf("zero %T: prefix %q, want outbox_", c.zero, p)
		}
		want, _ := fs.ReadFile(c.def.Migrations(), "00001_outbox.sql")
		got, err := fs.ReadFile(c.zero.Migrations(), "00001_outbox.sql")
		if err != nil || len(want) == 0 || !bytes.Equal(got, want) || !bytes.Contains(got, []byte(" outbox_messages")) {
			t.Errorf("zero %T: migrations differ from New()'s (%v)", c.zero, err)
		}
	}
}

// The outbox prepares its statements once per *sql.DB (SQLite asks for
// it). Enqueue into a caller's transaction of another *sql.DB must still
// write there, before and after InTx has prepared the insert on the
// outbox's own database.
func TestEnqueueIntoAnotherDatabasesTx(t *testing.T) {
	ctx := context.Background()
	db, cleanup := openSQLite()
	defer cleanup()
	other, cleanupOther := openSQLite()
	defer cleanupOther()
	ob := exampleOutbox(ctx, db, "q", 2)
	exampleOutbox(ctx, other, "q", 2)
	msg := outbox.Message{Queue: "q", Partition: 1, Payload: []byte("x"), PayloadType: "t"}
	count := func(db *sql.DB) int {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM outbox_messages").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i := range 5 {
		if err := ob.InTx(ctx, func(tx *sql.Tx) error { return ob.Enqueue(ctx, tx, msg) }); err != nil {
			t.Fatalf("InTx %d: %v", i, err)
		}
		tx, err := other.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := ob.Enqueue(ctx, tx, msg); err != nil {
			t.Fatalf("Enqueue %d into the other database: %v", i, err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := count(db), count(other); a != 5 || b != 5 {
		t.Fatalf("rows: %d in the outbox's database, %d in the other; want 5 and 5", a, b)
	}
}
