// Package opsql is the operations store (dialect.Operator) of the built-in
// dialects: dead-letter listing, requeue, replay, discard and cleanup, and
// queue status. The statements are the same on PostgreSQL, MySQL/MariaDB
// and SQLite but for placeholders, the clock, row-lock clauses and how
// times travel; a Flavor supplies those, and one Ops runs every statement.
//
// Forms MySQL and MariaDB reject are avoided throughout: no NULLS FIRST, no
// LIMIT inside IN, no DELETE or UPDATE reading its own table in a
// subquery. Where a statement would need one, it is split in two: a SELECT
// of ids (locking where it decides), then a write by primary key that
// repeats the guard, so the write is safe even where nothing was locked.
package opsql

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/sqlbase"
)

// Flavor is what differs between the databases: the statements' clock,
// placeholders and lock clauses (see flavors.go for the three).
type Flavor struct {
	// Bind is the sqlx bind type the statements' "?" placeholders are
	// rewritten to (sqlx.DOLLAR, sqlx.QUESTION).
	Bind int
	// Now is the database clock as an SQL expression; NowPlus is the clock
	// plus one bound number of microseconds (it holds one "?").
	Now, NowPlus string
	// ForUpdate and SkipLocked end a locking SELECT (" FOR UPDATE",
	// " FOR UPDATE SKIP LOCKED"); empty where the database has no row
	// locks (SQLite: the guarded write that follows decides).
	ForUpdate, SkipLocked string
	// ClaimHint follows the table name in the claim's locking read (an
	// index hint), so that it locks only the rows it returns.
	ClaimHint string
	// TimeArg binds a time (nil: the time.Time itself).
	TimeArg func(time.Time) any
	// LastSeq is partition p's counter as an SQL expression over the
	// partitions row aliased p, written with {p} (empty: p.last_seq).
	LastSeq string
}

// Dialect is what Ops takes from the dialect it serves: its tables'
// prefix, its transaction options, and its InsertMessages (requeued dead
// letters take the enqueue path).
type Dialect interface {
	dialect.Dialect
	Prefix() string
}

// Ops implements dialect.Operator for one dialect.
type Ops struct {
	d Dialect
	f Flavor
	r *strings.Replacer
}

var _ dialect.Operator = (*Ops)(nil)

// New returns the Operator of d's tables, with f's clauses.
func New(d Dialect, f Flavor) *Ops {
	lastSeq := strings.ReplaceAll(cmp.Or(f.LastSeq, "p.last_seq"), "{p}", d.Prefix())
	return &Ops{d: d, f: f, r: strings.NewReplacer("{p}", d.Prefix(), "{now}", f.Now, "{nowPlus}", f.NowPlus, "{lastSeq}", lastSeq)}
}

// sql rewrites a statement written with {p}, {now}, {nowPlus} and "?" for
// the database.
func (o *Ops) sql(query string) string { return sqlx.Rebind(o.f.Bind, o.r.Replace(query)) }

