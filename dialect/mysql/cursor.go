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
