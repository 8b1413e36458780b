package conformance

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
)

var queueTests = []test{
	{"Queues/BlockThenRetry", func(t *testing.T, b *Backend) { testBlock(t, b, false, false) }},
	{"Queues/BlockThenSkip", func(t *testing.T, b *Backend) { testBlock(t, b, false, true) }},
	{"Queues/TxBlockThenRetry", func(t *testing.T, b *Backend) { testBlock(t, b, true, false) }},
	{"Queues/TxBlockThenSkip", func(t *testing.T, b *Backend) { testBlock(t, b, true, true) }},
	{"Queues/ExhaustedHeadBlocks", func(t *testing.T, b *Backend) { testExhaustedHeadBlocks(t, b, false) }},
	{"Queues/TxExhaustedHeadBlocks", func(t *testing.T, b *Backend) { testExhaustedHeadBlocks(t, b, true) }},
	{"Queues/PerQueueMaxAttemptsAndPolicy", testPerQueueMaxAttempts},
	{"Queues/PerQueueBackoffLeaseBatch", testPerQueueTimings},
	{"Queues/InvalidOptions", testQueueOptionsInvalid},
	{"Queues/OperatorErrors", testOperatorErrors},
	{"Migrations/FromVersion1", testMigrateFromVersion1},
}

// logRecords keeps every log record, for checks of what was logged.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecords) WithGroup(string) slog.Handler            { return l }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}

// find returns the attributes, as strings, of the records at level whose
// message contains msg.
func (l *logRecords) find(level slog.Level, msg string) []map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]string
	for _, r := range l.recs {
		if r.Level != level || !strings.Contains(r.Message, msg) {
			continue
		}
		m := map[string]string{}
		r.Attrs(func(a slog.Attr) bool {
			m[a.Key] = a.Value.String()
			return true
		})
		out = append(out, m)
	}
	return out
}

