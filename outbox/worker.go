package outbox

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/modkit-go/db/dialect"
)

// worker claims partitions and runs their handlers. MaxConcurrency
// goroutines share one worker; each works one partition at a time.
type worker struct {
	o             *Outbox
	decoupled     []string
	transactional []string
	// Claims and decoupled acks of all goroutines are combined: under load
	// one statement and commit serves several of them (see combiner). Claims
	// are combined per group of queues with one lease duration (see
	// claimGroups): one group unless queues set their own LeaseDuration.
	decoupledGroups, txGroups []*claimGroup
	acks                      combiner[*dialect.CursorUpdate, bool]
	report                    *deliveryReport // DeliverAll's; nil for Start's workers
}

func newWorker(o *Outbox, decoupled, transactional []string) *worker {
	w := &worker{o: o, decoupled: decoupled, transactional: transactional}
	w.decoupledGroups = o.claimGroups(decoupled, true)
	w.txGroups = o.claimGroups(transactional, false)
	w.acks.run = o.ackRound
	return w
}

// claim claims up to limit partitions of g's queues: first, in a group of
// many partitions (claimGroup.byID), among fresh, the partitions the
// sequencer has just numbered, by id and on its own; then, when that found
// none, through g's combiner.
func (w *worker) claim(g *claimGroup, limit int, fresh []int64) (claimRes, error) {
	if len(fresh) > 0 && g.byID {
		res, err := w.o.claimRound([]claimReq{{queues: g.queues, limit: limit, lease: g.lease, ids: fresh}})
		if err != nil {
			return claimRes{}, err
		}
		if len(res[0].claimed) > 0 {
			return res[0], nil
		}
	}
	return g.claims.do(claimReq{queues: g.queues, limit: limit, lease: g.lease})
}

// maxClaim bounds the partitions one pass holds, so that a slow handler
// delays few others.
const maxClaim = 8

// errLostLease: a fenced write found the lease gone; another worker owns
// the partition now.
var errLostLease = errors.New("outbox: lease lost")

// goroutine returns the pass of one of the worker's goroutines, which
// keeps its own place in the sequencer's offers (see fresh).
func (w *worker) goroutine() pass {
	var seen uint64
	return func(ctx context.Context) (bool, error) { return w.pass(ctx, &seen) }
}

