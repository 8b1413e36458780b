package conformance

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/outbox"
)

var faultTests = []test{
	{"Faults/CrashMidHandler", func(t *testing.T, b *Backend) { testLateResult(t, b, outbox.Success()) }},
	{"Faults/LateReject", func(t *testing.T, b *Backend) { testLateResult(t, b, outbox.Reject("late")) }},
	{"Faults/LateRetry", func(t *testing.T, b *Backend) { testLateResult(t, b, outbox.Retry("late")) }},
	{"Faults/HandlerContextAtLeaseEnd", testHandlerContextAtLeaseEnd},
	{"Faults/CompetingProcessors", testCompetingProcessors},
	{"Faults/CrashRecoveryLatency", testCrashRecoveryLatency},
	{"Faults/UnrecordedResult/Decoupled", func(t *testing.T, b *Backend) { testUnrecordedResult(t, b, false) }},
	{"Faults/UnrecordedResult/Transactional", func(t *testing.T, b *Backend) { testUnrecordedResult(t, b, true) }},
	{"Faults/HandlerGoexit/Batch", func(t *testing.T, b *Backend) { testHandlerGoexit(t, b, "Batch") }},
	{"Faults/HandlerGoexit/PerMessage", func(t *testing.T, b *Backend) { testHandlerGoexit(t, b, "PerMessage") }},
	{"Faults/HandlerGoexit/TxBatch", func(t *testing.T, b *Backend) { testHandlerGoexit(t, b, "TxBatch") }},
	{"Faults/HandlerGoexit/TxPerMessage", func(t *testing.T, b *Backend) { testHandlerGoexit(t, b, "TxPerMessage") }},
	{"Faults/HandlerTimeout", testHandlerTimeout},
}

// stall is a decoupled handler whose first call hangs like a dead worker: it
// reports its batch on entered, then waits for release, ignoring its
// context. Later calls are counted and succeed at once.
type stall struct {
	entered chan []outbox.Delivery
	release chan struct{}
	once    sync.Once
	first   atomic.Bool
	later   atomic.Int64
	result  outbox.Result
}

// newStall returns a stall whose first call returns r once released. The
// handler is released at cleanup, which runs before the outbox's own cleanup
// Stop when newStall is called after the outbox was created.
func newStall(t *testing.T, r outbox.Result) *stall {
	s := &stall{entered: make(chan []outbox.Delivery, 1), release: make(chan struct{}), result: r}
	t.Cleanup(s.unblock)
	return s
}

func (s *stall) unblock() { s.once.Do(func() { close(s.release) }) }

func (s *stall) handler() outbox.Handler {
	return outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
		if !s.first.CompareAndSwap(false, true) {
			s.later.Add(int64(len(ds)))
			return outbox.Success()
		}
		s.entered <- ds
		select {
		case <-s.release:
		case <-time.After(timeout):
		}
		return s.result
	})
}

// sameState compares what a processor writes, ignoring the read time: a
// retry time or lease end that the clock passed between the two reads
// reads as zero in the second.
func sameState(a, b outbox.PartitionStatus) bool {
	sameTime := func(x, y time.Time) bool { return x.IsZero() || y.IsZero() || x.Equal(y) }
	return a.LastSeq == b.LastSeq && a.ProcessedSeq == b.ProcessedSeq && a.Attempts == b.Attempts &&
		a.LastError == b.LastError && sameTime(a.NextAttemptAt, b.NextAttemptAt) &&
		sameTime(a.LeaseUntil, b.LeaseUntil) && a.Leased == b.Leased
}

