package conformance

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/outbox"
)

var sequencerTests = []test{
	{"Sequencer/OutOfOrderCommits", testOutOfOrderCommits},
	{"Sequencer/ConcurrentProducersAndSequencers", testConcurrentSequencing},
	{"Sequencer/WorkersClaimNumberedByID", testClaimNumberedByID},
}

// claimRecorder records the partitions that ClaimLeases calls named by id.
type claimRecorder struct {
	dialect.Dialect
	mu   sync.Mutex
	byID []int64
}

func (d *claimRecorder) ClaimLeases(ctx context.Context, pool dialect.Pool, p *dialect.ClaimLeaseParams) (*dialect.ClaimResult, error) {
	d.mu.Lock()
	d.byID = append(d.byID, p.PartitionIDs...)
	d.mu.Unlock()
	return d.Dialect.ClaimLeases(ctx, pool, p)
}

func (d *claimRecorder) triedByID(pid int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Contains(d.byID, pid)
}

// testClaimNumberedByID: in queues of many partitions, the workers try to
// claim the partition of a message the sequencer numbered by its id (a claim that reads one cursor
// row, not every row of the queue), in decoupled and in transactional
// mode, and the message is delivered. Whether that claim or the queue's
// claim, racing with it, takes the partition is timing. Where inserts
// number their rows themselves (Capabilities.SequencesOnInsert) the
// sequencer numbers none and there is nothing to offer: the queue's claim
// delivers.
func testClaimNumberedByID(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	rec := &claimRecorder{Dialect: b.Dialect}
	ob, err := outbox.New(e.db, rec, fast(outbox.Config{PollInterval: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = ob.Stop(ctx)
	})
	// Queues of many partitions: below a few hundred, a claim of the
	// queue costs little and the workers do not claim by id.
	e.declare(ob, "d", 300)
	e.declare(ob, "t", 300)
	var got recorder
	e.handle(ob, "d", outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
		got.add(ds...)
		return outbox.Success()
	}))
	e.handle(ob, "t", outbox.TxBatch(func(_ context.Context, _ *sql.Tx, ds []outbox.Delivery) outbox.Result {
		got.add(ds...)
		return outbox.Success()
	}))
	e.start(ob)
	for i, m := range []outbox.Message{msg("d", 5, "a"), msg("t", 3, "b")} {
		if err := ob.InTx(e.ctx, func(tx *sql.Tx) error { return ob.Enqueue(e.ctx, tx, m) }); err != nil {
			t.Fatal(err)
		}
		await(t, got.reached(i+1), "message "+m.Queue)
	}
	if b.Dialect.Capabilities().SequencesOnInsert {
		return
	}
	var pids []int64
	for _, q := range []struct {
		name string
		p    int
	}{{"d", 5}, {"t", 3}} {
		pids = append(pids, int64(e.count("SELECT id FROM "+e.table("partitions")+" WHERE queue = ? AND partition_num = ?", q.name, q.p)))
	}
	for _, pid := range pids {
		e.pollUntil(fmt.Sprintf("a claim of partition %d by id", pid), func() bool { return rec.triedByID(pid) })
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// seqsByPayload reads every message's seq (0 while unsequenced), keyed by
// payload; payloads must be unique.
func (e *env) seqsByPayload() map[string]int64 {
	e.t.Helper()
	rows, err := e.db.QueryContext(e.ctx, "SELECT payload, seq FROM "+e.table("messages"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var p []byte
		var s sql.NullInt64
		if err := rows.Scan(&p, &s); err != nil {
			e.t.Fatal(err)
		}
		if _, dup := out[string(p)]; dup {
			e.t.Fatalf("payload %q stored twice", p)
		}
		out[string(p)] = s.Int64
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// partitionSeqs reads each partition's seqs, keyed by partition row id.
func (e *env) partitionSeqs() map[int64][]int64 {
	e.t.Helper()
	rows, err := e.db.QueryContext(e.ctx, "SELECT partition_id, seq FROM "+e.table("messages")+" ORDER BY partition_id, seq")
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64][]int64{}
	for rows.Next() {
		var p int64
		var s sql.NullInt64
		if err := rows.Scan(&p, &s); err != nil {
			e.t.Fatal(err)
		}
		if !s.Valid {
			e.t.Fatalf("partition %d has an unsequenced message after draining", p)
		}
		out[p] = append(out[p], s.Int64)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// checkGapFree asserts every partition's seqs are exactly 1..n.
func (e *env) checkGapFree() int {
	e.t.Helper()
	total := 0
	for p, seqs := range e.partitionSeqs() {
		for i, s := range seqs {
			if s != int64(i+1) {
				e.t.Fatalf("partition %d: seqs are not 1..%d: position %d holds %d", p, len(seqs), i, s)
			}
		}
		total += len(seqs)
	}
	return total
}

// testOutOfOrderCommits: A enqueues first and commits last; B and C commit
// in between, with the sequencer running between commits. Every message gets
// one seq, gap-free, in visibility order, and A's own order is kept.
func testOutOfOrderCommits(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, outbox.Config{})
	e.declare(ob, "q", 2)
	producers := e.pool() // on a single-writer backend all share one pool

	if b.singleWriter() {
		// One writer: a transaction holds the database until it ends, so
		// commits cannot interleave; ids are assigned in commit order. Check
		// the same contract with sequential transactions.
		for _, name := range []string{"b", "c", "a"} {
			e.enqueue(ob, msg("q", 0, name+"1"), msg("q", 1, name+"2"), msg("q", 0, name+"3"))
			e.sequenceAll(ob)
		}
	} else {
		txA := e.begin(producers)
		enq := func(tx *sql.Tx, name string) {
			t.Helper()
			for _, m := range []outbox.Message{msg("q", 0, name+"1"), msg("q", 1, name+"2"), msg("q", 0, name+"3")} {
				if err := ob.Enqueue(e.ctx, tx, m); err != nil {
					t.Fatalf("enqueue %s: %v", name, err)
				}
			}
		}
		enq(txA, "a")
		txB := e.begin(producers)
		enq(txB, "b")
		txC := e.begin(producers)
		enq(txC, "c")

		if n := e.sequenceAll(ob); n != 0 {
			t.Fatalf("sequenced %d uncommitted messages", n)
		}
		e.commit(txB)
		if n := e.sequenceAll(ob); n != 3 {
			t.Fatalf("after B: sequenced %d, want 3", n)
		}
		e.commit(txC)
		if n := e.sequenceAll(ob); n != 3 {
			t.Fatalf("after C: sequenced %d, want 3", n)
		}
		e.commit(txA)
		if n := e.sequenceAll(ob); n != 3 {
			t.Fatalf("after A: sequenced %d, want 3", n)
		}
	}

	if total := e.checkGapFree(); total != 9 {
		t.Fatalf("%d messages stored, want 9", total)
	}
	s := e.seqsByPayload()
	want := map[string]int64{"b1": 1, "b3": 2, "c1": 3, "c3": 4, "a1": 5, "a3": 6, "b2": 1, "c2": 2, "a2": 3}
	for p, w := range want {
		if s[p] != w {
			t.Errorf("%s: seq %d, want %d (all: %v)", p, s[p], w, s)
		}
	}
}

// testConcurrentSequencing: 8 producers × 500 messages over 4 partitions,
// in transactions of 1–7 messages, while sequencers of two outboxes (two
// pools where the backend allows) run. Each partition ends 1..n, each
// message sequenced once, and each producer's order is kept.
func testConcurrentSequencing(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	const producers, perProducer, partitions = 8, 500, 4
	cfg := fast(outbox.Config{Sequencers: 2})
	obs := []*outbox.Outbox{e.outbox(nil, cfg), e.outbox(e.pool(), cfg)}
	e.declare(obs[0], "q", partitions)
	for _, ob := range obs {
		e.start(ob)
	}

	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ob := obs[p%len(obs)]
			for i := 0; i < perProducer; {
				n := min(1+(i+p)%7, perProducer-i)
				msgs := make([]outbox.Message, n)
				for j := range msgs {
					msgs[j] = msg("q", (i+j)%partitions, fmt.Sprintf("p%d-%d", p, i+j))
				}
				if err := ob.InTx(e.ctx, func(tx *sql.Tx) error { return ob.EnqueueBatch(e.ctx, tx, msgs) }); err != nil {
					errs <- err
					return
				}
				i += n
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("producer: %v", err)
	}
	for _, ob := range obs {
		e.stop(ob)
	}
	e.sequenceAll(obs[0])

	if total := e.checkGapFree(); total != producers*perProducer {
		t.Fatalf("%d messages sequenced, want %d", total, producers*perProducer)
	}
	seqs := e.seqsByPayload()
	for p := range producers {
		last := map[int]int64{}
		for i := range perProducer {
			s := seqs[fmt.Sprintf("p%d-%d", p, i)]
			part := i % partitions
			if s <= last[part] {
				t.Fatalf("producer %d message %d: seq %d not after %d in partition %d", p, i, s, last[part], part)
			}
			last[part] = s
		}
	}
	for i := range partitions {
		if st := e.state(obs[0], "q", i); st.LastSeq != producers*perProducer/partitions {
			t.Fatalf("partition %d: last_seq %d", i, st.LastSeq)
		}
	}
}
