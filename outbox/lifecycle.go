package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/pprof"
	"sort"
	"time"

	"github.com/modkit-go/db/dialect"
)

// Start launches the sequencer, the workers of every queue with a
// handler, and the vacuum, and returns once they run. Each handled queue must
// have been declared (by this or another process). Cancelling ctx has the
// effect of Stop without waiting; call Stop to wait for the goroutines.
func (o *Outbox) Start(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stopped {
		return ErrStopped
	}
	if o.started || o.delivering {
		return ErrAlreadyStarted
	}
	var decoupled, transactional []string
	for q, h := range o.handlers {
		if _, err := o.partitionCount(ctx, o.db, q); err != nil {
			return o.enqueueErr(-1, q, err)
		}
		if h.transactional() {
			transactional = append(transactional, q)
		} else {
			decoupled = append(decoupled, q)
		}
	}
	sort.Strings(decoupled)
	sort.Strings(transactional)

	runCtx, cancel := context.WithCancel(ctx)
	o.handlerCtx, o.cancelHandlers = context.WithCancel(context.WithoutCancel(ctx))
	o.cancel = cancel
	o.done = make(chan struct{})
	o.started = true

	for i := range o.cfg.Sequencers {
		// One sequencer polls fast for producers in other processes;
		// under load the others' fast polls mostly find the work the
		// first one took (on MariaDB each costs a 4 ms read then).
		o.goLoop(runCtx, "sequencer", o.cfg.PollInterval, o.seqWake, coalescer{delay: o.coalesce, paced: true, slow: i > 0}, o.sequencePass)
	}
	if len(decoupled)+len(transactional) > 0 {
		w := newWorker(o, decoupled, transactional)
		// A transactional pass works one partition in one transaction:
		// waiting between passes would not make them take more per
		// commit, only make each wait (p95 5 -> 20-28 ms at 500 msg/s).
		coalesce := o.coalesce
		if len(transactional) > 0 {
			coalesce = 0
		}
		for range o.cfg.MaxConcurrency {
			o.goLoop(runCtx, "worker", o.cfg.PollInterval, o.workWake, coalescer{delay: coalesce}, w.pass)
		}
	}
	o.goLoop(runCtx, "vacuum", o.cfg.VacuumInterval, nil, coalescer{trail: vacuumTrailWait(o.cfg.VacuumInterval)}, o.vacuumPass)
	pw := &poolWatch{stats: o.db.Stats, log: o.log, cfg: o.cfg}
	o.goLoop(runCtx, "pool", poolWatchEvery, nil, coalescer{}, pw.pass)
	o.goListen(runCtx)
	go func() {
		o.wg.Wait()
		cancel()
		o.cancelHandlers()
		if o.stmts != nil {
			// Statements are prepared again if the outbox is used
			// after Stop (InTx, say); until then they hold nothing.
			o.stmts.Close()
		}
		close(o.done)
	}()
	o.log.Info("outbox started", "dialect", o.d.Name(), "decoupled", decoupled, "transactional", transactional)
	return nil
}

// Stop stops claiming new work, lets in-flight handlers finish until ctx
// ends (then cancels their contexts), writes their acknowledgements,
// releases the leases it holds and returns once every goroutine has exited.
// It returns ctx.Err() if handlers had to be cancelled. Stop before Start,
// and a second Stop, return nil at once (after the first Stop finished).
func (o *Outbox) Stop(ctx context.Context) error {
	o.tel.close()
	o.mu.Lock()
	if !o.started {
		o.stopped = true
		o.mu.Unlock()
		return nil
	}
	o.stopped = true
	cancel, done := o.cancel, o.done
	o.mu.Unlock()

	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		o.cancelHandlers()
		<-done
		return ctx.Err()
	}
}

// pass does one unit of work and reports whether it found any, so the loop
// runs again at once instead of waiting.
type pass func(ctx context.Context) (bool, error)

// maxOutageBackoff caps the backoff of a loop whose passes fail (a
// database outage, say), unless the loop's own interval is longer.
const maxOutageBackoff = 5 * time.Second

// maxPace caps a paced loop's wait, in CoalesceDelays: 32 ms by default.
// It was 6 with a 5 ms CoalesceDelay (30 ms); with 8 ms, 6 (48 ms) raised
// MariaDB's p99 commit -> handler under full load by 2-3 ms for no more
// throughput (six alternating runs of --scenarios concurrent: p99
// 50.0-57.3 ms against 49.0-53.4 ms with 4).
const maxPace = 4

