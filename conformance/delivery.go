package conformance

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/modkit-go/db/outbox"
)

var deliveryTests = []test{
	{"Delivery/OrderAndCompleteness/Batch", func(t *testing.T, b *Backend) { testOrderAndCompleteness(t, b, false) }},
	{"Delivery/OrderAndCompleteness/PerMessage", func(t *testing.T, b *Backend) { testOrderAndCompleteness(t, b, true) }},
	{"Delivery/OutOfOrderCommits", testDeliveryOutOfOrderCommits},
	{"Delivery/RetryThenSuccess", testRetryThenSuccess},
	{"Delivery/BackoffGrowsAndSurvivesRestart", testBackoffSurvivesRestart},
	{"Delivery/RejectPerMessage", testRejectPerMessage},
	{"Delivery/RejectBatch", testRejectBatch},
	{"Delivery/PartialRetry", func(t *testing.T, b *Backend) { testPartialBatch(t, b, false) }},
	{"Delivery/PartialReject", func(t *testing.T, b *Backend) { testPartialBatch(t, b, true) }},
	{"Delivery/MaxAttempts", testMaxAttempts},
	{"Delivery/Vacuum", testVacuum},
	{"Delivery/FieldsIntact", testFieldsIntact},
	{"Delivery/PanickingHandler/Batch", func(t *testing.T, b *Backend) { testPanickingHandler(t, b, false) }},
	{"Delivery/PanickingHandler/PerMessage", func(t *testing.T, b *Backend) { testPanickingHandler(t, b, true) }},
	{"Delivery/UnstorableReason/Retry", func(t *testing.T, b *Backend) { testUnstorableReason(t, b, "Retry", false) }},
	{"Delivery/UnstorableReason/Reject", func(t *testing.T, b *Backend) { testUnstorableReason(t, b, "Reject", false) }},
	{"Delivery/UnstorableReason/Panic", func(t *testing.T, b *Backend) { testUnstorableReason(t, b, "Panic", false) }},
	{"Delivery/WrappedHandler", testWrappedHandler},
}

func (e *env) handle(ob *outbox.Outbox, queue string, h outbox.Handler) {
	e.t.Helper()
	if err := ob.Handle(queue, h); err != nil {
		e.t.Fatalf("Handle(%q): %v", queue, err)
	}
}

