package sqlbase

// The dead-letter store and queue status. The statements are the same on
// PostgreSQL, MySQL/MariaDB and SQLite but for placeholders, the clock,
// row-lock clauses and how times travel, which Shared supplies.
//
// Forms MySQL and MariaDB reject are avoided throughout: no NULLS FIRST, no
// LIMIT inside IN, no DELETE or UPDATE reading its own table in a
// subquery. Where a statement would need one, it is split in two: a SELECT
// of ids (locking where it decides), then a write by primary key that
// repeats the guard, so the write is safe even where nothing was locked.

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/modkit-go/db/dialect"
)

// sql rewrites a statement written with {p}, {now}, {nowPlus},
// {lastSeq} and "?" for the database.
func (b *Base[S, Q]) sql(query string) string {
	b.init()
	return b.rebind(b.rep.Replace(query))
}

func (b *Base[S, Q]) timeArg(t time.Time) any {
	if b.sh.TimeArg != nil {
		return b.sh.TimeArg(t)
	}
	return t
}

// in returns "?, ?, …" for ids and ids as arguments.
func in(ids []int64) (string, []any) {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", "), args
}

const columns = `id, queue, partition_num, seq, payload, payload_type, headers, created_at, failed_at,
	attempts, COALESCE(last_error, ''), status, deadline, completed_at, msg_id, COALESCE(msg_key, '')`

// where is the WHERE clause of p (with the paging condition when paging).
func (b *Base[S, Q]) where(p *dialect.FindDeadLettersParams, paging bool) (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, a ...any) {
		conds = append(conds, cond)
		args = append(args, a...)
	}
	if p.Queue != "" {
		add("queue = ?", p.Queue)
	}
	if p.Partition != nil {
		add("partition_num = ?", *p.Partition)
	}
	if p.PayloadType != "" {
		add("payload_type = ?", p.PayloadType)
	}
	if p.Status != "" {
		add("status = ?", p.Status)
	}
	if !p.FailedFrom.IsZero() {
		add("failed_at >= ?", b.timeArg(p.FailedFrom))
	}
	if !p.FailedBefore.IsZero() {
		add("failed_at < ?", b.timeArg(p.FailedBefore))
	}
	if paging && p.AfterID > 0 {
		// (failed_at, id) < (after, afterID), spelt out: row-value
		// comparison is not used by every planner for the index.
		at := b.timeArg(p.AfterFailedAt)
		add("(failed_at < ? OR (failed_at = ? AND id < ?))", at, at, p.AfterID)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// FindDeadLetters implements dialect.Dialect.
func (b *Base[S, Q]) FindDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.FindDeadLettersParams) (*dialect.FindDeadLettersResult, error) {
	where, args := b.where(p, true)
	rows, err := q.QueryContext(ctx, b.sql(`SELECT `+columns+` FROM {p}dead_letters`+where+
		` ORDER BY failed_at DESC, id DESC LIMIT ?`), append(args, p.Limit)...)
	if err != nil {
		return nil, err
	}
	dls, err := b.scanDeadLetters(rows)
	return &dialect.FindDeadLettersResult{DeadLetters: dls}, err
}

