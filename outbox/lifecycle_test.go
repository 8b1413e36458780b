package outbox

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"
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
		o.goLoop(ctx, "test", every, nil, func(context.Context) (bool, error) {
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