// testOrderAndCompleteness: producers enqueue 10,000 messages over 8
// partitions while the outbox runs, in transactions of varying sizes and
// through every enqueue path. Each message is delivered exactly once, each
// partition as seqs 1..n, and each producer's messages of a partition in
// call order.
func testOrderAndCompleteness(t *testing.T, b *Backend, perMessage bool) {
	e := newEnv(t, b)
	const producers, perProducer, parts = 8, 1250, 8
	const total = producers * perProducer
	// A lease long enough that none expires however slowly a loaded
	// machine runs this (the default 5s can lapse on SQLite under -race,
	// where 8 producers and the workers share one connection): a takeover
	// redelivers legitimately, and this case checks exactly once. Takeovers
	// are the Faults cases' subject.
	ob := e.outbox(nil, fast(outbox.Config{LeaseDuration: 5 * time.Minute}))
	e.declare(ob, "q", parts)

	// Each producer's messages, partitions drawn from a seeded source.
	plan := make([][]outbox.Message, producers)
	var perPart [parts]int64
	for p := range producers {
		rng := rand.New(rand.NewPCG(uint64(p), 7))
		for i := range perProducer {
			part := rng.IntN(parts)
			perPart[part]++
			plan[p] = append(plan[p], msg("q", part, fmt.Sprintf("p%d-%d", p, i)))
		}
	}

	var rec recorder
	var tl recorder
	if perMessage {
		e.handle(ob, "q", outbox.PerMessage(func(_ context.Context, d outbox.Delivery) outbox.Result {
			tl.add(d)
			rec.add(d)
			return outbox.Success()
		}))
	} else {
		e.handle(ob, "q", outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
			tl.add(ds...)
			rec.add(ds...)
			return outbox.Success()
		}))
	}
	e.start(ob)

	began := time.Now()
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(p), 11))
			msgs := plan[p]
			for i := 0; i < len(msgs); {
				chunk := msgs[i:min(i+1+rng.IntN(60), len(msgs))]
				i += len(chunk)
				var err error
				switch {
				case p%2 == 0: // one multi-row insert per transaction
					err = ob.InTx(e.ctx, func(tx *sql.Tx) error { return ob.EnqueueBatch(e.ctx, tx, chunk) })
				case p == 1: // one Enqueue per message, InTx wakes the workers
					err = ob.InTx(e.ctx, func(tx *sql.Tx) error {
						for _, m := range chunk {
							if err := ob.Enqueue(e.ctx, tx, m); err != nil {
								return err
							}
						}
						return nil
					})
				default: // the application's own transaction, then Notify
					err = func() error {
						tx, err := e.db.BeginTx(e.ctx, nil)
						if err != nil {
							return err
						}
						defer func() { _ = tx.Rollback() }()
						if err := ob.EnqueueBatch(e.ctx, tx, chunk); err != nil {
							return err
						}
						if err := tx.Commit(); err != nil {
							return err
						}
						ob.Notify()
						return nil
					}()
				}
				if err != nil {
					t.Errorf("producer %d: %v", p, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	enqueued := time.Since(began)
	await(t, rec.reached(total), fmt.Sprintf("%d deliveries", total))
	for part := range parts {
		e.awaitProcessed(ob, "q", part, perPart[part])
	}
	e.stop(ob)
	t.Logf("%d messages enqueued in %v, all delivered after %v", total, enqueued, time.Since(began))

	rec.checkExactlyOnce(t)
	if n := rec.count(); n != total {
		t.Errorf("%d deliveries, want %d", n, total)
	}
	for part := range parts {
		got := tl.payloads(part)
		if int64(len(got)) != perPart[part] {
			t.Errorf("partition %d: %d deliveries, want %d", part, len(got), perPart[part])
		}
		last := map[int]int{}
		for _, pl := range got {
			var p, i int
			if _, err := fmt.Sscanf(pl, "p%d-%d", &p, &i); err != nil {
				t.Fatalf("payload %q: %v", pl, err)
			}
			if prev, ok := last[p]; ok && i <= prev {
				t.Fatalf("partition %d: producer %d's message %d delivered after its message %d", part, p, i, prev)
			}
			last[p] = i
		}
		st := e.state(ob, "q", part)
		if st.LastSeq != perPart[part] || st.ProcessedSeq != perPart[part] {
			t.Errorf("partition %d: LastSeq %d ProcessedSeq %d, want both %d", part, st.LastSeq, st.ProcessedSeq, perPart[part])
		}
	}
}

// testDeliveryOutOfOrderCommits: with the outbox running, A enqueues first
// and commits last; B and C commit in between, each delivered before the
// next commit. Nothing is lost or reordered: each partition is delivered in
// commit order with seqs 1..n.
func testDeliveryOutOfOrderCommits(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 2)
	var tl recorder
	e.handle(ob, "q", outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
		tl.add(ds...)
		return outbox.Success()
	}))
	e.start(ob)
	three := func(name string) []outbox.Message {
		return []outbox.Message{msg("q", 0, name+"1"), msg("q", 1, name+"2"), msg("q", 0, name+"3")}
	}
	// after waits until the messages of the committed transactions (in
	// order) are delivered, and checks nothing else was.
	var committed []string
	after := func(name string) {
		t.Helper()
		committed = append(committed, name)
		n := 3 * len(committed)
		await(t, tl.reached(n), "the delivery of "+name)
		var want []string
		for _, c := range committed {
			want = append(want, c+"1", c+"2", c+"3")
		}
		got := tl.payloads(-1)
		if !sameSet(got, want) {
			t.Fatalf("after %s's commit: delivered %v, want %v", name, got, want)
		}
		e.awaitProcessed(ob, "q", 0, int64(2*len(committed)))
		e.awaitProcessed(ob, "q", 1, int64(len(committed)))
	}

	if b.singleWriter() {
		// One writer: an open transaction holds the database, so commits
		// cannot interleave. Check the same contract sequentially.
		for _, name := range []string{"b", "c", "a"} {
			e.enqueue(ob, three(name)...)
			after(name)
		}
	} else {
		producers := e.pool()
		enq := func(name string) *sql.Tx {
			t.Helper()
			tx := e.begin(producers)
			for _, m := range three(name) {
				if err := ob.Enqueue(e.ctx, tx, m); err != nil {
					t.Fatalf("enqueue %s: %v", name, err)
				}
			}
			return tx
		}
		txA := enq("a")
		txB := enq("b")
		txC := enq("c")
		e.commit(txB)
		ob.Notify()
		after("b")
		e.commit(txC)
		ob.Notify()
		after("c")
		e.commit(txA)
		ob.Notify()
		after("a")
	}
	e.stop(ob)
	if got, want := tl.payloads(0), []string{"b1", "b3", "c1", "c3", "a1", "a3"}; !slices.Equal(got, want) {
		t.Errorf("partition 0 delivered %v, want %v", got, want)
	}
	if got, want := tl.payloads(1), []string{"b2", "c2", "a2"}; !slices.Equal(got, want) {
		t.Errorf("partition 1 delivered %v, want %v", got, want)
	}
	if got := tl.seqs(0); !slices.Equal(got, seqRange(1, 6)) {
		t.Errorf("partition 0 seqs %v, want 1..6", got)
	}
	if got := tl.seqs(1); !slices.Equal(got, seqRange(1, 3)) {
		t.Errorf("partition 1 seqs %v, want 1..3", got)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// testRetryThenSuccess: the head's first delivery asks for a retry; the
// second delivery carries Attempts 1 while the partition shows the failure,
// then succeeds and resets the count.
func testRetryThenSuccess(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 1)
	e.enqueue(ob, msg("q", 0, "m1"), msg("q", 0, "m2"))

	type call struct {
		d   outbox.Delivery
		st  outbox.PartitionStatus
		err error
	}
	calls := make(chan call, 2)
	var m1 atomic.Int32
	var tl recorder
	e.handle(ob, "q", outbox.PerMessage(func(ctx context.Context, d outbox.Delivery) outbox.Result {
		tl.add(d)
		if string(d.Payload) != "m1" {
			return outbox.Success()
		}
		n := m1.Add(1)
		if n <= 2 {
			st, err := ob.PartitionStatus(ctx, "q", 0)
			calls <- call{d, st, err}
		}
		if n == 1 {
			return outbox.Retry("x")
		}
		return outbox.Success()
	}))
	e.start(ob)
	first := await(t, calls, "the first delivery of m1")
	second := await(t, calls, "the second delivery of m1")
	st := e.awaitProcessed(ob, "q", 0, 2)
	e.stop(ob)

	if first.err != nil || second.err != nil {
		t.Fatalf("PartitionStatus in the handler: %v, %v", first.err, second.err)
	}
	if first.d.Attempts != 0 {
		t.Errorf("first delivery has Attempts %d, want 0", first.d.Attempts)
	}
	if second.d.Attempts != 1 {
		t.Errorf("second delivery has Attempts %d, want 1", second.d.Attempts)
	}
	if s := second.st; s.Attempts != 1 || s.LastError != "x" || s.ProcessedSeq != 0 {
		t.Errorf("while retrying: Attempts %d LastError %q ProcessedSeq %d, want 1, %q, 0", s.Attempts, s.LastError, s.ProcessedSeq, "x")
	}
	if s := second.st; s.NextAttemptAt.After(s.Now) {
		t.Errorf("redelivered at %v, before NextAttemptAt %v", s.Now, s.NextAttemptAt)
	}
	if !second.st.Leased {
		t.Errorf("no lease held while the handler runs: %+v", second.st)
	}
	if st.Attempts != 0 || st.ProcessedSeq != 2 {
		t.Errorf("after success: Attempts %d ProcessedSeq %d, want 0 and 2", st.Attempts, st.ProcessedSeq)
	}
	if got, want := tl.payloads(0), []string{"m1", "m1", "m2"}; !slices.Equal(got, want) {
		t.Errorf("handler calls %v, want %v", got, want)
	}
}