// testBlock: under PoisonBlock (MaxAttempts 3) a head that keeps failing is
// tried three times and then blocks its partition: nothing is
// dead-lettered, the partition's later messages wait, the other partition
// of the queue keeps delivering, PartitionStatus reports the block with its
// reason and attempts, and a warning names queue, partition, seq and
// reason. Then either RetryPartition gives the head three fresh tries (it
// blocks again), and once the handler succeeds the partition is delivered
// in order; or SkipPartition dead-letters exactly the head, with its
// attempts and the operator's reason, and the rest is delivered in order.
func testBlock(t *testing.T, b *Backend, transactional, skip bool) {
	e := newEnv(t, b)
	logs := &logRecords{}
	ob := e.outbox(nil, fast(outbox.Config{Logger: slog.New(logs)}))
	e.declare(ob, "q", 2)

	var heal atomic.Bool
	var mu sync.Mutex
	var headTries []int // Attempts of each failed call of partition 0's head
	var got recorder
	result := func(d outbox.Delivery) outbox.Result {
		if d.Partition == 0 && d.Seq == 1 && !heal.Load() {
			mu.Lock()
			headTries = append(headTries, d.Attempts)
			mu.Unlock()
			return outbox.Retry("downstream says no")
		}
		got.add(d)
		return outbox.Success()
	}
	tries := func() []int {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(headTries)
	}
	var h outbox.Handler = outbox.PerMessage(func(_ context.Context, d outbox.Delivery) outbox.Result { return result(d) })
	if transactional {
		h = outbox.TxPerMessage(func(_ context.Context, _ *sql.Tx, d outbox.Delivery) outbox.Result { return result(d) })
	}
	if err := ob.Handle("q", h, outbox.WithMaxAttempts(3), outbox.WithPoisonPolicy(outbox.PoisonBlock)); err != nil {
		t.Fatal(err)
	}
	a, _ := payloads("q", 0, "a", 3)
	bs, _ := payloads("q", 1, "b", 3)
	e.enqueue(ob, append(a, bs...)...)
	e.start(ob)

	blocked := func() outbox.PartitionStatus {
		t.Helper()
		var st outbox.PartitionStatus
		e.pollUntil("q/0 blocked", func() bool {
			st = e.state(ob, "q", 0)
			return st.Blocked
		})
		return st
	}
	st := blocked()
	await(t, got.reached(3), "partition 1 delivered while partition 0 is blocked")
	if st.Attempts != 3 || !strings.Contains(st.LastError, "downstream says no") || st.ProcessedSeq != 0 ||
		st.BlockedAt.IsZero() || st.Leased {
		t.Fatalf("blocked state %+v, want attempts 3, the handler's reason, cursor 0, BlockedAt set, no lease", st)
	}
	if got := tries(); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("the head was tried with Attempts %v, want [0 1 2]", got)
	}
	// While blocked: the other partition takes new messages, this one
	// neither delivers them nor tries its head again.
	e.enqueue(ob, msg("q", 0, "a4"), msg("q", 1, "b4"))
	await(t, got.reached(4), "partition 1's next message while partition 0 is blocked")
	if p := got.payloads(0); len(p) != 0 {
		t.Fatalf("a blocked partition delivered %v", p)
	}
	if got := tries(); len(got) != 3 {
		t.Fatalf("the blocked head was tried again: Attempts %v", got)
	}
	if st := e.state(ob, "q", 0); !st.Blocked || st.Attempts != 3 {
		t.Fatalf("state %+v, want still blocked with attempts 3", st)
	}
	if dl := e.sortedDeadLetters(ob); len(dl) != 0 {
		t.Fatalf("PoisonBlock dead-lettered %d messages, want none", len(dl))
	}
	warned := false
	for _, m := range logs.find(slog.LevelWarn, "blocked") {
		if m["queue"] == "q" && m["partition"] == "0" && m["seq"] == "1" && strings.Contains(m["reason"], "downstream says no") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning naming queue q, partition 0, seq 1 and the reason: %v", logs.find(slog.LevelWarn, ""))
	}

	if skip {
		if err := ob.SkipPartition(e.ctx, "q", 0, "operator: poison"); err != nil {
			t.Fatalf("SkipPartition: %v", err)
		}
		await(t, got.reached(7), "partition 0's messages behind the skipped head")
		if p := got.payloads(0); !slices.Equal(p, []string{"a2", "a3", "a4"}) {
			t.Fatalf("partition 0 delivered %v, want [a2 a3 a4]", p)
		}
		dl := e.sortedDeadLetters(ob)
		if len(dl) != 1 {
			t.Fatalf("%d dead letters after SkipPartition, want 1", len(dl))
		}
		if d := dl[0]; d.Queue != "q" || d.Partition != 0 || d.Seq != 1 || string(d.Payload) != "a1" ||
			d.Attempts != 3 || d.Reason != "operator: poison" {
			t.Fatalf("dead letter %+v, want q/0 seq 1 a1, attempts 3, the operator's reason", d)
		}
		if err := ob.SkipPartition(e.ctx, "q", 0, "again"); !errors.Is(err, outbox.ErrNotBlocked) {
			t.Fatalf("a second SkipPartition: %v, want ErrNotBlocked", err)
		}
	} else {
		// Without healing: the head gets three fresh tries, then blocks again.
		if err := ob.RetryPartition(e.ctx, "q", 0); err != nil {
			t.Fatalf("RetryPartition: %v", err)
		}
		st := blocked()
		if got := tries(); !slices.Equal(got, []int{0, 1, 2, 0, 1, 2}) || st.Attempts != 3 {
			t.Fatalf("after RetryPartition the head was tried with Attempts %v and blocked at %d, want [0 1 2 0 1 2] and 3", got, st.Attempts)
		}
		heal.Store(true)
		if err := ob.RetryPartition(e.ctx, "q", 0); err != nil {
			t.Fatalf("RetryPartition: %v", err)
		}
		await(t, got.reached(8), "partition 0 after RetryPartition")
		if p := got.payloads(0); !slices.Equal(p, []string{"a1", "a2", "a3", "a4"}) {
			t.Fatalf("partition 0 delivered %v, want [a1 a2 a3 a4]", p)
		}
		if s := got.seqs(0); !slices.Equal(s, seqRange(1, 4)) {
			t.Fatalf("partition 0 seqs %v, want 1..4", s)
		}
		if dl := e.sortedDeadLetters(ob); len(dl) != 0 {
			t.Fatalf("%d dead letters after RetryPartition, want none", len(dl))
		}
		if err := ob.RetryPartition(e.ctx, "q", 0); !errors.Is(err, outbox.ErrNotBlocked) {
			t.Fatalf("RetryPartition of a running partition: %v, want ErrNotBlocked", err)
		}
	}
	st = e.awaitProcessed(ob, "q", 0, 4)
	if st.Blocked || st.Attempts != 0 || !st.BlockedAt.IsZero() {
		t.Fatalf("state after the operator's action %+v, want unblocked with attempts 0", st)
	}
	if p := got.payloads(1); !slices.Equal(p, []string{"b1", "b2", "b3", "b4"}) {
		t.Fatalf("partition 1 delivered %v, want [b1 b2 b3 b4]", p)
	}
	e.stop(ob)
}