// coalescer says how long a loop lets work gather before a pass, once
// two passes in a row found work (see coalesceUnderLoad), or with trail
// after every pass that found work.
type coalescer struct {
	// delay before the third busy pass in a row, twice that from the
	// fourth on; zero: never wait.
	delay time.Duration
	// paced: at least twice the last pass's duration, up to maxPace
	// delays. For the sequencer, whose pass costs about the same whatever
	// number of rows it numbers (on MariaDB the reads that find a round's
	// rows walk index entries the previous rounds left; a pass takes 10-20
	// ms there under load, 1-2 ms on PostgreSQL): under sustained load it
	// then spends at most a third of its time in passes, and each numbers
	// more rows. Workers are not paced: their pass includes the handler.
	paced bool
	// slow: no fast polls after a pass that found work (see poller); the
	// loop polls every interval unless woken.
	slow bool
	// trail, when > 0, is the wait after every pass that found work (the
	// vacuum: a pass takes all there is, and what comes next is a trickle
	// of acks best deleted soon, while its pages are still cached).
	trail time.Duration
}

// wait is the wait before the next pass, after streak busy passes in a
// row, the last of which took took.
func (c coalescer) wait(streak int, took time.Duration) time.Duration {
	if c.trail > 0 {
		return c.trail
	}
	if c.delay <= 0 || streak <= 1 {
		return 0
	}
	w := c.delay * time.Duration(min(streak-1, 2))
	if c.paced {
		w = max(w, min(2*took, maxPace*c.delay))
	}
	return w
}

// goLoop runs fn until ctx ends: again at once while it finds work (after
// co's wait: once two passes in a row found work, or co.trail after each),
// else after wake (if any) or a jittered interval,
// adaptive (see poller) for the loops that have a wake signal. While passes fail, the wait grows instead:
// every·2^(failures-1), capped at max(every, maxOutageBackoff), with equal
// jitter; the first failure is logged as a warning and the recovery at info
// level, the retries in between at debug. The goroutine carries the pprof
// label outbox=name, on top of the labels of Start's context.
func (o *Outbox) goLoop(ctx context.Context, name string, every time.Duration, wake *signal, co coalescer, fn pass) {
	o.wg.Add(1)
	go pprof.Do(ctx, pprof.Labels("outbox", name), func(ctx context.Context) {
		defer o.wg.Done()
		timer := time.NewTimer(0)
		defer timer.Stop()
		<-timer.C
		var failures int
		var failingSince time.Time
		var streak int // passes in a row that found work
		poll := newPoller(every, every)
		if wake != nil && !co.slow {
			poll = newPoller(fastPoll, every)
		}
		for ctx.Err() == nil {
			var woke <-chan struct{}
			if wake != nil {
				woke = wake.wait() // taken before the pass: no wake-up is lost
			}
			began := time.Now()
			busy, err := fn(ctx)
			took := time.Since(began)
			switch {
			case err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled):
				o.tel.workerError(ctx, name)
				if failures == 0 {
					failingSince = time.Now()
					o.log.Warn("outbox: "+name+" failed; retrying with backoff", "err", err)
				} else {
					o.log.Debug("outbox: "+name+" failed again", "err", err, "failures", failures+1)
				}
				failures++
				busy = false
			case err == nil && failures > 0:
				o.log.Info("outbox: "+name+" recovered", "failures", failures, "after", time.Since(failingSince))
				failures = 0
			}
			if busy {
				poll.found()
				streak++
				if d := co.wait(streak, took); d > 0 {
					// Sustained load: let work gather so that the next
					// pass takes more of it per statement and commit.
					timer.Reset(d)
					select {
					case <-ctx.Done():
						if !timer.Stop() {
							<-timer.C
						}
					case <-timer.C:
					}
				}
				continue
			}
			streak = 0
			delay := poll.idle()
			if failures > 0 {
				delay = backoff(failures, every, max(every, maxOutageBackoff), jitter)
			}
			timer.Reset(delay)
			select {
			case <-ctx.Done():
			case <-woke:
				if !timer.Stop() {
					<-timer.C
				}
			case <-timer.C:
			}
		}
	})
}