// testBackoffSurvivesRestart: every try fails. The stored delay of the n-th
// failure lies in [d/2, d] with d = base·2^(n-1) (equal jitter), no try
// comes before the stored next-attempt time, and a new outbox on the same
// database honours the stored time and keeps counting attempts.
func testBackoffSurvivesRestart(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	const base, ceiling = 200 * time.Millisecond, 10 * time.Second
	cfg := fast(outbox.Config{RetryBase: base, RetryMax: ceiling, MaxConcurrency: 1})
	bound := func(n int) time.Duration { return min(base<<(n-1), ceiling) }

	type call struct {
		attempts int
		now      time.Time // database clock, before the failure is written
		err      error
	}
	// failing reports each try on calls, then waits for the test's go-ahead
	// (or for free to be closed) before it fails: a try's failure is only
	// written once the test has checked the previous one.
	proceed := make(chan struct{})
	failing := func(ob *outbox.Outbox, calls chan<- call, free <-chan struct{}) outbox.Handler {
		return outbox.Batch(func(ctx context.Context, ds []outbox.Delivery) outbox.Result {
			st, err := ob.PartitionStatus(ctx, "q", 0)
			calls <- call{ds[0].Attempts, st.Now, err}
			select {
			case <-proceed:
			case <-free:
			case <-ctx.Done():
			}
			return outbox.Retry("down")
		})
	}
	// failed waits for the n-th failure to be stored and checks its delay.
	failed := func(ob *outbox.Outbox, c call, n int) outbox.PartitionStatus {
		t.Helper()
		if c.err != nil {
			t.Fatalf("PartitionStatus in the handler: %v", c.err)
		}
		var st outbox.PartitionStatus
		e.pollUntil(fmt.Sprintf("failure %d to be stored", n), func() bool {
			st = e.state(ob, "q", 0)
			return st.Attempts >= n
		})
		if st.Attempts != n {
			t.Fatalf("Attempts %d, want %d", st.Attempts, n)
		}
		// The delay was counted from a time between the handler's read
		// (c.now) and this read (st.Now).
		upper, lower := st.NextAttemptAt.Sub(c.now), st.NextAttemptAt.Sub(st.Now)
		t.Logf("failure %d: next attempt %v after the call, %v after the write was seen (bounds %v..%v)", n, upper, lower, bound(n)/2, bound(n))
		if upper < bound(n)/2 {
			t.Errorf("failure %d: next attempt %v after the call, want >= %v", n, upper, bound(n)/2)
		}
		if lower > bound(n) {
			t.Errorf("failure %d: next attempt %v after the write, want <= %v", n, lower, bound(n))
		}
		return st
	}

	a := e.outbox(nil, cfg)
	e.declare(a, "q", 1)
	e.enqueue(a, msg("q", 0, "m"))
	callsA := make(chan call, 16)
	freeA := make(chan struct{})
	e.handle(a, "q", failing(a, callsA, freeA))
	e.start(a)
	var prev outbox.PartitionStatus
	for n := 1; n <= 3; n++ {
		c := await(t, callsA, fmt.Sprintf("try %d", n))
		if c.attempts != n-1 {
			t.Errorf("try %d: Attempts %d, want %d", n, c.attempts, n-1)
		}
		if n > 1 && c.now.Before(prev.NextAttemptAt) {
			t.Errorf("try %d at %v, before the stored next attempt %v", n, c.now, prev.NextAttemptAt)
		}
		proceed <- struct{}{}
		prev = failed(a, c, n)
	}
	close(freeA)
	e.stop(a)

	// A may have tried once more before it stopped; the stored state is
	// what the next process inherits.
	stored := e.state(a, "q", 0)
	if stored.Attempts < 3 {
		t.Fatalf("after stop: Attempts %d, want >= 3", stored.Attempts)
	}
	if !stored.NextAttemptAt.After(stored.Now) {
		t.Logf("the backoff ended before the restart (next attempt %v, now %v): the restart check is weaker", stored.NextAttemptAt, stored.Now)
	}
	bOb := e.outbox(e.pool(), cfg)
	callsB := make(chan call, 16)
	freeB := make(chan struct{})
	e.handle(bOb, "q", failing(bOb, callsB, freeB))
	e.start(bOb)
	c := await(t, callsB, "the first try after the restart")
	if c.err == nil && c.now.Before(stored.NextAttemptAt) {
		t.Errorf("the restarted outbox tried at %v, before the stored next attempt %v (%v early)", c.now, stored.NextAttemptAt, stored.NextAttemptAt.Sub(c.now))
	}
	if c.attempts != stored.Attempts {
		t.Errorf("after the restart: Attempts %d, want %d (the count must survive)", c.attempts, stored.Attempts)
	}
	proceed <- struct{}{}
	failed(bOb, c, stored.Attempts+1)
	close(freeB)
	e.stop(bOb)
}

