package migrations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pressly/goose/v3/lock"
)

// ErrSchemaConflict is wrapped by the *ConflictError that Up returns when a
// table with an outbox name exists but is not the outbox's.
var ErrSchemaConflict = errors.New("migrations: a table with an outbox name is not the outbox's")

// ConflictError names a pre-existing table that has an outbox table's name
// but lacks some of its columns. Up returns it before any DDL, so nothing
// was changed; rename or drop the table (or choose another prefix) and run
// Up again.
type ConflictError struct {
	Table   string   // the table's name, with prefix
	Missing []string // outbox columns the table lacks
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("migrations: table %s exists but lacks the outbox columns %s", e.Table, strings.Join(e.Missing, ", "))
}

// Unwrap makes errors.Is(err, ErrSchemaConflict) hold.
func (e *ConflictError) Unwrap() error { return ErrSchemaConflict }

// tableColumns are the columns every migration so far creates per table
// (without prefix). A pre-existing table is the outbox's when it has all
// of them: either an earlier Up created it or one failed half-way. A later
// migration that drops a column must drop it here too.
var tableColumns = map[string][]string{
	"queues":       {"name", "partitions", "created_at"},
	"partitions":   {"id", "queue", "partition_num", "last_seq"},
	"messages":     {"id", "partition_id", "seq", "payload", "payload_type", "headers", "created_at"},
	"processors":   {"partition_id", "queue", "processed_seq", "attempts", "last_error", "lease_token", "lease_until", "next_attempt_at", "version"},
	"dead_letters": {"id", "queue", "partition_num", "seq", "payload", "payload_type", "headers", "created_at", "failed_at", "attempts", "last_error", "status", "deadline", "completed_at"},
}

// lockWait bounds how long Up waits for another process's migration.
const lockWait = 5 * time.Minute

// newLocker returns the session locker for a goose dialect, or nil for a
// dialect this package does not know (no lock, no pre-flight check).
//
// How each backend serializes Up:
//   - postgres: goose's session-level advisory lock (pg_try_advisory_lock,
//     polled every second) with a lock id hashed from the database, the
//     current schema and the prefix, so outboxes in other schemas do not
//     wait for each other. The server drops it if the session dies.
//   - mysql: GET_LOCK on the migration's own connection, named after the
//     database and the prefix; released by RELEASE_LOCK or when the
//     session ends.
//   - sqlite3: SQLite has no session lock. Up calls of one process on one
//     file queue on an in-process lock keyed by the file's path. Across
//     processes each migration runs in one transaction (SQLite's DDL is
//     transactional) under SQLite's single-writer lock, and its statements
//     are idempotent, so a concurrent Up elsewhere either finds the schema
//     complete or completes it; at worst goose records a version twice,
//     which it tolerates.
//
// Every locker runs the pre-flight table check once it holds the lock, on
// the connection goose then migrates with, before goose creates anything.
func newLocker(gooseDialect, prefix string) lock.SessionLocker {
	switch gooseDialect {
	case "postgres", "pgx":
		return &checkedLocker{prefix: prefix, inner: &postgresLocker{prefix: prefix},
			columnsQuery: `SELECT column_name FROM information_schema.columns
				WHERE table_schema = current_schema() AND table_name = $1`}
	case "mysql":
		return &checkedLocker{prefix: prefix, inner: &mysqlLocker{prefix: prefix},
			columnsQuery: `SELECT column_name FROM information_schema.columns
				WHERE table_schema = DATABASE() AND table_name = ?`}
	case "sqlite3", "sqlite":
		return &checkedLocker{prefix: prefix, inner: &sqliteLocker{},
			columnsQuery: `SELECT name FROM pragma_table_info(?)`}
	}
	return nil
}

// checkedLocker takes the backend's lock, then checks the existing tables.
type checkedLocker struct {
	prefix       string
	inner        lock.SessionLocker
	columnsQuery string // the columns of table $1 in the schema goose writes to
}

func (l *checkedLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	if err := l.inner.SessionLock(ctx, conn); err != nil {
		return err
	}
	if err := l.preflight(ctx, conn); err != nil {
		// goose does not unlock when SessionLock fails, and conn goes back
		// to the pool: release here.
		return errors.Join(err, l.inner.SessionUnlock(context.WithoutCancel(ctx), conn))
	}
	return nil
}

func (l *checkedLocker) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	return l.inner.SessionUnlock(ctx, conn)
}