// testExhaustedHeadBlocks: a head whose attempts already reached
// MaxAttempts when it is claimed (its workers crashed, and each lease
// takeover counted one) blocks its partition under PoisonBlock without
// another handler call, keeping its attempts and writing no dead letter;
// RetryPartition then delivers it.
func testExhaustedHeadBlocks(t *testing.T, b *Backend, transactional bool) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 1)
	e.enqueue(ob, msg("q", 0, "m1"), msg("q", 0, "m2"))
	e.sequenceAll(ob)
	// What three crashed deliveries leave behind (see Faults for the
	// crashes themselves): attempts 3, no live lease.
	e.exec(e.db, "UPDATE "+e.table("processors")+" SET attempts = 3 WHERE queue = ?", "q")
	var calls atomic.Int32
	var got recorder
	result := func(d outbox.Delivery) outbox.Result {
		calls.Add(1)
		got.add(d)
		return outbox.Success()
	}
	var h outbox.Handler = outbox.PerMessage(func(_ context.Context, d outbox.Delivery) outbox.Result { return result(d) })
	if transactional {
		h = outbox.TxPerMessage(func(_ context.Context, _ *sql.Tx, d outbox.Delivery) outbox.Result { return result(d) })
	}
	if err := ob.Handle("q", h, outbox.WithMaxAttempts(3), outbox.WithPoisonPolicy(outbox.PoisonBlock)); err != nil {
		t.Fatal(err)
	}
	e.start(ob)
	var st outbox.PartitionStatus
	e.pollUntil("q/0 blocked", func() bool {
		st = e.state(ob, "q", 0)
		return st.Blocked
	})
	if n := calls.Load(); n != 0 {
		t.Fatalf("the exhausted head's handler was called %d times, want 0", n)
	}
	if st.Attempts != 3 || st.ProcessedSeq != 0 || !strings.Contains(st.LastError, "max attempts (3)") {
		t.Fatalf("state %+v, want attempts 3 kept, cursor 0, a reason naming max attempts", st)
	}
	if dl := e.sortedDeadLetters(ob); len(dl) != 0 {
		t.Fatalf("%d dead letters, want none", len(dl))
	}
	if err := ob.RetryPartition(e.ctx, "q", 0); err != nil {
		t.Fatal(err)
	}
	await(t, got.reached(2), "both messages after RetryPartition")
	e.stop(ob)
	if p := got.payloads(0); !slices.Equal(p, []string{"m1", "m2"}) {
		t.Fatalf("delivered %v, want [m1 m2]", p)
	}
}