// testRejectPerMessage: a per-message handler rejects the middle message.
// It alone is dead-lettered, with a copy of the message; the others are
// delivered in order and the cursor moves past all.
func testRejectPerMessage(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 2)
	msgs, keys := payloads("q", 1, "m", 5)
	msgs[2].Payload = []byte{0, 'm', '3', 0xff}
	msgs[2].PayloadType = "application/x-bad"
	msgs[2].Headers = map[string]string{"trace": "t-3", "k": "v"}
	e.enqueue(ob, msgs...)

	var tl recorder
	var ok []string
	var mu sync.Mutex
	e.handle(ob, "q", outbox.PerMessage(func(_ context.Context, d outbox.Delivery) outbox.Result {
		tl.add(d)
		if d.Seq == 3 {
			return outbox.Reject("bad m3")
		}
		mu.Lock()
		ok = append(ok, string(d.Payload))
		mu.Unlock()
		return outbox.Success()
	}))
	e.start(ob)
	st := e.awaitProcessed(ob, "q", 1, 5)
	e.stop(ob)

	if st.Attempts != 0 || st.LastSeq != 5 {
		t.Errorf("partition: Attempts %d LastSeq %d, want 0 and 5", st.Attempts, st.LastSeq)
	}
	if got := tl.seqs(1); !slices.Equal(got, seqRange(1, 5)) {
		t.Errorf("handler saw seqs %v, want 1..5 once each", got)
	}
	mu.Lock()
	if want := []string{keys[0], keys[1], keys[3], keys[4]}; !slices.Equal(ok, want) {
		t.Errorf("delivered %v, want %v", ok, want)
	}
	mu.Unlock()
	// The dead letter holds its own copy: it survives the message's vacuum.
	if _, err := ob.VacuumAll(e.ctx); err != nil {
		t.Fatal(err)
	}
	if s := e.stats(ob); s.Messages != 0 || s.DeadLetters != 1 {
		t.Errorf("after vacuum: %d messages and %d dead letters, want 0 and 1", s.Messages, s.DeadLetters)
	}
	dl := e.sortedDeadLetters(ob)
	if len(dl) != 1 {
		t.Fatalf("%d dead letters, want 1: %+v", len(dl), dl)
	}
	d := dl[0]
	if d.Queue != "q" || d.Partition != 1 || d.Seq != 3 {
		t.Errorf("dead letter is %s/%d seq %d, want q/1 seq 3", d.Queue, d.Partition, d.Seq)
	}
	if !bytes.Equal(d.Payload, msgs[2].Payload) || d.PayloadType != msgs[2].PayloadType || !maps.Equal(d.Headers, msgs[2].Headers) {
		t.Errorf("dead letter holds payload %q type %q headers %v, want %q, %q, %v",
			d.Payload, d.PayloadType, d.Headers, msgs[2].Payload, msgs[2].PayloadType, msgs[2].Headers)
	}
	if d.Reason != "bad m3" || d.Status != "pending" || d.Attempts != 0 {
		t.Errorf("dead letter: reason %q status %q attempts %d, want %q, pending, 0", d.Reason, d.Status, d.Attempts, "bad m3")
	}
	if d.CreatedAt.IsZero() || d.FailedAt.Before(d.CreatedAt) {
		t.Errorf("dead letter: CreatedAt %v FailedAt %v", d.CreatedAt, d.FailedAt)
	}
}

// testRejectBatch: a batch handler rejects its first batch: the whole batch
// is dead-lettered, the cursor moves past it and the next batch is
// delivered.
func testRejectBatch(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{BatchSize: 3}))
	e.declare(ob, "q", 1)
	msgs, keys := payloads("q", 0, "m", 6)
	e.enqueue(ob, msgs...)
	e.sequenceAll(ob) // the first batch is seqs 1..3

	var rejected, delivered recorder
	e.handle(ob, "q", outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
		if ds[0].Seq == 1 {
			rejected.add(ds...)
			return outbox.Reject("bad batch")
		}
		delivered.add(ds...)
		return outbox.Success()
	}))
	e.start(ob)
	st := e.awaitProcessed(ob, "q", 0, 6)
	e.stop(ob)

	if st.Attempts != 0 {
		t.Errorf("Attempts %d, want 0", st.Attempts)
	}
	if got := rejected.seqs(0); !slices.Equal(got, seqRange(1, 3)) {
		t.Errorf("rejected batch seqs %v, want 1..3", got)
	}
	if got := delivered.seqs(0); !slices.Equal(got, seqRange(4, 6)) {
		t.Errorf("delivered seqs %v, want 4..6", got)
	}
	dl := e.sortedDeadLetters(ob)
	if len(dl) != 3 {
		t.Fatalf("%d dead letters, want 3", len(dl))
	}
	for i, d := range dl {
		if d.Seq != int64(i+1) || string(d.Payload) != keys[i] || d.Reason != "bad batch" || d.Status != "pending" || d.Queue != "q" || d.Partition != 0 {
			t.Errorf("dead letter %d: %s/%d seq %d payload %q reason %q status %q", i, d.Queue, d.Partition, d.Seq, d.Payload, d.Reason, d.Status)
		}
	}
}

