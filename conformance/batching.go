package conformance

import (
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/outbox"
)

// Under load the core sequences many partitions in one transaction, claims
// several partitions in one statement and writes several partitions' acks
// in one transaction. These cases hold the dialect methods to what that
// needs, and the core's sequencer to a gap-free result across many
// partitions per transaction.
var batchingTests = []test{
	{"Batching/SequencerManyPartitionsPerTransaction", testSequenceManyPartitions},
	{"Batching/AcksInOneTransactionOneLeaseLost", testAcksOneLeaseLost},
}

// testSequenceManyPartitions: 16 partitions with 3 committed messages each
// and, where producers can interleave, an older transaction still open on
// partition 3. The sequencer, at 5 rows per transaction, spreads its budget
// over many partitions per transaction; every committed message gets its
// seq gap-free, the open one none, and once it commits it gets the next seq
// of its partition.
func testSequenceManyPartitions(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, outbox.Config{SequencerBatch: 5})
	const partitions, per = 16, 3
	e.declare(ob, "q", partitions)
	var held *sql.Tx
	if !b.singleWriter() {
		held = e.begin(e.pool())
		if err := ob.Enqueue(e.ctx, held, msg("q", 3, "held")); err != nil {
			t.Fatal(err)
		}
	}
	var msgs []outbox.Message
	for i := range per {
		for p := range partitions {
			msgs = append(msgs, msg("q", p, fmt.Sprintf("p%d-%d", p, i)))
		}
	}
	e.enqueue(ob, msgs...)
	if n := e.sequenceAll(ob); n != partitions*per {
		t.Fatalf("sequenced %d, want %d", n, partitions*per)
	}
	if total := e.checkGapFree(); total != partitions*per {
		t.Fatalf("%d messages sequenced, want %d", total, partitions*per)
	}
	seqs := e.seqsByPayload()
	for p := range partitions {
		for i := range per {
			if s := seqs[fmt.Sprintf("p%d-%d", p, i)]; s != int64(i+1) {
				t.Fatalf("p%d-%d: seq %d, want %d", p, i, s, i+1)
			}
		}
		if st := e.state(ob, "q", p); st.LastSeq != per {
			t.Fatalf("partition %d: last_seq %d, want %d", p, st.LastSeq, per)
		}
	}
	if held == nil {
		return
	}
	if s := seqs["held"]; s != 0 {
		t.Fatalf("the open transaction's message got seq %d", s)
	}
	e.commit(held)
	if n := e.sequenceAll(ob); n != 1 {
		t.Fatalf("after the late commit: sequenced %d, want 1", n)
	}
	if s := e.seqsByPayload()["held"]; s != per+1 {
		t.Fatalf("late message: seq %d, want %d", s, per+1)
	}
	e.checkGapFree()
}

// testAcksOneLeaseLost: partitions 0 and 2 are claimed by one ClaimLease
// (one statement, one token); partition 1's first lease expired and
// another claimer holds it now. One transaction then writes all three acks,
// each fenced by the token it was claimed with: the two live ones apply and
// delete their delivered rows, the stale one matches nothing and changes
// nothing, and the transaction commits the two.
func testAcksOneLeaseLost(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	d := e.b.Dialect
	ob := e.outbox(nil, outbox.Config{})
	e.declare(ob, "q", 3)
	lr, err := d.LookupQueue(e.ctx, e.db, &dialect.LookupQueueParams{Queue: "q"})
	if err != nil {
		t.Fatal(err)
	}
	ids := lr.PartitionIDs
	claim := func(token string, limit int, lease time.Duration) []dialect.ClaimedPartition {
		t.Helper()
		res, err := claimLeases(e.ctx, d, e.db, &dialect.ClaimLeaseParams{Queues: []string{"q"}, Limit: limit, Token: token, Lease: lease})
		if err != nil {
			t.Fatalf("ClaimLease(%s): %v", token, err)
		}
		return res.Partitions
	}

	e.enqueue(ob, msg("q", 1, "one"))
	e.sequenceAll(ob)
	if got := claim("stale", 1, 200*time.Millisecond); len(got) != 1 || got[0].PartitionID != ids[1] {
		t.Fatalf("first claim: %+v, want partition 1", got)
	}
	e.pollUntil("partition 1's lease to expire", func() bool { return !e.state(ob, "q", 1).Leased })
	// A takeover may wait for the backoff the expired lease earned.
	e.pollUntil("another claimer to take partition 1 over", func() bool {
		got := claim("taker", 1, 30*time.Second)
		if len(got) == 1 && got[0].PartitionID != ids[1] {
			t.Fatalf("takeover: %+v, want partition 1", got)
		}
		return len(got) == 1
	})
	e.enqueue(ob, msg("q", 0, "zero"), msg("q", 2, "two"))
	e.sequenceAll(ob)
	both := claim("both", 3, 30*time.Second)
	if len(both) != 2 || both[0].PartitionID == ids[1] || both[1].PartitionID == ids[1] {
		t.Fatalf("claim of several: %+v, want partitions 0 and 2", both)
	}

	tx, err := e.db.BeginTx(e.ctx, d.TxOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	acks := []struct {
		id    int64
		token string
		want  bool
	}{{ids[0], "both", true}, {ids[1], "stale", false}, {ids[2], "both", true}}
	for _, a := range acks {
		updated, err := updateCursor(e.ctx, d, tx, &dialect.CursorUpdate{
			PartitionID: a.id, Token: a.token, ProcessedSeq: 1, DeleteThrough: 1,
		})
		if err != nil {
			t.Fatalf("ack of partition %d: %v", a.id, err)
		}
		if updated != a.want {
			t.Fatalf("ack of partition %d with token %q: Updated %v, want %v", a.id, a.token, updated, a.want)
		}
	}
	e.commit(tx)

	for _, p := range []int{0, 2} {
		if st := e.state(ob, "q", p); st.ProcessedSeq != 1 || st.Leased {
			t.Errorf("partition %d: processed %d, leased %v; want 1 and released", p, st.ProcessedSeq, st.Leased)
		}
	}
	st := e.state(ob, "q", 1)
	if st.ProcessedSeq != 0 || !st.Leased || st.Attempts != 1 {
		t.Errorf("partition 1 after the stale ack: processed %d, leased %v, attempts %d; want 0, still the taker's, 1",
			st.ProcessedSeq, st.Leased, st.Attempts)
	}
	if n := e.count("SELECT COUNT(*) FROM "+e.table("messages")+" WHERE partition_id = ?", ids[1]); n != 1 {
		t.Errorf("partition 1 has %d message rows after the stale ack, want 1 (its row must not be deleted)", n)
	}
}