// preflight returns a *ConflictError for the first existing table with an
// outbox name that lacks an outbox column.
func (l *checkedLocker) preflight(ctx context.Context, conn *sql.Conn) error {
	names := make([]string, 0, len(tableColumns))
	for t := range tableColumns {
		names = append(names, t)
	}
	slices.Sort(names)
	for _, t := range names {
		table := l.prefix + t
		have, err := columnSet(ctx, conn, l.columnsQuery, table)
		if err != nil {
			return fmt.Errorf("migrations: columns of %s: %w", table, err)
		}
		if len(have) == 0 {
			continue // absent: the migration creates it
		}
		var missing []string
		for _, c := range tableColumns[t] {
			if !have[c] {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			return &ConflictError{Table: table, Missing: missing}
		}
	}
	return nil
}

func columnSet(ctx context.Context, conn *sql.Conn, query, table string) (map[string]bool, error) {
	rows, err := conn.QueryContext(ctx, query, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		have[strings.ToLower(c)] = true
	}
	return have, rows.Err()
}

// lockKey names the lock of one outbox schema: the database (and schema)
// the connection writes to, and the table prefix.
func lockKey(ctx context.Context, conn *sql.Conn, query, prefix string) (string, error) {
	var where string
	if err := conn.QueryRowContext(ctx, query).Scan(&where); err != nil {
		return "", fmt.Errorf("migrations: lock name: %w", err)
	}
	return "outbox-migrations\x00" + where + "\x00" + prefix, nil
}

// postgresLocker is goose's advisory session locker with a lock id per
// database, schema and prefix.
type postgresLocker struct {
	prefix string
	inner  lock.SessionLocker
}

func (l *postgresLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	key, err := lockKey(ctx, conn, `SELECT current_database() || '.' || coalesce(current_schema(), '')`, l.prefix)
	if err != nil {
		return err
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	// Poll every second (goose's minimum) up to lockWait.
	l.inner, err = lock.NewPostgresSessionLocker(
		lock.WithLockID(int64(h.Sum64())),
		lock.WithLockTimeout(1, uint64(lockWait/time.Second)),
		lock.WithUnlockTimeout(1, 60),
	)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if err := l.inner.SessionLock(ctx, conn); err != nil {
		return fmt.Errorf("migrations: advisory lock: %w", err)
	}
	return nil
}

func (l *postgresLocker) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	return l.inner.SessionUnlock(ctx, conn)
}

// mysqlLocker holds GET_LOCK on goose's connection. MySQL caps lock names
// at 64 characters, so the name carries a hash of the database and prefix.
type mysqlLocker struct {
	prefix string
	name   string
}

func (l *mysqlLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	key, err := lockKey(ctx, conn, `SELECT coalesce(DATABASE(), '')`, l.prefix)
	if err != nil {
		return err
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	l.name = fmt.Sprintf("outbox-migrations-%016x", h.Sum64())
	deadline := time.Now().Add(lockWait)
	for {
		// Short waits keep ctx in charge without relying on the driver
		// killing a blocked statement.
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 2)", l.name).Scan(&got); err != nil {
			return fmt.Errorf("migrations: GET_LOCK: %w", err)
		}
		switch {
		case got.Valid && got.Int64 == 1:
			return nil
		case !got.Valid:
			return fmt.Errorf("migrations: GET_LOCK(%s) failed", l.name)
		case time.Now().After(deadline):
			return fmt.Errorf("migrations: GET_LOCK(%s): another migration held it for %v", l.name, lockWait)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("migrations: GET_LOCK: %w", err)
		}
	}
}

func (l *mysqlLocker) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	var released sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT RELEASE_LOCK(?)", l.name).Scan(&released); err != nil {
		return fmt.Errorf("migrations: RELEASE_LOCK: %w", err)
	}
	return nil
}

// sqliteLocks holds one lock per database file for this process.
var sqliteLocks sync.Map // path -> chan struct{} (capacity 1)

// sqliteLocker serializes Up calls on one file within this process.
type sqliteLocker struct {
	held chan struct{}
}

func (l *sqliteLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	var path string
	err := conn.QueryRowContext(ctx, `SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&path)
	if err != nil {
		return fmt.Errorf("migrations: database file: %w", err)
	}
	ch, _ := sqliteLocks.LoadOrStore(path, make(chan struct{}, 1))
	l.held = ch.(chan struct{})
	select {
	case l.held <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("migrations: waiting for another migration of %s: %w", path, ctx.Err())
	}
}

func (l *sqliteLocker) SessionUnlock(context.Context, *sql.Conn) error {
	<-l.held
	return nil
}
