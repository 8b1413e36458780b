package conformance

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modkit-go/db/outbox"
)

var lifecycleTests = []test{
	{"Lifecycle/StopWaitsForHandler", testStopWaitsForHandler},
	{"Lifecycle/StopDeadlineCancelsHandler", testStopDeadlineCancelsHandler},
	{"Lifecycle/StartStopMisuse", testStartStopMisuse},
	{"Lifecycle/NothingLockedAfterStop/Decoupled", func(t *testing.T, b *Backend) { testNothingLockedAfterStop(t, b, false) }},
	{"Lifecycle/NothingLockedAfterStop/Transactional", func(t *testing.T, b *Backend) { testNothingLockedAfterStop(t, b, true) }},
	{"Lifecycle/HandleErrors", testHandleErrors},
	{"Lifecycle/InTxAndNotifyWake", testInTxAndNotifyWake},
}

// goroutineLabel is the pprof label key under which env.start runs each
// outbox; outboxLabels numbers its values.
const goroutineLabel = "conformance-outbox"

var outboxLabels atomic.Int64

// checkNoGoroutines asserts that no goroutine ob started remains after its
// Stop returned: none labelled with ob's value runs code of this module or
// holds a transaction open. The label tells ob's goroutines from those of
// tests running in parallel, which counting goroutines cannot. It polls
// (bounded) because a goroutine ends a moment after it signals its end, and
// database/sql ends its transaction watchers on its own. Driver goroutines
// that belong to pooled connections (opened by a labelled goroutine, kept
// by the pool) are not the outbox's and are ignored.
func (e *env) checkNoGoroutines(ob *outbox.Outbox) {
	e.t.Helper()
	id, ok := e.labels.Load(ob)
	if !ok {
		e.t.Fatal("checkNoGoroutines: the outbox was not started with env.start")
	}
	label := fmt.Sprintf("%q:%q", goroutineLabel, id)
	var left []string
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		left = labelledGoroutines(label)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		<-tick.C
	}
	e.t.Errorf("%d goroutine records of the outbox remain after Stop:\n%s", len(left), strings.Join(left, "\n\n"))
}

// labelledGoroutines returns the goroutine profile's records that carry
// label and run this module's code or watch an open transaction.
func labelledGoroutines(label string) []string {
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		return []string{err.Error()}
	}
	var left []string
	for _, rec := range strings.Split(buf.String(), "\n\n") {
		if strings.Contains(rec, label) &&
			(strings.Contains(rec, "github.com/modkit-go/db/") || strings.Contains(rec, "database/sql.(*Tx).awaitDone")) {
			left = append(left, rec)
		}
	}
	return left
}

// awaitStopping waits until Stop has begun on the started outbox ob: from
// then on Start reports ErrStopped instead of ErrAlreadyStarted.
func (e *env) awaitStopping(ob *outbox.Outbox) {
	e.t.Helper()
	e.pollUntil("Stop to begin", func() bool {
		err := ob.Start(e.ctx)
		if err != nil && !errors.Is(err, outbox.ErrStopped) && !errors.Is(err, outbox.ErrAlreadyStarted) {
			e.t.Fatalf("Start on a running outbox: %v", err)
		}
		return errors.Is(err, outbox.ErrStopped)
	})
}

// stopResult is what a Stop running in a goroutine returned, and whether
// the blocked handler had returned by then.
type stopResult struct {
	err             error
	handlerReturned bool
}

func stopAsync(ctx context.Context, ob *outbox.Outbox, returned *atomic.Bool) <-chan stopResult {
	ch := make(chan stopResult, 1)
	go func() {
		err := ob.Stop(ctx)
		ch <- stopResult{err, returned.Load()}
	}()
	return ch
}

