package conformance

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/outbox"
)

var txTests = []test{
	{"Tx/Success", testTxSuccess},
	{"Tx/Retry", testTxRetry},
	{"Tx/RejectMessage", testTxRejectMessage},
	{"Tx/RejectBatch", testTxRejectBatch},
	{"Tx/PartialBatch", testTxPartialBatch},
	{"Tx/PartialPerMessage", testTxPartialPerMessage},
	{"Tx/CrashBeforeCommit", testTxCrashBeforeCommit},
	{"Tx/PanicRollsBack", testTxPanicRollsBack},
	{"Tx/MaxAttempts", testTxMaxAttempts},
	{"Tx/MixedModes", testTxMixedModes},
	{"Tx/SlowHandlerOutlivesShutdownTimeout", testTxSlowHandler},
	{"Tx/BrokenDeliveryCountsAttempts", testTxBrokenDelivery},
	{"Tx/PartialBatchDisagreeingResults", testTxPartialDisagree},
	{"Tx/HandlerTimeout", testTxHandlerTimeout},
	{"Tx/UnstorableReason/Retry", func(t *testing.T, b *Backend) { testUnstorableReason(t, b, "Retry", true) }},
	{"Tx/UnstorableReason/Reject", func(t *testing.T, b *Backend) { testUnstorableReason(t, b, "Reject", true) }},
	{"Tx/UnstorableReason/Panic", func(t *testing.T, b *Backend) { testUnstorableReason(t, b, "Panic", true) }},
}

// createEffects creates the application table transactional handlers write
// their effects to: one row per message, keyed by payload, so a second
// committed effect for a message cannot exist.
func (e *env) createEffects() {
	e.t.Helper()
	e.exec(e.db, "CREATE TABLE app_effects (k VARCHAR(200) PRIMARY KEY)")
}

// writeEffect records d's effect through tx. It runs in a handler, off the
// test goroutine, so it reports errors instead of failing the test itself.
func (e *env) writeEffect(ctx context.Context, tx *sql.Tx, d outbox.Delivery) error {
	_, err := tx.ExecContext(ctx, sqlx.Rebind(e.b.BindType, "INSERT INTO app_effects (k) VALUES (?)"), string(d.Payload))
	if err != nil {
		return fmt.Errorf("effect of %s/%d seq %d: %w", d.Queue, d.Partition, d.Seq, err)
	}
	return nil
}

// visibleEffects counts, through q, the effect rows of keys.
func (e *env) visibleEffects(ctx context.Context, q dialect.DBTX, keys []string) (map[string]int, error) {
	out := map[string]int{}
	for _, k := range keys {
		var n int
		if err := q.QueryRowContext(ctx, sqlx.Rebind(e.b.BindType, "SELECT COUNT(*) FROM app_effects WHERE k = ?"), k).Scan(&n); err != nil {
			return nil, err
		}
		out[k] = n
	}
	return out, nil
}