// testPerQueueMaxAttempts: queues of one outbox keep their own MaxAttempts
// and poison policy. With Config.MaxAttempts 3: queue a (MaxAttempts 2)
// dead-letters its failing head after 2 tries, queue b (MaxAttempts 4)
// after 4, queue c (PoisonBlock, Config's 3) blocks after 3 and
// dead-letters nothing; the messages behind a and b's heads are delivered.
func testPerQueueMaxAttempts(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{MaxAttempts: 3}))
	var mu sync.Mutex
	calls := map[string]int{}
	var got recorder
	h := outbox.PerMessage(func(_ context.Context, d outbox.Delivery) outbox.Result {
		if d.Seq == 1 {
			mu.Lock()
			calls[d.Queue]++
			mu.Unlock()
			return outbox.Retry("fails on " + d.Queue)
		}
		got.add(d)
		return outbox.Success()
	})
	opts := map[string][]outbox.QueueOption{
		"a": {outbox.WithMaxAttempts(2)},
		"b": {outbox.WithMaxAttempts(4), outbox.WithPoisonPolicy(outbox.PoisonSkip)},
		"c": {outbox.WithPoisonPolicy(outbox.PoisonBlock)},
	}
	for _, q := range []string{"a", "b", "c"} {
		e.declare(ob, q, 1)
		if err := ob.Handle(q, h, opts[q]...); err != nil {
			t.Fatal(err)
		}
		e.enqueue(ob, msg(q, 0, q+"1"), msg(q, 0, q+"2"))
	}
	e.start(ob)
	e.awaitProcessed(ob, "a", 0, 2)
	e.awaitProcessed(ob, "b", 0, 2)
	e.pollUntil("c/0 blocked", func() bool { return e.state(ob, "c", 0).Blocked })
	e.stop(ob)

	mu.Lock()
	defer mu.Unlock()
	if calls["a"] != 2 || calls["b"] != 4 || calls["c"] != 3 {
		t.Errorf("heads tried a %d, b %d, c %d times; want 2, 4, 3", calls["a"], calls["b"], calls["c"])
	}
	want := map[string]int{"a": 2, "b": 4}
	for _, d := range e.sortedDeadLetters(ob) {
		if n, ok := want[d.Queue]; !ok || d.Seq != 1 || d.Attempts != n {
			t.Errorf("dead letter %s seq %d attempts %d; want only a and b's heads, with 2 and 4", d.Queue, d.Seq, d.Attempts)
		}
		delete(want, d.Queue)
	}
	if len(want) > 0 {
		t.Errorf("no dead letter for %v", want)
	}
	if st := e.state(ob, "c", 0); st.Attempts != 3 || st.ProcessedSeq != 0 {
		t.Errorf("c/0 state %+v, want attempts 3 and cursor 0", st)
	}
	if p := got.payloads(0); !sameSet(p, []string{"a2", "b2"}) {
		t.Errorf("delivered %v, want a2 and b2", p)
	}
}

