package outbox

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/sqlite"
)

// logRecorder keeps the level and message of every record logged.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

func (h *logRecorder) count(level slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.records {
		if r.Level == level {
			n++
		}
	}
	return n
}

// During an outage a loop backs off exponentially with jitter, capped at
// max(interval, maxOutageBackoff), and logs one warning when it starts
// failing and one info record when it recovers; then it polls at its
// interval again.
func TestLoopBacksOffDuringOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const every, failing = 100 * time.Millisecond, 10
		logs := &logRecorder{}
		o := &Outbox{log: slog.New(logs)}
		ctx, cancel := context.WithCancel(t.Context())
		var calls []time.Time
		o.goLoop(ctx, "test", every, nil, coalescer{}, func(context.Context) (bool, error) {
			calls = append(calls, time.Now())
			if len(calls) <= failing {
				return false, errors.New("connection refused")
			}
			return false, nil
		})
		time.Sleep(2 * time.Minute)
		cancel()
		o.wg.Wait()

		for k := 1; k < len(calls) && k <= failing+2; k++ {
			gap := calls[k].Sub(calls[k-1])
			d := every // after a success: the poll interval
			if k <= failing {
				d = min(every<<(k-1), maxOutageBackoff)
			}
			if gap < d/2 || gap > d {
				t.Errorf("wait after call %d: %v, want within [%v, %v]", k, gap, d/2, d)
			}
		}
		if n := len(calls); n < failing+3 {
			t.Fatalf("%d calls in 2 minutes, want more than %d", n, failing+2)
		}
		if w, i := logs.count(slog.LevelWarn), logs.count(slog.LevelInfo); w != 1 || i != 1 {
			t.Errorf("%d warnings and %d info records for one outage, want 1 and 1", w, i)
		}
	})
}

// Bookkeeping statements are bounded by LeaseDuration during normal
// operation, and by ShutdownTimeout from the moment Stop's context ends,
// also when they started before.
func TestBookkeepingBounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lease, shutdown = 30 * time.Second, 5 * time.Second
		o := &Outbox{cfg: Config{LeaseDuration: lease, ShutdownTimeout: shutdown}}
		o.handlerCtx, o.cancelHandlers = context.WithCancel(context.Background())
		ctx, cancel := context.WithCancel(t.Context())
		cancel() // a soft stop does not end bookkeeping

		start := time.Now()
		normal, done := o.bookkeeping(ctx)
		if d, _ := normal.Deadline(); d.Sub(start) != lease {
			t.Errorf("normal operation: deadline in %v, want %v (LeaseDuration)", d.Sub(start), lease)
		}
		done()

		running, done := o.bookkeeping(ctx)
		defer done()
		time.Sleep(10 * time.Second)
		o.cancelHandlers() // Stop's context ended
		stopped := time.Now()
		<-running.Done()
		if got := time.Since(stopped); got != shutdown {
			t.Errorf("a statement running at the hard stop ended %v after it, want %v (ShutdownTimeout)", got, shutdown)
		}

		after, done2 := o.bookkeeping(ctx)
		defer done2()
		if d, _ := after.Deadline(); time.Until(d) != shutdown {
			t.Errorf("after the hard stop: deadline in %v, want %v (ShutdownTimeout)", time.Until(d), shutdown)
		}
	})
}

// Under sustained load (two passes in a row found work) a loop that
// coalesces waits coalesce before each further pass, so work gathers; a
// pass that finds work after an idle one is followed at once by the next,
// so a low rate never waits; and a loop given no coalesce (the vacuum,
// transactional workers) never waits.
func TestLoopCoalescesOnlyUnderSustainedLoad(t *testing.T) {
	const coalesce = 5 * time.Millisecond
	run := func(t *testing.T, coalesce time.Duration, busy func(call int) bool, feed func(*signal)) []time.Duration {
		var gaps []time.Duration
		synctest.Test(t, func(t *testing.T) {
			wake := newSignal() // made in the bubble, so waits on it are durable
			o := &Outbox{log: slog.New(&logRecorder{})}
			ctx, cancel := context.WithCancel(t.Context())
			var calls []time.Time
			o.goLoop(ctx, "test", time.Hour, wake, coalescer{delay: coalesce}, func(context.Context) (bool, error) {
				calls = append(calls, time.Now())
				return busy(len(calls)), nil
			})
			if feed != nil {
				feed(wake)
			}
			time.Sleep(time.Second)
			cancel()
			o.wg.Wait()
			for k := 1; k < len(calls); k++ {
				gaps = append(gaps, calls[k].Sub(calls[k-1]))
			}
		})
		return gaps
	}

	t.Run("sustained", func(t *testing.T) {
		gaps := run(t, coalesce, func(call int) bool { return call <= 10 }, nil)
		if len(gaps) < 10 {
			t.Fatalf("%d passes, want at least 11", len(gaps)+1)
		}
		// Passes 1 and 2 found work: pass 2 ran at once, pass 3 after
		// coalesce, every later one after twice that (pass 11 is the
		// first idle one).
		for k, g := range gaps[:10] {
			want := 2 * coalesce
			switch k {
			case 0:
				want = 0
			case 1:
				want = coalesce
			}
			if g != want {
				t.Errorf("gap before pass %d: %v, want %v", k+2, g, want)
			}
		}
	})

	t.Run("low rate", func(t *testing.T) {
		// Work on every other pass, woken every 50 ms: busy, idle, wait.
		gaps := run(t, coalesce, func(call int) bool { return call%2 == 1 }, func(w *signal) {
			go func() {
				for range 10 {
					time.Sleep(50 * time.Millisecond)
					w.broadcast()
				}
			}()
		})
		if len(gaps) < 10 {
			t.Fatalf("%d passes, want at least 11", len(gaps)+1)
		}
		for k := 0; k < 10; k += 2 {
			if gaps[k] != 0 {
				t.Errorf("gap after busy pass %d: %v, want 0 (no coalescing at a low rate)", k+1, gaps[k])
			}
		}
	})

	t.Run("not coalescing", func(t *testing.T) {
		gaps := run(t, 0, func(call int) bool { return call <= 10 }, nil)
		for k, g := range gaps[:9] {
			if g != 0 {
				t.Errorf("gap before pass %d: %v, want 0", k+2, g)
			}
		}
	})
}