// testLateResult: worker A takes a batch and hangs past its lease, as if its
// process died. B (another process) must deliver the batch after the lease
// expires, counting the crash as an attempt. When A's handler finally returns
// r, A's fenced write must change nothing: no cursor moved back, no attempts
// or backoff, no dead letters.
func testLateResult(t *testing.T, b *Backend, r outbox.Result) {
	e := newEnv(t, b)
	const batch, total = 5, 10
	a := e.outbox(nil, fast(outbox.Config{LeaseDuration: time.Second, MaxConcurrency: 1, BatchSize: batch}))
	e.declare(a, "q", 1)
	var msgs []outbox.Message
	for i := range total {
		msgs = append(msgs, msg("q", 0, "m"+itoa(i+1)))
	}
	e.enqueue(a, msgs...)
	e.sequenceAll(a) // A's first batch is seqs 1..5
	st := newStall(t, r)
	if err := a.Handle("q", st.handler()); err != nil {
		t.Fatal(err)
	}
	e.start(a)
	got := await(t, st.entered, "A's handler to start")
	if len(got) != batch || got[0].Seq != 1 {
		t.Fatalf("A's batch: %d messages from seq %d, want %d from seq 1", len(got), got[0].Seq, batch)
	}

	// B starts only now, so A certainly holds the lease; A is never stopped
	// while B works.
	bOb := e.outbox(e.pool(), fast(outbox.Config{BatchSize: batch}))
	var rec recorder
	var mu sync.Mutex
	firstAttempts := map[int64]int{}
	if err := bOb.Handle("q", outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
		mu.Lock()
		for _, d := range ds {
			if _, ok := firstAttempts[d.Seq]; !ok {
				firstAttempts[d.Seq] = d.Attempts
			}
		}
		mu.Unlock()
		rec.add(ds...)
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	e.start(bOb)
	await(t, rec.reached(total), "B to deliver every message")
	e.awaitProcessed(bOb, "q", 0, total)
	e.stop(bOb) // freeze B's writes: from here only A can change the row
	rec.checkExactlyOnce(t)
	mu.Lock()
	for seq := int64(1); seq <= batch; seq++ {
		if firstAttempts[seq] < 1 {
			t.Errorf("B delivered seq %d with Attempts %d; A's crash must count as an attempt", seq, firstAttempts[seq])
		}
	}
	mu.Unlock()
	before := e.state(a, "q", 0)
	if before.ProcessedSeq != total || before.Attempts != 0 {
		t.Fatalf("after B: ProcessedSeq %d Attempts %d, want %d and 0", before.ProcessedSeq, before.Attempts, total)
	}

	// A wakes up with its stale batch and reports r; Stop waits for its
	// fenced write to finish.
	st.unblock()
	e.stop(a)
	after := e.state(a, "q", 0)
	if !sameState(before, after) {
		t.Errorf("A's late %v changed the partition:\n before %+v\n after  %+v", r, before, after)
	}
	deadPage, err := a.DeadLetterPage(e.ctx, outbox.DeadLetterFilter{})
	dead := deadPage.DeadLetters
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 0 {
		t.Errorf("A's late %v wrote %d dead letters (first: seq %d, %q); a lost lease must write nothing", r, len(dead), dead[0].Seq, dead[0].Reason)
	}
	if n := st.later.Load(); n != 0 {
		t.Errorf("A delivered %d more messages after B had acknowledged everything", n)
	}
}

// testHandlerContextAtLeaseEnd: a decoupled handler's context ends at 80% of
// the lease, while the lease still holds by the database's clock.
func testHandlerContextAtLeaseEnd(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	const lease = 3 * time.Second
	ob := e.outbox(nil, fast(outbox.Config{LeaseDuration: lease, MaxConcurrency: 1}))
	e.declare(ob, "q", 1)
	e.enqueue(ob, msg("q", 0, "slow"))

	type observation struct {
		entered, done, deadline time.Time
		hasDeadline             bool
		err                     error
		leased                  bool
		stateErr                error
	}
	seen := make(chan observation, 1)
	var first atomic.Bool
	if err := ob.Handle("q", outbox.Batch(func(ctx context.Context, ds []outbox.Delivery) outbox.Result {
		if !first.CompareAndSwap(false, true) {
			return outbox.Success()
		}
		o := observation{entered: time.Now()}
		o.deadline, o.hasDeadline = ctx.Deadline()
		select {
		case <-ctx.Done():
			o.done, o.err = time.Now(), ctx.Err()
			st, err := ob.PartitionStatus(context.Background(), "q", 0)
			o.leased, o.stateErr = st.Leased, err
		case <-time.After(timeout):
		}
		seen <- o
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	e.start(ob)
	o := await(t, seen, "the handler")
	if o.err == nil {
		t.Fatalf("the handler's context was not cancelled within %v (lease %v)", timeout, lease)
	}
	if !errors.Is(o.err, context.DeadlineExceeded) {
		t.Errorf("ctx.Err() = %v, want context.DeadlineExceeded (the lease deadline, not a stop)", o.err)
	}
	soft := lease * 8 / 10
	// The lease was granted after Start and before the handler was entered,
	// so its 80% mark lies in [started+soft, entered+soft].
	switch {
	case !o.hasDeadline:
		t.Errorf("the handler's context has no deadline")
	case o.deadline.Before(started.Add(soft)):
		t.Errorf("deadline %v after Start, want >= %v (80%% of the lease)", o.deadline.Sub(started), soft)
	case o.deadline.After(o.entered.Add(soft)):
		t.Errorf("deadline %v after the handler entered, want <= %v (80%% of the lease)", o.deadline.Sub(o.entered), soft)
	}
	if o.done.Before(started.Add(soft)) {
		t.Errorf("context ended %v after Start, before 80%% of the lease (%v)", o.done.Sub(started), soft)
	}
	t.Logf("context ended %v after the handler entered (lease %v)", o.done.Sub(o.entered), lease)
	if o.stateErr != nil {
		t.Fatalf("PartitionStatus: %v", o.stateErr)
	}
	if !o.leased {
		t.Errorf("the lease had already expired (by the database clock) when the handler's context ended; it must end before, at 80%%")
	}
}

// testCompetingProcessors: several outboxes, each with its own pool and
// several workers, deliver a stream enqueued while they run. No partition is
// ever handled by two calls at once, every partition is delivered in order,
// and with a long lease every message exactly once.
func testCompetingProcessors(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	const parts, total, workers = 8, 3000, 3
	var rec recorder
	var mu sync.Mutex
	inFlight := map[int]int{} // partition -> worker (outbox index + 1)
	var per [workers]atomic.Int64
	obs := make([]*outbox.Outbox, workers)
	for i := range obs {
		obs[i] = e.outbox(e.pool(), fast(outbox.Config{MaxConcurrency: 2 + i, BatchSize: 50}))
		if i == 0 {
			e.declare(obs[0], "q", parts)
		}
		if err := obs[i].Handle("q", outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
			p := ds[0].Partition
			mu.Lock()
			if w, busy := inFlight[p]; busy {
				t.Errorf("partition %d handled by outbox %d and outbox %d at once", p, w-1, i)
			}
			inFlight[p] = i + 1
			mu.Unlock()
			for _, d := range ds {
				// Payloads were enqueued per partition in order, from one
				// goroutine: seq k carries "p-k".
				if want := fmt.Sprintf("%d-%d", p, d.Seq); d.Partition != p || string(d.Payload) != want {
					t.Errorf("partition %d seq %d: got partition %d payload %q, want %q", p, d.Seq, d.Partition, d.Payload, want)
				}
			}
			rec.add(ds...)
			per[i].Add(int64(len(ds)))
			mu.Lock()
			delete(inFlight, p)
			mu.Unlock()
			return outbox.Success()
		})); err != nil {
			t.Fatal(err)
		}
	}
	for _, ob := range obs {
		e.start(ob)
	}
	var next [parts]int
	for i := 0; i < total; {
		var batch []outbox.Message
		for ; i < total && len(batch) < 100; i++ {
			p := i % parts
			next[p]++
			batch = append(batch, msg("q", p, fmt.Sprintf("%d-%d", p, next[p])))
		}
		e.enqueue(obs[(i/100)%workers], batch...)
	}
	await(t, rec.reached(total), "every message delivered")
	for p := range parts {
		e.awaitProcessed(obs[0], "q", p, int64(next[p]))
	}
	for _, ob := range obs {
		e.stop(ob)
	}
	rec.checkExactlyOnce(t)
	if n := rec.count(); n != total {
		t.Errorf("%d deliveries, want %d", n, total)
	}
	spread := 0
	for i := range per {
		if per[i].Load() > 0 {
			spread++
		}
	}
	// Who wins the claims is up to the scheduler: log, don't assert.
	t.Logf("deliveries per outbox: %d, %d, %d (%d of %d outboxes delivered)", per[0].Load(), per[1].Load(), per[2].Load(), spread, workers)
}

// testCrashRecoveryLatency: after a worker dies holding a lease, another
// process picks the partition up soon after the lease ends (a poll interval,
// not minutes), and not before.
func testCrashRecoveryLatency(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	const lease, poll = time.Second, 100 * time.Millisecond
	a := e.outbox(nil, fast(outbox.Config{LeaseDuration: lease, PollInterval: poll, MaxConcurrency: 1}))
	e.declare(a, "q", 1)
	e.enqueue(a, msg("q", 0, "x"))
	st := newStall(t, outbox.Success())
	if err := a.Handle("q", st.handler()); err != nil {
		t.Fatal(err)
	}
	startedA := time.Now()
	e.start(a)
	await(t, st.entered, "A's handler to start")
	entered := time.Now()

	type takeover struct {
		at       time.Time
		attempts int
	}
	got := make(chan takeover, 1)
	var first atomic.Bool
	bOb := e.outbox(e.pool(), fast(outbox.Config{PollInterval: poll}))
	if err := bOb.Handle("q", outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
		if first.CompareAndSwap(false, true) {
			got <- takeover{time.Now(), ds[0].Attempts}
		}
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	e.start(bOb)
	tk := await(t, got, "B to take the partition over")
	elapsed := tk.at.Sub(entered)
	t.Logf("B took over %v after A's handler entered (lease %v, poll %v)", elapsed, lease, poll)
	if limit := lease + 5*time.Second; elapsed >= limit {
		t.Errorf("recovery took %v, want < %v", elapsed, limit)
	}
	// A's claim came after startedA, and B's before tk.at: B must not have
	// claimed before the lease ran out (small allowance for clock rates).
	if tk.at.Sub(startedA) < lease-50*time.Millisecond {
		t.Errorf("B took over %v after A started, before A's %v lease could expire", tk.at.Sub(startedA), lease)
	}
	if tk.attempts < 1 {
		t.Errorf("B's delivery has Attempts %d; the crash must count", tk.attempts)
	}
	e.awaitProcessed(bOb, "q", 0, 1)
}

// poisonMark in a reason makes faultyDialect's writes of it fail, like a
// character the connection's character set cannot carry. It is not ASCII,
// so the library's own escaped reasons never contain it.
const poisonMark = "☠"

var errInjected = errors.New("conformance: injected write failure")

// faultyDialect is the backend's dialect with failing writes: a processor
// update or dead-letter insert whose reason carries poisonMark fails, and
// while failAll is set every processor update fails.
type faultyDialect struct {
	dialect.Dialect
	failAll atomic.Bool
}

func (d *faultyDialect) UpdateCursors(ctx context.Context, q dialect.DBTX, p *dialect.UpdateCursorsParams) (*dialect.UpdateCursorsResult, error) {
	if d.failAll.Load() {
		return nil, errInjected
	}
	for _, u := range p.Updates {
		if strings.Contains(u.LastError, poisonMark) {
			return nil, errInjected
		}
	}
	return d.Dialect.UpdateCursors(ctx, q, p)
}

func (d *faultyDialect) InsertDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.InsertDeadLettersParams) (*dialect.InsertDeadLettersResult, error) {
	if strings.Contains(p.Reason, poisonMark) {
		return nil, errInjected
	}
	return d.Dialect.InsertDeadLetters(ctx, q, p)
}

// testUnrecordedResult: when the write that records a handler's result
// fails, whatever the reason, the delivery counts as a failed attempt with
// backoff, so MaxAttempts dead-letters the message and the handler is
// called a bounded number of times: for a Retry whose ack fails (partition
// 0) and a Reject whose dead-letter insert fails (partition 1). When even
// that fallback write fails, the lease is not handed back early: its expiry
// counts the attempt (a second outbox, with a short lease).
func testUnrecordedResult(t *testing.T, b *Backend, transactional bool) {
	e := newEnv(t, b)
	e.createEffects()
	const maxAttempts = 3
	fd := &faultyDialect{Dialect: b.Dialect}
	newOutbox := func(cfg outbox.Config) *outbox.Outbox {
		ob, err := outbox.New(e.db, fd, fast(cfg))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ob.Stop(context.Background()) })
		return ob
	}
	var calls [2]atomic.Int32
	var rCount atomic.Int32
	rCalls := make(chan int, 100) // queue r: the Attempts of each call
	handle := func(ds []outbox.Delivery) outbox.Result {
		d := ds[0]
		switch {
		case d.Queue == "r":
			// The first call's ack and its fallback fail.
			fd.failAll.Store(rCount.Add(1) == 1)
			rCalls <- d.Attempts
		case d.Seq == 1 && d.Partition == 0:
			calls[0].Add(1)
			return outbox.Retry("cannot store " + poisonMark)
		case d.Seq == 1:
			calls[1].Add(1)
			return outbox.Reject("cannot store " + poisonMark)
		}
		return outbox.Success()
	}
	handler := func() outbox.Handler {
		if transactional {
			return outbox.TxBatch(func(ctx context.Context, tx *sql.Tx, ds []outbox.Delivery) outbox.Result {
				if err := e.writeEffect(ctx, tx, ds[0]); err != nil {
					return outbox.Retry(err.Error())
				}
				return handle(ds)
			})
		}
		return outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result { return handle(ds) })
	}

	ob := newOutbox(outbox.Config{MaxAttempts: maxAttempts, BatchSize: 1})
	e.declare(ob, "q", 2)
	e.declare(ob, "r", 1)
	e.enqueue(ob, msg("q", 0, "retry"), msg("q", 0, "q0-2"), msg("q", 1, "reject"), msg("q", 1, "q1-2"))
	e.handle(ob, "q", handler())
	e.start(ob)
	e.awaitProcessed(ob, "q", 0, 2)
	e.awaitProcessed(ob, "q", 1, 2)
	e.stop(ob)
	for p := range 2 {
		if n := calls[p].Load(); n != maxAttempts {
			t.Errorf("partition %d: the poisoned message was handled %d times, want %d (MaxAttempts)", p, n, maxAttempts)
		}
	}
	dead := e.sortedDeadLetters(ob)
	if len(dead) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dead))
	}
	for _, d := range dead {
		if d.Seq != 1 || d.Attempts != maxAttempts || strings.Contains(d.Reason, poisonMark) {
			t.Errorf("dead letter of partition %d: seq %d attempts %d reason %q, want seq 1, %d attempts and a storable reason", d.Partition, d.Seq, d.Attempts, d.Reason, maxAttempts)
		}
	}

	short := newOutbox(outbox.Config{LeaseDuration: 2 * time.Second})
	e.handle(short, "r", handler())
	e.enqueue(short, msg("r", 0, "r1"))
	e.start(short)
	first := await(t, rCalls, "the first delivery on r")
	second := await(t, rCalls, "the delivery after the lease expired")
	if first != 0 || second < 1 {
		t.Errorf("queue r delivered with Attempts %d then %d, want 0 then at least 1 (the expired lease counts)", first, second)
	}
	e.awaitProcessed(short, "r", 0, 1)
	e.stop(short)
	if transactional {
		e.checkEffects("q0-2", "q1-2", "r1")
	}
}