// testPerQueueTimings: a queue's RetryBackoff, LeaseDuration and BatchSize
// apply to it and not to the others. The slow queue's backoff after one
// failure is at least half its RetryBase (equal jitter) while the fast
// one's is under Config.RetryMax; a handler of the short-lease queue has
// at most 80% of its lease, one of the default queue more than the short
// lease; the small-batch queue's calls carry at most its BatchSize.
func testPerQueueTimings(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{}))
	const shortLease = 3 * time.Second
	var mu sync.Mutex
	left := map[string]time.Duration{} // least handler time left per queue
	largest := map[string]int{}        // largest batch per queue
	var got recorder
	h := outbox.Batch(func(ctx context.Context, ds []outbox.Delivery) outbox.Result {
		q := ds[0].Queue
		dl, _ := ctx.Deadline()
		mu.Lock()
		if l, ok := left[q]; !ok || time.Until(dl) < l {
			left[q] = time.Until(dl)
		}
		largest[q] = max(largest[q], len(ds))
		mu.Unlock()
		if (q == "slow" || q == "fast") && ds[0].Seq == 1 && ds[0].Attempts == 0 {
			return outbox.Retry("once")
		}
		got.add(ds...)
		return outbox.Success()
	})
	opts := map[string][]outbox.QueueOption{
		"slow":  {outbox.WithRetryBackoff(time.Hour, time.Hour)},
		"fast":  nil,
		"short": {outbox.WithLeaseDuration(shortLease)},
		"small": {outbox.WithBatchSize(2)},
	}
	for q, o := range opts {
		e.declare(ob, q, 1)
		if err := ob.Handle(q, h, o...); err != nil {
			t.Fatal(err)
		}
	}
	small, _ := payloads("small", 0, "s", 7)
	e.enqueue(ob, append(small, msg("slow", 0, "x"), msg("fast", 0, "y"), msg("short", 0, "z"))...)
	e.sequenceAll(ob) // the whole batch is visible to the first claim
	e.start(ob)
	e.awaitProcessed(ob, "small", 0, 7)
	e.awaitProcessed(ob, "short", 0, 1)
	e.awaitProcessed(ob, "fast", 0, 1)
	var slow outbox.PartitionStatus
	e.pollUntil("slow/0 failed once", func() bool {
		slow = e.state(ob, "slow", 0)
		return slow.Attempts == 1
	})
	e.stop(ob)

	if wait := slow.NextAttemptAt.Sub(slow.Now); wait < 29*time.Minute {
		t.Errorf("slow queue retries in %v, want at least 30m (RetryBase 1h, equal jitter)", wait)
	}
	mu.Lock()
	defer mu.Unlock()
	if l := left["short"]; l > shortLease*8/10 {
		t.Errorf("the short-lease queue's handler had %v, want at most %v", l, shortLease*8/10)
	}
	if l := left["fast"]; l <= shortLease {
		t.Errorf("a default-lease queue's handler had %v, want more than %v (Config's 30s lease)", l, shortLease)
	}
	if n := largest["small"]; n > 2 {
		t.Errorf("the small-batch queue got a batch of %d, want at most 2", n)
	}
	if p := got.payloads(-1); !slices.Contains(p, "y") {
		t.Errorf("the fast queue's retried message was not delivered: %v", p)
	}
}

// testQueueOptionsInvalid: a per-queue value out of its Config range is
// rejected by Handle with ErrInvalidConfig naming the field and the queue,
// and registers nothing (the same queue can then be handled).
func testQueueOptionsInvalid(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 1)
	h := outbox.PerMessage(func(context.Context, outbox.Delivery) outbox.Result { return outbox.Success() })
	for field, opt := range map[string]outbox.QueueOption{
		"MaxAttempts":   outbox.WithMaxAttempts(-1),
		"BatchSize":     outbox.WithBatchSize(10001),
		"LeaseDuration": outbox.WithLeaseDuration(time.Millisecond),
		"RetryMax":      outbox.WithRetryBackoff(time.Second, 500*time.Millisecond),
		"PoisonPolicy":  outbox.WithPoisonPolicy(outbox.PoisonBlock), // MaxAttempts is 0
	} {
		err := ob.Handle("q", h, opt)
		if !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), field) || !strings.Contains(err.Error(), `"q"`) {
			t.Errorf("%s: %v, want ErrInvalidConfig naming %s and queue q", field, err, field)
		}
	}
	if err := ob.Handle("q", h, outbox.WithMaxAttempts(1), outbox.WithPoisonPolicy(outbox.PoisonBlock)); err != nil {
		t.Fatalf("Handle after rejected options: %v", err)
	}
}

// testOperatorErrors: RetryPartition and SkipPartition return typed errors
// for bad input and for a partition that is not blocked, and change
// nothing.
func testOperatorErrors(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 2)
	e.enqueue(ob, msg("q", 0, "m"))
	e.sequenceAll(ob)
	before := e.state(ob, "q", 0)
	for name, c := range map[string]struct {
		queue     string
		partition int
		want      error
	}{
		"not blocked":       {"q", 0, outbox.ErrNotBlocked},
		"unknown queue":     {"nope", 0, outbox.ErrUnknownQueue},
		"unknown partition": {"q", 2, outbox.ErrUnknownQueue},
		"invalid name":      {"-bad-", 0, outbox.ErrInvalidQueueName},
		"negative":          {"q", -1, outbox.ErrPartitionOutOfRange},
	} {
		if err := ob.RetryPartition(e.ctx, c.queue, c.partition); !errors.Is(err, c.want) {
			t.Errorf("RetryPartition, %s: %v, want %v", name, err, c.want)
		}
		if err := ob.SkipPartition(e.ctx, c.queue, c.partition, "x"); !errors.Is(err, c.want) {
			t.Errorf("SkipPartition, %s: %v, want %v", name, err, c.want)
		}
	}
	after := e.state(ob, "q", 0)
	if after.ProcessedSeq != before.ProcessedSeq || after.Attempts != before.Attempts || after.Blocked ||
		!after.NextAttemptAt.Equal(before.NextAttemptAt) {
		t.Errorf("state changed by rejected calls: %+v, was %+v", after, before)
	}
	if dl := e.sortedDeadLetters(ob); len(dl) != 0 {
		t.Errorf("rejected calls wrote %d dead letters", len(dl))
	}
}