// pass claims and works partitions of every claim group once.
func (w *worker) pass(ctx context.Context, seen *uint64) (bool, error) {
	var busy bool
	fresh := w.o.fresh.since(seen)
	for _, g := range w.decoupledGroups {
		if ctx.Err() != nil {
			break
		}
		did, err := w.leasedPass(ctx, g, fresh)
		if err != nil {
			return false, err
		}
		busy = busy || did
	}
	for _, g := range w.txGroups {
		if ctx.Err() != nil {
			break
		}
		did, err := w.txPass(ctx, g, fresh)
		if err != nil {
			return false, err
		}
		busy = busy || did
	}
	return busy, nil
}

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// leasedPass claims one partition with a lease and delivers its messages
// batch by batch, outside any transaction, until it is caught up, a handler
// asks for a retry, the lease is lost, or the outbox stops.
func (w *worker) leasedPass(ctx context.Context, g *claimGroup, fresh []int64) (bool, error) {
	o := w.o
	granted := time.Now() // before the claim: the local deadline errs early
	res, err := w.claim(g, g.limit, fresh)
	if err != nil {
		if o.retryable(err) {
			return true, nil
		}
		return false, fmt.Errorf("claim: %w", err)
	}
	if len(res.claimed) == 0 {
		return false, nil
	}
	token := res.token
	// The first batch of every claimed partition in one statement.
	var first [][]dialect.Message
	{
		reads := make([]dialect.PartitionRead, len(res.claimed))
		for i, c := range res.claimed {
			reads[i] = dialect.PartitionRead{PartitionID: c.PartitionID, AfterSeq: c.ProcessedSeq, Limit: o.queueConfigOf(c.Queue).batchSize}
		}
		stmtCtx, cancel := o.bookkeeping(ctx)
		rr, err := o.d.ReadPartitions(stmtCtx, o.q, &dialect.ReadPartitionsParams{Reads: reads})
		cancel()
		if err == nil {
			first = rr.Messages
		} // else each partition reads its own, and reports what fails
	}
	// A partition's last ack runs in the background while the next
	// partition's handler runs: the acks of one pass then meet in the
	// combiner and share its rounds. The pass ends when they have.
	var acks sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	fail := func(c dialect.ClaimedPartition, err error) {
		if errors.Is(err, errLostLease) {
			o.log.Warn("outbox: lease lost; another worker took the partition", "queue", c.Queue, "partition", c.Partition)
			o.tel.lostLease(ctx, c.Queue)
			return
		}
		mu.Lock()
		firstErr = cmp.Or(firstErr, err)
		mu.Unlock()
	}
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return firstErr != nil
	}
	for i, c := range res.claimed {
		// The partitions are worked one after another. Once a tenth of the
		// lease is gone (a slow handler before them), the outbox stops or a
		// database error occurred, the rest go back unworked (a release is
		// not an attempt), so a handler always starts with at least 70% of
		// the lease before its context ends.
		if ctx.Err() != nil || failed() || (i > 0 && time.Since(granted) > g.lease/10) {
			ids := make([]int64, 0, len(res.claimed)-i)
			for _, r := range res.claimed[i:] {
				ids = append(ids, r.PartitionID)
			}
			stmtCtx, cancel := o.bookkeeping(ctx)
			_, err := o.d.ReleaseLeases(stmtCtx, o.q, &dialect.ReleaseLeasesParams{PartitionIDs: ids, Token: token})
			cancel()
			acks.Wait()
			return true, errors.Join(firstErr, err)
		}
		var msgs []dialect.Message
		if first != nil {
			msgs = first[i]
		}
		lastAck := func(ack func() error) {
			acks.Add(1)
			go func() {
				defer acks.Done()
				if err := ack(); err != nil {
					fail(c, err)
				}
			}()
		}
		if err := w.runLeased(ctx, c, token, granted, first != nil, msgs, lastAck); err != nil {
			fail(c, err)
		}
	}
	acks.Wait()
	return true, firstErr
}

// runLeased delivers a claimed partition batch by batch. When read is
// true, msgs is its first batch, already read. lastAck runs the ack of the
// last batch (the one that ends the partition's turn); the other acks run
// here, since the next batch waits for them.
func (w *worker) runLeased(ctx context.Context, c dialect.ClaimedPartition, token string, granted time.Time,
	read bool, msgs []dialect.Message, lastAck func(func() error)) error {
	o := w.o
	h := o.handlers[c.Queue]
	qc := o.queueConfigOf(c.Queue)
	cursor, attempts := c.ProcessedSeq, c.Attempts
	release := func() error {
		stmtCtx, cancel := o.bookkeeping(ctx)
		defer cancel()
		_, err := o.d.ReleaseLeases(stmtCtx, o.q, &dialect.ReleaseLeasesParams{PartitionIDs: []int64{c.PartitionID}, Token: token})
		return err
	}
	for {
		if ctx.Err() != nil {
			return release() // stopping: hand the partition back
		}
		if !read {
			stmtCtx, cancel := o.bookkeeping(ctx)
			rm, err := o.read(stmtCtx, o.q, c.PartitionID, cursor, qc.batchSize)
			cancel()
			if err != nil {
				_ = release()
				return fmt.Errorf("read: %w", err)
			}
			msgs = rm
		}
		read = false
		if len(msgs) == 0 {
			return release()
		}
		var out outcome
		var err error
		if qc.exhausted(attempts) {
			out = qc.exhaustedOutcome()
		} else {
			ds := deliveries(c, msgs, attempts)
			hctx, hcancel := context.WithDeadline(o.handlerCtx, granted.Add(qc.lease*8/10))
			out, err = h.deliver(&callScope{ctx: hctx, timeout: o.cfg.HandlerTimeout, tel: o.tel}, ds)
			hcancel()
			if err != nil {
				out = outcome{kind: kindRetry, reason: err.Error()}
			}
		}
		cc := w.cursorChangeFor(qc, out, msgs, cursor, attempts)
		more := !cc.retry && ctx.Err() == nil &&
			(len(msgs) == qc.batchSize || cc.cursor < msgs[len(msgs)-1].Seq)
		up := &dialect.CursorUpdate{
			PartitionID: c.PartitionID, Token: token, ProcessedSeq: cc.cursor, Attempts: cc.attempts,
			LastError: cc.lastError, RetryAfter: cc.retryAfter, Block: cc.block, DeleteAfter: cursor,
		}
		if more {
			up.Renew = qc.lease
		}
		for _, m := range msgs {
			if m.Seq <= cc.cursor {
				up.DeleteIDs = append(up.DeleteIDs, m.ID)
			}
		}
		ackStart := time.Now()
		ack := func(cursor int64, attempts int, msgs []dialect.Message) error {
			if err := w.write(ctx, nil, c, up, cc.dead); err != nil {
				if errors.Is(err, errLostLease) {
					return err
				}
				return w.unrecorded(ctx, c, token, cursor, attempts, fmt.Errorf("recording the result: %w", err))
			}
			o.tel.recorded(ctx, c, msgs, cursor, cc)
			w.report.add(c, msgs, cursor, attempts, cc)
			if cc.block {
				o.logBlocked(c, cc)
			}
			return nil
		}
		if !more {
			cursor, attempts, msgs := cursor, attempts, msgs
			lastAck(func() error { return ack(cursor, attempts, msgs) })
			return nil
		}
		if err := ack(cursor, attempts, msgs); err != nil {
			return err
		}
		cursor, attempts, granted = cc.cursor, cc.attempts, ackStart
	}
}