// testHandlerGoexit: a handler that calls runtime.Goexit ends its call, not
// its worker. With one worker, the message is retried until MaxAttempts
// dead-letters it (its transactional writes undone), later messages are
// still delivered, and no goroutine is left after Stop.
func testHandlerGoexit(t *testing.T, b *Backend, kind string) {
	e := newEnv(t, b)
	e.createEffects()
	const maxAttempts = 2
	ob := e.outbox(nil, fast(outbox.Config{MaxConcurrency: 1, MaxAttempts: maxAttempts, BatchSize: 1}))
	e.declare(ob, "q", 1)
	e.enqueue(ob, msg("q", 0, "exit"), msg("q", 0, "m2"), msg("q", 0, "m3"))
	var exits atomic.Int32
	var tl recorder
	handle := func(ctx context.Context, tx *sql.Tx, d outbox.Delivery) outbox.Result {
		if tx != nil {
			if err := e.writeEffect(ctx, tx, d); err != nil {
				return outbox.Retry(err.Error())
			}
		}
		if string(d.Payload) == "exit" {
			exits.Add(1)
			runtime.Goexit()
		}
		tl.add(d)
		return outbox.Success()
	}
	switch kind {
	case "Batch":
		e.handle(ob, "q", outbox.Batch(func(ctx context.Context, ds []outbox.Delivery) outbox.Result { return handle(ctx, nil, ds[0]) }))
	case "PerMessage":
		e.handle(ob, "q", outbox.PerMessage(func(ctx context.Context, d outbox.Delivery) outbox.Result { return handle(ctx, nil, d) }))
	case "TxBatch":
		e.handle(ob, "q", outbox.TxBatch(func(ctx context.Context, tx *sql.Tx, ds []outbox.Delivery) outbox.Result {
			return handle(ctx, tx, ds[0])
		}))
	case "TxPerMessage":
		e.handle(ob, "q", outbox.TxPerMessage(handle))
	}
	e.start(ob)
	await(t, tl.reached(2), "the messages after the one whose handler calls Goexit")
	e.awaitProcessed(ob, "q", 0, 3)
	e.stop(ob)
	if n := exits.Load(); n != maxAttempts {
		t.Errorf("the Goexit message was handled %d times, want %d (MaxAttempts)", n, maxAttempts)
	}
	if got := tl.payloads(0); !slices.Equal(got, []string{"m2", "m3"}) {
		t.Errorf("delivered %v, want [m2 m3]", got)
	}
	dead := e.sortedDeadLetters(ob)
	if len(dead) != 1 || dead[0].Seq != 1 || !strings.Contains(dead[0].Reason, "Goexit") {
		t.Fatalf("dead letters %+v, want seq 1 with a reason naming Goexit", dead)
	}
	if strings.HasPrefix(kind, "Tx") {
		e.checkEffects("m2", "m3")
	}
}