// testMigrateFromVersion1: a database at schema version 1, with a queue
// and messages in it, migrates to the current version (blocked_at added),
// and the messages are then delivered; blocking works on it.
func testMigrateFromVersion1(t *testing.T, b *Backend) {
	e := newBareEnv(t, b)
	s := b.Dialect
	if s == nil {
		t.Skip("the dialect has no schema")
	}
	if err := migrations.Up(e.ctx, e.db, firstVersion{s}); err != nil {
		t.Fatalf("Up to version 1: %v", err)
	}
	if n := e.count("SELECT COUNT(*) FROM " + e.table("schema_version") + " WHERE version_id > 1"); n != 0 {
		t.Fatalf("%d versions above 1 applied, want none", n)
	}
	// Messages enqueued at version 1 (by a version-1 producer, whose
	// insert names the columns of that version only), then sequenced.
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 1)
	for _, p := range []string{"m1", "m2", "m3"} {
		e.exec(e.db, "INSERT INTO "+e.table("messages")+" (partition_id, payload, payload_type) VALUES ((SELECT id FROM "+
			e.table("partitions")+" WHERE queue = 'q' AND partition_num = 0), '"+p+"', 'text/plain')")
	}
	e.sequenceAll(ob)

	if err := migrations.Up(e.ctx, e.db, s); err != nil {
		t.Fatalf("Up from version 1: %v", err)
	}
	e.checkColumns()
	e.checkVersionOnce()
	if st := e.state(ob, "q", 0); st.Blocked || st.LastSeq != 3 {
		t.Fatalf("state after the upgrade %+v, want 3 sequenced messages, not blocked", st)
	}
	var got recorder
	if err := ob.Handle("q", outbox.PerMessage(func(_ context.Context, d outbox.Delivery) outbox.Result {
		if d.Seq == 2 {
			return outbox.Retry("no")
		}
		got.add(d)
		return outbox.Success()
	}), outbox.WithMaxAttempts(1), outbox.WithPoisonPolicy(outbox.PoisonBlock)); err != nil {
		t.Fatal(err)
	}
	e.start(ob)
	await(t, got.reached(1), "the first message after the upgrade")
	e.pollUntil("q/0 blocked at seq 2", func() bool {
		st := e.state(ob, "q", 0)
		return st.Blocked && st.ProcessedSeq == 1
	})
	if err := ob.SkipPartition(e.ctx, "q", 0, "skip"); err != nil {
		t.Fatal(err)
	}
	e.awaitProcessed(ob, "q", 0, 3)
	e.stop(ob)
	if p := got.payloads(0); !slices.Equal(p, []string{"m1", "m3"}) {
		t.Fatalf("delivered %v, want [m1 m3]", p)
	}
}

// firstVersion is a schema with only its first migration file.
type firstVersion struct{ dialect.Schema }

func (f firstVersion) Migrations() fs.FS {
	all := f.Schema.Migrations()
	names, err := fs.Glob(all, "*.sql")
	if err != nil || len(names) == 0 {
		panic(fmt.Sprintf("conformance: no migrations: %v", err))
	}
	slices.Sort(names)
	data, err := fs.ReadFile(all, names[0])
	if err != nil {
		panic(err)
	}
	return fstest.MapFS{names[0]: &fstest.MapFile{Data: data}}
}
