package conformance

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/migrations"
)

// contractCase is one per-method contract case. It takes a testing.TB, not
// a *testing.T, and never calls Run, so that the mutation tests can run it
// with a recorder and expect it to fail.
type contractCase struct {
	name string
	fn   func(t testing.TB, b *Backend)
	// twoWriters, when set, says why the case needs two write
	// transactions open at once; it is not run on a single-writer backend
	// (Capabilities.SingleWriter), where that cannot happen.
	twoWriters string
	// applies, when set, selects the case by the dialect's capabilities:
	// it checks what a capability promises (a one-call sequencer round,
	// sequencing on insert), so it does not apply without it.
	applies func(dialect.Capabilities) bool
}

func sequencesPending(c dialect.Capabilities) bool  { return c.SequencePending }
func sequencesOnInsert(c dialect.Capabilities) bool { return c.SequencesOnInsert }

// contractCases check the invariants of dialect/doc.go one by one, by
// calling the dialect's methods directly.
var contractCases = []contractCase{
	{name: "DeclareQueue", fn: testContractDeclareQueue},
	{name: "InsertManyInOrder", fn: testInsertManyInOrder},
	{name: "SequenceGapFree", fn: testSequenceGapFree},
	{name: "SequenceSkipsLockedPartition", fn: testSequenceSkipsLockedPartition, twoWriters: "the first sequencer's transaction is the only writer"},
	{name: "SequenceSkipsUncommitted", fn: testSequenceSkipsUncommitted, twoWriters: "an open producer transaction excludes every other writer"},
	{name: "SequenceConcurrent", fn: testSequenceConcurrent},
	{name: "ClaimExclusive", fn: testClaimExclusive},
	{name: "ClaimConcurrent", fn: testClaimConcurrent},
	{name: "ClaimByID", fn: testClaimByID},
	{name: "UpdateFenced", fn: testUpdateFenced},
	{name: "TakeoverCountsOneAttempt", fn: testTakeoverCountsOneAttempt},
	{name: "ReleaseNeedsToken", fn: testReleaseNeedsToken},
	{name: "BackoffDelaysClaim", fn: testBackoffDelaysClaim},
	{name: "LockPartitionSkipsHeld", fn: testLockPartitionSkipsHeld, twoWriters: "the transaction holding the row is the only writer"},
	{name: "VacuumBehindCursor", fn: testVacuumBehindCursor},
	{name: "DatabaseClock", fn: testDatabaseClock},
	{name: "InsertAllOrNothing", fn: testInsertAllOrNothing},
	{name: "ReadInSeqOrder", fn: testReadInSeqOrder},
	{name: "DeadLetters", fn: testDeadLetters},
	{name: "ReadPartitions", fn: testReadPartitions},
	{name: "SequencePartitions", fn: testSequencePartitions},
	{name: "SequencePartitionsSkipsLocked", fn: testSequencePartitionsSkipsLocked,
		twoWriters: "the first sequencer's transaction is the only writer"},
	{name: "InsertSequencesInCommitOrder", fn: testInsertSequencesInCommitOrder, applies: sequencesOnInsert},
	{name: "UpdateCursors", fn: testUpdateCursors},
	{name: "SequencePending", fn: testSequencePending, applies: sequencesPending},
	{name: "SequencePendingSkipsLocked", fn: testSequencePendingSkipsLocked, applies: sequencesPending,
		twoWriters: "the first sequencer's transaction is the only writer"},
	{name: "SequencePendingConcurrent", fn: testSequencePendingConcurrent, applies: sequencesPending},
	{name: "SequencePendingUnsupported", fn: testSequencePendingUnsupported, applies: func(c dialect.Capabilities) bool { return !c.SequencePending }},
}

// runs reports whether c runs against a dialect with caps, and why not.
func (c contractCase) runs(caps dialect.Capabilities) (bool, string) {
	if c.twoWriters != "" && caps.SingleWriter {
		return false, "not run on a single-writer backend: " + c.twoWriters
	}
	if c.applies != nil && !c.applies(caps) {
		return false, "does not apply to the dialect's capabilities"
	}
	return true, ""
}

// RunDialect runs the per-method contract cases against b as parallel
// subtests: each calls the dialect's methods directly on a fresh database
// and checks one invariant of the dialect package's contract (the
// sequencer never waits on uncommitted rows and never double-assigns, a
// claim is exclusive, fenced updates need the live token, a takeover counts
// one attempt, LockPartition skips held rows, Vacuum stays behind the
// cursor, database time decides leases, inserts are all or nothing). Where
// Run proves the outbox built on a dialect, RunDialect points at the method
// that breaks; a dialect author runs both. Cases are selected by the
// dialect's Capabilities only.
func RunDialect(t *testing.T, b Backend) {
	t.Helper()
	b.init(t)
	caps := b.Dialect.Capabilities()
	for _, c := range contractCases {
		if ok, why := c.runs(caps); !ok {
			t.Logf("%s: %s", c.name, why)
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, &b)
		})
	}
}

// contractTimeout bounds each call of a contract case, so that a broken
// dialect fails instead of hanging; like timeout, it only decides how long
// a broken implementation takes to fail.
const contractTimeout = timeout

// noWait bounds a call that must not wait on another transaction: one
// that does fails by it. It is far above what one statement takes, even
// under -race on a loaded machine.
const noWait = 5 * time.Second

// dialectEnv is one contract case's database and dialect.
type dialectEnv struct {
	t    testing.TB
	b    *Backend
	d    dialect.Dialect
	open func() *sql.DB
	db   *sql.DB
	ctx  context.Context
}

func newDialectEnv(t testing.TB, b *Backend) *dialectEnv {
	t.Helper()
	open := b.NewDatabase(t)
	x := &dialectEnv{t: t, b: b, d: b.Dialect, open: open, db: open(), ctx: t.Context()}
	if err := migrations.Up(x.ctx, x.db, b.Dialect); err != nil {
		t.Fatalf("migrations: %v", err)
	}
	return x
}

// pool returns a pool standing for another process: a new one, or the
// shared one on a single-writer backend.
func (x *dialectEnv) pool() *sql.DB {
	if x.b.singleWriter() {
		return x.db
	}
	return x.open()
}

// bounded returns a context that ends after contractTimeout.
func (x *dialectEnv) bounded() (context.Context, context.CancelFunc) {
	return context.WithTimeout(x.ctx, contractTimeout)
}

// inTx runs fn in a pipeline transaction on db (x.db when nil) and commits.
func (x *dialectEnv) inTx(db *sql.DB, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return x.inTxWithin(db, contractTimeout, fn)
}