// testPartialBatch: a batch handler finishes the first 2 of 5 messages and
// then fails. The 2 are acknowledged and never seen again; the other 3 are
// redelivered (Retry) or dead-lettered (Reject).
func testPartialBatch(t *testing.T, b *Backend, reject bool) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{BatchSize: 5}))
	e.declare(ob, "q", 1)
	msgs, keys := payloads("q", 0, "m", 7)
	e.enqueue(ob, msgs...)
	e.sequenceAll(ob) // the first batch is seqs 1..5

	var first atomic.Bool
	var firstBatch, later recorder
	var laterAttempts []int
	var mu sync.Mutex
	e.handle(ob, "q", outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
		if first.CompareAndSwap(false, true) {
			firstBatch.add(ds...)
			if reject {
				return outbox.Reject("y").WithProcessed(2)
			}
			return outbox.Retry("x").WithProcessed(2)
		}
		mu.Lock()
		laterAttempts = append(laterAttempts, ds[0].Attempts)
		mu.Unlock()
		later.add(ds...)
		return outbox.Success()
	}))
	e.start(ob)
	st := e.awaitProcessed(ob, "q", 0, 7)
	e.stop(ob)

	if got := firstBatch.seqs(0); !slices.Equal(got, seqRange(1, 5)) {
		t.Fatalf("first batch seqs %v, want 1..5", got)
	}
	if st.Attempts != 0 {
		t.Errorf("Attempts %d after the rest succeeded, want 0", st.Attempts)
	}
	dl := e.sortedDeadLetters(ob)
	if reject {
		if got := later.seqs(0); !slices.Equal(got, seqRange(6, 7)) {
			t.Errorf("after the partial reject, delivered seqs %v, want 6..7", got)
		}
		if len(dl) != 3 {
			t.Fatalf("%d dead letters, want 3 (seqs 3..5)", len(dl))
		}
		for i, d := range dl {
			if d.Seq != int64(i+3) || string(d.Payload) != keys[i+2] || d.Reason != "y" {
				t.Errorf("dead letter %d: seq %d payload %q reason %q, want seq %d payload %q reason y", i, d.Seq, d.Payload, d.Reason, i+3, keys[i+2])
			}
		}
		return
	}
	if got := later.seqs(0); !slices.Equal(got, seqRange(3, 7)) {
		t.Errorf("after the partial retry, delivered seqs %v, want 3..7 (1 and 2 were finished)", got)
	}
	mu.Lock()
	if len(laterAttempts) == 0 || laterAttempts[0] != 1 {
		t.Errorf("the redelivery's Attempts: %v, want 1 first", laterAttempts)
	}
	mu.Unlock()
	if len(dl) != 0 {
		t.Errorf("%d dead letters after a retry, want none", len(dl))
	}
}

// testMaxAttempts: with MaxAttempts 3 the head that always fails is tried
// three times, then dead-lettered by the library, and the messages behind
// it are delivered.
func testMaxAttempts(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{MaxAttempts: 3}))
	e.declare(ob, "q", 1)
	msgs, _ := payloads("q", 0, "m", 3)
	e.enqueue(ob, msgs...)

	var mu sync.Mutex
	var tries []int
	var delivered recorder
	e.handle(ob, "q", outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
		if ds[0].Seq == 1 {
			mu.Lock()
			tries = append(tries, ds[0].Attempts)
			mu.Unlock()
			return outbox.Retry("boom")
		}
		delivered.add(ds...)
		return outbox.Success()
	}))
	e.start(ob)
	st := e.awaitProcessed(ob, "q", 0, 3)
	e.stop(ob)

	mu.Lock()
	if !slices.Equal(tries, []int{0, 1, 2}) {
		t.Errorf("the head was tried with Attempts %v, want [0 1 2]", tries)
	}
	mu.Unlock()
	if got := delivered.payloads(0); !slices.Equal(got, []string{"m2", "m3"}) {
		t.Errorf("delivered %v, want [m2 m3]", got)
	}
	if st.Attempts != 0 {
		t.Errorf("Attempts %d after the head was dead-lettered and the rest delivered, want 0", st.Attempts)
	}
	dl := e.sortedDeadLetters(ob)
	if len(dl) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dl))
	}
	if d := dl[0]; d.Seq != 1 || string(d.Payload) != "m1" || d.Attempts != 3 || !strings.Contains(strings.ToLower(d.Reason), "max attempts") {
		t.Errorf("dead letter: seq %d payload %q attempts %d reason %q, want seq 1, m1, 3, a reason naming max attempts", d.Seq, d.Payload, d.Attempts, d.Reason)
	}
}