// testStopWaitsForHandler: Stop with time to spare waits for the handler in
// flight, acknowledges its batch, starts nothing new and releases the lease.
func testStopWaitsForHandler(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{BatchSize: 2}))
	e.declare(ob, "q", 1)
	msgs, _ := payloads("q", 0, "m", 5)
	e.enqueue(ob, msgs...)
	e.sequenceAll(ob) // the first batch is seqs 1..2

	entered := make(chan []outbox.Delivery, 1)
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	var first, returned atomic.Bool
	var later atomic.Int64
	var ctxErr atomic.Value
	e.handle(ob, "q", outbox.Batch(func(ctx context.Context, ds []outbox.Delivery) outbox.Result {
		if !first.CompareAndSwap(false, true) {
			later.Add(int64(len(ds)))
			return outbox.Success()
		}
		entered <- ds
		select {
		case <-release:
		case <-time.After(timeout):
		}
		if err := ctx.Err(); err != nil {
			ctxErr.Store(err)
		}
		returned.Store(true)
		return outbox.Success()
	}))
	e.start(ob)
	await(t, entered, "the handler")

	ctx, cancel := context.WithTimeout(e.ctx, timeout)
	defer cancel()
	res := stopAsync(ctx, ob, &returned)
	e.awaitStopping(ob)
	select {
	case r := <-res:
		t.Fatalf("Stop returned %v while the handler was still blocked", r.err)
	default:
	}
	unblock()
	r := await(t, res, "Stop")
	if r.err != nil {
		t.Errorf("Stop: %v, want nil", r.err)
	}
	if !r.handlerReturned {
		t.Errorf("Stop returned before the handler did")
	}
	e.checkNoGoroutines(ob)
	if err := ctxErr.Load(); err != nil {
		t.Errorf("the handler's context ended (%v) although Stop's context had time left", err)
	}
	st := e.state(ob, "q", 0)
	if st.ProcessedSeq != 2 {
		t.Errorf("ProcessedSeq %d after Stop, want 2 (the in-flight batch acknowledged, nothing new started)", st.ProcessedSeq)
	}
	if st.Leased {
		t.Errorf("the partition is still leased after Stop (until %v)", st.LeaseUntil)
	}
	if n := later.Load(); n != 0 {
		t.Errorf("%d messages handled after Stop began", n)
	}
}

// testStopDeadlineCancelsHandler: when Stop's context ends with a handler in
// flight, the handler's context is cancelled, and Stop returns the context's
// error once the handler returned, with the lease released. Another process
// then delivers the message.
func testStopDeadlineCancelsHandler(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{LeaseDuration: time.Hour}))
	e.declare(ob, "q", 1)
	e.enqueue(ob, msg("q", 0, "m1"))

	entered := make(chan struct{}, 1)
	observed := make(chan error, 1)
	var first, returned atomic.Bool
	e.handle(ob, "q", outbox.Batch(func(ctx context.Context, ds []outbox.Delivery) outbox.Result {
		if !first.CompareAndSwap(false, true) {
			return outbox.Success()
		}
		entered <- struct{}{}
		select {
		case <-ctx.Done():
			observed <- ctx.Err()
		case <-time.After(timeout):
			observed <- nil
		}
		returned.Store(true)
		return outbox.Retry("cancelled")
	}))
	e.start(ob)
	await(t, entered, "the handler")

	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	res := stopAsync(ctx, ob, &returned)
	e.awaitStopping(ob)
	cancel() // Stop's time is up
	if err := await(t, observed, "the handler to return"); !errors.Is(err, context.Canceled) {
		t.Errorf("the handler's context ended with %v, want context.Canceled", err)
	}
	r := await(t, res, "Stop")
	if !errors.Is(r.err, context.Canceled) {
		t.Errorf("Stop: %v, want context.Canceled (its context's error)", r.err)
	}
	if !r.handlerReturned {
		t.Errorf("Stop returned before the handler did")
	}
	e.checkNoGoroutines(ob)
	st := e.state(ob, "q", 0)
	if st.Leased || st.ProcessedSeq != 0 {
		t.Errorf("after Stop: Leased %v ProcessedSeq %d, want false and 0", st.Leased, st.ProcessedSeq)
	}
	t.Logf("after the cancelled handler: Attempts %d, next attempt in %v", st.Attempts, st.NextAttemptAt.Sub(st.Now))

	// With an hour's lease, only a released lease lets this happen in time.
	next := e.outbox(e.pool(), fast(outbox.Config{LeaseDuration: time.Hour}))
	var tl recorder
	e.handle(next, "q", outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
		tl.add(ds...)
		return outbox.Success()
	}))
	e.start(next)
	await(t, tl.reached(1), "the other outbox's delivery")
	e.awaitProcessed(next, "q", 0, 1)
	e.stop(next)
}

