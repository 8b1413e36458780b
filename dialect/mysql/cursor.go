package mysql

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/sqlbase"
)

// updateOne writes one cursor update with update, and reports whether it
// changed the row.
func (d *Dialect) updateOne(ctx context.Context, q dialect.DBTX, p *dialect.CursorUpdate) (bool, error) {
	renew := p.Renew.Microseconds()
	// version = version + 1 makes a matched row always a changed row.
	n, err := sqlbase.Exec(ctx, q, d.Own().update, p.ProcessedSeq, p.Attempts, sqlbase.NullString(p.LastError),
		p.RetryAfter.Microseconds(), renew, renew, renew, p.Block,
		p.PartitionID, p.Token, p.Token)
	return n == 1, err
}

// deleteDelivered deletes the delivered rows the entries name
// (DeleteIDs), after their update changed the row: one DELETE by primary
// key. UpdateCursors runs it in the transaction of several acks: the combined acks of
// the decoupled workers delete as they go, which a single vacuum loop
// could not keep up with in a drain (the last rows went 0.4-0.8 s after
// the last delivery of 100k). By primary key, not a range of the
// (partition_id, seq) index: a range scan locks the entry after its end
// (at REPEATABLE READ the gap before it too), which can be a row the
// sequencer is numbering or, past the NULLs, where a producer inserts;
// producers then deadlocked with acks. Entries without ids, and a
// single update (in a transactional handler's transaction a delete made
// each batch hold the partition's row lock longer: a 100k transactional
// drain took 0.5 s more), leave their rows to Vacuum, which reads its
// candidates with a consistent read and finds only what the acks left.
func (d *Dialect) deleteDelivered(ctx context.Context, q dialect.DBTX, ps ...*dialect.CursorUpdate) error {
	var ids []any
	for _, p := range ps {
		if p.DeleteThrough > p.DeleteAfter {
			for _, id := range p.DeleteIDs {
				ids = append(ids, id)
			}
		}
	}
	// In pieces: a round's acks can name tens of thousands of rows (the
	// batch sizes of all its workers), more than the 65,535 placeholders
	// of a server-side prepared statement, and a long IN list can exceed
	// MySQL's range optimizer memory and turn into a scan that locks
	// every row it reads.
	for len(ids) > 0 {
		n := min(len(ids), maxDeleteIDs)
		if _, err := q.ExecContext(ctx, "DELETE FROM "+d.Prefix()+"messages WHERE id IN ("+sqlbase.Placeholders(n)+")", ids[:n]...); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// maxDeleteIDs is the most ids one DELETE of deleteDelivered names.
const maxDeleteIDs = 1000

// UpdateCursors implements dialect.Dialect. A single entry, and entries in
// the caller's transaction (p.DB nil), are written one update each on q.
// Several entries of the outbox's own: MySQL has no UPDATE … RETURNING, so
// one single-table UPDATE of the entries' rows (by primary key, each
// column and the fence a CASE on partition_id) runs in a transaction of
// its own on p.DB and reports only how many rows it changed. When that is
// every entry (the common case: leases are rarely lost) the transaction
// commits; otherwise it is rolled back and the entries are written one
// update each, in a transaction, which tells them apart.
// Not a join with the entries as a table (JSON_TABLE): a multi-table UPDATE
// that sets a TEXT column (last_error) keeps the new values in an on-disk
// temporary table.
func (d *Dialect) UpdateCursors(ctx context.Context, q dialect.DBTX, up *dialect.UpdateCursorsParams) (*dialect.UpdateCursorsResult, error) {
	ps, db := up.Updates, up.DB
	if len(ps) == 1 || db == nil {
		out := make([]bool, len(ps))
		for i, p := range ps {
			ok, err := d.updateOne(ctx, q, p)
			if err != nil {
				return nil, err
			}
			out[i] = ok
		}
		return &dialect.UpdateCursorsResult{Updated: out}, nil
	}
	query, args, err := d.updateMany(ps)
	if err != nil {
		return nil, err
	}
	all, err := d.updateAll(ctx, db, query, args, ps)
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(ps))
	if all {
		for i := range out {
			out[i] = true
		}
		return &dialect.UpdateCursorsResult{Updated: out}, nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	for i, p := range ps {
		if out[i], err = d.updateOne(ctx, tx, p); err != nil {
			return nil, err
		}
	}
	return &dialect.UpdateCursorsResult{Updated: out}, tx.Commit()
}

// updateMany builds UpdateCursors's statement: the assignments and fence
// of update, each value a CASE partition_id WHEN … over the entries.
// Single-table UPDATE assigns left to right and later assignments see
// earlier new values: as in update, none reads a column assigned before
// it, and the WHERE clause sees the old values.
func (d *Dialect) updateMany(ps []*dialect.CursorUpdate) (string, []any, error) {
	if err := sqlbase.DistinctCursors(ps); err != nil {
		return "", nil, err
	}
	var b strings.Builder
	var args []any
	byPartition := func(value func(p *dialect.CursorUpdate) (string, []any)) {
		b.WriteString("CASE partition_id")
		for _, p := range ps {
			expr, vs := value(p)
			b.WriteString(" WHEN ? THEN " + expr)
			args = append(append(args, p.PartitionID), vs...)
		}
		b.WriteString(" END")
	}
	param := func(v any) (string, []any) { return "?", []any{v} }
	b.WriteString("UPDATE " + d.Prefix() + "processors SET processed_seq = ")
	byPartition(func(p *dialect.CursorUpdate) (string, []any) { return param(p.ProcessedSeq) })
	b.WriteString(", attempts = ")
	byPartition(func(p *dialect.CursorUpdate) (string, []any) { return param(p.Attempts) })
	b.WriteString(", last_error = ")
	byPartition(func(p *dialect.CursorUpdate) (string, []any) { return param(sqlbase.NullString(p.LastError)) })
	b.WriteString(", next_attempt_at = ")
	byPartition(func(p *dialect.CursorUpdate) (string, []any) {
		return "NOW(6) + INTERVAL ? MICROSECOND", []any{p.RetryAfter.Microseconds()}
	})
	b.WriteString(", lease_token = ")
	byPartition(func(p *dialect.CursorUpdate) (string, []any) {
		if p.Renew > 0 {
			return "lease_token", nil
		}
		return "NULL", nil
	})
	b.WriteString(", lease_until = ")
	byPartition(func(p *dialect.CursorUpdate) (string, []any) {
		if p.Renew > 0 {
			return "NOW(6) + INTERVAL ? MICROSECOND", []any{p.Renew.Microseconds()}
		}
		return "NULL", nil
	})
	b.WriteString(", blocked_at = ")
	byPartition(func(p *dialect.CursorUpdate) (string, []any) {
		if p.Block {
			return "NOW(6)", nil
		}
		return "NULL", nil
	})
	b.WriteString(", version = version + 1 WHERE partition_id IN (" + sqlbase.Placeholders(len(ps)) + ") AND ")
	for _, p := range ps {
		args = append(args, p.PartitionID)
	}
	byPartition(func(p *dialect.CursorUpdate) (string, []any) {
		if p.Token == "" {
			return "TRUE", nil
		}
		return "(lease_token = ? AND lease_until > NOW(6))", []any{p.Token}
	})
	return b.String(), args, nil
}

// updateAll runs UpdateCursors's statement and commits it, with the
// delivered rows' delete, only if it changed a row per entry
// (version = version + 1: a matched row is a changed row).
func (d *Dialect) updateAll(ctx context.Context, db *sql.DB, query string, args []any, ps []*dialect.CursorUpdate) (bool, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer func() { _ = tx.Rollback() }()
	n, err := sqlbase.Exec(ctx, tx, query, args...)
	if err != nil || n != len(ps) {
		return false, err
	}
	if err := d.deleteDelivered(ctx, tx, ps...); err != nil {
		return false, err
	}
	return true, tx.Commit()
}

// LockCursor implements dialect.Dialect. The partitions row is read
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