// txPass runs a transactional handler on one partition. It first claims
// the partition with a lease, committed on its own: the lease is what
// counts a crash as an attempt (a crash rolls back everything else). Then,
// in the handler's transaction, it locks the partition's cursor row, which keeps
// claimers away for as long as the transaction lives, runs the handler, and
// commits the handler's writes with the ack, which also drops the lease.
func (w *worker) txPass(ctx context.Context, g *claimGroup, fresh []int64) (bool, error) {
	o := w.o
	cl, err := w.claim(g, 1, fresh)
	if err != nil {
		if o.retryable(err) {
			return true, nil
		}
		return false, fmt.Errorf("claim: %w", err)
	}
	if len(cl.claimed) == 0 {
		return false, nil
	}
	claim, token := cl.claimed[0], cl.token
	stmtCtx, cancel := o.bookkeeping(ctx)
	defer cancel()
	release := func() {
		rctx, cancel := o.bookkeeping(ctx)
		defer cancel()
		_, _ = o.d.ReleaseLeases(rctx, o.q, &dialect.ReleaseLeasesParams{PartitionIDs: []int64{claim.PartitionID}, Token: token})
	}
	// The transaction outlives a soft stop: it ends by commit or rollback,
	// never by the stop cancelling its context mid-ack. Cancelling txCtx
	// (a handler call past HandlerTimeout) makes database/sql roll it back
	// at once, which frees its connection and the cursor row's lock.
	txCtx, cancelTx := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelTx()
	tx, err := o.db.BeginTx(txCtx, o.d.TxOptions())
	if err != nil {
		release()
		return false, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	res, err := o.d.LockPartition(stmtCtx, tx, &dialect.LockPartitionParams{PartitionID: claim.PartitionID, Token: token})
	if err != nil || len(res.Partitions) == 0 {
		_ = tx.Rollback()
		release()
		if err != nil {
			return false, fmt.Errorf("lock partition: %w", err)
		}
		// The token's lease is gone (expired, and claimed by another) or
		// another transaction holds the row: the partition is not ours.
		o.tel.lostLease(ctx, claim.Queue)
		return true, nil
	}
	c := res.Partitions[0]
	qc := o.queueConfigOf(c.Queue)
	msgs, err := o.read(stmtCtx, o.in(tx), c.PartitionID, c.ProcessedSeq, qc.batchSize)
	if err != nil || len(msgs) == 0 {
		_ = tx.Rollback()
		release()
		if err != nil {
			return false, fmt.Errorf("read: %w", err)
		}
		return true, nil
	}
	// A handler call past HandlerTimeout is rolled back and counted at
	// once, while it still runs: the partition is free for another worker
	// after the backoff. What its delivery does afterwards fails (the
	// transaction is gone) and is not counted again.
	var expired bool
	expire := func() {
		expired = true
		cancelTx()
		err := fmt.Errorf("handler timed out after %v (HandlerTimeout)", o.cfg.HandlerTimeout)
		_ = w.unrecorded(ctx, c, token, c.ProcessedSeq, c.Attempts, err)
	}
	// fail rolls back a delivery that broke down (a savepoint or the
	// commit failed) and records it as a failed attempt with backoff, so
	// MaxAttempts applies to it like to a Retry. Fenced by the token: the
	// row lock went with the rollback.
	fail := func(cause error) (bool, error) {
		_ = tx.Rollback()
		if expired {
			return true, nil
		}
		return true, w.unrecorded(ctx, c, token, c.ProcessedSeq, c.Attempts, cause)
	}
	var out outcome
	if qc.exhausted(c.Attempts) {
		out = qc.exhaustedOutcome()
	} else {
		ds := deliveries(c, msgs, c.Attempts)
		out, err = w.runTx(tx, o.d, o.handlers[c.Queue], ds, expire)
		if err != nil || expired {
			if err == nil {
				err = errors.New("handler timed out")
			}
			return fail(err)
		}
	}
	cc := w.cursorChangeFor(qc, out, msgs, c.ProcessedSeq, c.Attempts)
	// Not fenced by token: the row lock, taken while the token held the
	// lease, excludes every other claimer. Renew 0 drops the lease.
	up := &dialect.CursorUpdate{
		PartitionID: c.PartitionID, ProcessedSeq: cc.cursor, Attempts: cc.attempts,
		LastError: cc.lastError, RetryAfter: cc.retryAfter, Block: cc.block, DeleteAfter: c.ProcessedSeq,
	}
	if err := w.write(ctx, tx, c, up, cc.dead); err != nil {
		return fail(err)
	}
	o.tel.recorded(ctx, c, msgs, c.ProcessedSeq, cc)
	w.report.add(c, msgs, c.ProcessedSeq, c.Attempts, cc)
	if cc.block {
		o.logBlocked(c, cc)
	}
	return true, nil
}

// unrecorded handles a delivery whose result could not be recorded (a
// failed ack or dead-letter write, a broken transaction, a handler past
// HandlerTimeout): whatever the cause, it counts as a failed attempt with
// backoff, written on its own, fenced by the lease token and with a
// storable reason, so that no input keeps a message out of both delivery
// and the dead-letter table (MaxAttempts applies). If even that write
// fails, the lease is left to expire: the takeover counts the attempt.
// It returns nil once the attempt is recorded, else the write's error.
func (w *worker) unrecorded(ctx context.Context, c dialect.ClaimedPartition, token string, cursor int64, attempts int, cause error) error {
	o := w.o
	qc := o.queueConfigOf(c.Queue)
	next := attempts + 1
	stmtCtx, cancel := o.bookkeeping(ctx)
	defer cancel()
	updated, err := o.updateCursor(stmtCtx, o.q, o.db, &dialect.CursorUpdate{
		PartitionID: c.PartitionID, Token: token, ProcessedSeq: cursor, Attempts: next,
		LastError: asciiReason(cause), RetryAfter: backoff(next, qc.retryBase, qc.retryMax, jitter),
	})
	switch {
	case err != nil:
		return fmt.Errorf("%w; counting the failed attempt: %w", cause, err)
	case !updated:
		o.tel.lostLease(ctx, c.Queue)
		o.log.Warn("outbox: a delivery's result could not be recorded and its lease is gone; the takeover counts the attempt",
			"queue", c.Queue, "partition", c.Partition, "err", cause)
		return nil
	}
	o.log.Warn("outbox: a delivery's result could not be recorded; counted as a failed attempt",
		"queue", c.Queue, "partition", c.Partition, "attempts", next, "err", cause)
	o.tel.countRetry(ctx, c.Queue)
	return nil
}

const (
	spMessage = "outbox_msg"
	spBatch   = "outbox_batch"
)

// runTx calls a transactional handler with savepoints so that exactly the
// writes of acknowledged messages survive. expire runs when a call
// outlives HandlerTimeout.
func (w *worker) runTx(tx *sql.Tx, d dialect.Dialect, h Handler, ds []Delivery, expire func()) (outcome, error) {
	ctx := w.o.handlerCtx
	sp := func(name string, op dialect.SavepointOp) error {
		// Bounded per statement, not per batch: handlers may take as long
		// as they need between savepoints.
		stmtCtx, cancel := w.o.bookkeeping(ctx)
		defer cancel()
		if err := dialect.Savepoint(stmtCtx, tx, name, op); err != nil {
			return fmt.Errorf("savepoint: %w", err)
		}
		return nil
	}
	return h.deliver(&callScope{ctx: ctx, timeout: w.o.cfg.HandlerTimeout, expire: expire, tx: tx, sp: sp, tel: w.o.tel}, ds)
}

// undo rolls back to the savepoint name and releases it.
func (s *callScope) undo(name string) error {
	if err := s.sp(name, dialect.SavepointRollback); err != nil {
		return err
	}
	return s.sp(name, dialect.SavepointRelease)
}

// txPerMessage calls fn once per message, each inside its own savepoint.
func (s *callScope) txPerMessage(ds []Delivery, fn TxMessageFunc) (outcome, error) {
	var out outcome
	for i, m := range ds {
		if err := s.sp(spMessage, dialect.SavepointCreate); err != nil {
			return out, err
		}
		r := s.call(ds[i:i+1], func(ctx context.Context) Result { return fn(ctx, s.tx, m) })
		if r.kind == kindSuccess {
			if err := s.sp(spMessage, dialect.SavepointRelease); err != nil {
				return out, err
			}
			continue
		}
		if err := s.undo(spMessage); err != nil {
			return out, err
		}
		if r.kind == kindReject {
			out.rejected = append(out.rejected, rejection{index: i, reason: r.reason})
			continue
		}
		out.done, out.kind, out.reason = i, kindRetry, r.reason
		return out, nil
	}
	out.done = len(ds)
	return out, nil
}

// txBatch calls fn on the batch inside one savepoint. A savepoint spans
// the whole call, so the library cannot tell which writes belong to a
// finished prefix. When a call reports one, its writes are undone and the
// handler runs again on the prefix alone; the writes that commit are
// always those of a call whose messages are all acknowledged.
func (s *callScope) txBatch(ds []Delivery, fn TxBatchFunc) (outcome, error) {
	n := len(ds)
	final := outcome{done: n}
	for n > 0 {
		if err := s.sp(spBatch, dialect.SavepointCreate); err != nil {
			return final, err
		}
		batch := ds[:n]
		out := batchOutcome(s.call(batch, func(ctx context.Context) Result { return fn(ctx, s.tx, batch) }), n)
		if out.done == n {
			return final, s.sp(spBatch, dialect.SavepointRelease)
		}
		if err := s.undo(spBatch); err != nil {
			return final, err
		}
		if n < len(ds) && out.kind != final.kind {
			// The calls disagree about the rest (say Retry, then Reject
			// of part of the prefix): retry it all, which is always safe.
			out.kind = kindRetry
		}
		final = out
		n = out.done
	}
	return final, nil
}

// write records a batch's result: dead letters and the fenced cursor-row
// update in one transaction, so a worker that lost its lease writes
// nothing at all. tx is the transactional handler's transaction, or nil.
func (w *worker) write(ctx context.Context, tx *sql.Tx, c dialect.ClaimedPartition, up *dialect.CursorUpdate, dead []deadGroup) error {
	o := w.o
	// Delivered rows may go with the ack; the vacuum takes what stays.
	up.DeleteThrough = up.ProcessedSeq
	if tx == nil && len(dead) == 0 {
		// A plain ack: combined with other goroutines' acks into one
		// commit. If the round fails, this ack is retried alone below,
		// with a bookkeeping bound of its own.
		if updated, err := w.acks.do(up); err == nil {
			if !updated {
				return errLostLease
			}
			return nil
		}
	}
	stmtCtx, cancel := o.bookkeeping(ctx)
	defer cancel()
	apply := func(q dialect.DBTX, db *sql.DB) error {
		// Dead letters first: they copy rows the ack may delete. If the
		// fenced ack then fails, the transaction, dead letters included,
		// is rolled back.
		for _, g := range dead {
			if _, err := o.d.InsertDeadLetters(stmtCtx, q, &dialect.InsertDeadLettersParams{
				PartitionID: c.PartitionID, Seqs: g.seqs, Reason: g.reason, Attempts: g.attempts,
			}); err != nil {
				return fmt.Errorf("dead letter: %w", err)
			}
		}
		updated, err := o.updateCursor(stmtCtx, q, db, up)
		if err != nil {
			return fmt.Errorf("ack: %w", err)
		}
		if !updated {
			return errLostLease
		}
		return nil // dead letters are logged once committed (telemetry.recorded)
	}
	if tx != nil {
		if err := apply(o.in(tx), nil); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	}
	// Our own statement or transaction: a transient conflict (deadlock,
	// busy) is worth another try rather than an abandoned lease.
	for try := 1; ; try++ {
		var err error
		if len(dead) == 0 {
			err = apply(o.q, o.db)
		} else {
			err = o.withTx(stmtCtx, func(tx *sql.Tx) error { return apply(o.in(tx), nil) })
		}
		if err == nil || try == 3 || !o.retryable(err) {
			return err
		}
	}
}

type deadGroup struct {
	seqs     []int64
	reason   string
	attempts int
}

// cursorChange is what a batch's outcome does to the partition's cursor
// row (and which messages it dead-letters).
type cursorChange struct {
	cursor     int64
	attempts   int
	lastError  string
	retryAfter time.Duration
	retry      bool
	block      bool // stop at the head: PoisonBlock after MaxAttempts
	dead       []deadGroup
}

// cursorChangeFor turns an outcome into the partition's next state under
// the queue's options qc. cursor and attempts are the state before the
// batch.
func (w *worker) cursorChangeFor(qc queueConfig, out outcome, msgs []dialect.Message, cursor int64, attempts int) cursorChange {
	o := w.o
	out = out.settled(len(msgs))
	cc := cursorChange{cursor: cursor}
	for _, r := range out.rejected {
		cc.dead = append(cc.dead, deadGroup{seqs: []int64{msgs[r.index].Seq}, reason: sanitizeReason(r.reason), attempts: attempts})
	}
	if out.done > 0 {
		cc.cursor = msgs[out.done-1].Seq
	}
	switch out.kind {
	case kindSuccess:
		cc.cursor = msgs[len(msgs)-1].Seq
	case kindReject:
		if out.headOnly {
			head := msgs[out.done]
			cc.dead = append(cc.dead, deadGroup{seqs: []int64{head.Seq}, reason: sanitizeReason(out.reason), attempts: attempts})
			cc.cursor = head.Seq
			break
		}
		seqs := make([]int64, 0, len(msgs)-out.done)
		for _, m := range msgs[out.done:] {
			seqs = append(seqs, m.Seq)
		}
		cc.dead = append(cc.dead, deadGroup{seqs: seqs, reason: sanitizeReason(out.reason), attempts: attempts})
		cc.cursor = msgs[len(msgs)-1].Seq
	case kindRetry:
		// Attempts count failures of the partition's head; a finished
		// prefix means a new head that failed once.
		next := attempts + 1
		if out.done > 0 {
			next = 1
		}
		switch {
		case o.handlerCtx.Err() != nil:
			// Cancelled by shutdown: not the message's fault. Keep the
			// count and retry at once after restart.
			if out.done > 0 {
				next = 0
			} else {
				next = attempts
			}
			cc.retry, cc.attempts = true, next
		case out.block:
			// Exhausted before this call (see exhaustedOutcome): the count
			// stays what the claim found.
			cc.retry, cc.block, cc.attempts, cc.lastError = true, true, attempts, sanitizeReason(out.reason)
		case qc.maxAttempts > 0 && next >= qc.maxAttempts && qc.poison == PoisonBlock:
			cc.retry, cc.block, cc.attempts = true, true, next
			cc.lastError = sanitizeReason(fmt.Sprintf("max attempts (%d) reached: %s", qc.maxAttempts, out.reason))
		case qc.maxAttempts > 0 && next >= qc.maxAttempts:
			head := msgs[out.done]
			cc.dead = append(cc.dead, deadGroup{seqs: []int64{head.Seq},
				reason: sanitizeReason(fmt.Sprintf("max attempts (%d) reached: %s", qc.maxAttempts, out.reason)), attempts: next})
			cc.cursor = head.Seq
		default:
			cc.retry, cc.attempts, cc.lastError = true, next, sanitizeReason(out.reason)
			cc.retryAfter = backoff(next, qc.retryBase, qc.retryMax, jitter)
		}
	}
	return cc
}

// maxAttemptsOutcome dead-letters the head of a partition that already
// failed MaxAttempts times (for example by crashing its worker), without
// calling the handler again.
func maxAttemptsOutcome(max int) outcome {
	return outcome{kind: kindReject, reason: fmt.Sprintf("max attempts (%d) reached", max), headOnly: true}
}

// perMessage is the per-message adapter: it stops at the first Retry and
// dead-letters each Reject individually. Its count lives in this call only.
func perMessage(ds []Delivery, fn func(Delivery) Result) outcome {
	var out outcome
	for i, d := range ds {
		r := fn(d)
		switch r.kind {
		case kindReject:
			out.rejected = append(out.rejected, rejection{index: i, reason: r.reason})
		case kindRetry:
			out.done, out.kind, out.reason = i, kindRetry, r.reason
			return out
		}
	}
	out.done = len(ds)
	return out
}

func deliveries(c dialect.ClaimedPartition, msgs []dialect.Message, attempts int) []Delivery {
	ds := make([]Delivery, len(msgs))
	for i, m := range msgs {
		ds[i] = Delivery{
			Queue: c.Queue, Partition: c.Partition, Seq: m.Seq, ID: formatID(m.MessageID), Key: m.Key, Payload: m.Payload,
			PayloadType: m.PayloadType, CreatedAt: m.CreatedAt, Attempts: attempts,
		}
		if len(m.Headers) > 0 {
			_ = json.Unmarshal(m.Headers, &ds[i].Headers)
		}
	}
	return ds
}

// read reads up to limit messages of a partition after seq afterSeq.
func (o *Outbox) read(ctx context.Context, q dialect.DBTX, partitionID, afterSeq int64, limit int) ([]dialect.Message, error) {
	r, err := o.d.ReadPartitions(ctx, q, &dialect.ReadPartitionsParams{Reads: []dialect.PartitionRead{{PartitionID: partitionID, AfterSeq: afterSeq, Limit: limit}}})
	if err != nil {
		return nil, err
	}
	if len(r.Messages) != 1 {
		return nil, fmt.Errorf("outbox: ReadPartitions reported %d reads for 1", len(r.Messages))
	}
	return r.Messages[0], nil
}

// updateCursor writes one cursor update on q: in a transaction the caller
// holds (db nil), or on the outbox's database, committed on return.
func (o *Outbox) updateCursor(ctx context.Context, q dialect.DBTX, db *sql.DB, up *dialect.CursorUpdate) (bool, error) {
	r, err := o.d.UpdateCursors(ctx, q, &dialect.UpdateCursorsParams{Updates: []*dialect.CursorUpdate{up}, DB: db})
	if err != nil {
		return false, err
	}
	if len(r.Updated) != 1 {
		return false, fmt.Errorf("outbox: UpdateCursors reported %d results for 1", len(r.Updated))
	}
	return r.Updated[0], nil
}