// scan reads rows of columns and closes them.
func (b *Base[S, Q]) scanDeadLetters(rows *sql.Rows) ([]dialect.DeadLetter, error) {
	defer rows.Close()
	var out []dialect.DeadLetter
	for rows.Next() {
		var d dialect.DeadLetter
		var h sql.NullString
		if err := rows.Scan(&d.ID, &d.Queue, &d.Partition, &d.Seq, &d.Payload, &d.PayloadType, &h,
			(*Time)(&d.CreatedAt), (*Time)(&d.FailedAt), &d.Attempts, &d.LastError, &d.Status,
			(*Time)(&d.Deadline), (*Time)(&d.CompletedAt), &d.MessageID, &d.Key); err != nil {
			return nil, err
		}
		d.Payload = NonNil(d.Payload)
		if h.Valid {
			d.Headers = []byte(h.String)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// CountDeadLetters implements dialect.Dialect.
func (b *Base[S, Q]) CountDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.FindDeadLettersParams) (*dialect.CountDeadLettersResult, error) {
	where, args := b.where(p, false)
	var r dialect.CountDeadLettersResult
	err := q.QueryRowContext(ctx, b.sql(`SELECT COUNT(*) FROM {p}dead_letters`+where), args...).Scan(&r.Count)
	return &r, err
}

// TransitionDeadLetters implements dialect.Dialect.
//
// The locking read comes first, in id order: it serialises overlapping
// calls without deadlocks and gives the reasons for a shortfall. The
// UPDATE repeats the guard, so the count it reports is the truth even
// without row locks (SQLite) or when a row changed before the lock.
func (b *Base[S, Q]) TransitionDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.TransitionDeadLettersParams) (*dialect.TransitionDeadLettersResult, error) {
	if len(p.IDs) == 0 {
		return &dialect.TransitionDeadLettersResult{}, nil
	}
	list, ids := in(p.IDs)
	type current struct {
		status   string
		deadline time.Time
	}
	found := make(map[int64]current, len(p.IDs))
	var now time.Time
	rows, err := q.QueryContext(ctx, b.sql(`SELECT id, status, deadline, {now} FROM {p}dead_letters
		WHERE id IN (`+list+`) ORDER BY id`+b.sh.ForUpdate), ids...)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id int64
		var c current
		if err := rows.Scan(&id, &c.status, (*Time)(&c.deadline), (*Time)(&now)); err != nil {
			rows.Close()
			return nil, err
		}
		found[id] = c
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}

	set := "status = ?"
	args := []any{p.To}
	switch p.To {
	case dialect.StatusResolved, dialect.StatusDiscarded:
		set += ", completed_at = {now}"
	case dialect.StatusPending:
		// MySQL assigns left to right; none of these reads a column set
		// before it.
		set += ", last_error = ?, attempts = attempts + 1, deadline = NULL"
		args = append(args, NullString(p.Reason))
	}
	guard := " AND status = ?"
	args = append(append(args, ids...), p.From)
	if !p.Deadline.IsZero() {
		guard += " AND deadline = ? AND deadline > {now}"
		args = append(args, b.timeArg(p.Deadline))
	}
	res, err := q.ExecContext(ctx, b.sql(`UPDATE {p}dead_letters SET `+set+` WHERE id IN (`+list+`)`+guard), args...)
	if err != nil {
		return nil, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return nil, err
	}
	r := &dialect.TransitionDeadLettersResult{Changed: int(n)}
	if r.Changed == len(p.IDs) {
		return r, nil
	}
	for _, id := range p.IDs {
		c, ok := found[id]
		switch {
		case !ok:
			r.Missing = append(r.Missing, id)
		case c.status != p.From, !p.Deadline.IsZero() && (!c.deadline.Equal(p.Deadline) || !c.deadline.After(now)):
			r.Refused = append(r.Refused, id)
		}
	}
	if len(r.Missing)+len(r.Refused) == 0 {
		// A row changed between the read and the write (no row locks).
		for id := range found {
			r.Refused = append(r.Refused, id)
		}
		slices.Sort(r.Refused)
	}
	return r, nil
}

// RequeueDeadLetters implements dialect.Dialect.
func (b *Base[S, Q]) RequeueDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.RequeueDeadLettersParams) (*dialect.RequeueDeadLettersResult, error) {
	r, err := b.TransitionDeadLetters(ctx, q, &dialect.TransitionDeadLettersParams{
		IDs: p.IDs, From: dialect.StatusPending, To: dialect.StatusResolved,
	})
	if err != nil {
		return nil, err
	}
	res := &dialect.RequeueDeadLettersResult{TransitionDeadLettersResult: *r}
	if r.Changed != len(p.IDs) {
		return res, nil
	}
	list, ids := in(p.IDs)
	// Original order within a partition: seq, then id for rows of one seq
	// dead-lettered more than once (requeued and rejected again).
	rows, err := q.QueryContext(ctx, b.sql(`SELECT queue, partition_num, payload, payload_type, headers, msg_id, COALESCE(msg_key, '')
		FROM {p}dead_letters WHERE id IN (`+list+`) ORDER BY queue, partition_num, seq, id`), ids...)
	if err != nil {
		return nil, err
	}
	msgs := make([]dialect.InsertRow, 0, len(p.IDs))
	for rows.Next() {
		var m dialect.InsertRow
		var h sql.NullString
		if err := rows.Scan(&m.Queue, &m.Partition, &m.Payload, &m.PayloadType, &h, &m.MessageID, &m.Key); err != nil {
			rows.Close()
			return nil, err
		}
		m.Payload = NonNil(m.Payload)
		if h.Valid {
			m.Headers = []byte(h.String)
		}
		msgs = append(msgs, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	res.Rows = msgs
	return res, nil
}

// blockedAt is the status's blocked_at column of the cursor row (schema
// version 2).
const blockedAt = "pr.blocked_at"

// holdable is the condition of a row a hold may take.
const holdable = `(status = 'pending' OR (status = 'reprocessing' AND deadline < {now}))`

// HoldDeadLetters implements dialect.Dialect. The deadline is computed
// once and bound, so every row of the hold carries the same value and
// the result reports it exactly as stored.
func (b *Base[S, Q]) HoldDeadLetters(ctx context.Context, pool dialect.Pool, p *dialect.HoldDeadLettersParams) (*dialect.HoldDeadLettersResult, error) {
	tx, err := pool.DB.BeginTx(ctx, b.sh.TxOptions)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	res := &dialect.HoldDeadLettersResult{}
	err = tx.QueryRowContext(ctx, b.sql(`SELECT {nowPlus}`), p.For.Microseconds()).Scan((*Time)(&res.Deadline))
	if err != nil {
		return nil, err
	}
	pick := `SELECT id FROM {p}dead_letters` + b.sh.HoldHint + ` WHERE ` + holdable
	args := []any{}
	if p.Queue != "" {
		pick += ` AND queue = ?`
		args = append(args, p.Queue)
	}
	picked, err := Int64s(ctx, tx, b.sql(pick+` ORDER BY id LIMIT ?`+b.sh.SkipLocked), append(args, p.Limit)...)
	if err != nil || len(picked) == 0 {
		return res, errors.Join(err, tx.Commit())
	}
	list, ids := in(picked)
	deadline := b.timeArg(res.Deadline)
	if _, err := tx.ExecContext(ctx, b.sql(`UPDATE {p}dead_letters SET status = 'reprocessing', deadline = ?
		WHERE id IN (`+list+`) AND `+holdable), append([]any{deadline}, ids...)...); err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, b.sql(`SELECT `+columns+` FROM {p}dead_letters
		WHERE id IN (`+list+`) AND status = 'reprocessing' AND deadline = ? ORDER BY id`), append(ids, deadline)...)
	if err != nil {
		return nil, err
	}
	if res.DeadLetters, err = b.scanDeadLetters(rows); err != nil {
		return nil, err
	}
	return res, tx.Commit()
}

// CleanupDeadLetters implements dialect.Dialect: ids first, then a
// delete by primary key that repeats the status guard (MySQL rejects a
// DELETE that reads its own table in a subquery, and LIMIT inside IN).
func (b *Base[S, Q]) CleanupDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.CleanupDeadLettersParams) (*dialect.CleanupDeadLettersResult, error) {
	const done = `status IN ('resolved', 'discarded')`
	picked, err := Int64s(ctx, q, b.sql(`SELECT id FROM {p}dead_letters
		WHERE `+done+` AND completed_at <= {nowPlus} ORDER BY id LIMIT ?`), -p.OlderThan.Microseconds(), p.Limit)
	if err != nil || len(picked) == 0 {
		return &dialect.CleanupDeadLettersResult{}, err
	}
	list, ids := in(picked)
	res, err := q.ExecContext(ctx, b.sql(`DELETE FROM {p}dead_letters WHERE id IN (`+list+`) AND `+done), ids...)
	if err != nil {
		return nil, err
	}
	n, err := res.RowsAffected()
	return &dialect.CleanupDeadLettersResult{Deleted: int(n)}, err
}