// testStartStopMisuse: Stop is idempotent and may come before Start; a
// stopped outbox does not start again; Start twice is an error.
func testStartStopMisuse(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	never := e.outbox(nil, fast(outbox.Config{}))
	if err := never.Stop(e.ctx); err != nil {
		t.Errorf("Stop before Start: %v, want nil", err)
	}
	if err := never.Stop(e.ctx); err != nil {
		t.Errorf("second Stop before Start: %v, want nil", err)
	}
	if err := never.Start(e.ctx); !errors.Is(err, outbox.ErrStopped) {
		t.Errorf("Start after Stop: %v, want ErrStopped", err)
	}

	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 1)
	e.handle(ob, "q", outbox.Batch(func(context.Context, []outbox.Delivery) outbox.Result { return outbox.Success() }))
	e.start(ob)
	if err := ob.Start(e.ctx); !errors.Is(err, outbox.ErrAlreadyStarted) {
		t.Errorf("second Start: %v, want ErrAlreadyStarted", err)
	}
	e.stop(ob)
	if err := ob.Stop(e.ctx); err != nil {
		t.Errorf("second Stop: %v, want nil", err)
	}
	if err := ob.Start(e.ctx); !errors.Is(err, outbox.ErrStopped) {
		t.Errorf("Start after Stop: %v, want ErrStopped", err)
	}
}

// testNothingLockedAfterStop: an outbox is stopped while its handlers hold
// partitions. With an hour's lease, another outbox on another pool can only
// deliver the rest in time if Stop released everything it held.
func testNothingLockedAfterStop(t *testing.T, b *Backend, transactional bool) {
	e := newEnv(t, b)
	const parts, perPart = 8, 40
	const total = parts * perPart
	cfg := fast(outbox.Config{LeaseDuration: time.Hour, BatchSize: 10, MaxConcurrency: 4})
	blocked := 4
	if transactional {
		cfg.MaxConcurrency, blocked = 1, 1
	}
	a := e.outbox(nil, cfg)
	e.declare(a, "q", parts)
	var msgs []outbox.Message
	for i := range total {
		msgs = append(msgs, msg("q", i%parts, fmt.Sprintf("%d-%d", i%parts, i/parts+1)))
	}
	e.enqueue(a, msgs...)
	e.sequenceAll(a)

	var rec recorder
	entered := make(chan struct{}, blocked)
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	var calls atomic.Int32
	var byA atomic.Int64
	// The first calls block until released; the later ones succeed.
	handleA := func(ds []outbox.Delivery) outbox.Result {
		if calls.Add(1) <= int32(blocked) {
			entered <- struct{}{}
			select {
			case <-release:
			case <-time.After(timeout):
			}
		}
		byA.Add(int64(len(ds)))
		rec.add(ds...)
		return outbox.Success()
	}
	if transactional {
		e.handle(a, "q", outbox.TxBatch(func(_ context.Context, _ *sql.Tx, ds []outbox.Delivery) outbox.Result { return handleA(ds) }))
	} else {
		e.handle(a, "q", outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result { return handleA(ds) }))
	}
	e.start(a)
	for i := range blocked {
		await(t, entered, fmt.Sprintf("handler %d of A", i+1))
	}
	ctx, cancel := context.WithTimeout(e.ctx, timeout)
	defer cancel()
	var never atomic.Bool
	res := stopAsync(ctx, a, &never)
	e.awaitStopping(a)
	unblock()
	if r := await(t, res, "A's Stop"); r.err != nil {
		t.Fatalf("A's Stop: %v", r.err)
	}
	e.checkNoGoroutines(a)
	for p := range parts {
		if st := e.state(a, "q", p); st.Leased {
			t.Errorf("partition %d still leased after Stop (until %v)", p, st.LeaseUntil)
		}
	}

	bOb := e.outbox(e.pool(), fast(outbox.Config{LeaseDuration: time.Hour}))
	if transactional {
		e.handle(bOb, "q", outbox.TxBatch(func(_ context.Context, _ *sql.Tx, ds []outbox.Delivery) outbox.Result {
			rec.add(ds...)
			return outbox.Success()
		}))
	} else {
		e.handle(bOb, "q", outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
			rec.add(ds...)
			return outbox.Success()
		}))
	}
	e.start(bOb)
	await(t, rec.reached(total), "B to deliver the rest")
	for p := range parts {
		e.awaitProcessed(bOb, "q", p, perPart)
	}
	e.stop(bOb)
	rec.checkExactlyOnce(t)
	t.Logf("A delivered %d messages before stopping, B the other %d", byA.Load(), total-int(byA.Load()))
}