// TestCoalescerPacesTheSequencer: a paced loop (the sequencer) waits at
// least twice its last pass's duration, capped at maxPace delays, and
// never less than the ramp; an unpaced one (workers, whose pass includes
// the handler) only ramps; nothing waits before the third busy pass in a
// row or without a delay.
func TestCoalescerPacesTheSequencer(t *testing.T) {
	const d = 5 * time.Millisecond
	paced, ramp := coalescer{delay: d, paced: true}, coalescer{delay: d}
	for _, c := range []struct {
		name   string
		co     coalescer
		streak int
		took   time.Duration
		want   time.Duration
	}{
		{"first busy pass", paced, 1, time.Second, 0},
		{"no delay", coalescer{paced: true}, 5, time.Second, 0},
		{"quick pass: the ramp", paced, 2, time.Millisecond, d},
		{"quick pass: the ramp doubled", paced, 3, time.Millisecond, 2 * d},
		{"slow pass: twice its duration", paced, 2, 8 * time.Millisecond, 16 * time.Millisecond},
		{"slow pass later on", paced, 9, 9 * time.Millisecond, 18 * time.Millisecond},
		{"very slow pass: capped", paced, 3, time.Second, maxPace * d},
		{"unpaced: the ramp only", ramp, 3, time.Second, 2 * d},
		{"trailing (the vacuum): after every busy pass", coalescer{trail: 100 * time.Millisecond}, 1, time.Second, 100 * time.Millisecond},
	} {
		if got := c.co.wait(c.streak, c.took); got != c.want {
			t.Errorf("%s: wait(%d, %v) = %v, want %v", c.name, c.streak, c.took, got, c.want)
		}
	}
}

// TestSlowLoopDoesNotFastPoll: after a pass that found work, a loop with
// a wake signal polls again within milliseconds (fastPoll), unless it is
// slow (the sequencers after the first), which waits its interval unless
// woken.
func TestSlowLoopDoesNotFastPoll(t *testing.T) {
	passes := func(co coalescer) int {
		var n int
		synctest.Test(t, func(t *testing.T) {
			wake := newSignal()
			o := &Outbox{log: slog.New(&logRecorder{})}
			ctx, cancel := context.WithCancel(t.Context())
			o.goLoop(ctx, "test", time.Hour, wake, co, func(context.Context) (bool, error) {
				n++
				return n == 1, nil // work once, then none
			})
			time.Sleep(time.Second)
			cancel()
			o.wg.Wait()
		})
		return n
	}
	if n := passes(coalescer{}); n < 5 {
		t.Fatalf("fast-polling loop: %d passes in a second after finding work, want several", n)
	}
	if n := passes(coalescer{slow: true}); n != 2 {
		t.Fatalf("slow loop: %d passes in a second, want 2 (the busy one, then one idle pass and the hour's wait)", n)
	}
}

// trickleVacuum is a dialect whose Vacuum deletes from a count of
// delivered rows and records when it was called (synctest's clock) and
// how many rows each call deleted; fail makes the calls fail.
type trickleVacuum struct {
	*sqlite.Dialect
	mu        sync.Mutex
	delivered int
	fail      bool
	calls     []vacuumCall
	start     time.Time
	cancelAt  int    // when > 0, the call that makes len(calls) cancelAt calls cancel
	cancel    func() // (the outbox stopping during that batch)
}

type vacuumCall struct {
	at      time.Duration // since start
	deleted int
}