// testVacuum: vacuum deletes exactly the delivered rows: never an
// unsequenced row, a sequenced undelivered one, or the rows behind a
// partition's failing head; once everything is delivered, all go.
func testVacuum(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{VacuumBatch: 2}))
	e.declare(ob, "q", 2)
	var msgs []outbox.Message
	for i := 1; i <= 5; i++ {
		msgs = append(msgs, msg("q", 0, fmt.Sprintf("p0-%d", i)))
	}
	for i := 1; i <= 3; i++ {
		msgs = append(msgs, msg("q", 1, fmt.Sprintf("p1-%d", i)))
	}
	e.enqueue(ob, msgs...)
	vacuum := func(when string) {
		t.Helper()
		if n, err := ob.VacuumAll(e.ctx); err != nil || n != 0 {
			t.Fatalf("VacuumAll %s: deleted %d (%v), want 0", when, n, err)
		}
	}
	vacuum("before sequencing")
	e.sequenceAll(ob)
	vacuum("before delivery")
	if s := e.stats(ob); s.Messages != 8 {
		t.Fatalf("%d messages stored, want 8", s.Messages)
	}

	// Partition 1 delivers its first message, then retries until released.
	var hold atomic.Bool
	hold.Store(true)
	e.handle(ob, "q", outbox.PerMessage(func(_ context.Context, d outbox.Delivery) outbox.Result {
		if d.Partition == 1 && d.Seq > 1 && hold.Load() {
			return outbox.Retry("held")
		}
		return outbox.Success()
	}))
	e.start(ob)
	e.awaitProcessed(ob, "q", 0, 5)
	e.awaitProcessed(ob, "q", 1, 1)
	e.pollUntil("partition 1 to retry", func() bool { return e.state(ob, "q", 1).Attempts > 0 })
	// The background vacuum removes the 6 delivered rows, and no more.
	e.pollUntil("the background vacuum", func() bool {
		n := e.stats(ob).Messages
		if n < 2 {
			t.Fatalf("vacuum left %d messages; 2 are not delivered yet", n)
		}
		return n == 2
	})
	vacuum("with partition 1 held")
	left := e.seqsByPayload()
	if want := map[string]int64{"p1-2": 2, "p1-3": 3}; !maps.Equal(left, want) {
		t.Errorf("rows left %v, want %v", left, want)
	}

	hold.Store(false)
	e.awaitProcessed(ob, "q", 1, 3)
	e.pollUntil("the background vacuum to delete the rest", func() bool { return e.stats(ob).Messages == 0 })
	e.stop(ob)
	if s := e.stats(ob); s.Messages != 0 || s.Unsequenced != 0 || s.DeadLetters != 0 {
		t.Errorf("stats after everything was delivered: %+v", s)
	}
}

