package outbox

import (
	"context"
	"errors"
	"runtime/pprof"
	"time"
)

// pass does one unit of work and reports whether it found any, so the loop
// runs again at once instead of waiting.
type pass func(ctx context.Context) (bool, error)

// maxOutageBackoff caps the backoff of a loop whose passes fail (a
// database outage, say), unless the loop's own interval is longer.
const maxOutageBackoff = 5 * time.Second

// maxPace caps a paced loop's wait, in CoalesceDelays: 32 ms by default.
// A cap of 6 (48 ms) raises MariaDB's p99 commit -> handler under full load
// by 2-3 ms for no more throughput (go run ./cmd/outbox-bench --dialect
// mysql --scenarios concurrent: p99 50.0-57.3 ms against 49.0-53.4 ms with
// 4).
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
