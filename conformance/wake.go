package conformance

import (
	"context"
	"crypto/rand"
	"database/sql"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
)

// wakeTests run on dialects that implement dialect.Waker (wake-ups across
// processes); see Run. Cases that need a Backend hook are registered only
// when it is set.
func wakeTests(b *Backend) []test {
	if _, ok := b.Dialect.(dialect.Waker); !ok {
		return nil
	}
	ts := []test{
		{"Wake/AnotherOutboxWakesWorkers", testWakeFromAnotherOutbox},
		{"Wake/NoneOnRollback", testWakeNotOnRollback},
	}
	if b.WithPrefix != nil {
		ts = append(ts, test{"Wake/PrefixesDoNotCrossWake", testWakePrefixes})
		if b.TerminateListeners != nil {
			ts = append(ts, test{"Wake/ListenerRecovers", testWakeListenerRecovers})
		}
	}
	return ts
}

// Log messages of outbox/wake.go the cases wait for.
const (
	logListenerReady  = "outbox: wake-up listener ready"
	logListenerFailed = "outbox: wake-up listener failed; polling until it reconnects"
	logListenerBack   = "outbox: wake-up listener reconnected"
)

// testWakeFromAnotherOutbox: a second Outbox on its own pool (another
// process; it never starts) enqueues, and the first's workers deliver
// although they poll only once an hour.
func testWakeFromAnotherOutbox(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	logs := newLogWatch()
	worker := e.outbox(nil, fast(outbox.Config{PollInterval: time.Hour, Logger: logs.logger()}))
	e.declare(worker, "q", 2)
	var tl recorder
	e.handle(worker, "q", outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
		tl.add(ds...)
		return outbox.Success()
	}))
	e.start(worker)
	await(t, logs.seen(logListenerReady, 1), "the wake-up listener")

	pool := e.pool()
	producer := e.outbox(pool, outbox.Config{})
	e.enqueue(producer, msg("q", 0, "a"))
	await(t, tl.reached(1), "the message committed by the other outbox")
	tx := e.begin(pool)
	if err := producer.Enqueue(e.ctx, tx, msg("q", 1, "b")); err != nil {
		t.Fatal(err)
	}
	e.commit(tx) // a plain commit: no InTx, no Notify
	await(t, tl.reached(2), "the message committed without InTx")
}

// testWakeNotOnRollback: a rolled-back enqueue sends no wake-up. Wake-ups
// arrive in commit order, so none for the rolled-back queue may come before
// the one for the queue committed after it.
func testWakeNotOnRollback(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	wakes := e.listen(b.Dialect)
	pool := e.pool()
	ob := e.outbox(pool, outbox.Config{})
	rolled, committed := "rolled-"+token(), "committed-"+token()
	e.declare(ob, rolled, 1)
	e.declare(ob, committed, 1)

	tx := e.begin(pool)
	if err := ob.Enqueue(e.ctx, tx, msg(rolled, 0, "x")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	e.enqueue(ob, msg(committed, 0, "y"))
	awaitWake(t, wakes, committed, rolled)
}

// testWakePrefixes: outboxes with different table prefixes in one database
// do not wake each other.
func testWakePrefixes(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	da, db := b.WithPrefix("wa"+token()+"_"), b.WithPrefix("wb"+token()+"_")
	wakes := e.listen(da)
	oa, ob := e.prefixed(da), e.prefixed(db)
	qa, qb := "a-"+token(), "b-"+token()
	e.declare(oa, qa, 1)
	e.declare(ob, qb, 1)
	e.enqueue(ob, msg(qb, 0, "b"))
	e.enqueue(oa, msg(qa, 0, "a"))
	awaitWake(t, wakes, qa, qb)
}

// testWakeListenerRecovers: after its connection is terminated, the
// listener logs the failure, reconnects and wakes the workers again.
func testWakeListenerRecovers(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	d := b.WithPrefix("wr" + token() + "_") // a channel no other test listens on
	logs := newLogWatch()
	worker := e.prefixed(d, outbox.Config{PollInterval: time.Hour, Logger: logs.logger()})
	e.declare(worker, "q", 1)
	var tl recorder
	e.handle(worker, "q", outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
		tl.add(ds...)
		return outbox.Success()
	}))
	e.start(worker)
	await(t, logs.seen(logListenerReady, 1), "the wake-up listener")

	n, err := b.TerminateListeners(e.ctx, e.db, d)
	if err != nil || n != 1 {
		t.Fatalf("TerminateListeners: %d terminated, err %v; want 1", n, err)
	}
	await(t, logs.seen(logListenerFailed, 1), "the listener's failure to be logged")
	await(t, logs.seen(logListenerBack, 1), "the listener to reconnect")

	producer := e.prefixedOn(e.pool(), d, outbox.Config{})
	e.enqueue(producer, msg("q", 0, "after"))
	await(t, tl.reached(1), "the message committed after the reconnect")
	if got := logs.count(logListenerFailed); got != 1 {
		t.Errorf("the failure was logged %d times, want once", got)
	}
}