// inTxWithin is inTx bounded by d.
func (x *dialectEnv) inTxWithin(db *sql.DB, d time.Duration, fn func(ctx context.Context, tx *sql.Tx) error) error {
	if db == nil {
		db = x.db
	}
	ctx, cancel := context.WithTimeout(x.ctx, d)
	defer cancel()
	tx, err := db.BeginTx(ctx, x.d.TxOptions())
	if err != nil {
		return err
	}
	if err := fn(ctx, tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// declare declares queue and returns its partition ids.
func (x *dialectEnv) declare(queue string, partitions int) []int64 {
	x.t.Helper()
	var ids []int64
	err := x.inTx(nil, func(ctx context.Context, tx *sql.Tx) error {
		r, err := x.d.DeclareQueue(ctx, tx, &dialect.DeclareQueueParams{Queue: queue, Partitions: partitions})
		if err == nil {
			ids = r.PartitionIDs
		}
		return err
	})
	if err != nil || len(ids) != partitions {
		x.t.Fatalf("DeclareQueue(%q, %d): ids %v, %v", queue, partitions, ids, err)
	}
	return ids
}

// insert inserts one message per payload into a partition through q.
func (x *dialectEnv) insert(q dialect.DBTX, queue string, partition int, payloads ...string) {
	x.t.Helper()
	rows := make([]dialect.InsertRow, len(payloads))
	for i, p := range payloads {
		rows[i] = dialect.InsertRow{Queue: queue, Partition: partition, Payload: []byte(p), PayloadType: "text/plain"}
	}
	ctx, cancel := x.bounded()
	defer cancel()
	if _, err := x.d.InsertMessages(ctx, q, &dialect.InsertMessagesParams{Rows: rows}); err != nil {
		x.t.Fatalf("InsertMessages: %v", err)
	}
}

// producer begins the application's own transaction on db, rolled back
// when the case ends unless committed.
func (x *dialectEnv) producer(db *sql.DB) *sql.Tx {
	x.t.Helper()
	tx, err := db.BeginTx(x.ctx, nil)
	if err != nil {
		x.t.Fatal(err)
	}
	x.t.Cleanup(func() { _ = tx.Rollback() })
	return tx
}

// sequence runs one SequencePartitions step of one partition in its own
// transaction.
func (x *dialectEnv) sequence(db *sql.DB, pid int64, limit int) (*dialect.SequencedPartition, error) {
	return x.sequenceWithin(db, contractTimeout, pid, limit)
}

// sequenceWithin is sequence bounded by d.
func (x *dialectEnv) sequenceWithin(db *sql.DB, d time.Duration, pid int64, limit int) (*dialect.SequencedPartition, error) {
	var r *dialect.SequencedPartition
	err := x.inTxWithin(db, d, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		r, err = x.sequenceIn(ctx, tx, pid, limit)
		return err
	})
	return r, err
}

// sequenceIn runs one SequencePartitions step of pid in tx.
func (x *dialectEnv) sequenceIn(ctx context.Context, tx *sql.Tx, pid int64, limit int) (*dialect.SequencedPartition, error) {
	rs, err := x.d.SequencePartitions(ctx, tx, &dialect.SequencePartitionsParams{PartitionIDs: []int64{pid}, Limit: limit})
	if err != nil {
		return nil, err
	}
	if len(rs.Partitions) != 1 || rs.Partitions[0].PartitionID != pid {
		return nil, fmt.Errorf("SequencePartitions([%d]) returned %+v, want one entry for partition %d", pid, rs.Partitions, pid)
	}
	return &rs.Partitions[0], nil
}

// testSequencePendingUnsupported: a dialect without
// Capabilities.SequencePending reports dialect.ErrUnsupported from
// SequencePending and changes nothing, so the core sequences with
// PendingPartitions and SequencePartitions.
func testSequencePendingUnsupported(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	x.declare("q", 1)
	x.insert(x.db, "q", 0, "a")
	before := x.state("q", 0)
	_, err := x.d.SequencePending(x.ctx, x.db, &dialect.SequencePendingParams{MaxPartitions: 10, Limit: 10})
	if !errors.Is(err, dialect.ErrUnsupported) {
		t.Fatalf("SequencePending without the capability: %v, want dialect.ErrUnsupported", err)
	}
	if s := x.state("q", 0); s.LastSeq != before.LastSeq || s.Unsequenced != before.Unsequenced {
		t.Fatalf("SequencePending changed the partition: %+v, was %+v", s, before)
	}
}

func (x *dialectEnv) mustSequence(pid int64, limit int) *dialect.SequencedPartition {
	x.t.Helper()
	r, err := x.sequence(nil, pid, limit)
	if err != nil {
		x.t.Fatalf("SequencePartitions([%d]): %v", pid, err)
	}
	return r
}

// ready declares queue with partitions partitions and gives each one
// sequenced message, so that every partition is claimable.
func (x *dialectEnv) ready(queue string, partitions int) []int64 {
	x.t.Helper()
	ids := x.declare(queue, partitions)
	for i, pid := range ids {
		x.insert(x.db, queue, i, fmt.Sprintf("%s-%d", queue, i))
		// Capabilities.SequencesOnInsert may have sequenced it already.
		if r := x.mustSequence(pid, 10); r.LastSeq != 1 {
			x.t.Fatalf("sequencing partition %d: %+v, want last_seq 1", i, r)
		}
	}
	return ids
}

func (x *dialectEnv) claim(token string, lease time.Duration, limit int, queues ...string) []dialect.ClaimedPartition {
	x.t.Helper()
	ctx, cancel := x.bounded()
	defer cancel()
	r, err := claimLeases(ctx, x.d, x.db, &dialect.ClaimLeaseParams{Queues: queues, Limit: limit, Token: token, Lease: lease})
	if err != nil {
		x.t.Fatalf("ClaimLease(%s): %v", token, err)
	}
	return r.Partitions
}

func (x *dialectEnv) update(p dialect.CursorUpdate) bool {
	x.t.Helper()
	ctx, cancel := x.bounded()
	defer cancel()
	updated, err := updateCursor(ctx, x.d, x.db, &p)
	if err != nil {
		x.t.Fatalf("UpdateCursors(%+v): %v", p, err)
	}
	return updated
}

func (x *dialectEnv) state(queue string, partition int) *partitionState {
	x.t.Helper()
	ctx, cancel := x.bounded()
	defer cancel()
	s, err := statusOf(ctx, x.d, x.db, queue, partition)
	if err != nil {
		x.t.Fatalf("QueueStatus(%s/%d): %v", queue, partition, err)
	}
	return s
}

func (x *dialectEnv) read(pid, after int64, limit int) []dialect.Message {
	x.t.Helper()
	ctx, cancel := x.bounded()
	defer cancel()
	ms, err := readMessages(ctx, x.d, x.db, dialect.PartitionRead{PartitionID: pid, AfterSeq: after, Limit: limit})
	if err != nil {
		x.t.Fatalf("ReadPartitions(%d): %v", pid, err)
	}
	return ms
}

func (x *dialectEnv) stats() *dialect.StatsResult {
	x.t.Helper()
	s, err := x.d.Stats(x.ctx, x.db, &dialect.StatsParams{})
	if err != nil {
		x.t.Fatalf("Stats: %v", err)
	}
	return s
}

// awaitDBTime waits until the database's clock, as PartitionStatus reports
// it, is past until: lease expiry is the database's business, so the test
// asks the database rather than sleeping on the client's clock.
func (x *dialectEnv) awaitDBTime(queue string, until time.Time) {
	x.t.Helper()
	deadline := time.Now().Add(contractTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !x.state(queue, 0).Now.After(until) {
		if time.Now().After(deadline) {
			x.t.Fatalf("the database clock did not pass %v", until)
		}
		select {
		case <-x.ctx.Done():
			x.t.Fatalf("waiting for the database clock: %v", x.ctx.Err())
		case <-tick.C:
		}
	}
}

// checkSeqs asserts that the partition's messages carry seqs 1..n in id
// order and that the partition's counter is n.
func (x *dialectEnv) checkSeqs(queue string, partition int, pid int64, n int) {
	x.t.Helper()
	msgs := x.read(pid, 0, n+10)
	for i, m := range msgs {
		if m.Seq != int64(i+1) || (i > 0 && m.ID <= msgs[i-1].ID) {
			x.t.Fatalf("message %d of %d: id %d seq %d (previous id %d); want seq %d in id order",
				i, len(msgs), m.ID, m.Seq, msgs[max(i-1, 0)].ID, i+1)
		}
	}
	if len(msgs) != n {
		x.t.Fatalf("%d sequenced messages, want %d", len(msgs), n)
	}
	if s := x.state(queue, partition); s.LastSeq != int64(n) {
		x.t.Fatalf("partition counter last_seq = %d after sequencing %d messages", s.LastSeq, n)
	}
}

// testSequenceGapFree: steps of Limit rows give seq = last_seq+1, … in id
// order and report the counter; an empty step assigns nothing.
func testSequenceGapFree(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	pid := x.declare("q", 1)[0]
	x.insert(x.db, "q", 0, "a", "b", "c", "d", "e", "f", "g")
	for i, want := range []dialect.SequencedPartition{
		{PartitionID: pid, Locked: true, Assigned: 3, LastSeq: 3},
		{PartitionID: pid, Locked: true, Assigned: 3, LastSeq: 6},
		{PartitionID: pid, Locked: true, Assigned: 1, LastSeq: 7},
		{PartitionID: pid, Locked: true, Assigned: 0, LastSeq: 7},
	} {
		if got := x.mustSequence(pid, 3); *got != want {
			t.Fatalf("step %d: %+v, want %+v", i, *got, want)
		}
	}
	x.checkSeqs("q", 0, pid, 7)
}

// testSequenceSkipsUncommitted: a producer's open transaction neither
// blocks the sequencer nor is sequenced; rows committed after it are
// sequenced now, and its row gets the next seq once it commits (commit
// order, which is the order a cursor can rely on). Cursor updates, vacuum
// and claims beside it do not wait on it either.
func testSequenceSkipsUncommitted(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	pids := x.declare("q", 3)
	producer := x.producer(x.open())
	x.insert(producer, "q", 0, "late") // lower ids, committed last
	x.insert(producer, "q", 1, "late")
	x.insert(producer, "q", 2, "late")
	x.insert(x.db, "q", 0, "early") // higher ids, committed now
	x.insert(x.db, "q", 1, "early")
	x.insert(producer, "q", 1, "later")

	// Each call is bounded by noWait: one that waits on the producer's
	// rows (or on locks next to them) fails instead of hanging.
	for i, pid := range pids {
		r, err := x.sequenceWithin(nil, noWait, pid, 100)
		want := dialect.SequencedPartition{PartitionID: pid, Locked: true, Assigned: 1, LastSeq: 1}
		if i == 2 {
			want = dialect.SequencedPartition{PartitionID: pid, Locked: true}
		}
		if err != nil || *r != want {
			t.Fatalf("SequencePartitions(partition %d) beside an open producer: %+v, %v; want %+v, the committed row only", i, r, err, want)
		}
	}
	ctx, cancel := context.WithTimeout(x.ctx, noWait)
	defer cancel()
	if u, err := updateCursor(ctx, x.d, x.db, &dialect.CursorUpdate{PartitionID: pids[0], ProcessedSeq: 1}); err != nil || !u {
		t.Fatalf("UpdateCursors beside an open producer: %v, %v", u, err)
	}
	if v, err := x.d.Vacuum(ctx, x.db, &dialect.VacuumParams{Limit: 100}); err != nil || v.Deleted != 1 {
		t.Fatalf("Vacuum beside an open producer: %+v, %v; want 1 deleted at once", v, err)
	}
	c, err := claimLeases(ctx, x.d, x.db, &dialect.ClaimLeaseParams{Queues: []string{"q"}, Limit: 10, Token: "A", Lease: time.Hour})
	if err != nil || len(c.Partitions) != 1 || c.Partitions[0].PartitionID != pids[1] {
		t.Fatalf("ClaimLease beside an open producer: %+v, %v; want partition 1 at once", c, err)
	}

	if err := producer.Commit(); err != nil {
		t.Fatal(err)
	}
	if r := x.mustSequence(pids[1], 100); r.Assigned != 2 || r.LastSeq != 3 {
		t.Fatalf("after the producer committed: %+v, want its rows as seqs 2 and 3", *r)
	}
	var got []string
	for _, m := range x.read(pids[1], 0, 10) {
		got = append(got, fmt.Sprintf("%d:%s", m.Seq, m.Payload))
	}
	if fmt.Sprint(got) != "[1:early 2:late 3:later]" {
		t.Fatalf("partition 1 reads %v, want [1:early 2:late 3:later] (commit order, then id order)", got)
	}
}

// testSequenceConcurrent: sequencers racing over one partition assign
// seqs 1..n exactly once, in id order, and together report n assigned.
func testSequenceConcurrent(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	pid := x.declare("q", 1)[0]
	const n, callers = 40, 4
	payloads := make([]string, n)
	for i := range payloads {
		payloads[i] = fmt.Sprint(i)
	}
	x.insert(x.db, "q", 0, payloads...)

	var (
		mu       sync.Mutex
		assigned int
		wg       sync.WaitGroup
	)
	start := make(chan struct{})
	for c := range callers {
		db := x.pool()
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for {
				r, err := x.sequence(db, pid, 5)
				if err != nil {
					t.Errorf("sequencer %d: %v", c, err)
					return
				}
				mu.Lock()
				assigned += r.Assigned
				mu.Unlock()
				if r.Locked && r.Assigned == 0 {
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	if assigned != n {
		t.Fatalf("concurrent sequencers reported %d rows assigned in total, want %d (each row once)", assigned, n)
	}
	x.checkSeqs("q", 0, pid, n)
}

// testClaimExclusive: a partition with a live lease goes to nobody else,
// and the claim stamps the claimer's token.
func testClaimExclusive(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	ids := x.ready("q", 2)
	got := x.claim("A", time.Hour, 10, "q", "other")
	if len(got) != 2 {
		t.Fatalf("claim A: %+v, want both partitions", got)
	}
	for _, c := range got {
		want := dialect.ClaimedPartition{PartitionID: ids[c.Partition], Queue: "q", Partition: c.Partition, LastSeq: 1}
		if c != want {
			t.Fatalf("claimed %+v, want %+v", c, want)
		}
	}
	if got := x.claim("B", time.Hour, 10, "q"); len(got) != 0 {
		t.Fatalf("claim B while A's lease is live: %+v, want none", got)
	}
	if s := x.state("q", 1); s.LeaseToken != "A" {
		t.Fatalf("lease token %q after B's claim, want A's", s.LeaseToken)
	}
}

// testClaimByID: ClaimLeaseParams.PartitionIDs narrows the candidates to
// those partitions, of the named queues, claimable as without it.
func testClaimByID(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	ids := x.ready("q", 4)
	other := x.ready("r", 1)
	claim := func(token string, only ...int64) []dialect.ClaimedPartition {
		t.Helper()
		ctx, cancel := x.bounded()
		defer cancel()
		r, err := claimLeases(ctx, x.d, x.db, &dialect.ClaimLeaseParams{Queues: []string{"q"}, Limit: 10, Token: token, Lease: time.Hour, PartitionIDs: only})
		if err != nil {
			t.Fatalf("ClaimLeases(%s, %v): %v", token, only, err)
		}
		return r.Partitions
	}
	// Partition 3 and r's partition named: only partition 3 (r is not a
	// queue of the claim).
	got := claim("A", ids[3], other[0])
	if len(got) != 1 || got[0].PartitionID != ids[3] || got[0].Partition != 3 || got[0].LastSeq != 1 {
		t.Fatalf("claim of partition 3 by id: %+v, want it alone", got)
	}
	// Leased partitions and one with nothing to deliver are not claimable
	// by id either.
	x.update(dialect.CursorUpdate{PartitionID: ids[2], ProcessedSeq: 1})
	if got := claim("B", ids[3], ids[2]); len(got) != 0 {
		t.Fatalf("claim of a leased and a caught-up partition by id: %+v, want none", got)
	}
	// The rest stay for a claim of the queue.
	got = x.claim("C", time.Hour, 10, "q")
	parts := map[int]bool{}
	for _, c := range got {
		parts[c.Partition] = true
	}
	if len(got) != 2 || !parts[0] || !parts[1] {
		t.Fatalf("claim of the queue after the claim by id: %+v, want partitions 0 and 1", got)
	}
}

// testClaimConcurrent: claimers racing over many partitions get each one
// at most once, all of them in the end, never more than Limit per call.
func testClaimConcurrent(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	const parts, claimers, limit = 12, 4, 2
	x.ready("q", parts)
	var (
		mu    sync.Mutex
		owner = map[int64]string{}
		wg    sync.WaitGroup
	)
	start := make(chan struct{})
	for c := range claimers {
		db := x.pool()
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range parts {
				token := fmt.Sprintf("c%d-%d", c, i)
				ctx, cancel := x.bounded()
				r, err := claimLeases(ctx, x.d, db, &dialect.ClaimLeaseParams{Queues: []string{"q"}, Limit: limit, Token: token, Lease: time.Hour})
				cancel()
				if err != nil {
					t.Errorf("ClaimLease(%s): %v", token, err)
					return
				}
				if len(r.Partitions) > limit {
					t.Errorf("ClaimLease(%s) returned %d partitions, limit %d", token, len(r.Partitions), limit)
				}
				mu.Lock()
				for _, p := range r.Partitions {
					if prev, ok := owner[p.PartitionID]; ok {
						t.Errorf("partition %d handed to %s and %s", p.PartitionID, prev, token)
					}
					owner[p.PartitionID] = token
				}
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	if !t.Failed() && len(owner) != parts {
		t.Fatalf("%d of %d partitions claimed", len(owner), parts)
	}
}

// testUpdateFenced: an update with a token that does not hold the lease
// changes nothing and says so; the lease's token moves the cursor.
func testUpdateFenced(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	pid := x.ready("q", 1)[0]
	x.claim("A", time.Hour, 1, "q")
	before := x.state("q", 0)
	if x.update(dialect.CursorUpdate{PartitionID: pid, Token: "B", ProcessedSeq: 1, Attempts: 5, LastError: "stale"}) {
		t.Fatal("UpdateCursor with a token that does not hold the lease reported Updated")
	}
	after := x.state("q", 0)
	if after.ProcessedSeq != before.ProcessedSeq || after.Attempts != before.Attempts || after.LastError != before.LastError ||
		after.LeaseToken != "A" || !after.LeaseUntil.Equal(before.LeaseUntil) {
		t.Fatalf("a fenced-off update changed the row: %+v, was %+v", after, before)
	}
	for i := range 2 { // the second changes no value it sets: still an update
		if !x.update(dialect.CursorUpdate{PartitionID: pid, Token: "A", ProcessedSeq: 1, Renew: time.Hour}) {
			t.Fatalf("UpdateCursor %d with the lease's token was fenced off", i+1)
		}
	}
	if s := x.state("q", 0); s.ProcessedSeq != 1 || s.LeaseToken != "A" || s.LeaseUntil.IsZero() {
		t.Fatalf("after a renewing update: %+v, want cursor 1 and A's lease kept", s)
	}
	if !x.update(dialect.CursorUpdate{PartitionID: pid, Token: "A", ProcessedSeq: 1}) {
		t.Fatal("releasing update with the lease's token was fenced off")
	}
	if s := x.state("q", 0); s.LeaseToken != "" || !s.LeaseUntil.IsZero() {
		t.Fatalf("after a releasing update (Renew 0): %+v, want no lease", s)
	}
	if x.update(dialect.CursorUpdate{PartitionID: pid, Token: "A", ProcessedSeq: 0}) {
		t.Fatal("UpdateCursor with a released token reported Updated")
	}
}

// testUpdateCursors: one UpdateCursors call applies each entry as
// UpdateCursor would, fenced by its own token: entries whose token holds
// the lease change their rows and report true, in the order given; the
// others change nothing (their messages stay) and do not stop the rest.
func testUpdateCursors(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	x.ready("q", 4)
	a := x.claim("A", time.Hour, 2, "q")
	bb := x.claim("B", time.Hour, 1, "q")
	if len(a) != 2 || len(bb) != 1 {
		t.Fatalf("claims: A %d, B %d partitions; want 2 and 1", len(a), len(bb))
	}
	free := -1
	for i := range 4 {
		if i != a[0].Partition && i != a[1].Partition && i != bb[0].Partition {
			free = i
		}
	}
	freeState := x.state("q", free)
	bBefore := x.state("q", bb[0].Partition)
	ps := []*dialect.CursorUpdate{
		{PartitionID: freeState.PartitionID, Token: "A", ProcessedSeq: 1, Attempts: 9, LastError: "not mine", DeleteThrough: 1},
		{PartitionID: bb[0].PartitionID, Token: "A", ProcessedSeq: 1, Attempts: 9, LastError: "not mine", DeleteThrough: 1},
		{PartitionID: a[1].PartitionID, Token: "A", ProcessedSeq: 0, Attempts: 3, LastError: "boom", RetryAfter: time.Hour, Block: true},
		{PartitionID: a[0].PartitionID, Token: "A", ProcessedSeq: 1, Renew: time.Hour, DeleteThrough: 1},
	}
	ctx, cancel := x.bounded()
	defer cancel()
	res, err := x.d.UpdateCursors(ctx, x.db, &dialect.UpdateCursorsParams{Updates: ps, DB: x.db})
	if err != nil {
		t.Fatalf("UpdateCursors: %v", err)
	}
	got := res.Updated
	if want := []bool{false, false, true, true}; !slices.Equal(got, want) {
		t.Fatalf("UpdateCursors reported %v, want %v (fenced off, fenced off, release, renew)", got, want)
	}
	if s := x.state("q", a[0].Partition); s.ProcessedSeq != 1 || s.LeaseToken != "A" || !s.LeaseUntil.After(s.Now.Add(30*time.Minute)) || !s.BlockedAt.IsZero() {
		t.Errorf("renewed partition: %+v, want cursor 1 and A's lease for an hour", s)
	}
	s := x.state("q", a[1].Partition)
	if s.ProcessedSeq != 0 || s.Attempts != 3 || s.LastError != "boom" || s.LeaseToken != "" || !s.LeaseUntil.IsZero() ||
		s.BlockedAt.IsZero() || !s.NextAttemptAt.After(s.Now.Add(30*time.Minute)) {
		t.Errorf("released partition: %+v, want cursor 0, 3 attempts, boom, no lease, blocked, retry in an hour", s)
	}
	for _, c := range []struct {
		name   string
		before *partitionState
		part   int
	}{{"B's partition", bBefore, bb[0].Partition}, {"unclaimed partition", freeState, free}} {
		s := x.state("q", c.part)
		if s.ProcessedSeq != c.before.ProcessedSeq || s.Attempts != c.before.Attempts || s.LastError != c.before.LastError ||
			s.LeaseToken != c.before.LeaseToken || !s.LeaseUntil.Equal(c.before.LeaseUntil) {
			t.Errorf("%s changed by a fenced-off entry: %+v, was %+v", c.name, s, c.before)
		}
		if ms := x.read(s.PartitionID, 0, 10); len(ms) != 1 {
			t.Errorf("%s: %d messages after a fenced-off entry with DeleteThrough, want its 1", c.name, len(ms))
		}
	}
	// Every entry holds its lease (the common case).
	res, err = x.d.UpdateCursors(ctx, x.db, &dialect.UpdateCursorsParams{DB: x.db, Updates: []*dialect.CursorUpdate{
		{PartitionID: bb[0].PartitionID, Token: "B", ProcessedSeq: 1, Attempts: 1, LastError: "b's"},
		{PartitionID: a[0].PartitionID, Token: "A", ProcessedSeq: 1, Attempts: 2},
	}})
	if err == nil {
		got = res.Updated
	}
	if err != nil || !slices.Equal(got, []bool{true, true}) {
		t.Fatalf("UpdateCursors with every lease held: %v, %v; want [true true]", got, err)
	}
	if s := x.state("q", bb[0].Partition); s.ProcessedSeq != 1 || s.Attempts != 1 || s.LastError != "b's" || s.LeaseToken != "" {
		t.Errorf("B's partition after its release: %+v, want cursor 1, 1 attempt, b's, no lease", s)
	}
	if s := x.state("q", a[0].Partition); s.Attempts != 2 || s.LastError != "" || s.LeaseToken != "" || !s.LeaseUntil.IsZero() {
		t.Errorf("A's partition after its release: %+v, want 2 attempts, no error, no lease", s)
	}
}

// testTakeoverCountsOneAttempt: taking over an expired lease that was
// never released counts exactly one failed attempt, and fences the old
// holder off; taking a released partition counts none.
func testTakeoverCountsOneAttempt(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	pid := x.ready("q", 1)[0]
	if got := x.claim("A", 50*time.Millisecond, 1, "q"); len(got) != 1 || got[0].Attempts != 0 {
		t.Fatalf("first claim: %+v, want one partition with 0 attempts", got)
	}
	x.awaitDBTime("q", x.state("q", 0).LeaseUntil)

	if x.update(dialect.CursorUpdate{PartitionID: pid, Token: "A", ProcessedSeq: 1}) {
		t.Fatal("UpdateCursor with an expired lease's token reported Updated")
	}
	got := x.claim("B", time.Hour, 1, "q")
	if len(got) != 1 || got[0].Attempts != 1 {
		t.Fatalf("takeover of an expired, unreleased lease: %+v, want one partition with exactly 1 attempt", got)
	}
	if s := x.state("q", 0); s.Attempts != 1 || s.LeaseToken != "B" || s.ProcessedSeq != 0 {
		t.Fatalf("after the takeover: %+v, want attempts 1, B's lease, cursor 0", s)
	}

	ctx, cancel := x.bounded()
	defer cancel()
	if r, err := x.d.ReleaseLeases(ctx, x.db, &dialect.ReleaseLeasesParams{PartitionIDs: []int64{pid}, Token: "B"}); err != nil || r.Released != 1 {
		t.Fatalf("ReleaseLeases(B): %+v, %v", r, err)
	}
	if got := x.claim("C", time.Hour, 1, "q"); len(got) != 1 || got[0].Attempts != 1 {
		t.Fatalf("claim of a released partition: %+v, want attempts still 1", got)
	}
}

// testReleaseNeedsToken: ReleaseLeases drops only the leases its token
// holds.
func testReleaseNeedsToken(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	ids := x.ready("q", 2)
	x.claim("A", time.Hour, 1, "q")
	x.claim("B", time.Hour, 1, "q")
	ctx, cancel := x.bounded()
	defer cancel()
	r, err := x.d.ReleaseLeases(ctx, x.db, &dialect.ReleaseLeasesParams{PartitionIDs: ids, Token: "C"})
	if err != nil || r.Released != 0 {
		t.Fatalf("ReleaseLeases with a token holding nothing: %+v, %v; want 0 released", r, err)
	}
	r, err = x.d.ReleaseLeases(ctx, x.db, &dialect.ReleaseLeasesParams{PartitionIDs: ids, Token: "A"})
	if err != nil || r.Released != 1 {
		t.Fatalf("ReleaseLeases(A): %+v, %v; want 1 released", r, err)
	}
	tokens := map[string]bool{}
	for i := range ids {
		s := x.state("q", i)
		tokens[s.LeaseToken] = true
		if (s.LeaseToken == "") != s.LeaseUntil.IsZero() {
			t.Fatalf("partition %d: token %q but lease until %v", i, s.LeaseToken, s.LeaseUntil)
		}
	}
	if !tokens[""] || !tokens["B"] || tokens["A"] {
		t.Fatalf("leases after releasing A's: %v, want B's and a free one", tokens)
	}
}

// testLockPartitionSkipsHeld: a cursor row locked by one transaction is
// skipped, without waiting, by LockPartition in another and by claims,
// even once its lease has expired, until that transaction ends.
func testLockPartitionSkipsHeld(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	pid := x.ready("q", 1)[0]
	x.claim("A", 50*time.Millisecond, 1, "q")
	lease := x.state("q", 0).LeaseUntil

	holder, err := x.db.BeginTx(x.ctx, x.d.TxOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Rollback() }()
	stale, err := x.d.LockPartition(x.ctx, holder, &dialect.LockPartitionParams{PartitionID: pid, Token: "B"})
	if err != nil || len(stale.Partitions) != 0 {
		t.Fatalf("LockPartition with a token that holds no lease: %+v, %v; want none", stale, err)
	}
	got, err := x.d.LockPartition(x.ctx, holder, &dialect.LockPartitionParams{PartitionID: pid, Token: "A"})
	if err != nil || len(got.Partitions) != 1 {
		t.Fatalf("LockPartition(A): %+v, %v; want the partition", got, err)
	}

	other := x.open()
	err = x.inTxWithin(other, noWait, func(ctx context.Context, tx *sql.Tx) error {
		r, err := x.d.LockPartition(ctx, tx, &dialect.LockPartitionParams{PartitionID: pid, Token: "A"})
		if err != nil {
			return fmt.Errorf("%w (it must skip a held row, not wait on it)", err)
		}
		if len(r.Partitions) != 0 {
			return fmt.Errorf("returned %+v while another transaction holds the row", r.Partitions)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("second LockPartition: %v", err)
	}

	// The sequencer locks the partition row, not the cursor row: a
	// held partition still gets its new messages sequenced.
	x.insert(x.db, "q", 0, "more")
	if r, err := x.sequenceWithin(other, noWait, pid, 10); err != nil || !r.Locked || r.Assigned != 1 {
		t.Fatalf("sequencing a partition whose cursor row is held: %+v, %v; want it sequenced at once", r, err)
	}

	x.awaitDBTime("q", lease)
	ctx, cancel := context.WithTimeout(x.ctx, noWait)
	defer cancel()
	r, err := claimLeases(ctx, x.d, other, &dialect.ClaimLeaseParams{Queues: []string{"q"}, Limit: 1, Token: "B", Lease: time.Hour})
	if err != nil || len(r.Partitions) != 0 {
		t.Fatalf("ClaimLease of an expired lease whose row a transaction holds: %+v, %v; want none, at once", r, err)
	}
	if err := holder.Rollback(); err != nil {
		t.Fatal(err)
	}
	if got := x.claim("B", time.Hour, 1, "q"); len(got) != 1 {
		t.Fatalf("claim after the holder ended: %+v, want the partition", got)
	}
}

// testVacuumBehindCursor: Vacuum deletes exactly the rows at or below
// their partition's cursor, in batches of at most Limit, and nothing above
// it, unsequenced, or in a partition whose cursor has not moved.
func testVacuumBehindCursor(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	pids := x.declare("q", 2)
	x.insert(x.db, "q", 0, "1", "2", "3", "4", "5", "6")
	x.insert(x.db, "q", 1, "1", "2")
	x.mustSequence(pids[0], 100)
	x.mustSequence(pids[1], 100)
	x.insert(x.db, "q", 0, "unsequenced", "unsequenced") // several rows: never sequenced on insert
	if !x.update(dialect.CursorUpdate{PartitionID: pids[0], ProcessedSeq: 3}) {
		t.Fatal("unfenced UpdateCursor did not update")
	}
	deleted := 0
	for {
		ctx, cancel := x.bounded()
		r, err := x.d.Vacuum(ctx, x.db, &dialect.VacuumParams{Limit: 2})
		cancel()
		if err != nil {
			t.Fatalf("Vacuum: %v", err)
		}
		if r.Deleted > 2 {
			t.Fatalf("Vacuum with Limit 2 deleted %d rows", r.Deleted)
		}
		if r.Deleted == 0 {
			break
		}
		deleted += r.Deleted
		if deleted > 9 {
			t.Fatalf("Vacuum keeps deleting: %d rows so far", deleted)
		}
	}
	msgs := x.read(pids[0], 0, 10)
	seqs := make([]int64, len(msgs))
	for i, m := range msgs {
		seqs[i] = m.Seq
	}
	if fmt.Sprint(seqs) != "[4 5 6]" || deleted != 3 {
		t.Fatalf("after vacuum with cursor 3: seqs %v remain (%d deleted), want [4 5 6] (3 deleted)", seqs, deleted)
	}
	if n := len(x.read(pids[1], 0, 10)); n != 2 {
		t.Fatalf("vacuum deleted %d rows of a partition whose cursor is 0", 2-n)
	}
	if s := x.stats(); s.Messages != 7 || s.Unsequenced != 2 {
		t.Fatalf("after vacuum: %+v, want 7 messages, 2 unsequenced", s)
	}
}

// testDatabaseClock: leases and backoff are stated in database time: the
// lease ends at the database's now()+Lease and the next attempt at its
// now()+RetryAfter, as PartitionStatus reads them beside the database's now.
// (Client and server share a clock here, so this proves the arithmetic is
// done in the database's time, not that the client's clock is never read;
// the expiry cases wait on the database's clock, never the client's.)
func testDatabaseClock(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	pid := x.ready("q", 1)[0]
	const lease, retry, slack = time.Hour, 40 * time.Minute, 30 * time.Second
	x.claim("A", lease, 1, "q")
	s := x.state("q", 0)
	if d := s.LeaseUntil.Sub(s.Now); d > lease || d < lease-slack {
		t.Fatalf("lease_until - database now = %v, want %v (lease_until %v, now %v)", d, lease, s.LeaseUntil, s.Now)
	}
	if !x.update(dialect.CursorUpdate{PartitionID: pid, Token: "A", Attempts: 1, RetryAfter: retry}) {
		t.Fatal("UpdateCursor with the lease's token was fenced off")
	}
	s = x.state("q", 0)
	if d := s.NextAttemptAt.Sub(s.Now); d > retry || d < retry-slack {
		t.Fatalf("next_attempt_at - database now = %v, want %v", d, retry)
	}
	if got := x.claim("B", time.Hour, 1, "q"); len(got) != 0 {
		t.Fatalf("claimed during backoff: %+v", got)
	}
}

// testInsertAllOrNothing: a call with a row whose partition does not exist
// returns ErrQueueNotFound and leaves none of its rows, inside a
// transaction that goes on and outside one; so does a call with that row
// alone (dialects insert a single row with a statement of its own).
func testInsertAllOrNothing(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	x.declare("q", 2)
	rows := []dialect.InsertRow{
		{Queue: "q", Partition: 0, Payload: []byte("a"), PayloadType: "t"},
		{Queue: "q", Partition: 1, Payload: []byte("b"), PayloadType: "t"},
		{Queue: "q", Partition: 2, Payload: []byte("no such partition"), PayloadType: "t"},
		{Queue: "q", Partition: 0, Payload: []byte("c"), PayloadType: "t"},
	}
	ctx, cancel := x.bounded()
	defer cancel()
	if _, err := x.d.InsertMessages(ctx, x.db, &dialect.InsertMessagesParams{Rows: rows}); !errors.Is(err, dialect.ErrQueueNotFound) {
		t.Fatalf("InsertMessages with a missing partition: %v, want ErrQueueNotFound", err)
	}
	if _, err := x.d.InsertMessages(ctx, x.db, &dialect.InsertMessagesParams{Rows: rows[2:3]}); !errors.Is(err, dialect.ErrQueueNotFound) {
		t.Fatalf("InsertMessages of one row with a missing partition: %v, want ErrQueueNotFound", err)
	}
	if s := x.stats(); s.Messages != 0 {
		t.Fatalf("%d messages after a failed insert, want 0", s.Messages)
	}
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	x.insert(tx, "q", 1, "kept")
	if _, err := x.d.InsertMessages(ctx, tx, &dialect.InsertMessagesParams{Rows: rows}); !errors.Is(err, dialect.ErrQueueNotFound) {
		t.Fatalf("InsertMessages in a transaction with a missing partition: %v, want ErrQueueNotFound", err)
	}
	if _, err := x.d.InsertMessages(ctx, tx, &dialect.InsertMessagesParams{Rows: rows[2:3]}); !errors.Is(err, dialect.ErrQueueNotFound) {
		t.Fatalf("InsertMessages of one row in a transaction with a missing partition: %v, want ErrQueueNotFound", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("the application's transaction cannot commit after a failed insert: %v", err)
	}
	if s := x.stats(); s.Messages != 1 {
		t.Fatalf("%d messages after the transaction, want only its earlier row", s.Messages)
	}
}

// testReadInSeqOrder: ReadMessages returns seq > AfterSeq in seq order, at
// most Limit, with payload, type and headers as inserted.
func testReadInSeqOrder(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	pid := x.declare("q", 1)[0]
	ctx, cancel := x.bounded()
	defer cancel()
	_, err := x.d.InsertMessages(ctx, x.db, &dialect.InsertMessagesParams{Rows: []dialect.InsertRow{
		{Queue: "q", Partition: 0, Payload: []byte("first"), PayloadType: "a/b", Headers: []byte(`{"k":"v"}`)},
		{Queue: "q", Partition: 0, Payload: []byte{0, 255}, PayloadType: "bin"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	x.insert(x.db, "q", 0, "3", "4", "5")
	x.mustSequence(pid, 100)
	msgs := x.read(pid, 0, 2)
	if len(msgs) != 2 || msgs[0].Seq != 1 || string(msgs[0].Payload) != "first" || msgs[0].PayloadType != "a/b" ||
		string(msgs[0].Headers) != `{"k":"v"}` || msgs[1].Seq != 2 || string(msgs[1].Payload) != "\x00\xff" || msgs[1].Headers != nil {
		t.Fatalf("ReadMessages(after 0, limit 2): %+v", msgs)
	}
	if c := msgs[0].CreatedAt; c.IsZero() {
		t.Fatal("created_at is zero")
	}
	msgs = x.read(pid, 2, 10)
	if len(msgs) != 3 || msgs[0].Seq != 3 || msgs[2].Seq != 5 || string(msgs[2].Payload) != "5" {
		t.Fatalf("ReadMessages(after 2): %+v, want seqs 3..5", msgs)
	}
}

// testContractDeclareQueue: declaring is idempotent and agrees under concurrent
// first declarations; another partition count writes nothing and reports
// the stored one; LookupQueue knows declared queues only, by exact name.
func testContractDeclareQueue(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	const callers = 4
	res := make([][]int64, callers)
	var wg sync.WaitGroup
	for c := range callers {
		db := x.pool()
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := x.inTx(db, func(ctx context.Context, tx *sql.Tx) error {
				r, err := x.d.DeclareQueue(ctx, tx, &dialect.DeclareQueueParams{Queue: "orders.v1", Partitions: 8})
				if err == nil {
					res[c] = r.PartitionIDs
				}
				return err
			})
			if err != nil {
				t.Errorf("concurrent DeclareQueue %d: %v", c, err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for c, ids := range res {
		if len(ids) != 8 || fmt.Sprint(ids) != fmt.Sprint(res[0]) {
			t.Fatalf("concurrent declarations disagree: %v and %v", ids, res[0])
		}
		if c == 0 && len(slicesCompact(ids)) != 8 {
			t.Fatalf("partition ids %v are not distinct", ids)
		}
	}
	if again := x.declare("orders.v1", 8); fmt.Sprint(again) != fmt.Sprint(res[0]) {
		t.Fatalf("redeclare: %v, want %v", again, res[0])
	}
	var other *dialect.DeclareQueueResult
	err := x.inTx(nil, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		other, err = x.d.DeclareQueue(ctx, tx, &dialect.DeclareQueueParams{Queue: "orders.v1", Partitions: 3})
		return err
	})
	if err != nil || other.Partitions != 8 || other.PartitionIDs != nil {
		t.Fatalf("DeclareQueue with another count: %+v, %v; want the stored count 8 and no ids", other, err)
	}
	if s := x.stats(); s.Queues != 1 || s.Partitions != 8 {
		t.Fatalf("after declarations: %+v, want 1 queue of 8 partitions", s)
	}
	lq, err := x.d.LookupQueue(x.ctx, x.db, &dialect.LookupQueueParams{Queue: "orders.v1"})
	if err != nil || fmt.Sprint(lq.PartitionIDs) != fmt.Sprint(res[0]) {
		t.Fatalf("LookupQueue: %+v, %v; want %v", lq, err, res[0])
	}
	for _, name := range []string{"nope", "ORDERS.v1"} {
		if _, err := x.d.LookupQueue(x.ctx, x.db, &dialect.LookupQueueParams{Queue: name}); !errors.Is(err, dialect.ErrQueueNotFound) {
			t.Fatalf("LookupQueue(%q): %v, want ErrQueueNotFound", name, err)
		}
	}
}

// slicesCompact returns the distinct values of ids.
func slicesCompact(ids []int64) map[int64]bool {
	m := map[int64]bool{}
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// testInsertManyInOrder: one call with more rows than any statement
// chunk keeps slice order in ids, keeps payload bytes and headers as they
// were, and only the partition it wrote to is pending.
func testInsertManyInOrder(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	pids := x.declare("q", 3)
	const n = 2500
	rows := make([]dialect.InsertRow, n)
	for i := range rows {
		rows[i] = dialect.InsertRow{Queue: "q", Partition: 2, Payload: []byte{byte(i), byte(i >> 8), 0, '\'', '\\'}, PayloadType: "t.v1"}
	}
	rows[0].Headers = []byte(`{"k":"v é"}`)
	ctx, cancel := x.bounded()
	defer cancel()
	if r, err := x.d.InsertMessages(ctx, x.db, &dialect.InsertMessagesParams{Rows: rows}); err != nil || r.Inserted != n {
		t.Fatalf("InsertMessages(%d rows): %+v, %v", n, r, err)
	}
	pend, err := x.d.PendingPartitions(ctx, x.db, &dialect.PendingPartitionsParams{Limit: 10})
	if err != nil || fmt.Sprint(pend.PartitionIDs) != fmt.Sprint([]int64{pids[2]}) {
		t.Fatalf("PendingPartitions: %+v, %v; want [%d]", pend, err, pids[2])
	}
	for _, want := range []int64{1000, 2000, 2500} {
		if r := x.mustSequence(pids[2], 1000); r.LastSeq != want {
			t.Fatalf("sequencing in steps of 1000: %+v, want last seq %d", *r, want)
		}
	}
	msgs := x.read(pids[2], 0, n+1)
	if len(msgs) != n {
		t.Fatalf("%d messages read, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		if m.Seq != int64(i+1) || m.Payload[0] != byte(i) || m.Payload[1] != byte(i>>8) || string(m.Payload[2:]) != "\x00'\\" ||
			(i > 0 && m.ID <= msgs[i-1].ID) {
			t.Fatalf("message %d: %+v; want seq %d, payload bytes as inserted, ids in slice order", i, m, i+1)
		}
	}
	if string(msgs[0].Headers) != `{"k":"v é"}` || msgs[1].Headers != nil || msgs[0].PayloadType != "t.v1" {
		t.Fatalf("headers or type: %+v", msgs[:2])
	}
	pend, err = x.d.PendingPartitions(ctx, x.db, &dialect.PendingPartitionsParams{Limit: 10})
	if err != nil || len(pend.PartitionIDs) != 0 {
		t.Fatalf("PendingPartitions after sequencing: %+v, %v", pend, err)
	}
}

// testSequenceSkipsLockedPartition: while one sequencer holds a partition,
// another reports it locked (Locked false, nothing assigned) at once.
func testSequenceSkipsLockedPartition(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	pid := x.declare("q", 1)[0]
	x.insert(x.db, "q", 0, "a", "b")
	first, err := x.db.BeginTx(x.ctx, x.d.TxOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Rollback() }()
	r, err := x.sequenceIn(x.ctx, first, pid, 1)
	if err != nil || !r.Locked || r.Assigned != 1 {
		t.Fatalf("first sequencer: %+v, %v", r, err)
	}
	r, err = x.sequenceWithin(x.open(), noWait, pid, 10)
	if err != nil || r.Locked || r.Assigned != 0 {
		t.Fatalf("second sequencer while the first holds the partition: %+v, %v; want Locked false at once", r, err)
	}
	if err := first.Commit(); err != nil {
		t.Fatal(err)
	}
	if r := x.mustSequence(pid, 10); !r.Locked || r.Assigned != 1 || r.LastSeq != 2 {
		t.Fatalf("after the first committed: %+v", *r)
	}
	x.checkSeqs("q", 0, pid, 2)
}

// testBackoffDelaysClaim: a failed attempt's RetryAfter keeps the partition
// from claims until the database's clock passes next_attempt_at; attempts
// and the error are stored as given.
func testBackoffDelaysClaim(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	pid := x.ready("q", 1)[0]
	x.claim("A", time.Hour, 1, "q")
	const retry = time.Second
	before := x.state("q", 0).Now
	if !x.update(dialect.CursorUpdate{PartitionID: pid, Token: "A", Attempts: 2, LastError: "boom", RetryAfter: retry}) {
		t.Fatal("UpdateCursor with the lease's token was fenced off")
	}
	s := x.state("q", 0)
	if s.Attempts != 2 || s.LastError != "boom" || s.LeaseToken != "" || s.NextAttemptAt.Before(before.Add(retry)) {
		t.Fatalf("after a failed attempt: %+v, want attempts 2, error boom, no lease, next attempt at least %v after %v",
			s, retry, before)
	}
	got := x.claim("B", time.Hour, 1, "q")
	if now := x.state("q", 0).Now; len(got) != 0 && now.Before(s.NextAttemptAt) {
		t.Fatalf("claimed during backoff (database now %v, next attempt %v): %+v", now, s.NextAttemptAt, got)
	}
	if len(got) == 0 { // the usual case: B came during the backoff
		x.awaitDBTime("q", s.NextAttemptAt)
		got = x.claim("C", time.Hour, 1, "q")
	}
	if len(got) != 1 || got[0].Attempts != 2 {
		t.Fatalf("claim after the backoff: %+v, want the partition with attempts 2", got)
	}
	if !x.update(dialect.CursorUpdate{PartitionID: pid, Attempts: 0}) {
		t.Fatal("unfenced UpdateCursor (empty token) did not update")
	}
	if s := x.state("q", 0); s.Attempts != 0 || s.LastError != "" {
		t.Fatalf("after an unfenced update: %+v, want attempts 0, no error", s)
	}
}

// testDeadLetters: InsertDeadLetters copies the named messages, in the
// caller's transaction; FindDeadLetters lists them newest first, filtered
// by queue and status, at most Limit.
func testDeadLetters(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	pid := x.declare("q", 3)[2]
	x.insert(x.db, "q", 2, "1", "2", "3", "4")
	x.mustSequence(pid, 10)
	err := x.inTx(nil, func(ctx context.Context, tx *sql.Tx) error {
		r, err := x.d.InsertDeadLetters(ctx, tx, &dialect.InsertDeadLettersParams{PartitionID: pid, Seqs: []int64{2, 3}, Reason: "bad", Attempts: 3})
		if err == nil && r.Inserted != 2 {
			err = fmt.Errorf("inserted %d, want 2", r.Inserted)
		}
		return err
	})
	if err != nil {
		t.Fatalf("InsertDeadLetters: %v", err)
	}
	list := func(p dialect.FindDeadLettersParams) []dialect.DeadLetter {
		t.Helper()
		r, err := x.d.FindDeadLetters(x.ctx, x.db, &p)
		if err != nil {
			t.Fatalf("FindDeadLetters(%+v): %v", p, err)
		}
		return r.DeadLetters
	}
	got := list(dialect.FindDeadLettersParams{Queue: "q", Limit: 10})
	if len(got) != 2 || got[0].Seq != 3 || got[1].Seq != 2 {
		t.Fatalf("dead letters %+v, want seqs 3 then 2 (newest first)", got)
	}
	d := got[0]
	if d.Queue != "q" || d.Partition != 2 || string(d.Payload) != "3" || d.PayloadType != "text/plain" || d.LastError != "bad" ||
		d.Attempts != 3 || d.Status != "pending" || d.CreatedAt.IsZero() || d.FailedAt.IsZero() || d.FailedAt.Before(d.CreatedAt.Add(-time.Second)) {
		t.Fatalf("dead letter %+v", d)
	}
	for _, p := range []dialect.FindDeadLettersParams{{Queue: "other", Limit: 10}, {Status: "resolved", Limit: 10}} {
		if got := list(p); len(got) != 0 {
			t.Fatalf("ListDeadLetters(%+v): %+v, want none", p, got)
		}
	}
	if got := list(dialect.FindDeadLettersParams{Status: "pending", Limit: 1}); len(got) != 1 || got[0].Seq != 3 {
		t.Fatalf("ListDeadLetters(pending, limit 1): %+v", got)
	}
	if s := x.stats(); s.DeadLetters != 2 || s.Messages != 4 {
		t.Fatalf("stats %+v, want 2 dead letters beside 4 messages (copied, not moved)", s)
	}
}

// testReadPartitions: one ReadPartitions call returns, per read, what
// ReadMessages returns for it: seq > AfterSeq, in seq order, at most Limit,
// nothing for Limit 0 or an empty partition.
func testReadPartitions(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	pids := x.declare("q", 4)
	for i, n := range []int{5, 3, 0, 2} {
		for j := range n {
			x.insert(x.db, "q", i, fmt.Sprintf("p%d-%d", i, j))
		}
		x.mustSequence(pids[i], 10)
	}
	reads := []dialect.PartitionRead{
		{PartitionID: pids[3], AfterSeq: 0, Limit: 10},
		{PartitionID: pids[0], AfterSeq: 1, Limit: 3},
		{PartitionID: pids[2], AfterSeq: 0, Limit: 10},
		{PartitionID: pids[1], AfterSeq: 0, Limit: 0},
	}
	ctx, cancel := x.bounded()
	defer cancel()
	r, err := x.d.ReadPartitions(ctx, x.db, &dialect.ReadPartitionsParams{Reads: reads})
	if err != nil {
		t.Fatalf("ReadPartitions: %v", err)
	}
	if len(r.Messages) != len(reads) {
		t.Fatalf("ReadPartitions returned %d results for %d reads", len(r.Messages), len(reads))
	}
	want := []string{"[1:p3-0 2:p3-1]", "[2:p0-1 3:p0-2 4:p0-3]", "[]", "[]"}
	for i, rd := range reads {
		got := seqPayloads(r.Messages[i])
		if got != want[i] {
			t.Errorf("read %d (%+v): %s, want %s", i, rd, got, want[i])
		}
		if rd.Limit > 0 {
			if single := seqPayloads(x.read(rd.PartitionID, rd.AfterSeq, rd.Limit)); single != got {
				t.Errorf("read %d: ReadPartitions gives %s, ReadMessages %s", i, got, single)
			}
		}
	}
}

func seqPayloads(ms []dialect.Message) string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = fmt.Sprintf("%d:%s", m.Seq, m.Payload)
	}
	return "[" + strings.Join(out, " ") + "]"
}

// testSequencePartitions: one call sequences several partitions, each up
// to Limit rows in id order from its own counter, and reports each in the
// order asked; a partition without rows is Locked with nothing assigned.
func testSequencePartitions(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	pids := x.declare("q", 3)
	// One multi-row insert, which no dialect sequences itself
	// (Capabilities.SequencesOnInsert covers single rows).
	rows := []dialect.InsertRow{{Queue: "q", Partition: 1, Payload: []byte("x"), PayloadType: "text/plain"}}
	for _, p := range []string{"a", "b", "c", "d", "e"} {
		rows = append(rows, dialect.InsertRow{Queue: "q", Partition: 0, Payload: []byte(p), PayloadType: "text/plain"})
	}
	if _, err := x.d.InsertMessages(x.ctx, x.db, &dialect.InsertMessagesParams{Rows: rows}); err != nil {
		t.Fatalf("InsertMessages: %v", err)
	}
	step := func(limit int, ids ...int64) []dialect.SequencedPartition {
		var r *dialect.SequencePartitionsResult
		err := x.inTx(nil, func(ctx context.Context, tx *sql.Tx) error {
			var err error
			r, err = x.d.SequencePartitions(ctx, tx, &dialect.SequencePartitionsParams{PartitionIDs: ids, Limit: limit})
			return err
		})
		if err != nil {
			t.Fatalf("SequencePartitions(%v, %d): %v", ids, limit, err)
		}
		return r.Partitions
	}
	res := func(pid int64, assigned int, last int64) dialect.SequencedPartition {
		return dialect.SequencedPartition{PartitionID: pid, Locked: true, Assigned: assigned, LastSeq: last}
	}
	for i, want := range [][]dialect.SequencedPartition{
		{res(pids[2], 0, 0), res(pids[0], 3, 3), res(pids[1], 1, 1)},
		{res(pids[1], 0, 1), res(pids[0], 2, 5)},
	} {
		ids := make([]int64, len(want))
		for j, w := range want {
			ids[j] = w.PartitionID
		}
		if got := step(3, ids...); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("step %d: %+v, want %+v", i, got, want)
		}
	}
	x.insert(x.db, "q", 1, "y", "z")
	if got, want := step(10, pids[1]), []dialect.SequencedPartition{res(pids[1], 2, 3)}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after two more rows: %+v, want %+v", got, want)
	}
	x.checkSeqs("q", 0, pids[0], 5)
	x.checkSeqs("q", 1, pids[1], 3)
}

// sequencePending runs one SequencePending call on x.db, bounded by
// noWait: it must never wait on a producer or another sequencer.
func (x *dialectEnv) sequencePending(from int64, maxPartitions, limit int) []dialect.SequencedPartition {
	x.t.Helper()
	ctx, cancel := context.WithTimeout(x.ctx, noWait)
	defer cancel()
	r, err := x.d.SequencePending(ctx, x.db, &dialect.SequencePendingParams{
		FromPartitionID: from, MaxPartitions: maxPartitions, Limit: limit})
	if err != nil {
		x.t.Fatalf("SequencePending(from %d, %d partitions, %d rows): %v", from, maxPartitions, limit, err)
	}
	return r.Partitions
}

// testSequencePending: one call finds the partitions with committed
// unsequenced rows (from FromPartitionID up, at most MaxPartitions, in id
// order), shares Limit evenly among them and numbers each one's rows in
// id order from its counter; a producer's uncommitted rows are neither
// waited on nor numbered, and get the next seqs once committed.
func testSequencePending(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	pids := x.declare("q", 4)
	var producer *sql.Tx
	if !b.singleWriter() {
		producer = x.producer(x.open())
		x.insert(producer, "q", 2, "late") // lower ids, committed last
		x.insert(producer, "q", 1, "late")
	}
	x.insert(x.db, "q", 0, "a", "b", "c", "d", "e")
	x.insert(x.db, "q", 1, "x")
	x.insert(x.db, "q", 3, "y", "z")
	res := func(pid int64, assigned int, last int64) dialect.SequencedPartition {
		return dialect.SequencedPartition{PartitionID: pid, Locked: true, Assigned: assigned, LastSeq: last}
	}
	for i, step := range []struct {
		from        int64
		parts, rows int
		want        []dialect.SequencedPartition
	}{
		{0, 2, 6, []dialect.SequencedPartition{res(pids[0], 3, 3), res(pids[1], 1, 1)}},
		{pids[1] + 1, 1024, 10, []dialect.SequencedPartition{res(pids[3], 2, 2)}},
		{0, 1024, 10, []dialect.SequencedPartition{res(pids[0], 2, 5)}},
		{0, 1024, 10, nil},
	} {
		if got := x.sequencePending(step.from, step.parts, step.rows); fmt.Sprint(got) != fmt.Sprint(step.want) {
			t.Fatalf("step %d: %+v, want %+v", i, got, step.want)
		}
	}
	if !b.singleWriter() {
		if err := producer.Commit(); err != nil {
			t.Fatal(err)
		}
		want := []dialect.SequencedPartition{res(pids[1], 1, 2), res(pids[2], 1, 1)}
		if got := x.sequencePending(0, 1024, 10); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after the producer committed: %+v, want %+v", got, want)
		}
		if msgs := x.read(pids[1], 0, 10); len(msgs) != 2 || string(msgs[0].Payload) != "x" || string(msgs[1].Payload) != "late" {
			t.Fatalf("partition 1: %v; want x then late, in commit order", msgs)
		}
		x.checkSeqs("q", 2, pids[2], 1)
	}
	x.checkSeqs("q", 0, pids[0], 5)
	x.checkSeqs("q", 3, pids[3], 2)
}

// testSequencePendingSkipsLocked: a partition another sequencer holds is
// reported not Locked, at once, and the others are sequenced; once the
// holder commits, the next call goes on from its counter.
func testSequencePendingSkipsLocked(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	pids := x.declare("q", 2)
	x.insert(x.db, "q", 0, "a", "b")
	x.insert(x.db, "q", 1, "c")
	first, err := x.open().BeginTx(x.ctx, x.d.TxOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Rollback() }()
	if r, err := x.sequenceIn(x.ctx, first, pids[0], 1); err != nil || !r.Locked {
		t.Fatalf("first sequencer: %+v, %v", r, err)
	}
	want := []dialect.SequencedPartition{
		{PartitionID: pids[0]},
		{PartitionID: pids[1], Locked: true, Assigned: 1, LastSeq: 1},
	}
	if got := x.sequencePending(0, 1024, 10); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("SequencePending while partition 0 is held: %+v; want %+v", got, want)
	}
	if err := first.Commit(); err != nil {
		t.Fatal(err)
	}
	want = []dialect.SequencedPartition{{PartitionID: pids[0], Locked: true, Assigned: 1, LastSeq: 2}}
	if got := x.sequencePending(0, 1024, 10); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the first committed: %+v; want %+v", got, want)
	}
	x.checkSeqs("q", 0, pids[0], 2)
	x.checkSeqs("q", 1, pids[1], 1)
}

// testSequencePendingConcurrent: SequencePending calls racing each other
// and a producer number every row once, gap-free, in commit order.
func testSequencePendingConcurrent(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	pids := x.declare("q", 3)
	const perPartition, callers = 20, 4
	var (
		mu       sync.Mutex
		assigned int
		wg       sync.WaitGroup
		produced = make(chan struct{})
	)
	go func() {
		defer close(produced)
		db := x.pool()
		for i := range perPartition {
			for part := range pids {
				x.insert(db, "q", part, fmt.Sprint(i))
			}
		}
	}()
	for c := range callers {
		db := x.pool()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := false; ; {
				ctx, cancel := context.WithTimeout(x.ctx, noWait)
				r, err := x.d.SequencePending(ctx, db, &dialect.SequencePendingParams{MaxPartitions: 2, Limit: 4})
				cancel()
				if err != nil {
					t.Errorf("sequencer %d: %v", c, err)
					return
				}
				n := 0
				for _, p := range r.Partitions {
					n += p.Assigned
				}
				mu.Lock()
				assigned += n
				mu.Unlock()
				if done && len(r.Partitions) == 0 {
					return
				}
				select {
				case <-produced:
					done = true
				default:
				}
			}
		}()
	}
	wg.Wait()
	<-produced
	if t.Failed() {
		return
	}
	for { // partitions another caller held at its last look
		if len(x.sequencePending(0, 1024, 100)) == 0 {
			break
		}
	}
	for part, pid := range pids {
		x.checkSeqs("q", part, pid, perPartition)
	}
	if assigned > len(pids)*perPartition {
		t.Fatalf("concurrent sequencers reported %d rows assigned, more than the %d inserted", assigned, len(pids)*perPartition)
	}
}

// testSequencePartitionsSkipsLocked: a partition another sequencer holds is
// reported not Locked, at once, and the others of the call are sequenced.
func testSequencePartitionsSkipsLocked(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	pids := x.declare("q", 2)
	x.insert(x.db, "q", 0, "a", "b")
	x.insert(x.db, "q", 1, "c")
	first, err := x.db.BeginTx(x.ctx, x.d.TxOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Rollback() }()
	if r, err := x.sequenceIn(x.ctx, first, pids[0], 1); err != nil || !r.Locked {
		t.Fatalf("first sequencer: %+v, %v", r, err)
	}
	var got []dialect.SequencedPartition
	err = x.inTxWithin(x.open(), noWait, func(ctx context.Context, tx *sql.Tx) error {
		r, err := x.d.SequencePartitions(ctx, tx, &dialect.SequencePartitionsParams{PartitionIDs: pids, Limit: 10})
		if r != nil {
			got = r.Partitions
		}
		return err
	})
	want := []dialect.SequencedPartition{
		{PartitionID: pids[0]},
		{PartitionID: pids[1], Locked: true, Assigned: 1, LastSeq: 1},
	}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("SequencePartitions while partition 0 is held: %+v, %v; want %+v at once", got, err, want)
	}
	if err := first.Commit(); err != nil {
		t.Fatal(err)
	}
	if r := x.mustSequence(pids[0], 10); r.Assigned != 1 || r.LastSeq != 2 {
		t.Fatalf("after the first committed: %+v", *r)
	}
	x.checkSeqs("q", 0, pids[0], 2)
	x.checkSeqs("q", 1, pids[1], 1)
}

// testInsertSequencesInCommitOrder: a dialect that sequences on insert
// keeps seqs gap-free and in commit order. A single-row insert takes the
// next seq and reports it; one that rolls back leaves no gap; while the
// partition has unsequenced rows (a multi-row insert), single-row inserts
// leave theirs unsequenced too, so the sequencer numbers them all in
// commit order.
func testInsertSequencesInCommitOrder(t testing.TB, b *Backend) {
	x := newDialectEnv(t, b)
	pid := x.declare("q", 1)[0]
	insertOne := func(q dialect.DBTX, payload string) *dialect.InsertMessagesResult {
		t.Helper()
		ctx, cancel := x.bounded()
		defer cancel()
		r, err := x.d.InsertMessages(ctx, q, &dialect.InsertMessagesParams{Rows: []dialect.InsertRow{
			{Queue: "q", Partition: 0, Payload: []byte(payload), PayloadType: "t"},
		}})
		if err != nil {
			t.Fatalf("InsertMessages(%s): %v", payload, err)
		}
		return r
	}
	if r := insertOne(x.db, "1"); r.Inserted != 1 || r.Sequenced != 1 {
		t.Fatalf("first single-row insert: %+v, want it sequenced", *r)
	}
	err := x.inTx(nil, func(ctx context.Context, tx *sql.Tx) error {
		if r := insertOne(tx, "rolled back"); r.Sequenced != 1 {
			t.Errorf("single-row insert in a transaction: %+v, want it sequenced", *r)
		}
		return errors.New("roll back")
	})
	if err == nil {
		t.Fatal("the transaction did not roll back")
	}
	if r := insertOne(x.db, "2"); r.Sequenced != 1 {
		t.Fatalf("insert after a rollback: %+v, want it sequenced", *r)
	}
	x.insert(x.db, "q", 0, "3", "4") // several rows: left to the sequencer
	if r := insertOne(x.db, "5"); r.Sequenced != 0 {
		t.Fatalf("single-row insert behind unsequenced rows: %+v, want it left to the sequencer (commit order)", *r)
	}
	if s := x.state("q", 0); s.LastSeq != 2 {
		t.Fatalf("counter after two sequenced inserts and a rollback: last_seq %d, want 2", s.LastSeq)
	}
	if r := x.mustSequence(pid, 100); r.Assigned != 3 || r.LastSeq != 5 {
		t.Fatalf("sequencing the rest: %+v, want 3 assigned, last_seq 5", *r)
	}
	if r := insertOne(x.db, "6"); r.Sequenced != 1 {
		t.Fatalf("insert once all is sequenced: %+v, want it sequenced", *r)
	}
	if got := seqPayloads(x.read(pid, 0, 10)); got != "[1:1 2:2 3:3 4:4 5:5 6:6]" {
		t.Fatalf("partition reads %s, want [1:1 2:2 3:3 4:4 5:5 6:6] (gap-free, commit order)", got)
	}
	x.checkSeqs("q", 0, pid, 6)
}