func (o *Ops) timeArg(t time.Time) any {
	if o.f.TimeArg != nil {
		return o.f.TimeArg(t)
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
	attempts, COALESCE(last_error, ''), status, deadline, completed_at`

// where is the WHERE clause of p (with the paging condition when paging).
func (o *Ops) where(p *dialect.FindDeadLettersParams, paging bool) (string, []any) {
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
		add("failed_at >= ?", o.timeArg(p.FailedFrom))
	}
	if !p.FailedBefore.IsZero() {
		add("failed_at < ?", o.timeArg(p.FailedBefore))
	}
	if paging && p.AfterID > 0 {
		// (failed_at, id) < (after, afterID), spelt out: row-value
		// comparison is not used by every planner for the index.
		at := o.timeArg(p.AfterFailedAt)
		add("(failed_at < ? OR (failed_at = ? AND id < ?))", at, at, p.AfterID)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// FindDeadLetters implements dialect.Operator.
func (o *Ops) FindDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.FindDeadLettersParams) (*dialect.ListDeadLettersResult, error) {
	where, args := o.where(p, true)
	rows, err := q.QueryContext(ctx, o.sql(`SELECT `+columns+` FROM {p}dead_letters`+where+
		` ORDER BY failed_at DESC, id DESC LIMIT ?`), append(args, p.Limit)...)
	if err != nil {
		return nil, err
	}
	dls, err := o.scan(rows)
	return &dialect.ListDeadLettersResult{DeadLetters: dls}, err
}

// scan reads rows of columns and closes them.
func (o *Ops) scan(rows *sql.Rows) ([]dialect.DeadLetter, error) {
	defer rows.Close()
	var out []dialect.DeadLetter
	for rows.Next() {
		var d dialect.DeadLetter
		var h sql.NullString
		if err := rows.Scan(&d.ID, &d.Queue, &d.Partition, &d.Seq, &d.Payload, &d.PayloadType, &h,
			(*sqlbase.Time)(&d.CreatedAt), (*sqlbase.Time)(&d.FailedAt), &d.Attempts, &d.LastError, &d.Status,
			(*sqlbase.Time)(&d.Deadline), (*sqlbase.Time)(&d.CompletedAt)); err != nil {
			return nil, err
		}
		d.Payload = sqlbase.NonNil(d.Payload)
		if h.Valid {
			d.Headers = []byte(h.String)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// CountDeadLetters implements dialect.Operator.
func (o *Ops) CountDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.FindDeadLettersParams) (*dialect.CountDeadLettersResult, error) {
	where, args := o.where(p, false)
	var r dialect.CountDeadLettersResult
	err := q.QueryRowContext(ctx, o.sql(`SELECT COUNT(*) FROM {p}dead_letters`+where), args...).Scan(&r.Count)
	return &r, err
}

// TransitionDeadLetters implements dialect.Operator.
//
// The locking read comes first, in id order: it serialises overlapping
// calls without deadlocks and gives the reasons for a shortfall. The
// UPDATE repeats the guard, so the count it reports is the truth even
// without row locks (SQLite) or when a row changed before the lock.
func (o *Ops) TransitionDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.TransitionDeadLettersParams) (*dialect.TransitionDeadLettersResult, error) {
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
	rows, err := q.QueryContext(ctx, o.sql(`SELECT id, status, deadline, {now} FROM {p}dead_letters
		WHERE id IN (`+list+`) ORDER BY id`+o.f.ForUpdate), ids...)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id int64
		var c current
		if err := rows.Scan(&id, &c.status, (*sqlbase.Time)(&c.deadline), (*sqlbase.Time)(&now)); err != nil {
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
		args = append(args, sqlbase.NullString(p.Reason))
	}
	guard := " AND status = ?"
	args = append(append(args, ids...), p.From)
	if !p.Deadline.IsZero() {
		guard += " AND deadline = ? AND deadline > {now}"
		args = append(args, o.timeArg(p.Deadline))
	}
	res, err := q.ExecContext(ctx, o.sql(`UPDATE {p}dead_letters SET `+set+` WHERE id IN (`+list+`)`+guard), args...)
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

// RequeueDeadLetters implements dialect.Operator.
func (o *Ops) RequeueDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.RequeueDeadLettersParams) (*dialect.TransitionDeadLettersResult, error) {
	r, err := o.TransitionDeadLetters(ctx, q, &dialect.TransitionDeadLettersParams{
		IDs: p.IDs, From: dialect.StatusPending, To: dialect.StatusResolved,
	})
	if err != nil || r.Changed != len(p.IDs) {
		return r, err
	}
	list, ids := in(p.IDs)
	// Original order within a partition: seq, then id for rows of one seq
	// dead-lettered more than once (requeued and rejected again).
	rows, err := q.QueryContext(ctx, o.sql(`SELECT queue, partition_num, payload, payload_type, headers
		FROM {p}dead_letters WHERE id IN (`+list+`) ORDER BY queue, partition_num, seq, id`), ids...)
	if err != nil {
		return nil, err
	}
	msgs := make([]dialect.InsertRow, 0, len(p.IDs))
	for rows.Next() {
		var m dialect.InsertRow
		var h sql.NullString
		if err := rows.Scan(&m.Queue, &m.Partition, &m.Payload, &m.PayloadType, &h); err != nil {
			rows.Close()
			return nil, err
		}
		m.Payload = sqlbase.NonNil(m.Payload)
		if h.Valid {
			m.Headers = []byte(h.String)
		}
		msgs = append(msgs, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	ins, err := o.d.InsertMessages(ctx, q, &dialect.InsertMessagesParams{Rows: msgs})
	if err != nil {
		return nil, err
	}
	if ins.Inserted != len(msgs) {
		return nil, fmt.Errorf("%w: %d of %d requeued rows inserted", dialect.ErrQueueNotFound, ins.Inserted, len(msgs))
	}
	return r, nil
}

// blockedAt is the status's blocked_at column of the cursor row (schema
// version 2).
const blockedAt = "pr.blocked_at"

// claimable is the condition of a row a claim may take.
const claimable = `(status = 'pending' OR (status = 'reprocessing' AND deadline < {now}))`

// ClaimDeadLetters implements dialect.Operator. The deadline is computed
// once and bound, so every row of the claim carries the same value and
// the result reports it exactly as stored.
func (o *Ops) ClaimDeadLetters(ctx context.Context, db *sql.DB, p *dialect.ClaimDeadLettersParams) (*dialect.ClaimDeadLettersResult, error) {
	tx, err := db.BeginTx(ctx, o.d.TxOptions())
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	res := &dialect.ClaimDeadLettersResult{}
	err = tx.QueryRowContext(ctx, o.sql(`SELECT {nowPlus}`), p.For.Microseconds()).Scan((*sqlbase.Time)(&res.Deadline))
	if err != nil {
		return nil, err
	}
	pick := `SELECT id FROM {p}dead_letters` + o.f.ClaimHint + ` WHERE ` + claimable
	args := []any{}
	if p.Queue != "" {
		pick += ` AND queue = ?`
		args = append(args, p.Queue)
	}
	picked, err := sqlbase.Int64s(ctx, tx, o.sql(pick+` ORDER BY id LIMIT ?`+o.f.SkipLocked), append(args, p.Limit)...)
	if err != nil || len(picked) == 0 {
		return res, errors.Join(err, tx.Commit())
	}
	list, ids := in(picked)
	deadline := o.timeArg(res.Deadline)
	if _, err := tx.ExecContext(ctx, o.sql(`UPDATE {p}dead_letters SET status = 'reprocessing', deadline = ?
		WHERE id IN (`+list+`) AND `+claimable), append([]any{deadline}, ids...)...); err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, o.sql(`SELECT `+columns+` FROM {p}dead_letters
		WHERE id IN (`+list+`) AND status = 'reprocessing' AND deadline = ? ORDER BY id`), append(ids, deadline)...)
	if err != nil {
		return nil, err
	}
	if res.DeadLetters, err = o.scan(rows); err != nil {
		return nil, err
	}
	return res, tx.Commit()
}

// CleanupDeadLetters implements dialect.Operator: ids first, then a
// delete by primary key that repeats the status guard (MySQL rejects a
// DELETE that reads its own table in a subquery, and LIMIT inside IN).
func (o *Ops) CleanupDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.CleanupDeadLettersParams) (*dialect.CleanupDeadLettersResult, error) {
	const done = `status IN ('resolved', 'discarded')`
	picked, err := sqlbase.Int64s(ctx, q, o.sql(`SELECT id FROM {p}dead_letters
		WHERE `+done+` AND completed_at <= {nowPlus} ORDER BY id LIMIT ?`), -p.OlderThan.Microseconds(), p.Limit)
	if err != nil || len(picked) == 0 {
		return &dialect.CleanupDeadLettersResult{}, err
	}
	list, ids := in(picked)
	res, err := q.ExecContext(ctx, o.sql(`DELETE FROM {p}dead_letters WHERE id IN (`+list+`) AND `+done), ids...)
	if err != nil {
		return nil, err
	}
	n, err := res.RowsAffected()
	return &dialect.CleanupDeadLettersResult{Deleted: int(n)}, err
}

// QueueStatus implements dialect.Operator in two statements whatever the
// partition count: one over the partitions (each backlog figure is an
// index probe per partition), one grouping the dead letters.
func (o *Ops) QueueStatus(ctx context.Context, q dialect.DBTX, p *dialect.QueueStatusParams) (*dialect.QueueStatusResult, error) {
	var filter string
	var args []any
	if p.Queue != "" {
		filter = ` WHERE p.queue = ?`
		args = append(args, p.Queue)
	}
	rows, err := q.QueryContext(ctx, o.sql(`SELECT p.queue, p.partition_num, {lastSeq}, pr.processed_seq,
			(SELECT COUNT(*) FROM {p}messages m WHERE m.partition_id = p.id AND m.seq IS NULL),
			pr.attempts, COALESCE(pr.last_error, ''), pr.next_attempt_at, COALESCE(pr.lease_token, ''), pr.lease_until,
			COALESCE(
				(SELECT m.created_at FROM {p}messages m WHERE m.partition_id = p.id AND m.seq = pr.processed_seq + 1),
				(SELECT m.created_at FROM {p}messages m WHERE m.partition_id = p.id AND m.seq IS NULL ORDER BY m.id LIMIT 1)),
			`+blockedAt+`, {now}
		FROM {p}partitions p JOIN {p}processors pr ON pr.partition_id = p.id`+filter+`
		ORDER BY p.queue, p.partition_num`), args...)
	if err != nil {
		return nil, err
	}
	res := &dialect.QueueStatusResult{}
	for rows.Next() {
		var s dialect.PartitionStatus
		if err := rows.Scan(&s.Queue, &s.Partition, &s.LastSeq, &s.ProcessedSeq, &s.Unsequenced, &s.Attempts, &s.LastError,
			(*sqlbase.Time)(&s.NextAttemptAt), &s.LeaseToken, (*sqlbase.Time)(&s.LeaseUntil), (*sqlbase.Time)(&s.OldestCreatedAt),
			(*sqlbase.Time)(&s.BlockedAt), (*sqlbase.Time)(&res.Now)); err != nil {
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
	filter = strings.TrimPrefix(filter, " WHERE p.")
	if filter != "" {
		filter = " WHERE " + filter
	}
	rows, err = q.QueryContext(ctx, o.sql(`SELECT queue, status, COUNT(*) FROM {p}dead_letters`+filter+`
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