func (d *trickleVacuum) Vacuum(_ context.Context, _ dialect.DBTX, p *dialect.VacuumParams) (*dialect.VacuumResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail {
		d.calls = append(d.calls, vacuumCall{at: time.Since(d.start), deleted: -1})
		return nil, errors.New("connection refused")
	}
	n := min(d.delivered, p.Limit)
	d.delivered -= n
	d.calls = append(d.calls, vacuumCall{at: time.Since(d.start), deleted: n})
	if len(d.calls) == d.cancelAt {
		d.cancel()
	}
	return &dialect.VacuumResult{Deleted: n}, nil
}

func (d *trickleVacuum) set(delivered int, fail bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.delivered, d.fail = delivered, fail
}

// runVacuum runs the vacuum loop as Start does over d for the length of
// fn (synctest's clock) and returns d's calls.
func runVacuum(t *testing.T, d *trickleVacuum, interval time.Duration, fn func()) []vacuumCall {
	t.Helper()
	cfg := Config{VacuumInterval: interval, VacuumBatch: 10}
	o := &Outbox{log: slog.New(slog.DiscardHandler), d: d, cfg: cfg}
	ctx, cancel := context.WithCancel(t.Context())
	d.start = time.Now()
	o.goLoop(ctx, "vacuum", cfg.VacuumInterval, nil, coalescer{trail: vacuumTrailWait(cfg.VacuumInterval)}, o.vacuumPass)
	fn()
	cancel()
	o.wg.Wait()
	return d.calls
}

// A vacuum pass deletes a backlog in full batches back to back; while
// acks keep coming the next pass comes a tenth of VacuumInterval after
// one that deleted rows; after a pass that found none it waits the
// interval (drawn from its upper half); after a failure it backs off, not
// trails, even when the failing pass had deleted rows.
func TestVacuumTrailsAcks(t *testing.T) {
	const ms = time.Millisecond
	synctest.Test(t, func(t *testing.T) {
		d := &trickleVacuum{Dialect: sqlite.New(), delivered: 25}
		calls := runVacuum(t, d, time.Second, func() {
			synctest.Wait()
			time.Sleep(50 * ms)
			d.set(4, false) // an ack's rows
			time.Sleep(1950 * ms)
		})
		want := []vacuumCall{{0, 10}, {0, 10}, {0, 5}, {100 * ms, 4}, {200 * ms, 0}}
		if len(calls) < len(want) || !slices.Equal(calls[:len(want)], want) {
			t.Fatalf("vacuum calls %v, want %v first (25 rows in batches of 10 at once, the ack's 4 one trail later, then an empty pass)", calls, want)
		}
		for _, c := range calls[len(want):] {
			if c.at < 700*ms || c.deleted != 0 {
				t.Fatalf("vacuum calls %v: after the empty pass at 200 ms the next must wait half the interval or more and find nothing", calls)
			}
		}
	})
	synctest.Test(t, func(t *testing.T) {
		d := &trickleVacuum{Dialect: sqlite.New(), delivered: 15}
		calls := runVacuum(t, d, time.Second, func() {
			synctest.Wait()
			d.set(10, true) // the database goes away
			time.Sleep(2 * time.Second)
		})
		// The first pass deletes 10 and 5 (a partial batch: done), the
		// trail later a pass fails, and the next comes after a backoff.
		if len(calls) < 4 || calls[2] != (vacuumCall{100 * ms, -1}) || calls[3].at < 100*ms+500*ms {
			t.Fatalf("vacuum calls %v: want 10 and 5 at 0, a failure at 100 ms, the next after a backoff of 500 ms or more", calls)
		}
	})
}

// The trail is a tenth of VacuumInterval, at least 10 ms and at most the
// interval.
func TestVacuumTrailWait(t *testing.T) {
	const ms = time.Millisecond
	for _, c := range []struct{ interval, want time.Duration }{
		{time.Second, 100 * ms}, {time.Hour, 6 * time.Minute}, {50 * ms, 10 * ms}, {10 * ms, 10 * ms},
	} {
		if got := vacuumTrailWait(c.interval); got != c.want {
			t.Errorf("vacuumTrailWait(%v) = %v, want %v", c.interval, got, c.want)
		}
	}
}

// A vacuum pass that keeps finding full batches (a large backlog) stops
// after the batch during which the outbox stopped.
func TestVacuumPassStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	d := &trickleVacuum{Dialect: sqlite.New(), delivered: 1000, start: time.Now(), cancelAt: 3, cancel: cancel}
	o := &Outbox{log: slog.New(slog.DiscardHandler), d: d, cfg: Config{VacuumBatch: 10}}
	busy, err := o.vacuumPass(ctx)
	if !busy || err != nil {
		t.Fatalf("vacuumPass = %v, %v; want busy (it deleted rows), no error", busy, err)
	}
	if len(d.calls) != 3 {
		t.Fatalf("%d Vacuum calls, want 3 (the pass stops after the batch during which Stop came)", len(d.calls))
	}
}
