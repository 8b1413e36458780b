// Package stmt holds what the built-in dialects run the same way: the
// standard-SQL savepoint statements, scanning a column of ids, the queue
// lookup, and NULL arguments.
package stmt

import (
	"context"
	"database/sql"

	"github.com/modkit-go/db/dialect"
)

// Int64s runs query and scans its single int64 column.
func Int64s(ctx context.Context, q dialect.DBTX, query string, args ...any) ([]int64, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// LookupQueue runs query (one queue-name argument, partition ids in
// partition order) and reports dialect.ErrQueueNotFound when it finds none.
func LookupQueue(ctx context.Context, q dialect.DBTX, query, queue string) (*dialect.LookupQueueResult, error) {
	ids, err := Int64s(ctx, q, query, queue)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, dialect.ErrQueueNotFound
	}
	return &dialect.LookupQueueResult{PartitionIDs: ids}, nil
}

// Savepoint runs SAVEPOINT, ROLLBACK TO SAVEPOINT or RELEASE SAVEPOINT,
// which PostgreSQL, MySQL/MariaDB and SQLite spell alike. The name comes
// from the core, never from users.
func Savepoint(ctx context.Context, tx *sql.Tx, p *dialect.SavepointParams) error {
	q := "SAVEPOINT " + p.Name
	switch p.Op {
	case dialect.SavepointRollback:
		q = "ROLLBACK TO SAVEPOINT " + p.Name
	case dialect.SavepointRelease:
		q = "RELEASE SAVEPOINT " + p.Name
	}
	_, err := tx.ExecContext(ctx, q)
	return err
}

// AddRows adds res's affected-row count to n.
func AddRows(n int, res sql.Result) (int, error) {
	k, err := res.RowsAffected()
	return n + int(k), err
}

// NullString is s as an argument, NULL when empty.
func NullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// NullBytes is b as a text argument, NULL when nil.
func NullBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}
