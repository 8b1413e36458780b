package mysql

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/sqlbase"
)

// candidate is a claimable partition as seen by a consistent read.
type candidate struct {
	queue     string
	partition int
	lastSeq   int64
}

// lockedCursor is a cursor row locked by the claim.
type lockedCursor struct {
	id           int64
	processedSeq int64
	attempts     int
	leased       bool // lease_token was not NULL
}

// candidateFactor: the consistent read over-fetches so that concurrent
// claimers, which all see the same head of the list, still find rows that
// nobody has locked yet.
const candidateFactor = 4

// claimCandidates is step 1 of a claim: the partitions of queues that look
// claimable, best first. It is a consistent read and runs outside the
// claim's transaction (each statement reads a fresh snapshot anyway), so
// that an idle poll costs this one statement and no transaction.
func (d *Dialect) claimCandidates(ctx context.Context, q dialect.DBTX, queues []string, ids []int64, limit int) ([]int64, map[int64]candidate, error) {
	if len(queues) == 0 || limit <= 0 {
		return nil, nil, nil
	}
	// It joins partitions only to read last_seq.
	args := make([]any, 0, len(queues)+len(ids)+1)
	for _, q := range queues {
		args = append(args, q)
	}
	only := ""
	if len(ids) > 0 {
		only = ` AND pr.partition_id IN (` + sqlbase.Placeholders(len(ids)) + `)`
		for _, id := range ids {
			args = append(args, id)
		}
	}
	args = append(args, limit*candidateFactor)
	rows, err := q.QueryContext(ctx, `SELECT pr.partition_id, pr.queue, p.partition_num, p.last_seq
		FROM `+d.Prefix()+`processors pr JOIN `+d.Prefix()+`partitions p ON p.id = pr.partition_id
		WHERE pr.queue IN (`+sqlbase.Placeholders(len(queues))+`)`+only+` AND p.last_seq > pr.processed_seq
		  AND (pr.lease_until IS NULL OR pr.lease_until < NOW(6))
		  AND pr.next_attempt_at <= NOW(6) AND pr.blocked_at IS NULL
		ORDER BY pr.next_attempt_at, pr.partition_id LIMIT ?`, args...)
	if err != nil {
		return nil, nil, err
	}
	cands := make(map[int64]candidate)
	var order []int64
	for rows.Next() {
		var id int64
		var c candidate
		if err := rows.Scan(&id, &c.queue, &c.partition, &c.lastSeq); err != nil {
			rows.Close()
			return nil, nil, err
		}
		cands[id] = c
		order = append(order, id)
	}
	rows.Close()
	return order, cands, rows.Err()
}

// lockClaimable locks, in tx, the cursor rows of up to limit of the
// candidates in order. It returns the locked rows in claim order.
func (d *Dialect) lockClaimable(ctx context.Context, tx *sql.Tx, order []int64, cands map[int64]candidate, limit int) ([]lockedCursor, error) {
	// Step 2: lock only cursor rows (MariaDB has no FOR UPDATE OF), by
	// primary key, skipping rows other claimers hold, in batches of as many
	// candidates as are still wanted, so that no row beyond the wanted
	// number stays locked until the claim commits (an ORDER BY … LIMIT
	// here would sort after locking every matching row). A locking read sees the latest committed version, so
	// the conditions are re-checked on current values; at READ COMMITTED a
	// row that no longer matches is unlocked at once. last_seq only grows,
	// so step 1's value is a lower bound of the current one: a row whose
	// cursor has reached it since (another claimer delivered in between) is
	// left alone, since it may have nothing to deliver.
	var locked []lockedCursor
	for len(order) > 0 && len(locked) < limit {
		batch := order[:min(limit-len(locked), len(order))]
		order = order[len(batch):]
		var b strings.Builder
		args := make([]any, 0, 3*len(batch))
		b.WriteString(`SELECT partition_id, processed_seq, attempts, lease_token IS NOT NULL
			FROM ` + d.Prefix() + `processors
			WHERE partition_id IN (` + sqlbase.Placeholders(len(batch)) + `)
			  AND (lease_until IS NULL OR lease_until < NOW(6))
			  AND next_attempt_at <= NOW(6) AND blocked_at IS NULL
			  AND processed_seq < CASE partition_id`)
		for _, id := range batch {
			args = append(args, id)
		}
		for _, id := range batch {
			b.WriteString(" WHEN ? THEN ?")
			args = append(args, id, cands[id].lastSeq)
		}
		b.WriteString(" END FOR UPDATE SKIP LOCKED")
		got, err := scanLocked(tx.QueryContext(ctx, b.String(), args...))
		if err != nil {
			return nil, err
		}
		// Keep step 1's order (the rows come back in primary-key order).
		for _, id := range batch {
			if l, ok := got[id]; ok {
				locked = append(locked, l)
			}
		}
	}
	return locked, nil
}
func scanLocked(rows *sql.Rows, err error) (map[int64]lockedCursor, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	got := make(map[int64]lockedCursor)
	for rows.Next() {
		var l lockedCursor
		if err := rows.Scan(&l.id, &l.processedSeq, &l.attempts, &l.leased); err != nil {
			return nil, err
		}
		got[l.id] = l
	}
	return got, rows.Err()
}

