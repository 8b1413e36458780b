// Package migrations applies a dialect's schema ([dialect.Schema]) with
// goose's Provider API.
//
// Each dialect owns its schema as embedded goose SQL files (the built-in
// ones in dialect/postgres, dialect/mysql and dialect/sqlite, under
// migrations/); [dialect.Schema.Migrations] serves them with the dialect's
// table prefix. Users with their own migration pipeline copy them out of
// their dialect's Migrations (postgres.New().Migrations(), say); everyone
// else calls [Up]. This package imports no backend.
package migrations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"

	"github.com/pressly/goose/v3"

	"github.com/modkit-go/db/dialect"
)

// DefaultPrefix is the table prefix of the built-in dialects' files as
// stored. It is [dialect.DefaultPrefix].
const DefaultPrefix = dialect.DefaultPrefix

// ErrInvalidDialect is returned by Up for a nil dialect (also a typed nil
// such as (*postgres.Dialect)(nil)), one with an invalid table prefix, or
// one without migrations.
var ErrInvalidDialect = errors.New("migrations: invalid dialect")

// Up applies every pending migration of d (usually a dialect such as
// postgres.New(), which implements dialect.Schema) to db. It records applied
// versions in the table <prefix>schema_version, never touches goose's global
// state and never closes db. Running it again is a no-op.
//
// Up checks d first: a nil or typed-nil dialect, or one with an invalid
// prefix, returns ErrInvalidDialect; when d.CheckDatabase finds that
// db is not its kind of database, the error wraps dialect.ErrWrongDatabase.
//
// Concurrent calls, from this process or others, are serialized, so any
// number of processes may call Up at start-up: on PostgreSQL by a session
// advisory lock (per database, schema and prefix), on MariaDB/MySQL by
// GET_LOCK (per database and prefix), on SQLite by a per-file lock within
// the process (across processes, SQLite's single writer and the one
// transaction per migration keep the schema whole). Other goose dialects
// are not locked. Under that lock and before any DDL, Up
// checks that every existing table with an outbox name has the outbox's
// columns; otherwise it returns a *ConflictError (errors.Is
// ErrSchemaConflict) naming the table and changes nothing. The statements
// are idempotent (IF NOT EXISTS), so an Up that failed half-way (MariaDB and
// MySQL commit each DDL statement on its own) completes when run again.
func Up(ctx context.Context, db *sql.DB, d dialect.Schema) error {
	if db == nil {
		return fmt.Errorf("migrations: nil *sql.DB: %w", ErrInvalidDialect)
	}
	if isNil(d) {
		return fmt.Errorf("migrations: nil dialect: %w", ErrInvalidDialect)
	}
	if !ValidPrefix(d.Prefix()) {
		return fmt.Errorf("migrations: %s schema has table prefix %q: %w", d.GooseDialect(), d.Prefix(), ErrInvalidDialect)
	}
	fsys := d.Migrations()
	if fsys == nil {
		return fmt.Errorf("migrations: %s schema has no migrations: %w", d.GooseDialect(), ErrInvalidDialect)
	}
	// Before goose: a PostgreSQL dialect over MariaDB must say so, not fail
	// on a missing pg_tables.
	if err := d.CheckDatabase(ctx, db); err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	opts := []goose.ProviderOption{
		goose.WithTableName(d.Prefix() + "schema_version"),
		goose.WithDisableGlobalRegistry(true),
	}
	if l := newLocker(d.GooseDialect(), d.Prefix()); l != nil {
		opts = append(opts, goose.WithSessionLocker(l))
	}
	p, err := goose.NewProvider(goose.Dialect(d.GooseDialect()), db, fsys, opts...)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	// Deliberately no p.Close(): it would close the caller's *sql.DB.
	//
	// One ApplyVersion per version rather than p.Up: every Provider.Up*
	// first runs HasPending, which creates the version table outside the
	// lock (two processes then race on it); ApplyVersion takes the lock
	// before it touches anything.
	//
	// Versions already applied are skipped before goose is asked: goose's
	// own already-applied check scans a timestamp, which fails on a MySQL
	// DSN without parseTime=true (the dialect does not need it). When
	// another process applies a version meanwhile, that check may fail the
	// same way: the version read again then says it is applied.
	applied, err := current(ctx, db, d)
	if err != nil {
		return err
	}
	for _, s := range p.ListSources() {
		if s.Version <= applied {
			continue
		}
		if _, err := p.ApplyVersion(ctx, s.Version, true); err != nil && !errors.Is(err, goose.ErrAlreadyApplied) {
			if now, cerr := current(ctx, db, d); cerr == nil && now >= s.Version {
				continue
			}
			return fmt.Errorf("migrations: up to version %d: %w", s.Version, err)
		}
	}
	return nil
}

// isNil reports whether d is nil or a nil pointer (or other nil reference)
// in an interface.
func isNil(d dialect.Schema) bool {
	if d == nil {
		return true
	}
	switch v := reflect.ValueOf(d); v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return v.IsNil()
	}
	return false
}

// ValidPrefix reports whether prefix is usable as a table-name prefix:
// 1–32 lowercase letters, digits and underscores, starting with a letter.
// It is [dialect.ValidPrefix].
func ValidPrefix(prefix string) bool { return dialect.ValidPrefix(prefix) }
