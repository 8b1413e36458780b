// Package migrations holds the outbox schema for each built-in dialect as
// embedded goose SQL files and applies it with goose's Provider API.
//
// Users with their own migration pipeline can copy the files out of [FS]
// (folders postgres/, mysql/ and sqlite/; tables use the default prefix
// "outbox_"). Everyone else calls [Up].
package migrations

import (
	"bytes"
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"reflect"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/modkit-go/db/dialect"
)

// FS holds the schema of every built-in dialect, one folder per dialect,
// with the default table prefix "outbox_".
//
//go:embed postgres/*.sql mysql/*.sql sqlite/*.sql
var FS embed.FS

// DefaultPrefix is the table prefix the files in FS use.
const DefaultPrefix = "outbox_"

// ErrInvalidDialect is returned by Up for a nil dialect (also a typed nil
// such as (*postgres.Dialect)(nil)), one with an invalid table prefix, or
// one without migrations.
var ErrInvalidDialect = errors.New("migrations: invalid dialect")

// ForDialect returns the folder of FS named dir with every occurrence of
// DefaultPrefix rewritten to prefix. Dialect implementations call it from
// their Migrations method.
func ForDialect(dir, prefix string) fs.FS {
	sub, err := fs.Sub(FS, dir)
	if err != nil {
		// dir is a constant of ours; a typo is a programming error.
		panic(fmt.Sprintf("migrations: no folder %q", dir))
	}
	if prefix == DefaultPrefix {
		return sub
	}
	return prefixFS{base: sub, prefix: prefix}
}

// Up applies every pending migration of d to db. It records applied
// versions in the table <prefix>schema_version, never touches goose's global
// state and never closes db. Running it again is a no-op.
//
// Up checks d first: a nil or typed-nil dialect, or one with an invalid
// prefix, returns ErrInvalidDialect; when d implements dialect.Checker and
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
func Up(ctx context.Context, db *sql.DB, d dialect.Dialect) error {
	if db == nil {
		return fmt.Errorf("migrations: nil *sql.DB: %w", ErrInvalidDialect)
	}
	if isNil(d) {
		return fmt.Errorf("migrations: nil dialect: %w", ErrInvalidDialect)
	}
	if !ValidPrefix(d.Prefix()) {
		return fmt.Errorf("migrations: dialect %s has table prefix %q: %w", d.Name(), d.Prefix(), ErrInvalidDialect)
	}
	fsys := d.Migrations()
	if fsys == nil {
		return fmt.Errorf("migrations: dialect %s has no migrations: %w", d.Name(), ErrInvalidDialect)
	}
	// Before goose: a PostgreSQL dialect over MariaDB must say so, not fail
	// on a missing pg_tables.
	if c, ok := d.(dialect.Checker); ok {
		if err := c.CheckDatabase(ctx, db); err != nil {
			return fmt.Errorf("migrations: %w", err)
		}
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
	for _, s := range p.ListSources() {
		if _, err := p.ApplyVersion(ctx, s.Version, true); err != nil && !errors.Is(err, goose.ErrAlreadyApplied) {
			return fmt.Errorf("migrations: up to version %d: %w", s.Version, err)
		}
	}
	return nil
}

// isNil reports whether d is nil or a nil pointer (or other nil reference)
// in an interface.
func isNil(d dialect.Dialect) bool {
	if d == nil {
		return true
	}
	switch v := reflect.ValueOf(d); v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return v.IsNil()
	}
	return false
}

// prefixFS rewrites the default table prefix in every file it serves.
type prefixFS struct {
	base   fs.FS
	prefix string
}

func (p prefixFS) Open(name string) (fs.File, error) {
	f, err := p.base.Open(name)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		return f, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	b = bytes.ReplaceAll(b, []byte(DefaultPrefix), []byte(p.prefix))
	return &memFile{Reader: bytes.NewReader(b), info: fileInfo{name: st.Name(), size: int64(len(b))}}, nil
}

func (p prefixFS) ReadDir(name string) ([]fs.DirEntry, error) {
	return fs.ReadDir(p.base, name)
}

type memFile struct {
	*bytes.Reader
	info fileInfo
}

func (m *memFile) Stat() (fs.FileInfo, error) { return m.info, nil }
func (m *memFile) Close() error               { return nil }

type fileInfo struct {
	name string
	size int64
}

func (f fileInfo) Name() string       { return f.name }
func (f fileInfo) Size() int64        { return f.size }
func (f fileInfo) Mode() fs.FileMode  { return 0o444 }
func (f fileInfo) ModTime() time.Time { return time.Time{} }
func (f fileInfo) IsDir() bool        { return false }
func (f fileInfo) Sys() any           { return nil }

// ValidPrefix reports whether prefix is usable as a table-name prefix:
// 1–32 lowercase letters, digits and underscores, starting with a letter.
func ValidPrefix(prefix string) bool {
	if prefix == "" || len(prefix) > 32 {
		return false
	}
	for i, c := range prefix {
		switch {
		case c >= 'a' && c <= 'z', c == '_' && i > 0, c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