// ClaimLeases implements dialect.Dialect. MySQL has no UPDATE … RETURNING,
// so the claim runs in its own READ COMMITTED transaction: consistent read,
// lock with SKIP LOCKED, stamp the lease, commit. No statement in it waits
// for a lock (SKIP LOCKED never waits; the UPDATE touches rows already
// locked), so it cannot deadlock.
func (d *Dialect) ClaimLeases(ctx context.Context, pool dialect.Pool, p *dialect.ClaimLeaseParams) (res *dialect.ClaimResult, err error) {
	order, cands, err := d.claimCandidates(ctx, pool.Q, p.Queues, p.PartitionIDs, p.Limit)
	if err != nil {
		return nil, err
	}
	if len(order) == 0 {
		return &dialect.ClaimResult{}, nil
	}
	tx, err := pool.DB.BeginTx(ctx, d.TxOptions())
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	locked, err := d.lockClaimable(ctx, tx, order, cands, p.Limit)
	if err != nil {
		return nil, err
	}
	res = &dialect.ClaimResult{}
	if len(locked) > 0 {
		args := make([]any, 0, 2+len(locked))
		args = append(args, p.Token, p.Lease.Microseconds())
		for _, l := range locked {
			args = append(args, l.id)
		}
		// The rows are locked by this transaction, so the values read in
		// step 2 are current. attempts is assigned before lease_token
		// because SET runs left to right and later assignments see earlier
		// new values: it must read the old token (see
		// sqlbase.TakeoverAttempts).
		if _, err := tx.ExecContext(ctx, `UPDATE `+d.Prefix()+`processors
			SET attempts = `+sqlbase.TakeoverAttempts("")+`,
				lease_token = ?,
				lease_until = NOW(6) + INTERVAL ? MICROSECOND,
				version = version + 1
			WHERE partition_id IN (`+sqlbase.Placeholders(len(locked))+`)`, args...); err != nil {
			return nil, err
		}
		for _, l := range locked {
			c := cands[l.id]
			res.Partitions = append(res.Partitions, dialect.ClaimedPartition{
				PartitionID: l.id, Queue: c.queue, Partition: c.partition,
				ProcessedSeq: l.processedSeq, LastSeq: c.lastSeq,
				Attempts: sqlbase.AttemptsAfterTakeover(l.attempts, l.leased),
			})
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return res, nil
}

// LockPartition implements dialect.Dialect. tx is the core's READ COMMITTED
// transaction; the cursor row stays locked until it ends, and claimers
// skip it meanwhile. Only the cursor row is locked: the partitions row
// is read without a lock (last_seq only grows), so the sequencer is never
// held up by a running handler.
func (d *Dialect) LockPartition(ctx context.Context, tx *sql.Tx, p *dialect.LockPartitionParams) (*dialect.ClaimResult, error) {
	var c dialect.ClaimedPartition
	err := tx.QueryRowContext(ctx, `SELECT partition_id, queue, processed_seq, attempts FROM `+d.Prefix()+`processors
		WHERE partition_id = ? AND lease_token = ? AND blocked_at IS NULL FOR UPDATE SKIP LOCKED`, p.PartitionID, p.Token).
		Scan(&c.PartitionID, &c.Queue, &c.ProcessedSeq, &c.Attempts)
	if errors.Is(err, sql.ErrNoRows) {
		return &dialect.ClaimResult{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := tx.QueryRowContext(ctx, `SELECT partition_num, last_seq FROM `+d.Prefix()+`partitions WHERE id = ?`,
		p.PartitionID).Scan(&c.Partition, &c.LastSeq); err != nil {
		return nil, err
	}
	return &dialect.ClaimResult{Partitions: []dialect.ClaimedPartition{c}}, nil
}