// effects reads every committed effect key.
func (e *env) effects() []string {
	e.t.Helper()
	rows, err := e.db.QueryContext(e.ctx, "SELECT k FROM app_effects ORDER BY k")
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// checkEffects asserts the committed effects are exactly want.
func (e *env) checkEffects(want ...string) {
	e.t.Helper()
	want = slices.Clone(want)
	slices.Sort(want)
	if got := e.effects(); !slices.Equal(got, want) {
		e.t.Fatalf("committed effects %v, want %v", got, want)
	}
}

// payloads names n messages "<prefix>1".."<prefix>n" and builds them for one
// partition.
// firstK maps each key to 1 for the first k keys and 0 for the rest: the
// effects expected when exactly the first k messages were acknowledged.
func firstK(keys []string, k int) map[string]int {
	want := make(map[string]int, len(keys))
	for i, key := range keys {
		want[key] = 0
		if i < k {
			want[key] = 1
		}
	}
	return want
}

func payloads(queue string, partition int, prefix string, n int) ([]outbox.Message, []string) {
	msgs := make([]outbox.Message, n)
	keys := make([]string, n)
	for i := range n {
		keys[i] = prefix + itoa(i+1)
		msgs[i] = msg(queue, partition, keys[i])
	}
	return msgs, keys
}

// redelivery is what a transactional handler saw when a message came
// again: its Attempts, and the effects visible to the redelivering
// transaction.
type redelivery struct {
	attempts int
	effects  map[string]int
	err      error
}

// effectHandler writes each message's effect and succeeds; on a write error
// it fails the test and retries.
func (e *env) effectHandler(t *testing.T) outbox.Handler {
	return outbox.TxPerMessage(func(ctx context.Context, tx *sql.Tx, d outbox.Delivery) outbox.Result {
		if err := e.writeEffect(ctx, tx, d); err != nil {
			t.Error(err)
			return outbox.Retry(err.Error())
		}
		return outbox.Success()
	})
}

// sortedDeadLetters lists every dead letter in seq order.
func (e *env) sortedDeadLetters(ob *outbox.Outbox) []outbox.DeadLetter {
	e.t.Helper()
	dlPage, err := ob.DeadLetterPage(e.ctx, outbox.DeadLetterFilter{})
	dl := dlPage.DeadLetters
	if err != nil {
		e.t.Fatal(err)
	}
	slices.SortFunc(dl, func(a, b outbox.DeadLetter) int { return int(a.Seq - b.Seq) })
	return dl
}

// testTxSuccess: batch and per-message transactional handlers; every
// message's effect commits exactly once, with the cursor.
func testTxSuccess(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	e.createEffects()
	ob := e.outbox(nil, fast(outbox.Config{BatchSize: 4}))
	e.declare(ob, "batch", 2)
	e.declare(ob, "single", 2)
	var calls atomic.Int64
	if err := ob.Handle("batch", outbox.TxBatch(func(ctx context.Context, tx *sql.Tx, ds []outbox.Delivery) outbox.Result {
		calls.Add(1)
		for _, d := range ds {
			if err := e.writeEffect(ctx, tx, d); err != nil {
				t.Error(err)
				return outbox.Retry(err.Error())
			}
		}
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	if err := ob.Handle("single", e.effectHandler(t)); err != nil {
		t.Fatal(err)
	}
	e.start(ob)
	var all []string
	for _, q := range []string{"batch", "single"} {
		for p := range 2 {
			msgs, keys := payloads(q, p, fmt.Sprintf("%s/%d/", q, p), 10)
			e.enqueue(ob, msgs[:5]...)
			e.enqueue(ob, msgs[5:]...)
			all = append(all, keys...)
		}
	}
	for _, q := range []string{"batch", "single"} {
		for p := range 2 {
			st := e.awaitProcessed(ob, q, p, 10)
			if st.LastSeq != 10 || st.Attempts != 0 {
				t.Errorf("%s/%d: LastSeq %d Attempts %d, want 10 and 0", q, p, st.LastSeq, st.Attempts)
			}
		}
	}
	e.stop(ob)
	e.checkEffects(all...)
	if dl := e.sortedDeadLetters(ob); len(dl) != 0 {
		t.Errorf("%d dead letters, want none", len(dl))
	}
	t.Logf("%d batch handler calls", calls.Load())
}

// testTxRetry: a per-message Retry undoes that message's effect; the
// messages before it are acknowledged with their effects; the redelivery
// sees Attempts 1 and no trace of the failed attempt.
func testTxRetry(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	e.createEffects()
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 1)
	msgs, keys := payloads("q", 0, "r", 5)
	e.enqueue(ob, msgs...)
	e.sequenceAll(ob)

	again := make(chan redelivery, 1)
	var calls recorder
	if err := ob.Handle("q", outbox.TxPerMessage(func(ctx context.Context, tx *sql.Tx, d outbox.Delivery) outbox.Result {
		n := calls.add(d)
		if d.Seq == 3 && n == 2 {
			// What the failed attempt committed, seen from the transaction
			// that redelivers.
			got, err := e.visibleEffects(ctx, tx, keys)
			again <- redelivery{d.Attempts, got, err}
		}
		if err := e.writeEffect(ctx, tx, d); err != nil {
			t.Error(err)
			return outbox.Retry(err.Error())
		}
		if d.Seq == 3 && n == 1 {
			return outbox.Retry("not yet")
		}
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	e.start(ob)
	r := await(t, again, "the redelivery of seq 3")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.attempts != 1 {
		t.Errorf("redelivery of seq 3 has Attempts %d, want 1", r.attempts)
	}
	want := map[string]int{"r1": 1, "r2": 1, "r3": 0, "r4": 0, "r5": 0}
	if !maps.Equal(r.effects, want) {
		t.Errorf("effects after the failed attempt: %v, want %v (the retried message's effect must be undone)", r.effects, want)
	}
	st := e.awaitProcessed(ob, "q", 0, 5)
	e.stop(ob)
	if st.Attempts != 0 {
		t.Errorf("Attempts %d after success, want 0", st.Attempts)
	}
	e.checkEffects(keys...)
	if got, want := calls.timesBySeq(0), map[int64]int{1: 1, 2: 1, 3: 2, 4: 1, 5: 1}; !maps.Equal(got, want) {
		t.Errorf("handler calls per seq %v, want %v", got, want)
	}
}

// testTxRejectMessage: a per-message Reject undoes that message's effect and
// dead-letters it alone; the others' effects commit.
func testTxRejectMessage(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	e.createEffects()
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 1)
	msgs, keys := payloads("q", 0, "j", 5)
	e.enqueue(ob, msgs...)
	if err := ob.Handle("q", outbox.TxPerMessage(func(ctx context.Context, tx *sql.Tx, d outbox.Delivery) outbox.Result {
		if err := e.writeEffect(ctx, tx, d); err != nil {
			t.Error(err)
			return outbox.Retry(err.Error())
		}
		if d.Seq == 3 {
			return outbox.Reject("bad")
		}
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	e.start(ob)
	e.awaitProcessed(ob, "q", 0, 5)
	e.stop(ob)
	e.checkEffects("j1", "j2", "j4", "j5")
	dl := e.sortedDeadLetters(ob)
	if len(dl) != 1 || dl[0].Seq != 3 || string(dl[0].Payload) != keys[2] || dl[0].Reason != "bad" {
		t.Fatalf("dead letters %+v, want seq 3 (%q) alone, reason \"bad\"", dl, keys[2])
	}
}

// testTxRejectBatch: a batch Reject undoes every effect of the batch and
// dead-letters all of it.
func testTxRejectBatch(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	e.createEffects()
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 1)
	msgs, _ := payloads("q", 0, "b", 5)
	e.enqueue(ob, msgs...)
	if err := ob.Handle("q", outbox.TxBatch(func(ctx context.Context, tx *sql.Tx, ds []outbox.Delivery) outbox.Result {
		for _, d := range ds {
			if err := e.writeEffect(ctx, tx, d); err != nil {
				t.Error(err)
				return outbox.Retry(err.Error())
			}
		}
		return outbox.Reject("bad batch")
	})); err != nil {
		t.Fatal(err)
	}
	e.start(ob)
	e.awaitProcessed(ob, "q", 0, 5)
	e.stop(ob)
	e.checkEffects()
	dl := e.sortedDeadLetters(ob)
	if len(dl) != 5 {
		t.Fatalf("%d dead letters, want 5", len(dl))
	}
	for i, d := range dl {
		if d.Seq != int64(i+1) || d.Reason != "bad batch" {
			t.Errorf("dead letter %d: seq %d reason %q, want seq %d reason \"bad batch\"", i, d.Seq, d.Reason, i+1)
		}
	}
}

// testTxPartialBatch: a batch handler that finished k messages and asks to
// retry the rest: exactly the first k effects commit with their ack; the
// rest commit only when redelivered and successful.
func testTxPartialBatch(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	e.createEffects()
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 1)
	const n, k = 6, 2
	msgs, keys := payloads("q", 0, "p", n)
	e.enqueue(ob, msgs...)
	e.sequenceAll(ob) // the first call sees all n

	again := make(chan redelivery, 1)
	var calls atomic.Int64
	var checked atomic.Bool
	if err := ob.Handle("q", outbox.TxBatch(func(ctx context.Context, tx *sql.Tx, ds []outbox.Delivery) outbox.Result {
		c := calls.Add(1)
		if c == 1 && len(ds) != n {
			t.Errorf("first call got %d messages, want %d", len(ds), n)
		}
		if ds[0].Seq == k+1 && checked.CompareAndSwap(false, true) {
			got, err := e.visibleEffects(ctx, tx, keys)
			again <- redelivery{ds[0].Attempts, got, err}
		}
		for _, d := range ds {
			if err := e.writeEffect(ctx, tx, d); err != nil {
				t.Error(err)
				return outbox.Retry(err.Error())
			}
		}
		if c == 1 {
			return outbox.Retry("x").WithProcessed(k)
		}
		// A second call with the prefix alone (the library may re-run it
		// in the same transaction) succeeds, as does the redelivery.
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	e.start(ob)
	r := await(t, again, "the redelivery from seq k+1")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.attempts != 1 {
		t.Errorf("redelivery has Attempts %d, want 1", r.attempts)
	}
	want := firstK(keys, k)
	if !maps.Equal(r.effects, want) {
		t.Errorf("effects after the partial failure: %v, want %v (exactly the first %d)", r.effects, want, k)
	}
	e.awaitProcessed(ob, "q", 0, n)
	e.stop(ob)
	e.checkEffects(keys...)
	t.Logf("%d handler calls", calls.Load())
}

// testTxPartialPerMessage: the per-message form of a partial failure: a
// Retry at index k keeps the first k effects and undoes the rest, and never
// re-runs the finished messages.
func testTxPartialPerMessage(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	e.createEffects()
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 1)
	const n, k = 6, 2
	msgs, keys := payloads("q", 0, "s", n)
	e.enqueue(ob, msgs...)
	e.sequenceAll(ob)

	again := make(chan redelivery, 1)
	var calls recorder
	if err := ob.Handle("q", outbox.TxPerMessage(func(ctx context.Context, tx *sql.Tx, d outbox.Delivery) outbox.Result {
		c := calls.add(d)
		if d.Seq == k+1 && c == 2 {
			got, err := e.visibleEffects(ctx, tx, keys)
			again <- redelivery{d.Attempts, got, err}
		}
		if err := e.writeEffect(ctx, tx, d); err != nil {
			t.Error(err)
			return outbox.Retry(err.Error())
		}
		if d.Seq == k+1 && c == 1 {
			return outbox.Retry("x")
		}
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	e.start(ob)
	r := await(t, again, "the redelivery of seq k+1")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.attempts != 1 {
		t.Errorf("redelivery has Attempts %d, want 1", r.attempts)
	}
	want := firstK(keys, k)
	if !maps.Equal(r.effects, want) {
		t.Errorf("effects after the failed attempt: %v, want %v (exactly the first %d)", r.effects, want, k)
	}
	e.awaitProcessed(ob, "q", 0, n)
	e.stop(ob)
	e.checkEffects(keys...)
	times := calls.timesBySeq(0)
	for seq := int64(1); seq <= n; seq++ {
		want := 1
		if seq == k+1 {
			want = 2
		}
		if times[seq] != want {
			t.Errorf("seq %d handled %d times, want %d (calls %v)", seq, times[seq], want, times)
		}
	}
}

// testTxCrashBeforeCommit: the worker's transaction dies after its handler
// wrote effects, before it committed, and nothing records the attempt: as
// when a process dies and the server rolls its transaction back. Here the
// handler hangs past HandlerTimeout, which rolls the transaction back
// after the lease has expired, so that the fenced record of the attempt
// finds no lease to write under. No effect survives, and another process
// takes the partition over, counts the attempt, and delivers every message
// with exactly one effect each.
func testTxCrashBeforeCommit(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	e.createEffects()
	const lease = time.Second
	a := e.outbox(nil, fast(outbox.Config{MaxConcurrency: 1, LeaseDuration: lease, HandlerTimeout: 2 * lease}))
	e.declare(a, "q", 1)
	msgs, keys := payloads("q", 0, "c", 3)
	e.enqueue(a, msgs...)
	e.sequenceAll(a) // one transaction holds all three

	written := make(chan struct{})
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	var hung atomic.Bool
	if err := a.Handle("q", outbox.TxPerMessage(func(ctx context.Context, tx *sql.Tx, d outbox.Delivery) outbox.Result {
		if err := e.writeEffect(ctx, tx, d); err != nil {
			t.Error(err)
			return outbox.Retry(err.Error())
		}
		if d.Seq == 2 && hung.CompareAndSwap(false, true) {
			close(written)
			select { // dead: ignores its context
			case <-release:
			case <-time.After(timeout):
			}
		}
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	e.start(a)
	await(t, written, "A to write effects for seqs 1 and 2")
	// On a single-connection pool these reads wait for A's rollback;
	// elsewhere A's writes are invisible until a commit that never comes.
	if got := e.effects(); len(got) != 0 {
		t.Fatalf("effects %v survived a crash before commit", got)
	}
	if st := e.state(a, "q", 0); st.ProcessedSeq != 0 {
		t.Fatalf("ProcessedSeq %d after a crash before commit, want 0", st.ProcessedSeq)
	}

	bOb := e.outbox(e.pool(), fast(outbox.Config{}))
	var seen recorder
	if err := bOb.Handle("q", outbox.TxPerMessage(func(ctx context.Context, tx *sql.Tx, d outbox.Delivery) outbox.Result {
		seen.add(d)
		if err := e.writeEffect(ctx, tx, d); err != nil {
			t.Error(err)
			return outbox.Retry(err.Error())
		}
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	e.start(bOb)
	e.awaitProcessed(bOb, "q", 0, 3)
	e.stop(bOb)
	e.checkEffects(keys...)
	if got := seen.deliveries(); len(got) == 0 || got[0].Seq != 1 || got[0].Attempts < 1 {
		t.Errorf("B's deliveries %v, want seq 1 first with Attempts >= 1: a crash counts", got)
	}
	releaseOnce.Do(func() { close(release) })
	e.stop(a)
	e.checkEffects(keys...)
}

// testTxHandlerTimeout: a transactional handler that hangs, ignoring its
// context, is rolled back when HandlerTimeout passes: the partition's row
// lock and connection are freed and the attempt is recorded while the
// call still hangs, so another process delivers the batch (with Attempts
// 1) meanwhile. The hung call's writes never commit, and its late return
// changes nothing.
func testTxHandlerTimeout(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	e.createEffects()
	const limit = 300 * time.Millisecond
	a := e.outbox(nil, fast(outbox.Config{MaxConcurrency: 1, HandlerTimeout: limit}))
	e.declare(a, "q", 1)
	msgs, keys := payloads("q", 0, "h", 3)
	e.enqueue(a, msgs...)
	e.sequenceAll(a) // one batch

	entered := make(chan struct{})
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	var first, returned atomic.Bool
	e.handle(a, "q", outbox.TxBatch(func(ctx context.Context, tx *sql.Tx, ds []outbox.Delivery) outbox.Result {
		if !first.CompareAndSwap(false, true) {
			t.Errorf("A handled seqs %d.. again while its first call hung", ds[0].Seq)
			return outbox.Retry("unexpected")
		}
		for _, d := range ds {
			if err := e.writeEffect(ctx, tx, d); err != nil {
				t.Error(err)
				return outbox.Retry(err.Error())
			}
		}
		close(entered)
		select { // hangs, ignoring its context
		case <-release:
		case <-time.After(timeout):
		}
		returned.Store(true)
		return outbox.Success()
	}))
	e.start(a)
	await(t, entered, "A's handler")
	var st outbox.PartitionStatus
	e.pollUntil("the timed-out attempt to be recorded", func() bool {
		st = e.state(a, "q", 0)
		return st.Attempts == 1
	})
	if !strings.Contains(st.LastError, "HandlerTimeout") || st.Leased || st.ProcessedSeq != 0 {
		t.Errorf("after the timeout: LastError %q Leased %v ProcessedSeq %d, want a reason naming HandlerTimeout, no lease, 0", st.LastError, st.Leased, st.ProcessedSeq)
	}

	bOb := e.outbox(e.pool(), fast(outbox.Config{}))
	var tl recorder
	e.handle(bOb, "q", outbox.TxBatch(func(ctx context.Context, tx *sql.Tx, ds []outbox.Delivery) outbox.Result {
		for _, d := range ds {
			if err := e.writeEffect(ctx, tx, d); err != nil {
				t.Error(err)
				return outbox.Retry(err.Error())
			}
		}
		tl.add(ds...)
		return outbox.Success()
	}))
	e.start(bOb)
	e.awaitProcessed(bOb, "q", 0, 3)
	e.stop(bOb)
	if returned.Load() {
		t.Fatal("A's handler returned before B delivered: the test proves nothing")
	}
	if got := tl.deliveries(); len(got) == 0 || got[0].Attempts != 1 {
		t.Errorf("B's deliveries %v, want the batch with Attempts 1", got)
	}
	e.checkEffects(keys...)
	before := e.state(a, "q", 0)

	unblock()
	e.stop(a)
	if after := e.state(a, "q", 0); !sameState(before, after) {
		t.Errorf("A's late return changed the partition:\n before %+v\n after  %+v", before, after)
	}
	e.checkEffects(keys...)
}

// testTxPanicRollsBack: a handler that panics after writing its effect is
// treated as a Retry: the effect is undone, and the redelivery writes it
// once.
func testTxPanicRollsBack(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	e.createEffects()
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 1)
	msgs, keys := payloads("q", 0, "x", 3)
	e.enqueue(ob, msgs...)

	again := make(chan redelivery, 1)
	var calls recorder
	if err := ob.Handle("q", outbox.TxPerMessage(func(ctx context.Context, tx *sql.Tx, d outbox.Delivery) outbox.Result {
		c := calls.add(d)
		if d.Seq == 2 && c == 2 {
			got, err := e.visibleEffects(ctx, tx, keys)
			again <- redelivery{d.Attempts, got, err}
		}
		if err := e.writeEffect(ctx, tx, d); err != nil {
			t.Error(err)
			return outbox.Retry(err.Error())
		}
		if d.Seq == 2 && c == 1 {
			panic("handler crashed")
		}
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	e.start(ob)
	r := await(t, again, "the redelivery after the panic")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.attempts != 1 {
		t.Errorf("redelivery after a panic has Attempts %d, want 1", r.attempts)
	}
	if want := map[string]int{"x1": 1, "x2": 0, "x3": 0}; !maps.Equal(r.effects, want) {
		t.Errorf("effects after the panic %v, want %v", r.effects, want)
	}
	e.awaitProcessed(ob, "q", 0, 3)
	e.stop(ob)
	e.checkEffects(keys...)
}

// testTxMaxAttempts: a message that keeps failing is dead-lettered by the
// library after MaxAttempts failures, and none of its effects survive.
func testTxMaxAttempts(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	e.createEffects()
	const maxAttempts = 2
	ob := e.outbox(nil, fast(outbox.Config{MaxAttempts: maxAttempts}))
	e.declare(ob, "q", 1)
	msgs, _ := payloads("q", 0, "a", 3)
	e.enqueue(ob, msgs...)
	var poison atomic.Int64
	if err := ob.Handle("q", outbox.TxPerMessage(func(ctx context.Context, tx *sql.Tx, d outbox.Delivery) outbox.Result {
		if err := e.writeEffect(ctx, tx, d); err != nil {
			t.Error(err)
			return outbox.Retry(err.Error())
		}
		if d.Seq == 2 {
			poison.Add(1)
			return outbox.Retry("poison")
		}
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	e.start(ob)
	st := e.awaitProcessed(ob, "q", 0, 3)
	e.stop(ob)
	e.checkEffects("a1", "a3")
	dl := e.sortedDeadLetters(ob)
	if len(dl) != 1 || dl[0].Seq != 2 || string(dl[0].Payload) != "a2" {
		t.Fatalf("dead letters %+v, want seq 2 alone", dl)
	}
	if dl[0].Attempts != maxAttempts {
		t.Errorf("dead letter Attempts %d, want %d", dl[0].Attempts, maxAttempts)
	}
	t.Logf("dead letter reason: %q", dl[0].Reason)
	if n := poison.Load(); n != maxAttempts {
		t.Errorf("poison message handled %d times, want %d", n, maxAttempts)
	}
	if st.Attempts != 0 {
		t.Errorf("Attempts %d after the poison message was dead-lettered and the rest delivered, want 0", st.Attempts)
	}
}

// testTxMixedModes: one outbox with a transactional queue and a decoupled
// queue delivers both.
func testTxMixedModes(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	e.createEffects()
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "tx", 2)
	e.declare(ob, "dec", 2)
	if err := ob.Handle("tx", e.effectHandler(t)); err != nil {
		t.Fatal(err)
	}
	const per = 10
	var rec recorder
	if err := ob.Handle("dec", outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
		rec.add(ds...)
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	e.start(ob)
	var keys []string
	for p := range 2 {
		txMsgs, k := payloads("tx", p, fmt.Sprintf("tx/%d/", p), per)
		decMsgs, _ := payloads("dec", p, fmt.Sprintf("dec/%d/", p), per)
		e.enqueue(ob, append(txMsgs, decMsgs...)...)
		keys = append(keys, k...)
	}
	await(t, rec.reached(2*per), "the decoupled queue's messages")
	for p := range 2 {
		e.awaitProcessed(ob, "tx", p, per)
		e.awaitProcessed(ob, "dec", p, per)
	}
	e.stop(ob)
	rec.checkExactlyOnce(t)
	e.checkEffects(keys...)
}

// testTxSlowHandler: ShutdownTimeout bounds only the writes made after
// Stop's context ended, never a batch of handler calls in normal
// operation: per-message handlers that together run longer than it still
// get their acks.
func testTxSlowHandler(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	e.createEffects()
	ob := e.outbox(nil, fast(outbox.Config{ShutdownTimeout: 100 * time.Millisecond}))
	e.declare(ob, "q", 1)
	msgs, keys := payloads("q", 0, "s", 4)
	e.enqueue(ob, msgs...)
	e.sequenceAll(ob) // one batch holds all four
	var calls atomic.Int32
	if err := ob.Handle("q", outbox.TxPerMessage(func(ctx context.Context, tx *sql.Tx, d outbox.Delivery) outbox.Result {
		calls.Add(1)
		// The handler's own work: slower than ShutdownTimeout in total.
		select {
		case <-time.After(40 * time.Millisecond):
		case <-ctx.Done():
			return outbox.Retry("stopped")
		}
		if err := e.writeEffect(ctx, tx, d); err != nil {
			return outbox.Retry(err.Error())
		}
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	e.start(ob)
	st := e.awaitProcessed(ob, "q", 0, 4)
	e.stop(ob)
	if st.Attempts != 0 || calls.Load() != 4 {
		t.Fatalf("attempts %d, %d handler calls; want 0 and 4 (one successful pass)", st.Attempts, calls.Load())
	}
	e.checkEffects(keys...)
}

// testTxBrokenDelivery: a delivery whose transaction breaks down (here the
// handler releases the library's savepoint, so the library's own statement
// fails) is rolled back and counted as a failed attempt with backoff, so
// MaxAttempts dead-letters it instead of retrying forever.
func testTxBrokenDelivery(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	e.createEffects()
	ob := e.outbox(nil, fast(outbox.Config{MaxAttempts: 2}))
	e.declare(ob, "q", 1)
	msgs, keys := payloads("q", 0, "b", 3)
	e.enqueue(ob, msgs...)
	var calls recorder
	if err := ob.Handle("q", outbox.TxPerMessage(func(ctx context.Context, tx *sql.Tx, d outbox.Delivery) outbox.Result {
		calls.add(d)
		if err := e.writeEffect(ctx, tx, d); err != nil {
			return outbox.Retry(err.Error())
		}
		if d.Seq == 1 {
			_, _ = tx.ExecContext(ctx, "RELEASE SAVEPOINT outbox_msg")
		}
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	e.start(ob)
	e.awaitProcessed(ob, "q", 0, 3)
	e.stop(ob)
	if n := calls.timesBySeq(0)[1]; n != 2 {
		t.Fatalf("seq 1 handled %d times, want 2 (MaxAttempts)", n)
	}
	deadPage, err := ob.DeadLetterPage(e.ctx, outbox.DeadLetterFilter{Queue: "q"})
	dead := deadPage.DeadLetters
	if err != nil || len(dead) != 1 || dead[0].Seq != 1 {
		t.Fatalf("dead letters %+v, %v; want seq 1 alone", dead, err)
	}
	e.checkEffects(keys[1:]...)
}

// testTxPartialDisagree: a TxBatch call says Retry after 2, the re-run on
// that prefix says Reject after 1: seq 1 is acked, and nothing the handler
// asked to retry is dead-lettered.
func testTxPartialDisagree(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	e.createEffects()
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 1)
	msgs, keys := payloads("q", 0, "d", 4)
	e.enqueue(ob, msgs...)
	e.sequenceAll(ob)
	var calls atomic.Int32
	if err := ob.Handle("q", outbox.TxBatch(func(ctx context.Context, tx *sql.Tx, ds []outbox.Delivery) outbox.Result {
		n := calls.Add(1)
		for _, d := range ds {
			if err := e.writeEffect(ctx, tx, d); err != nil {
				return outbox.Retry(err.Error())
			}
		}
		switch n {
		case 1:
			return outbox.Retry("later").WithProcessed(2)
		case 2:
			return outbox.Reject("bad").WithProcessed(1)
		}
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	e.start(ob)
	e.awaitProcessed(ob, "q", 0, 4)
	e.stop(ob)
	if dead, err := ob.DeadLetterPage(e.ctx, outbox.DeadLetterFilter{Queue: "q"}); err != nil || len(dead.DeadLetters) != 0 {
		t.Fatalf("dead letters %+v, %v; want none (the disagreeing calls mean retry)", dead, err)
	}
	e.checkEffects(keys...)
}