// testHandlerTimeout: with HandlerTimeout, a decoupled handler's context
// ends after it (well before 80% of the lease), and the Retry it returns
// then counts as an attempt like any other.
func testHandlerTimeout(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	const limit = 300 * time.Millisecond
	ob := e.outbox(nil, fast(outbox.Config{HandlerTimeout: limit, LeaseDuration: time.Minute}))
	e.declare(ob, "q", 1)
	e.enqueue(ob, msg("q", 0, "slow"))
	type observation struct {
		wait     time.Duration // from entering the handler to its deadline
		err      error
		attempts int
	}
	seen := make(chan observation, 2)
	e.handle(ob, "q", outbox.Batch(func(ctx context.Context, ds []outbox.Delivery) outbox.Result {
		entered := time.Now()
		deadline, ok := ctx.Deadline()
		if !ok {
			seen <- observation{attempts: ds[0].Attempts}
			return outbox.Success()
		}
		if ds[0].Attempts > 0 {
			seen <- observation{deadline.Sub(entered), nil, ds[0].Attempts}
			return outbox.Success()
		}
		select {
		case <-ctx.Done():
		case <-time.After(timeout):
		}
		seen <- observation{deadline.Sub(entered), ctx.Err(), 0}
		return outbox.Retry("slow")
	}))
	e.start(ob)
	first := await(t, seen, "the first call")
	if first.wait <= 0 || first.wait > limit {
		t.Errorf("the handler's deadline was %v after it entered, want within (0, %v]", first.wait, limit)
	}
	if !errors.Is(first.err, context.DeadlineExceeded) {
		t.Errorf("the first call's context ended with %v, want DeadlineExceeded", first.err)
	}
	if second := await(t, seen, "the retry"); second.attempts != 1 {
		t.Errorf("the retry has Attempts %d, want 1", second.attempts)
	}
	e.awaitProcessed(ob, "q", 0, 1)
	e.stop(ob)
}