// bookkeeping returns a context for the library's own statements (claims,
// reads, savepoints, acks, releases), which must happen even during
// shutdown: detached from cancellation, and bounded per statement by
// LeaseDuration (a decoupled lease is lost by then anyway) until Stop's
// context ends; from then on by ShutdownTimeout, also for a statement
// already running.
func (o *Outbox) bookkeeping(ctx context.Context) (context.Context, context.CancelFunc) {
	base := context.WithoutCancel(ctx)
	if o.handlerCtx == nil || o.handlerCtx.Err() != nil {
		return context.WithTimeout(base, o.cfg.ShutdownTimeout)
	}
	stmtCtx, cancel := context.WithTimeout(base, o.cfg.LeaseDuration)
	stop := context.AfterFunc(o.handlerCtx, func() { time.AfterFunc(o.cfg.ShutdownTimeout, cancel) })
	return stmtCtx, func() {
		stop()
		cancel()
	}
}

// SequenceAll sequences every committed message that has no seq yet, and
// returns how many it sequenced. Tests and tools use it to run the
// sequencer to completion without Start.
func (o *Outbox) SequenceAll(ctx context.Context) (int, error) {
	total := 0
	for {
		n, skipped, err := o.sequenceRound(ctx, false)
		total += n
		if err != nil {
			return total, err
		}
		if n == 0 && skipped == 0 {
			return total, nil
		}
		if n == 0 {
			// Another sequencer holds a partition; give it a moment.
			select {
			case <-ctx.Done():
				return total, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
}

func (o *Outbox) sequencePass(ctx context.Context) (bool, error) {
	n, _, err := o.sequenceRound(ctx, true)
	return n > 0, err
}

// sequenceRound sequences the partitions that have committed unsequenced
// rows. Under load many partitions have a few rows each, so one transaction
// takes them all, up to SequencerBatch rows in total: one commit instead of
// one per partition. SequencePartitions locks each partition (skipping
// one another sequencer holds, so sequencers never wait on each other and
// cannot deadlock however many partition locks one holds) and only then
// picks rows, in a later statement that sees the previous holder's work.
func (o *Outbox) sequenceRound(ctx context.Context, shuffle bool) (assigned, skipped int, err error) {
	if o.caps.SequencePending && !o.roundSeqNo.Load() {
		assigned, skipped, err = o.sequencePending(ctx)
		if !errors.Is(err, dialect.ErrUnsupported) {
			return assigned, skipped, err
		}
		if !o.roundSeqNo.Swap(true) {
			o.log.Warn("outbox: sequencing a partition at a time: the database cannot run a round in one call; apply the migrations", "error", err)
		}
	}
	pend, err := o.d.PendingPartitions(ctx, o.q, &dialect.PendingPartitionsParams{Limit: 1024})
	if err != nil {
		return 0, 0, fmt.Errorf("pending partitions: %w", err)
	}
	ids := pend.PartitionIDs
	if shuffle {
		// Several sequencers spread over partitions instead of queueing on
		// the same locks.
		rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	}
	// share: once a transaction of this round left partitions with more
	// rows (a backlog), the most partitions a transaction takes, so that
	// the other sequencers (woken then) number theirs at the same time
	// instead of skipping every partition this one holds; 0 before.
	// Only where a transaction takes several partitions at once.
	share := 0
	shares := o.cfg.Sequencers > 1
	for len(ids) > 0 {
		var n, skip int
		var full []int64 // partitions that may have more rows
		var next int     // ids[:next] were tried in this transaction
		err := o.withTx(ctx, func(tx *sql.Tx) error {
			n, skip, full, next = 0, 0, nil, 0
			// A fixed number of statements for all of them; the budget
			// is shared evenly, and a partition that used its share
			// goes round again.
			next = min(len(ids), o.cfg.SequencerBatch)
			if share > 0 {
				next = min(next, share)
			}
			limit := o.cfg.SequencerBatch / next
			res, err := o.d.SequencePartitions(ctx, o.in(tx), &dialect.SequencePartitionsParams{PartitionIDs: ids[:next], Limit: limit})
			if err != nil {
				return fmt.Errorf("sequence partitions: %w", err)
			}
			for _, r := range res.Partitions {
				if !r.Locked {
					skip++
					continue
				}
				n += r.Assigned
				if r.Assigned == limit {
					full = append(full, r.PartitionID)
				}
			}
			return nil
		})
		if err != nil {
			if o.retryable(err) {
				return assigned, skipped + len(ids), nil
			}
			return assigned, skipped, err
		}
		assigned += n
		skipped += skip
		o.tel.sequencedRows(ctx, n)
		if n > 0 {
			o.workWake.broadcast()
		}
		if len(full) > 0 && share == 0 && shares {
			share = (len(ids) + o.cfg.Sequencers - 1) / o.cfg.Sequencers
			o.seqWake.broadcast()
		}
		// Partitions with more rows go round again after the rest.
		ids = append(ids[next:], full...)
	}
	return assigned, skipped, nil
}

// sequencePending is sequenceRound through dialect.Dialect.SequencePending: a
// call finds and sequences up to SequencerBatch pending partitions in one
// round trip. Calls go on from the last partition found while a call found
// as many as it may (more may wait beyond), and round again while a
// partition used its whole share (it may have more rows).
func (o *Outbox) sequencePending(ctx context.Context) (assigned, skipped int, err error) {
	maxParts := min(1024, o.cfg.SequencerBatch)
	var from int64
	full := false // a partition used its share since from was last 0
	for {
		res, err := o.d.SequencePending(ctx, o.q, &dialect.SequencePendingParams{
			FromPartitionID: from, MaxPartitions: maxParts, Limit: o.cfg.SequencerBatch})
		if err != nil {
			if o.retryable(err) {
				return assigned, skipped + 1, nil
			}
			return assigned, skipped, fmt.Errorf("sequence pending: %w", err)
		}
		found := len(res.Partitions)
		share := max(o.cfg.SequencerBatch/max(found, 1), 1)
		n := 0
		for _, r := range res.Partitions {
			if !r.Locked {
				skipped++
				continue
			}
			n += r.Assigned
			full = full || r.Assigned >= share
		}
		assigned += n
		o.tel.sequencedRows(ctx, n)
		if n > 0 {
			o.workWake.broadcast()
		}
		switch {
		case found == maxParts:
			from = res.Partitions[found-1].PartitionID + 1
		case full:
			from, full = 0, false
		default:
			return assigned, skipped, nil
		}
	}
}

func (o *Outbox) vacuumPass(ctx context.Context) (bool, error) {
	total := 0
	defer func() {
		if total > 0 {
			o.log.Debug("outbox: vacuum", "deleted", total)
		}
	}()
	for {
		res, err := o.d.Vacuum(ctx, o.q, &dialect.VacuumParams{Limit: o.cfg.VacuumBatch})
		if err != nil {
			// Not busy: the loop backs off, whatever this pass deleted.
			return false, fmt.Errorf("vacuum: %w", err)
		}
		total += res.Deleted
		if res.Deleted < o.cfg.VacuumBatch || ctx.Err() != nil {
			return total > 0, nil
		}
	}
}

// vacuumTrailWait is the vacuum's wait after a pass that deleted rows:
// a tenth of VacuumInterval, and at least 10 ms (the interval's own
// minimum), so that while messages are being delivered they are deleted
// a tenth of a second after their ack by default, not a second. On SQLite
// a second's rows (10k+ under full load) had left the page cache by then,
// and their delete read them back while holding the only connection: four
// alternating pairs of --scenarios concurrent --messages 50000 delivered
// 13.3k msg/s on average (0.41x-0.50x of the raw insert) against 11.8k
// (0.37x-0.40x), worst commit-to-handler 32-53 ms against 57-74 ms. An
// idle outbox still polls every VacuumInterval.
func vacuumTrailWait(interval time.Duration) time.Duration {
	return min(interval, max(interval/10, 10*time.Millisecond))
}

// VacuumAll deletes every delivered message and returns how many it
// deleted. The background vacuum does the same in bounded steps.
func (o *Outbox) VacuumAll(ctx context.Context) (int, error) {
	total := 0
	for {
		res, err := o.d.Vacuum(ctx, o.q, &dialect.VacuumParams{Limit: o.cfg.VacuumBatch})
		if err != nil {
			return total, fmt.Errorf("outbox: vacuum: %w", err)
		}
		total += res.Deleted
		if res.Deleted < o.cfg.VacuumBatch {
			return total, nil
		}
	}
}
