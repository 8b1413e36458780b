package migrations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/pressly/goose/v3/database"

	"github.com/modkit-go/db/dialect"
)

// ErrNotMigrated is wrapped by the error Check returns when the database
// lacks migrations that d's schema has: run Up first.
var ErrNotMigrated = errors.New("migrations: database is not migrated")

// Version describes how far a database's outbox schema is migrated.
type Version struct {
	// Current is the highest version recorded in <prefix>schema_version, 0
	// when the table does not exist (nothing applied).
	Current int64
	// Latest is the highest version among d's migrations.
	Latest int64
}

// Pending reports whether migrations remain to be applied.
func (v Version) Pending() bool { return v.Current < v.Latest }

// Status reads which schema version db is at for d's schema, without
// writing anything (unlike goose's own status, it creates no version
// table). It returns ErrInvalidDialect for a nil or unusable d.
func Status(ctx context.Context, db *sql.DB, d dialect.Schema) (Version, error) {
	if db == nil {
		return Version{}, fmt.Errorf("migrations: nil *sql.DB: %w", ErrInvalidDialect)
	}
	if isNil(d) || !ValidPrefix(d.Prefix()) || d.Migrations() == nil {
		return Version{}, fmt.Errorf("migrations: nil dialect or invalid prefix: %w", ErrInvalidDialect)
	}
	latest, err := latestVersion(d.Migrations())
	if err != nil {
		return Version{}, err
	}
	if err := d.CheckDatabase(ctx, db); err != nil {
		return Version{}, fmt.Errorf("migrations: %w", err)
	}
	cur, err := current(ctx, db, d)
	if err != nil {
		return Version{}, err
	}
	return Version{Current: cur, Latest: latest}, nil
}

// current reads the highest applied version, 0 when there is no version
// table. It scans no timestamp, so it works on a MySQL DSN without
// parseTime=true (goose's own already-applied check does not).
func current(ctx context.Context, db *sql.DB, d dialect.Schema) (int64, error) {
	store, err := database.NewStore(database.Dialect(d.GooseDialect()), d.Prefix()+"schema_version")
	if err != nil {
		return 0, fmt.Errorf("migrations: %w", err)
	}
	if ext, ok := store.(database.StoreExtender); ok {
		exists, err := ext.TableExists(ctx, db)
		if errors.Is(err, errors.ErrUnsupported) && d.GooseDialect() == "sqlite3" {
			// goose has no such query for SQLite.
			err = db.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?)",
				d.Prefix()+"schema_version").Scan(&exists)
		}
		if err != nil {
			return 0, fmt.Errorf("migrations: version table: %w", err)
		}
		if !exists {
			return 0, nil
		}
	}
	cur, err := store.GetLatestVersion(ctx, db)
	switch {
	case errors.Is(err, database.ErrVersionNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("migrations: version: %w", err)
	}
	return cur, nil
}

// Check returns nil when db has every migration of d's schema, and
// otherwise an error wrapping ErrNotMigrated that names both versions.
func Check(ctx context.Context, db *sql.DB, d dialect.Schema) error {
	v, err := Status(ctx, db, d)
	if err != nil {
		return err
	}
	if v.Pending() {
		return fmt.Errorf("%w: schema version %d, this build needs %d (prefix %q)", ErrNotMigrated, v.Current, v.Latest, d.Prefix())
	}
	return nil
}

// latestVersion is the highest goose version among the .sql files of fsys
// (their names start with the version number).
func latestVersion(fsys fs.FS) (int64, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return 0, fmt.Errorf("migrations: %w", err)
	}
	var latest int64
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || path.Ext(name) != ".sql" {
			continue
		}
		num, _, _ := strings.Cut(name, "_")
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			continue
		}
		latest = max(latest, n)
	}
	if latest == 0 {
		return 0, fmt.Errorf("migrations: no versioned .sql files: %w", ErrInvalidDialect)
	}
	return latest, nil
}
