package mysql

import (
	"context"
	"database/sql"
	"errors"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/sqlbase"
)

// UpdateCursor implements dialect.Dialect.
func (d *Dialect) UpdateCursor(ctx context.Context, q dialect.DBTX, p *dialect.UpdateCursorParams) (*dialect.UpdateCursorResult, error) {
	renew := p.Renew.Microseconds()
	// version = version + 1 makes a matched row always a changed row.
	n, err := sqlbase.Exec(ctx, q, d.qs().update, p.ProcessedSeq, p.Attempts, sqlbase.NullString(p.LastError),
		p.RetryAfter.Microseconds(), renew, renew, renew, p.Block,
		p.PartitionID, p.Token, p.Token)
	if err != nil {
		return nil, err
	}
	return &dialect.UpdateCursorResult{Updated: n == 1}, nil
}

var _ dialect.CursorsUpdater = (*Dialect)(nil)

// UpdateCursors implements dialect.CursorsUpdater. MySQL has no
// UPDATE … RETURNING, so one UPDATE joined with the entries (JSON_TABLE,
// each cursor row reached by its primary key, as in the sequencer's
// numbering) runs in a transaction of its own and reports only how many
// rows it changed. When that is every entry (the common case: leases are
// rarely lost) the transaction commits; otherwise it is rolled back and
// the entries are written one UpdateCursor each, in a transaction, which
// tells them apart.
func (d *Dialect) UpdateCursors(ctx context.Context, db *sql.DB, _ dialect.DBTX, ps []*dialect.UpdateCursorParams) ([]bool, error) {
	js, err := sqlbase.CursorEntries(ps)
	if err != nil {
		return nil, err
	}
	all, err := d.updateAll(ctx, db, js, len(ps))
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(ps))
	if all {
		for i := range out {
			out[i] = true
		}
		return out, nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	for i, p := range ps {
		r, err := d.UpdateCursor(ctx, tx, p)
		if err != nil {
			return nil, err
		}
		out[i] = r.Updated
	}
	return out, tx.Commit()
}

// updateAll runs the joined UPDATE of UpdateCursors and commits it only if
// it changed want rows (version = version + 1: a matched row is a changed
// row).
func (d *Dialect) updateAll(ctx context.Context, db *sql.DB, entries string, want int) (bool, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer func() { _ = tx.Rollback() }()
	n, err := sqlbase.Exec(ctx, tx, d.qs().updateMany, entries)
	if err != nil || n != want {
		return false, err
	}
	return true, tx.Commit()
}

var _ dialect.CursorLocker = (*Dialect)(nil)

// LockCursor implements dialect.CursorLocker. The partitions row is read
// without a lock (as in LockPartition: the sequencer is never held up);
// the processors row is locked by primary key, a record lock, waiting for
// a transactional handler that holds it.
func (d *Dialect) LockCursor(ctx context.Context, tx *sql.Tx, p *dialect.LockCursorParams) (*dialect.LockCursorResult, error) {
	var r dialect.LockCursorResult
	err := tx.QueryRowContext(ctx, `SELECT id, last_seq FROM `+d.Prefix()+`partitions WHERE queue = ? AND partition_num = ?`,
		p.Queue, p.Partition).Scan(&r.PartitionID, &r.LastSeq)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, dialect.ErrQueueNotFound
	}
	if err != nil {
		return nil, err
	}
	err = tx.QueryRowContext(ctx, `SELECT processed_seq, attempts, COALESCE(last_error, ''), blocked_at IS NOT NULL
		FROM `+d.Prefix()+`processors WHERE partition_id = ? FOR UPDATE`, r.PartitionID).
		Scan(&r.ProcessedSeq, &r.Attempts, &r.LastError, &r.Blocked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, dialect.ErrQueueNotFound
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}