// QueueStatus implements dialect.Dialect in two statements whatever the
// partition count: one over the partitions (each backlog figure is an
// index probe per partition), one grouping the dead letters.
func (b *Base[S, Q]) QueueStatus(ctx context.Context, q dialect.DBTX, p *dialect.QueueStatusParams) (*dialect.QueueStatusResult, error) {
	var filter string
	var args []any
	if p.Queue != "" {
		filter = ` WHERE p.queue = ?`
		args = append(args, p.Queue)
	}
	partFilter, partArgs := filter, args
	if p.Queue != "" && p.Partition != nil {
		partFilter += ` AND p.partition_num = ?`
		partArgs = append(slices.Clip(args), *p.Partition)
	}
	rows, err := q.QueryContext(ctx, b.sql(`SELECT p.id, p.queue, p.partition_num, {lastSeq}, pr.processed_seq,
			(SELECT COUNT(*) FROM {p}messages m WHERE m.partition_id = p.id AND m.seq IS NULL),
			pr.attempts, COALESCE(pr.last_error, ''), pr.next_attempt_at, COALESCE(pr.lease_token, ''), pr.lease_until,
			COALESCE(
				(SELECT m.created_at FROM {p}messages m WHERE m.partition_id = p.id AND m.seq = pr.processed_seq + 1),
				(SELECT m.created_at FROM {p}messages m WHERE m.partition_id = p.id AND m.seq IS NULL ORDER BY m.id LIMIT 1)),
			`+blockedAt+`, {now}
		FROM {p}partitions p JOIN {p}processors pr ON pr.partition_id = p.id`+partFilter+`
		ORDER BY p.queue, p.partition_num`), partArgs...)
	if err != nil {
		return nil, err
	}
	res := &dialect.QueueStatusResult{}
	for rows.Next() {
		var s dialect.PartitionStatus
		if err := rows.Scan(&s.PartitionID, &s.Queue, &s.Partition, &s.LastSeq, &s.ProcessedSeq, &s.Unsequenced, &s.Attempts, &s.LastError,
			(*Time)(&s.NextAttemptAt), &s.LeaseToken, (*Time)(&s.LeaseUntil), (*Time)(&s.OldestCreatedAt),
			(*Time)(&s.BlockedAt), (*Time)(&res.Now)); err != nil {
			rows.Close()
			return nil, err
		}
		res.Partitions = append(res.Partitions, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if p.Queue != "" && len(res.Partitions) == 0 {
		return nil, dialect.ErrQueueNotFound
	}
	if p.Partition != nil {
		return res, nil
	}
	filter = strings.TrimPrefix(filter, " WHERE p.")
	if filter != "" {
		filter = " WHERE " + filter
	}
	rows, err = q.QueryContext(ctx, b.sql(`SELECT queue, status, COUNT(*) FROM {p}dead_letters`+filter+`
		GROUP BY queue, status ORDER BY queue, status`), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var c dialect.DeadLetterCount
		if err := rows.Scan(&c.Queue, &c.Status, &c.Count); err != nil {
			return nil, err
		}
		res.DeadLetters = append(res.DeadLetters, c)
	}
	return res, rows.Err()
}