// listen runs d's Listen on a pool of its own until the test ends and
// returns the queues of its wake-ups, once it is ready.
func (e *env) listen(d dialect.Dialect) <-chan string {
	e.t.Helper()
	w := d.(dialect.Waker)
	ctx, cancel := context.WithCancel(e.ctx)
	wakes := make(chan string, 1024)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- w.Listen(ctx, e.open(), &dialect.ListenParams{
			Ready: func() { close(ready) },
			Wake: func(q string) {
				select {
				case wakes <- q:
				default: // the case reads the few it needs
				}
			},
		})
	}()
	e.t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-ready:
	case err := <-done:
		e.t.Fatalf("Listen: %v", err)
	case <-time.After(timeout):
		e.t.Fatal("timed out waiting for Listen to be ready")
	}
	return wakes
}

// awaitWake reads wake-ups until one for want, failing on one for never.
func awaitWake(t *testing.T, wakes <-chan string, want, never string) {
	t.Helper()
	for {
		q := await(t, wakes, "a wake-up for "+want)
		switch q {
		case want:
			return
		case never:
			t.Fatalf("got a wake-up for %s", never)
		}
	}
}

// prefixed returns an Outbox of dialect d on e.db, with d's schema applied.
func (e *env) prefixed(d dialect.Dialect, cfg ...outbox.Config) *outbox.Outbox {
	e.t.Helper()
	if err := migrations.Up(e.ctx, e.db, d); err != nil {
		e.t.Fatalf("migrations (prefix %s): %v", d.Prefix(), err)
	}
	var c outbox.Config
	if len(cfg) > 0 {
		c = cfg[0]
	}
	return e.prefixedOn(e.db, d, fast(c))
}

// prefixedOn returns an Outbox of dialect d on db, stopped at cleanup.
func (e *env) prefixedOn(db *sql.DB, d dialect.Dialect, cfg outbox.Config) *outbox.Outbox {
	e.t.Helper()
	ob, err := outbox.New(db, d, cfg)
	if err != nil {
		e.t.Fatalf("outbox.New: %v", err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = ob.Stop(ctx)
	})
	return ob
}

// token is a short random lowercase name part, so that cases sharing a
// database (and its notification channels) tell their traffic apart.
func token() string { return strings.ToLower(rand.Text()[:10]) }

// logWatch is a slog handler that counts records by message and lets a
// case wait for them.
type logWatch struct {
	mu    sync.Mutex
	n     map[string]int
	waits []logWait
}

type logWait struct {
	msg string
	n   int
	ch  chan struct{}
}

func newLogWatch() *logWatch { return &logWatch{n: map[string]int{}} }

func (w *logWatch) logger() *slog.Logger { return slog.New(w) }

func (w *logWatch) count(msg string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n[msg]
}

// seen is closed once msg was logged n times.
func (w *logWatch) seen(msg string, n int) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := make(chan struct{})
	if w.n[msg] >= n {
		close(ch)
	} else {
		w.waits = append(w.waits, logWait{msg, n, ch})
	}
	return ch
}

func (w *logWatch) Enabled(context.Context, slog.Level) bool { return true }
func (w *logWatch) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *logWatch) WithGroup(string) slog.Handler            { return w }

func (w *logWatch) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n[r.Message]++
	kept := w.waits[:0]
	for _, wt := range w.waits {
		if wt.msg == r.Message && w.n[r.Message] >= wt.n {
			close(wt.ch)
		} else {
			kept = append(kept, wt)
		}
	}
	w.waits = kept
	return nil
}
