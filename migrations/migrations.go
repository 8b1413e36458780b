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

// ErrInvalidDialect is returned by Up for a nil dialect or one without
// migrations.
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
// When d implements dialect.Checker and db is not a database of d's kind,
// Up returns an error wrapping dialect.ErrWrongDatabase and changes nothing.
func Up(ctx context.Context, db *sql.DB, d dialect.Dialect) error {
	if db == nil {
		return fmt.Errorf("migrations: nil *sql.DB: %w", ErrInvalidDialect)
	}
	if d == nil || d.Migrations() == nil {
		return ErrInvalidDialect
	}
	// Before goose's first statement: otherwise a mismatch surfaces as
	// whatever goose's catalog query trips over (a missing pg_tables).
	if c, ok := d.(dialect.Checker); ok {
		if err := c.CheckDatabase(ctx, db); err != nil {
			return fmt.Errorf("migrations: %w", err)
		}
	}
	p, err := goose.NewProvider(goose.Dialect(d.GooseDialect()), db, d.Migrations(),
		goose.WithTableName(d.Prefix()+"schema_version"),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	// Deliberately no p.Close(): it would close the caller's *sql.DB.
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrations: up: %w", err)
	}
	return nil
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