// testHandleErrors: Handle and Start report misuse with typed errors.
func testHandleErrors(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ok := outbox.Batch(func(context.Context, []outbox.Delivery) outbox.Result { return outbox.Success() })
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 1)

	if err := ob.Handle("q", nil); !errors.Is(err, outbox.ErrInvalidHandler) {
		t.Errorf("Handle(nil): %v, want ErrInvalidHandler", err)
	}
	// A constructor given a nil function is a nil handler too: accepted, it
	// would panic on every message and retry forever. A separate outbox, so
	// that an accepted one cannot disturb the checks below.
	nilFns := e.outbox(nil, fast(outbox.Config{}))
	for name, h := range map[string]outbox.Handler{
		"Batch(nil)":        outbox.Batch(nil),
		"PerMessage(nil)":   outbox.PerMessage(nil),
		"TxBatch(nil)":      outbox.TxBatch(nil),
		"TxPerMessage(nil)": outbox.TxPerMessage(nil),
	} {
		if err := nilFns.Handle("q-"+strings.ToLower(name[:len(name)-5]), h); !errors.Is(err, outbox.ErrInvalidHandler) {
			t.Errorf("Handle(%s): %v, want ErrInvalidHandler", name, err)
		}
	}
	if err := ob.Handle("-bad-", ok); !errors.Is(err, outbox.ErrInvalidQueueName) {
		t.Errorf("Handle with an invalid queue name: %v, want ErrInvalidQueueName", err)
	}
	e.handle(ob, "q", ok)
	if err := ob.Handle("q", ok); !errors.Is(err, outbox.ErrInvalidHandler) {
		t.Errorf("second Handle for one queue: %v, want ErrInvalidHandler", err)
	}

	// A handler for a queue nobody declared: Start fails and starts nothing.
	e.handle(ob, "undeclared", ok)
	if err := ob.Start(e.ctx); !errors.Is(err, outbox.ErrUnknownQueue) {
		t.Errorf("Start with a handler for an undeclared queue: %v, want ErrUnknownQueue", err)
	}
	// Once the queue exists, Start works.
	e.declare(ob, "undeclared", 1)
	e.start(ob)
	if err := ob.Handle("late", ok); !errors.Is(err, outbox.ErrAlreadyStarted) {
		t.Errorf("Handle after Start: %v, want ErrAlreadyStarted", err)
	}
	e.stop(ob)
	if err := ob.Handle("later", ok); err == nil {
		t.Errorf("Handle after Stop: nil, want an error")
	}
}

// testInTxAndNotifyWake: with an hour between polls, messages are still
// delivered at once when committed through InTx, or with Notify after the
// application's own commit: the in-process wake-up works.
func testInTxAndNotifyWake(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{PollInterval: time.Hour}))
	e.declare(ob, "q", 2)
	var tl recorder
	e.handle(ob, "q", outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
		tl.add(ds...)
		return outbox.Success()
	}))
	e.start(ob)

	e.enqueue(ob, msg("q", 0, "intx-1")) // InTx
	await(t, tl.reached(1), "the message committed with InTx")

	tx := e.begin(nil)
	if err := ob.Enqueue(e.ctx, tx, msg("q", 1, "notify-1")); err != nil {
		t.Fatal(err)
	}
	e.commit(tx)
	ob.Notify()
	await(t, tl.reached(2), "the message committed then notified")

	if err := ob.InTx(e.ctx, func(tx *sql.Tx) error { return ob.Enqueue(e.ctx, tx, msg("q", 0, "intx-2")) }); err != nil {
		t.Fatal(err)
	}
	await(t, tl.reached(3), "the second message committed with InTx")
	e.awaitProcessed(ob, "q", 0, 2)
	e.awaitProcessed(ob, "q", 1, 1)
	e.stop(ob)
	if got := tl.payloads(-1); len(got) != 3 || got[0] != "intx-1" || got[1] != "notify-1" || got[2] != "intx-2" {
		t.Errorf("delivered %v, want [intx-1 notify-1 intx-2]", got)
	}
}
