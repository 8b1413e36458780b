package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
)

// flakyWaker is the SQLite dialect with a Listen that fails `fail` times,
// then listens until its context ends.
type flakyWaker struct {
	*sqlite.Dialect
	mu       sync.Mutex
	fail     int
	calls    int
	listened chan struct{} // closed when Listen is listening
	returned chan error    // what the listening call returned
}

func (w *flakyWaker) Listen(ctx context.Context, _ *sql.DB, p *dialect.ListenParams) error {
	w.mu.Lock()
	w.calls++
	fail := w.calls <= w.fail
	w.mu.Unlock()
	if fail {
		return errors.New("connection reset")
	}
	p.Ready()
	close(w.listened)
	<-ctx.Done()
	w.returned <- ctx.Err()
	return ctx.Err()
}

type countingHandler struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *countingHandler) WithGroup(string) slog.Handler            { return h }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n[r.Message]++
	return nil
}

// TestListenerReconnects: the core retries a failing Listen with backoff,
// logs the first failure and the recovery once each, and Stop ends the
// listening call before it returns (no goroutine left).
func TestListenerReconnects(t *testing.T) {
	db, cleanup := openSQLite()
	defer cleanup()
	ctx := context.Background()
	w := &flakyWaker{Dialect: sqlite.New(), fail: 3, listened: make(chan struct{}), returned: make(chan error, 1)}
	if err := migrations.Up(ctx, db, w.Dialect); err != nil {
		t.Fatal(err)
	}
	logs := &countingHandler{n: map[string]int{}}
	ob, err := outbox.New(db, w, outbox.Config{Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Start(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.listened:
	case <-time.After(time.Minute):
		t.Fatal("Listen was not retried until it listened")
	}
	if err := ob.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-w.returned:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Listen returned %v, want context.Canceled", err)
		}
	default:
		t.Fatal("Stop returned while Listen was still listening")
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	if n := logs.n["outbox: wake-up listener failed; polling until it reconnects"]; n != 1 {
		t.Errorf("failure logged %d times, want 1", n)
	}
	if n := logs.n["outbox: wake-up listener reconnected"]; n != 1 {
		t.Errorf("recovery logged %d times, want 1", n)
	}
}

type noWaker struct {
	*sqlite.Dialect
	calls  atomic.Int32
	called chan struct{}
}

func (w *noWaker) Listen(context.Context, *sql.DB, *dialect.ListenParams) error {
	if w.calls.Add(1) == 1 {
		close(w.called)
	}
	return dialect.ErrNoWakeups
}

// TestNoWakeups: a Waker that cannot listen (dialect.ErrNoWakeups) is
// asked once and the outbox polls.
func TestNoWakeups(t *testing.T) {
	db, cleanup := openSQLite()
	defer cleanup()
	ctx := context.Background()
	w := &noWaker{Dialect: sqlite.New(), called: make(chan struct{})}
	if err := migrations.Up(ctx, db, w.Dialect); err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.New(db, w, outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Start(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.called:
	case <-time.After(time.Minute):
		t.Fatal("Listen was never called")
	}
	if err := ob.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if w.calls.Load() > 1 {
		t.Errorf("Listen called %d times", w.calls.Load())
	}
}
