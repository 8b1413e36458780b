package migrations_test

import (
	"context"
	"errors"
	"testing"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/mysql"
	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/internal/testdb"
	"github.com/modkit-go/db/migrations"
)

// Up with a dialect of another kind reports the mismatch (not whatever
// goose's first catalog query trips over) and creates nothing; the right
// dialect then migrates the same database.
func TestUpWrongDatabase(t *testing.T) {
	ctx := context.Background()
	db := testdb.SQLite(t)()
	for _, d := range []dialect.Dialect{postgres.New(), mysql.New()} {
		err := migrations.Up(ctx, db, d)
		if !errors.Is(err, dialect.ErrWrongDatabase) {
			t.Errorf("%s dialect on SQLite: got %v, want dialect.ErrWrongDatabase", d.Name(), err)
		}
	}
	var tables int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Fatalf("a rejected Up left %d schema objects behind", tables)
	}
	for range 2 {
		if err := migrations.Up(ctx, db, sqlite.New()); err != nil {
			t.Fatalf("sqlite dialect: %v", err)
		}
	}
}
