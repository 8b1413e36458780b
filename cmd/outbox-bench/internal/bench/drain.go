package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/outbox"
)

// fillChunk is the transaction size used to build backlogs (not measured).
const fillChunk = 500

// Drain measures consuming a backlog enqueued while no outbox ran, with a
// no-op batch handler in decoupled then transactional mode, until every
// message is delivered, acknowledged and vacuumed. The baseline drains the
// same backlog from a one-table queue with as many workers.
func Drain(ctx context.Context, o Options) ([]Result, error) {
	o = o.withDefaults()
	var out []Result
	var base time.Duration
	for i, tx := range []bool{false, true} {
		r, b, err := drainMode(ctx, o, tx, i == 0, nil)
		if i == 0 {
			base = b
		}
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	for i := range out {
		out[i].Baseline = "SELECT … LIMIT 100 FOR UPDATE SKIP LOCKED + DELETE"
		if o.Dialect == "sqlite" {
			out[i].Baseline = "SELECT … LIMIT 100 + DELETE under BEGIN IMMEDIATE"
		}
		out[i].BaselineSeconds, out[i].BaselineRate = base.Seconds(), rate(o.Messages, base)
		out[i].Ratio = ratio(out[i].Rate, out[i].BaselineRate)
		if i == 0 {
			out[i].Target = ">= 0.50x baseline"
			out[i].Met = ptr(out[i].Ratio >= 0.5)
		}
	}
	return out, nil
}

// drainMode drains a backlog with a no-op handler, or with mk's handler
// when mk is not nil (mk's handler must record each delivery in rec).
func drainMode(ctx context.Context, o Options, transactional, withBaseline bool, mk func(rec *recorder) outbox.Handler) (Result, time.Duration, error) {
	mode := "decoupled Batch"
	if transactional {
		mode = "transactional TxBatch"
	}
	res := Result{Scenario: ScenarioDrain, Mode: mode, Messages: o.Messages}
	env, ob, err := openOutbox(ctx, o)
	if err != nil {
		return res, 0, err
	}
	defer env.Close()
	// The backlog: in id order from one producer, so that each message's
	// index in its partition must come back as its seq.
	o.Logf("%s drain %s: enqueueing a backlog of %d messages over %d partitions", o.Dialect, mode, o.Messages, o.Partitions)
	for s := 0; s < o.Messages; s += fillChunk {
		if err := outboxInsert(ctx, ob, o, s, min(s+fillChunk, o.Messages)); err != nil {
			return res, 0, fmt.Errorf("backlog: %w", err)
		}
	}
	if err := env.analyze(ctx); err != nil {
		return res, 0, err
	}

	rec := newRecorder(o.Messages, o.Partitions, o.PayloadBytes, true, false)
	recordAll := func(ms []outbox.Delivery) {
		for _, m := range ms {
			rec.record(m.Partition, m.Seq, m.Payload, 0)
		}
	}
	var h outbox.Handler = outbox.Batch(func(_ context.Context, ms []outbox.Delivery) outbox.Result {
		recordAll(ms)
		return outbox.Success()
	})
	if transactional {
		h = outbox.TxBatch(func(_ context.Context, _ *sql.Tx, ms []outbox.Delivery) outbox.Result {
			recordAll(ms)
			return outbox.Success()
		})
	}
	if mk != nil {
		h = mk(rec)
	}
	if err := ob.Handle(Queue, h); err != nil {
		return res, 0, err
	}

	o.Logf("%s drain %s: outbox", o.Dialect, mode)
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	t0 := time.Now()
	if err := ob.Start(ctx); err != nil {
		return res, 0, err
	}
	var waitErr error
	select {
	case <-rec.done:
	case <-wctx.Done():
		waitErr = fmt.Errorf("timed out after %v with %d of %d messages delivered", o.Timeout, rec.total.Load(), o.Messages)
	}
	delivered := time.Since(t0)
	// Delivered rows are deleted by the acks (PostgreSQL, MariaDB
	// decoupled) or by the background vacuum, a tenth of VacuumInterval
	// after its last pass that found some; rather than wait for its next
	// tick, finish its work here, so the figure includes vacuuming
	// without idle time.
	for waitErr == nil {
		if _, err := ob.VacuumAll(wctx); err != nil && !(env.D.ClassifyError(err) == dialect.ErrorRetryable) {
			waitErr = err
			break
		}
		st, err := ob.Stats(wctx)
		if err != nil {
			waitErr = err
			break
		}
		if st.Messages == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	total := time.Since(t0)
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	stopErr := ob.Stop(sctx)
	scancel()

	res.Seconds, res.Rate = total.Seconds(), rate(o.Messages, total)
	res.Details = map[string]any{"delivered_seconds": delivered.Seconds(), "vacuum_tail_seconds": (total - delivered).Seconds()}
	verr := rec.verify(perPartition(o.Messages, o.Partitions))
	verdict(&res, errors.Join(waitErr, verr, stopErr, checkDrained(ctx, ob, o)))
	if !withBaseline {
		return res, 0, nil
	}
	base, err := rawDrain(ctx, env, o)
	if err != nil {
		return res, 0, fmt.Errorf("baseline: %w", err)
	}
	return res, base, nil
}

// checkDrained reads the outbox's own view: every partition's cursor at
// its last seq, nothing unsequenced, no dead letters.
func checkDrained(ctx context.Context, ob *outbox.Outbox, o Options) error {
	var problems []string
	st, err := ob.Stats(ctx)
	if err != nil {
		return err
	}
	if st.Messages != 0 || st.DeadLetters != 0 {
		problems = append(problems, fmt.Sprintf("%d messages left, %d dead letters", st.Messages, st.DeadLetters))
	}
	want := perPartition(o.Messages, o.Partitions)
	for p := range o.Partitions {
		ps, err := ob.PartitionStatus(ctx, Queue, p)
		if err != nil {
			return err
		}
		if ps.LastSeq != want[p] || ps.ProcessedSeq != want[p] {
			problems = append(problems, fmt.Sprintf("partition %d: last seq %d, processed %d, want %d", p, ps.LastSeq, ps.ProcessedSeq, want[p]))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// rawDrain fills bench_raw with the same backlog and drains it with
// Consumers workers (see rawConsumers).
func rawDrain(ctx context.Context, env *Env, o Options) (time.Duration, error) {
	o.Logf("%s drain: baseline, %d rows, %d workers", o.Dialect, o.Messages, o.Consumers)
	if _, err := env.DB.ExecContext(ctx, "DELETE FROM bench_raw"); err != nil {
		return 0, err
	}
	for s := 0; s < o.Messages; s += fillChunk {
		if err := rawInsert(ctx, env, o, s, min(s+fillChunk, o.Messages)); err != nil {
			return 0, err
		}
	}
	if err := env.analyze(ctx); err != nil {
		return 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	rc := newRawConsumers(env, o.Messages)
	t0 := time.Now()
	err := rc.run(wctx, o.Consumers, 0)
	el := time.Since(t0)
	if err != nil {
		return el, err
	}
	return el, rc.check(ctx)
}

// rawConsumers are the baseline queue's workers: each loops over begin,
// claim up to 100 rows (SKIP LOCKED), decode them, delete them, commit.
type rawConsumers struct {
	env          *Env
	claim        string
	seen         []atomic.Uint32 // by message id
	deleted, bad atomic.Int64
	lastNS       atomic.Int64 // the latest delete's commit
}

func newRawConsumers(env *Env, n int) *rawConsumers {
	return &rawConsumers{env: env, claim: env.claimRawSQL(100), seen: make([]atomic.Uint32, n)}
}

// run runs n workers until every message is deleted. poll 0: a worker
// stops at its first empty claim (a backlog); otherwise it waits poll and
// claims again (producers still at work).
func (rc *rawConsumers) run(ctx context.Context, n int, poll time.Duration) error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = rc.worker(ctx, poll) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (rc *rawConsumers) worker(ctx context.Context, poll time.Duration) error {
	env := rc.env
	ids := make([]any, 0, 100)
	mids := make([]uint64, 0, 100)
	for ctx.Err() == nil && rc.deleted.Load() < int64(len(rc.seen)) {
		tx, err := env.DB.BeginTx(ctx, env.D.TxOptions())
		if err != nil {
			return err
		}
		ids, mids = ids[:0], mids[:0]
		bad := 0
		rows, err := tx.QueryContext(ctx, rc.claim)
		if err != nil {
			_ = tx.Rollback()
			if env.D.ClassifyError(err) == dialect.ErrorRetryable {
				continue
			}
			return err
		}
		for rows.Next() {
			var id int64
			var part int
			var p []byte
			if err := rows.Scan(&id, &part, &p); err != nil {
				rows.Close()
				_ = tx.Rollback()
				return err
			}
			// The no-op handler's equivalent: decode and account.
			if mid, mp, _, ok := decodePayload(p); !ok || int(mp) != part || mid >= uint64(len(rc.seen)) {
				bad++
			} else {
				mids = append(mids, mid)
			}
			ids = append(ids, id)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			_ = tx.Rollback()
			if env.D.ClassifyError(err) == dialect.ErrorRetryable {
				// MariaDB may report a deadlock while the claim's rows
				// stream; nothing was counted yet.
				continue
			}
			return err
		}
		if len(ids) == 0 {
			_ = tx.Rollback()
			if poll == 0 {
				return nil
			}
			select {
			case <-ctx.Done():
			case <-time.After(poll):
			}
			continue
		}
		if _, err := tx.ExecContext(ctx, env.deleteRawSQL(len(ids)), ids...); err != nil {
			_ = tx.Rollback()
			if env.D.ClassifyError(err) == dialect.ErrorRetryable {
				continue
			}
			return err
		}
		if err := tx.Commit(); err != nil {
			if env.D.ClassifyError(err) == dialect.ErrorRetryable {
				continue
			}
			return err
		}
		storeMax(&rc.lastNS, time.Now().UnixNano())
		rc.bad.Add(int64(bad))
		rc.deleted.Add(int64(len(ids)))
		for _, mid := range mids {
			rc.seen[mid].Add(1)
		}
	}
	return ctx.Err()
}

// storeMax sets a to v if v is greater.
func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// check verifies that the table is empty and every message was seen once.
func (rc *rawConsumers) check(ctx context.Context) error {
	var left int64
	if err := rc.env.DB.QueryRowContext(ctx, "SELECT count(*) FROM bench_raw").Scan(&left); err != nil {
		return err
	}
	missing := 0
	for i := range rc.seen {
		if rc.seen[i].Load() != 1 {
			missing++
		}
	}
	if left != 0 || rc.deleted.Load() != int64(len(rc.seen)) || rc.bad.Load() != 0 || missing != 0 {
		return fmt.Errorf("baseline queue incomplete: %d rows left, %d deleted of %d, %d bad payloads, %d ids not seen exactly once",
			left, rc.deleted.Load(), len(rc.seen), rc.bad.Load(), missing)
	}
	return nil
}