// testFieldsIntact: headers, payload type, payload bytes (empty, binary,
// maximum size), CreatedAt, Queue, Partition and Seq reach the handler as
// enqueued.
func testFieldsIntact(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{}))
	const queue = "orders.v1-events_x"
	e.declare(ob, queue, 3)
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	big := bytes.Repeat([]byte{0xfe, 0x00, 'z'}, outbox.DefaultMaxPayloadBytes/3)
	big = append(big, make([]byte, outbox.DefaultMaxPayloadBytes-len(big))...)
	longType := strings.Repeat("t", outbox.MaxPayloadTypeLen)
	want := []outbox.Message{
		{Queue: queue, Partition: 2, Payload: []byte(`{"id":1}`), PayloadType: "application/json",
			Headers: map[string]string{"trace-id": "abc", "unicode": "héllo, 世界", "empty": "", "quote": `"'\`}},
		{Queue: queue, Partition: 2, Payload: nil, PayloadType: "orders.OrderPlaced.v1"},
		{Queue: queue, Partition: 2, Payload: []byte{}, PayloadType: " ~!@#$%^&*()_+{}|:<>?", Headers: map[string]string{}},
		{Queue: queue, Partition: 2, Payload: binary, PayloadType: "application/octet-stream", Headers: map[string]string{"k": "v"}},
		{Queue: queue, Partition: 2, Payload: big, PayloadType: longType},
		{Queue: queue, Partition: 2, Payload: []byte("\x00"), PayloadType: "x"},
	}
	before := e.state(ob, queue, 2).Now
	e.enqueue(ob, want...)
	after := e.state(ob, queue, 2).Now

	var tl recorder
	e.handle(ob, queue, outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
		tl.add(ds...)
		return outbox.Success()
	}))
	e.start(ob)
	await(t, tl.reached(len(want)), "every delivery")
	e.awaitProcessed(ob, queue, 2, int64(len(want)))
	e.stop(ob)

	got := tl.deliveries()
	if len(got) != len(want) {
		t.Fatalf("%d deliveries, want %d", len(got), len(want))
	}
	for i, d := range got {
		w := want[i]
		if d.Queue != queue || d.Partition != 2 || d.Seq != int64(i+1) {
			t.Errorf("delivery %d: %s/%d seq %d, want %s/2 seq %d", i, d.Queue, d.Partition, d.Seq, queue, i+1)
		}
		if !bytes.Equal(d.Payload, w.Payload) {
			t.Errorf("delivery %d: payload of %d bytes (%q…), want %d bytes (%q…)", i, len(d.Payload), d.Payload[:min(len(d.Payload), 16)], len(w.Payload), w.Payload[:min(len(w.Payload), 16)])
		}
		if d.PayloadType != w.PayloadType {
			t.Errorf("delivery %d: payload type %q, want %q", i, truncated(d.PayloadType), truncated(w.PayloadType))
		}
		if len(d.Headers) != len(w.Headers) || !maps.Equal(d.Headers, w.Headers) {
			t.Errorf("delivery %d: headers %q, want %q", i, d.Headers, w.Headers)
		}
		if d.Attempts != 0 {
			t.Errorf("delivery %d: Attempts %d, want 0", i, d.Attempts)
		}
		// Both bounds are the database's clock, like CreatedAt.
		if d.CreatedAt.Before(before) || d.CreatedAt.After(after) {
			t.Errorf("delivery %d: CreatedAt %v, want within [%v, %v] (the enqueue's database time)", i, d.CreatedAt, before, after)
		}
	}
}

func truncated(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// testPanickingHandler: a handler that panics is retried with the panic as
// the partition's last error, the message is then delivered, and the outbox
// keeps delivering.
func testPanickingHandler(t *testing.T, b *Backend, perMessage bool) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 1)
	e.enqueue(ob, msg("q", 0, "m1"))

	type retried struct {
		attempts int
		st       outbox.PartitionStatus
		err      error
	}
	again := make(chan retried, 1)
	var calls atomic.Int32
	var tl recorder
	handle := func(ctx context.Context, d outbox.Delivery) {
		if string(d.Payload) == "m1" {
			switch calls.Add(1) {
			case 1:
				panic(fmt.Sprintf("kaboom-%d", 42))
			case 2:
				st, err := ob.PartitionStatus(ctx, "q", 0)
				again <- retried{d.Attempts, st, err}
			}
		}
		tl.add(d)
	}
	if perMessage {
		e.handle(ob, "q", outbox.PerMessage(func(ctx context.Context, d outbox.Delivery) outbox.Result {
			handle(ctx, d)
			return outbox.Success()
		}))
	} else {
		e.handle(ob, "q", outbox.Batch(func(ctx context.Context, ds []outbox.Delivery) outbox.Result {
			for _, d := range ds {
				handle(ctx, d)
			}
			return outbox.Success()
		}))
	}
	e.start(ob)
	r := await(t, again, "the retry after the panic")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.attempts != 1 || r.st.Attempts != 1 {
		t.Errorf("after the panic: delivery Attempts %d, partition Attempts %d, want 1 and 1", r.attempts, r.st.Attempts)
	}
	if !strings.Contains(r.st.LastError, "kaboom-42") {
		t.Errorf("LastError %q, want it to contain the panic value %q", r.st.LastError, "kaboom-42")
	}
	e.awaitProcessed(ob, "q", 0, 1)

	// Still running: a new message is delivered.
	e.enqueue(ob, msg("q", 0, "m2"))
	await(t, tl.reached(2), "the delivery of m2")
	st := e.awaitProcessed(ob, "q", 0, 2)
	e.stop(ob)
	if got := tl.payloads(0); !slices.Equal(got, []string{"m1", "m2"}) {
		t.Errorf("delivered %v, want [m1 m2]", got)
	}
	if st.Attempts != 0 {
		t.Errorf("Attempts %d, want 0", st.Attempts)
	}
}

// unstorableReasons are reasons a database cannot store as given: invalid
// UTF-8 (PostgreSQL, MariaDB), a NUL byte (PostgreSQL), 5 MiB (MariaDB's
// packet limit). want is a fragment the stored, sanitized reason keeps.
var unstorableReasons = []struct{ name, reason, want string }{
	{"InvalidUTF8", "bad \xff\xfe utf8", "bad \uFFFD\uFFFD utf8"},
	{"NUL", "nul \x00 byte", "nul \uFFFD byte"},
	{"5MiB", strings.Repeat("x", 5<<20), strings.Repeat("x", 1000)},
}

// checkStoredReason asserts that a stored reason is the sanitized form of
// unstorableReasons[i]: valid UTF-8, no NUL, at most MaxReasonBytes, the
// kept fragment, and the truncation marker where it was cut.
func checkStoredReason(t *testing.T, what, stored string, i int) {
	t.Helper()
	u := unstorableReasons[i]
	switch {
	case !utf8.ValidString(stored), strings.IndexByte(stored, 0) >= 0, len(stored) > outbox.MaxReasonBytes:
		t.Errorf("%s for %s: %d bytes %q…, want valid UTF-8 without NUL, at most %d bytes", what, u.name, len(stored), truncated(stored), outbox.MaxReasonBytes)
	case !strings.Contains(stored, u.want):
		t.Errorf("%s for %s: %q, want it to contain %q", what, u.name, truncated(stored), truncated(u.want))
	case len(u.reason) > outbox.MaxReasonBytes && !strings.HasSuffix(stored, "[truncated]"):
		t.Errorf("%s for %s: …%q, want the truncation marker at the end", what, u.name, stored[max(0, len(stored)-40):])
	}
}

// testUnstorableReason: a handler whose Retry or Reject reason, or panic
// value, the database cannot store (one partition per reason in
// unstorableReasons) still has its result recorded: a Reject dead-letters
// the message at once, a Retry or panic counts attempts until MaxAttempts
// dead-letters it, the handler is called a bounded number of times, the
// stored reasons are the sanitized ones, and the next message is delivered.
func testUnstorableReason(t *testing.T, b *Backend, result string, transactional bool) {
	e := newEnv(t, b)
	const maxAttempts = 3
	ob := e.outbox(nil, fast(outbox.Config{MaxAttempts: maxAttempts, BatchSize: 1, MaxConcurrency: len(unstorableReasons)}))
	parts := len(unstorableReasons)
	e.declare(ob, "q", parts)
	for p := range parts {
		e.enqueue(ob, msg("q", p, fmt.Sprintf("%d-1", p)), msg("q", p, fmt.Sprintf("%d-2", p)))
	}
	calls := make([]atomic.Int32, parts)
	lastErrors := make([]atomic.Value, parts)
	var tl recorder
	handle := func(ctx context.Context, ds []outbox.Delivery) outbox.Result {
		d := ds[0]
		if d.Seq != 1 {
			tl.add(d)
			return outbox.Success()
		}
		if calls[d.Partition].Add(1) == 2 && !transactional {
			// What the first call's result stored (in transactional mode the
			// handler's transaction holds the row, and SQLite's only
			// connection: read it after the run instead).
			if st, err := ob.PartitionStatus(ctx, "q", d.Partition); err == nil {
				lastErrors[d.Partition].Store(st.LastError)
			}
		}
		reason := unstorableReasons[d.Partition].reason
		switch result {
		case "Reject":
			return outbox.Reject(reason)
		case "Panic":
			panic(reason)
		}
		return outbox.Retry(reason)
	}
	if transactional {
		e.handle(ob, "q", outbox.TxBatch(func(ctx context.Context, _ *sql.Tx, ds []outbox.Delivery) outbox.Result { return handle(ctx, ds) }))
	} else {
		e.handle(ob, "q", outbox.Batch(handle))
	}
	e.start(ob)
	for p := range parts {
		e.awaitProcessed(ob, "q", p, 2)
	}
	e.stop(ob)

	wantCalls := maxAttempts
	if result == "Reject" {
		wantCalls = 1
	}
	dead := e.sortedDeadLetters(ob)
	for p, u := range unstorableReasons {
		if n := int(calls[p].Load()); n != wantCalls {
			t.Errorf("%s: the message was handled %d times, want %d", u.name, n, wantCalls)
		}
		i := slices.IndexFunc(dead, func(d outbox.DeadLetter) bool { return d.Partition == p })
		if i < 0 {
			t.Errorf("%s: no dead letter", u.name)
			continue
		}
		d := dead[i]
		if d.Seq != 1 || (result != "Reject" && d.Attempts != maxAttempts) {
			t.Errorf("%s: dead letter seq %d attempts %d, want seq 1 (attempts %d after a Retry)", u.name, d.Seq, d.Attempts, maxAttempts)
		}
		checkStoredReason(t, "dead-letter reason", d.Reason, p)
		if s, ok := lastErrors[p].Load().(string); ok {
			checkStoredReason(t, "last error", s, p)
		}
	}
	if len(dead) != parts {
		t.Errorf("%d dead letters, want %d", len(dead), parts)
	}
	if got := tl.payloads(-1); len(got) != parts {
		t.Errorf("delivered %v, want the second message of every partition", got)
	}
}

// middleware is the shape every handler middleware takes: it embeds the
// handler it wraps.
type middleware struct{ outbox.Handler }

// testWrappedHandler: a handler wrapped in a type that embeds it, by value,
// by pointer or twice, delivers every message through the wrapped
// function, for each of the four kinds; a wrapper around nothing is
// refused.
func testWrappedHandler(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	e.createEffects()
	ob := e.outbox(nil, fast(outbox.Config{}))
	if err := ob.Handle("q", middleware{}); !errors.Is(err, outbox.ErrInvalidHandler) {
		t.Errorf("Handle(middleware{nil}): %v, want ErrInvalidHandler", err)
	}
	if err := ob.Handle("q", (*middleware)(nil)); !errors.Is(err, outbox.ErrInvalidHandler) {
		t.Errorf("Handle((*middleware)(nil)): %v, want ErrInvalidHandler", err)
	}
	const parts, per = 2, 5
	var rec recorder
	tx := func(ctx context.Context, tx *sql.Tx, ds ...outbox.Delivery) outbox.Result {
		for _, d := range ds {
			if err := e.writeEffect(ctx, tx, d); err != nil {
				t.Error(err)
				return outbox.Retry(err.Error())
			}
		}
		rec.add(ds...)
		return outbox.Success()
	}
	handlers := map[string]outbox.Handler{
		"batch": middleware{outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
			rec.add(ds...)
			return outbox.Success()
		})},
		"message": &middleware{outbox.PerMessage(func(_ context.Context, d outbox.Delivery) outbox.Result {
			rec.add(d)
			return outbox.Success()
		})},
		"tx-batch": middleware{middleware{outbox.TxBatch(func(ctx context.Context, t *sql.Tx, ds []outbox.Delivery) outbox.Result {
			return tx(ctx, t, ds...)
		})}},
		"tx-message": middleware{outbox.TxPerMessage(func(ctx context.Context, t *sql.Tx, d outbox.Delivery) outbox.Result {
			return tx(ctx, t, d)
		})},
	}
	var keys []string
	for q, h := range handlers {
		e.declare(ob, q, parts)
		e.handle(ob, q, h)
		for p := range parts {
			msgs, k := payloads(q, p, fmt.Sprintf("%s/%d/", q, p), per)
			e.enqueue(ob, msgs...)
			if strings.HasPrefix(q, "tx-") {
				keys = append(keys, k...)
			}
		}
	}
	e.start(ob)
	for q := range handlers {
		for p := range parts {
			e.awaitProcessed(ob, q, p, per)
		}
	}
	e.stop(ob)
	// The cursors moved: every message must have gone through its handler
	// first, exactly once.
	total := rec.count()
	if total != 4*parts*per {
		t.Fatalf("%d messages reached the wrapped handlers, want %d: the rest were acknowledged without a call", total, 4*parts*per)
	}
	rec.checkExactlyOnce(t)
	e.checkEffects(keys...)
}
