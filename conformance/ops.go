package conformance

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/outbox"
)

// opsTests check the dead-letter store and status methods through the
// outbox's dead-letter and status methods.
var opsTests = []test{
	{"Ops/ListFiltersAndPaging", testListFiltersAndPaging},
	{"Ops/BadInput", testOpsBadInput},
	{"Ops/RequeueRedelivers", testRequeueRedelivers},
	{"Ops/RequeueAtomic", testRequeueAtomic},
	{"Ops/ConcurrentTransitions", testConcurrentTransitions},
	{"Ops/ReplayClaims", testReplayClaims},
	{"Ops/ReplayExpiredClaim", testReplayExpiredClaim},
	{"Ops/Cleanup", testCleanup},
	{"Ops/Status", testStatus},
	{"Ops/StatusStatements", testStatusStatements},
}

// deadLetter makes dead letters of queue's partition the way a Reject
// does: it enqueues one message per payload, sequences them, copies them
// into the dead-letter table and moves the cursor past them, in one
// transaction (one INSERT, so they share a failure time). It returns their
// ids in seq order.
func (e *env) deadLetter(ob *outbox.Outbox, queue string, partition int, payloads ...string) []int64 {
	e.t.Helper()
	if len(payloads) > 0 {
		msgs := make([]outbox.Message, len(payloads))
		for i, p := range payloads {
			msgs[i] = msg(queue, partition, p)
		}
		e.enqueue(ob, msgs...)
	}
	e.sequenceAll(ob)
	st := e.state(ob, queue, partition)
	d := e.b.Dialect
	lr, err := d.LookupQueue(e.ctx, e.db, &dialect.LookupQueueParams{Queue: queue})
	if err != nil {
		e.t.Fatal(err)
	}
	pid := lr.PartitionIDs[partition]
	tx, err := e.db.BeginTx(e.ctx, d.TxOptions())
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	seqs := seqRange(st.ProcessedSeq+1, st.LastSeq)
	if _, err := d.InsertDeadLetters(e.ctx, tx, &dialect.InsertDeadLettersParams{PartitionID: pid, Seqs: seqs, Reason: "rejected", Attempts: 1}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := updateCursor(e.ctx, d, tx, &dialect.CursorUpdate{PartitionID: pid, ProcessedSeq: st.LastSeq}); err != nil {
		e.t.Fatal(err)
	}
	e.commit(tx)
	page, err := ob.DeadLetterPage(e.ctx, outbox.DeadLetterFilter{Queue: queue, Partition: &partition, Limit: len(seqs)})
	if err != nil {
		e.t.Fatal(err)
	}
	ids := make([]int64, 0, len(seqs))
	for _, dl := range page.DeadLetters {
		ids = append(ids, dl.ID)
	}
	slices.Sort(ids)
	return ids
}

// allPages lists f page by page.
func (e *env) allPages(ob *outbox.Outbox, f outbox.DeadLetterFilter) (all []outbox.DeadLetter, pages int) {
	e.t.Helper()
	for {
		p, err := ob.DeadLetterPage(e.ctx, f)
		if err != nil {
			e.t.Fatalf("DeadLetterPage(%+v): %v", f, err)
		}
		all = append(all, p.DeadLetters...)
		pages++
		if p.Next == "" {
			return all, pages
		}
		if pages > 1000 {
			e.t.Fatal("paging does not end")
		}
		f.After = p.Next
	}
}

func dlIDs(dls []outbox.DeadLetter) []int64 {
	out := make([]int64, len(dls))
	for i, d := range dls {
		out[i] = d.ID
	}
	return out
}

// newestFirst orders dead letters as listings must: failure time, then id,
// descending.
func newestFirst(a, b outbox.DeadLetter) int {
	if c := b.FailedAt.Compare(a.FailedAt); c != 0 {
		return c
	}
	return int(b.ID - a.ID)
}

// testListFiltersAndPaging: listings are newest first with a total order
// (ties on failure time broken by id), pages of every size neither repeat
// nor skip rows, every filter selects exactly the rows it names, and the
// count matches the listing.
func testListFiltersAndPaging(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, outbox.Config{})
	e.declare(ob, "a", 2)
	e.declare(ob, "b", 1)
	for round := range 3 {
		e.deadLetter(ob, "a", 0, fmt.Sprintf("a0-%d-x", round), fmt.Sprintf("a0-%d-y", round), fmt.Sprintf("a0-%d-z", round))
		e.deadLetter(ob, "a", 1, fmt.Sprintf("a1-%d", round))
		e.deadLetter(ob, "b", 0, fmt.Sprintf("b0-%d-x", round), fmt.Sprintf("b0-%d-y", round))
	}
	// A payload type of its own, and a discarded row.
	m := msg("b", 0, "typed")
	m.PayloadType = "application/x-typed"
	e.enqueue(ob, m)
	e.sequenceAll(ob)
	typed := e.deadLetterSeqs(ob, "b", 0)
	if _, err := ob.DiscardDeadLetters(e.ctx, typed); err != nil {
		t.Fatal(err)
	}

	everything, _ := e.allPages(ob, outbox.DeadLetterFilter{Limit: MaxLimit})
	if len(everything) != 19 {
		t.Fatalf("%d dead letters listed, want 19", len(everything))
	}
	if !slices.IsSortedFunc(everything, func(a, b outbox.DeadLetter) int { return newestFirst(a, b) }) {
		t.Fatalf("listing is not newest first by (failed_at, id): %v", dlIDs(everything))
	}
	ties := false
	for i := 1; i < len(everything); i++ {
		ties = ties || everything[i].FailedAt.Equal(everything[i-1].FailedAt)
	}
	if !ties {
		t.Fatal("setup: no two dead letters share a failure time; the tie-break is untested")
	}
	for _, size := range []int{1, 2, 3, 5, 19, 20} {
		got, pages := e.allPages(ob, outbox.DeadLetterFilter{Limit: size})
		if !slices.Equal(dlIDs(got), dlIDs(everything)) {
			t.Fatalf("pages of %d: %v, want %v (no row twice, none skipped)", size, dlIDs(got), dlIDs(everything))
		}
		if want := 19/size + 1; pages != want {
			t.Errorf("pages of %d: %d pages, want %d", size, pages, want)
		}
	}

	one := 1
	cut := everything[8].FailedAt
	filters := map[string]struct {
		f    outbox.DeadLetterFilter
		keep func(outbox.DeadLetter) bool
	}{
		"queue":        {outbox.DeadLetterFilter{Queue: "a"}, func(d outbox.DeadLetter) bool { return d.Queue == "a" }},
		"partition":    {outbox.DeadLetterFilter{Partition: &one}, func(d outbox.DeadLetter) bool { return d.Partition == 1 }},
		"queue+part":   {outbox.DeadLetterFilter{Queue: "b", Partition: new(int)}, func(d outbox.DeadLetter) bool { return d.Queue == "b" }},
		"payload type": {outbox.DeadLetterFilter{PayloadType: m.PayloadType}, func(d outbox.DeadLetter) bool { return d.PayloadType == m.PayloadType }},
		"status":       {outbox.DeadLetterFilter{Status: "discarded"}, func(d outbox.DeadLetter) bool { return d.Status == "discarded" }},
		"pending":      {outbox.DeadLetterFilter{Status: "pending", Queue: "a"}, func(d outbox.DeadLetter) bool { return d.Status == "pending" && d.Queue == "a" }},
		"from":         {outbox.DeadLetterFilter{FailedFrom: cut}, func(d outbox.DeadLetter) bool { return !d.FailedAt.Before(cut) }},
		"before":       {outbox.DeadLetterFilter{FailedBefore: cut}, func(d outbox.DeadLetter) bool { return d.FailedAt.Before(cut) }},
		"range": {outbox.DeadLetterFilter{FailedFrom: everything[18].FailedAt, FailedBefore: cut, Queue: "a"}, func(d outbox.DeadLetter) bool {
			return d.Queue == "a" && !d.FailedAt.Before(everything[18].FailedAt) && d.FailedAt.Before(cut)
		}},
	}
	for name, c := range filters {
		want := slices.DeleteFunc(slices.Clone(everything), func(d outbox.DeadLetter) bool { return !c.keep(d) })
		if len(want) == 0 || len(want) == len(everything) {
			t.Fatalf("%s: setup selects %d of %d rows; the filter is untested", name, len(want), len(everything))
		}
		f := c.f
		f.Limit = 2
		got, _ := e.allPages(ob, f)
		if !slices.Equal(dlIDs(got), dlIDs(want)) {
			t.Errorf("%s: listed %v, want %v", name, dlIDs(got), dlIDs(want))
		}
		n, err := ob.CountDeadLetters(e.ctx, f)
		if err != nil || n != int64(len(want)) {
			t.Errorf("%s: CountDeadLetters = %d, %v; want %d", name, n, err, len(want))
		}
	}
	// The old call keeps working, with the new fields.
	dlPage, err := ob.DeadLetterPage(e.ctx, outbox.DeadLetterFilter{Queue: "b", Status: "pending"})
	dl := dlPage.DeadLetters
	if err != nil || len(dl) != 6 {
		t.Errorf("DeadLetters: %d rows, %v; want 6", len(dl), err)
	}
}

// deadLetterSeqs dead-letters everything sequenced and unprocessed on a
// partition (messages the caller enqueued and sequenced) and returns the
// ids.
func (e *env) deadLetterSeqs(ob *outbox.Outbox, queue string, partition int) []int64 {
	e.t.Helper()
	return e.deadLetter(ob, queue, partition)
}

// MaxLimit is outbox.MaxDeadLetterLimit, short.
const MaxLimit = outbox.MaxDeadLetterLimit

// testOpsBadInput: every bad argument is a typed error and changes nothing.
func testOpsBadInput(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, outbox.Config{})
	e.declare(ob, "q", 1)
	ids := e.deadLetter(ob, "q", 0, "one", "two")
	neg, big := -1, outbox.MaxPartitions
	for name, f := range map[string]outbox.DeadLetterFilter{
		"status":       {Status: "lost"},
		"limit":        {Limit: MaxLimit + 1},
		"negative":     {Limit: -1},
		"partition":    {Partition: &neg},
		"partition2":   {Partition: &big},
		"payload type": {PayloadType: "bad\x00type"},
		"cursor":       {After: "not-a-cursor"},
		"range":        {FailedFrom: time.Unix(100, 0), FailedBefore: time.Unix(100, 0)},
	} {
		if _, err := ob.DeadLetterPage(e.ctx, f); !errors.Is(err, outbox.ErrInvalidFilter) {
			t.Errorf("DeadLetterPage with bad %s: %v, want ErrInvalidFilter", name, err)
		}
		if _, err := ob.CountDeadLetters(e.ctx, f); name != "limit" && name != "negative" && name != "cursor" && !errors.Is(err, outbox.ErrInvalidFilter) {
			t.Errorf("CountDeadLetters with bad %s: %v, want ErrInvalidFilter", name, err)
		}
	}
	if _, err := ob.DeadLetterPage(e.ctx, outbox.DeadLetterFilter{Queue: "bad queue"}); !errors.Is(err, outbox.ErrInvalidQueueName) {
		t.Errorf("bad queue: %v", err)
	}
	for name, list := range map[string][]int64{"none": nil, "zero": {0}, "negative": {ids[0], -3}, "too many": make([]int64, MaxLimit+1)} {
		if _, err := ob.RequeueDeadLetters(e.ctx, list); !errors.Is(err, outbox.ErrInvalidFilter) {
			t.Errorf("RequeueDeadLetters(%s): %v, want ErrInvalidFilter", name, err)
		}
		if _, err := ob.DiscardDeadLetters(e.ctx, list); !errors.Is(err, outbox.ErrInvalidFilter) {
			t.Errorf("DiscardDeadLetters(%s): %v, want ErrInvalidFilter", name, err)
		}
	}
	// One missing id stops the whole call.
	_, err := ob.DiscardDeadLetters(e.ctx, []int64{ids[0], ids[1] + 1000})
	var conflict *outbox.DeadLetterConflictError
	if !errors.Is(err, outbox.ErrDeadLetterNotFound) || errors.Is(err, outbox.ErrStatusConflict) || !errors.As(err, &conflict) ||
		!slices.Equal(conflict.Missing, []int64{ids[1] + 1000}) {
		t.Errorf("discard with a missing id: %v, want ErrDeadLetterNotFound naming it", err)
	}
	if _, err := ob.RequeueDeadLetters(e.ctx, []int64{ids[0], ids[1] + 1000}); !errors.Is(err, outbox.ErrDeadLetterNotFound) {
		t.Errorf("requeue with a missing id: %v, want ErrDeadLetterNotFound", err)
	}
	for _, c := range []struct {
		n    int
		hold time.Duration
	}{{0, time.Minute}, {MaxLimit + 1, time.Minute}, {1, 0}, {1, -time.Second}} {
		if _, err := ob.HoldDeadLetters(e.ctx, "", c.n, c.hold); !errors.Is(err, outbox.ErrInvalidFilter) {
			t.Errorf("HoldDeadLetters(%d, %v): %v, want ErrInvalidFilter", c.n, c.hold, err)
		}
	}
	if err := ob.ResolveDeadLetter(e.ctx, "forged", ids[0]); !errors.Is(err, outbox.ErrInvalidFilter) {
		t.Errorf("ResolveDeadLetter with a forged token: %v, want ErrInvalidFilter", err)
	}
	if _, err := ob.CleanupDeadLetters(e.ctx, -time.Second, 10); !errors.Is(err, outbox.ErrInvalidFilter) {
		t.Errorf("CleanupDeadLetters(-1s): %v", err)
	}
	if _, err := ob.CleanupDeadLetters(e.ctx, 0, 0); !errors.Is(err, outbox.ErrInvalidFilter) {
		t.Errorf("CleanupDeadLetters(batch 0): %v", err)
	}
	if n, err := ob.CountDeadLetters(e.ctx, outbox.DeadLetterFilter{Status: "pending"}); err != nil || n != 2 {
		t.Errorf("after the bad calls: %d pending, %v; want both still pending", n, err)
	}
	if s := e.stats(ob); s.Unsequenced != 0 {
		t.Errorf("after the bad calls: %d new messages, want 0", s.Unsequenced)
	}
}

// testRequeueRedelivers: requeued dead letters are delivered again by a
// running outbox, after what their partition already held and in their
// original order within the partition (whatever order the ids came in);
// the rows become resolved, and a second requeue is refused.
func testRequeueRedelivers(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 2)
	p0 := e.deadLetter(ob, "q", 0, "m1", "m2", "m3")
	p0 = append(p0, e.deadLetter(ob, "q", 0, "m4")...)
	p1 := e.deadLetter(ob, "q", 1, "n1", "n2")
	e.enqueue(ob, msg("q", 0, "already-there"))
	e.sequenceAll(ob)

	var tl recorder
	e.handle(ob, "q", outbox.PerMessage(func(_ context.Context, d outbox.Delivery) outbox.Result {
		tl.add(d)
		return outbox.Success()
	}))
	e.start(ob)
	await(t, tl.reached(1), "the message already there")

	scrambled := []int64{p1[1], p0[3], p0[1], p1[0], p0[0], p0[2], p0[1]} // and a duplicate
	n, err := ob.RequeueDeadLetters(e.ctx, scrambled)
	if err != nil || n != 6 {
		t.Fatalf("RequeueDeadLetters = %d, %v; want 6", n, err)
	}
	await(t, tl.reached(7), "the requeued messages")
	e.stop(ob)
	if got, want := tl.payloads(0), []string{"already-there", "m1", "m2", "m3", "m4"}; !slices.Equal(got, want) {
		t.Errorf("partition 0 delivered %v, want %v", got, want)
	}
	if got, want := tl.payloads(1), []string{"n1", "n2"}; !slices.Equal(got, want) {
		t.Errorf("partition 1 delivered %v, want %v", got, want)
	}
	if got := tl.seqs(0); !slices.Equal(got, seqRange(5, 9)) {
		t.Errorf("partition 0 seqs %v, want 5..9 (after the four dead-lettered ones)", got)
	}
	all, _ := e.allPages(ob, outbox.DeadLetterFilter{})
	for _, d := range all {
		if d.Status != "resolved" || d.CompletedAt.IsZero() || d.CompletedAt.Before(d.FailedAt) {
			t.Errorf("dead letter %d after requeue: status %q completed %v", d.ID, d.Status, d.CompletedAt)
		}
	}
	_, err = ob.RequeueDeadLetters(e.ctx, []int64{p1[0]})
	var conflict *outbox.DeadLetterConflictError
	if !errors.Is(err, outbox.ErrStatusConflict) || !errors.As(err, &conflict) || !slices.Equal(conflict.Refused, []int64{p1[0]}) {
		t.Errorf("second requeue: %v, want ErrStatusConflict naming %d", err, p1[0])
	}
	if s := e.stats(ob); s.Messages > 7 {
		t.Errorf("%d messages after the refused requeue", s.Messages)
	}
}

// testRequeueAtomic: when the insert of a requeue fails after the rows
// were marked resolved, the marks are undone with it: the dead letters
// stay pending, no message exists, and a later requeue works.
func testRequeueAtomic(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, outbox.Config{})
	e.declare(ob, "q", 1)
	ids := e.deadLetter(ob, "q", 0, "m1", "m2")
	var marked atomic.Bool
	broken, err := outbox.New(e.db, failingRequeue{Dialect: b.Dialect, marked: &marked}, outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broken.RequeueDeadLetters(e.ctx, ids); err == nil || !errors.Is(err, errInjected) {
		t.Fatalf("RequeueDeadLetters with a failing insert: %v, want the injected failure", err)
	}
	if !marked.Load() {
		t.Fatal("the injected failure came before the rows were marked; atomicity is untested")
	}
	if n, err := ob.CountDeadLetters(e.ctx, outbox.DeadLetterFilter{Status: "pending"}); err != nil || n != 2 {
		t.Fatalf("after the failed requeue: %d pending (%v), want 2: marks survived without their messages", n, err)
	}
	if s := e.stats(ob); s.Unsequenced != 0 {
		t.Fatalf("after the failed requeue: %d new messages, want 0", s.Unsequenced)
	}
	if n, err := ob.RequeueDeadLetters(e.ctx, ids); err != nil || n != 2 {
		t.Fatalf("requeue after the failure: %d, %v", n, err)
	}
}

// failingRequeue fails the message insert of a requeue, after noting
// that the marking statement ran.
type failingRequeue struct {
	dialect.Dialect
	marked *atomic.Bool
}

func (f failingRequeue) RequeueDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.RequeueDeadLettersParams) (*dialect.RequeueDeadLettersResult, error) {
	return f.Dialect.RequeueDeadLetters(ctx, &markThenFail{DBTX: q, marked: f.marked}, p)
}

func (f failingRequeue) InsertMessages(ctx context.Context, q dialect.DBTX, p *dialect.InsertMessagesParams) (*dialect.InsertMessagesResult, error) {
	return f.Dialect.InsertMessages(ctx, &markThenFail{DBTX: q, marked: f.marked}, p)
}

// markThenFail notes an UPDATE of the dead letters and fails every INSERT.
type markThenFail struct {
	dialect.DBTX
	marked *atomic.Bool
}

func (m *markThenFail) note(query string) error {
	if strings.Contains(query, "UPDATE") && strings.Contains(query, "dead_letters") {
		m.marked.Store(true)
	}
	if strings.Contains(query, "INSERT INTO") {
		return errInjected
	}
	return nil
}

func (m *markThenFail) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := m.note(query); err != nil {
		return nil, err
	}
	return m.DBTX.ExecContext(ctx, query, args...)
}

func (m *markThenFail) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := m.note(query); err != nil {
		return nil, err
	}
	return m.DBTX.QueryContext(ctx, query, args...)
}

// testConcurrentTransitions: two operators acting on the same rows at once
// (requeue against discard, requeue against requeue): exactly one wins,
// the other changes nothing and gets ErrStatusConflict, and the requeued
// messages exist once.
func testConcurrentTransitions(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, outbox.Config{})
	other := e.outbox(e.pool(), outbox.Config{})
	const rounds = 6
	e.declare(ob, "q", rounds) // a partition per round: requeued rows stay out of later rounds
	messages := int64(0)
	for round := range rounds {
		ids := e.deadLetter(ob, "q", round, "a", "b", "c")
		// The two calls name the ids in opposite orders; rows are still
		// locked in id order, so they cannot deadlock.
		rev := slices.Clone(ids)
		slices.Reverse(rev)
		ops := [2]func() (int, error){
			func() (int, error) { return ob.RequeueDeadLetters(e.ctx, ids) },
			func() (int, error) { return other.DiscardDeadLetters(e.ctx, rev) },
		}
		winner := "discarded"
		if round%2 == 1 {
			ops[1] = func() (int, error) { return other.RequeueDeadLetters(e.ctx, rev) }
			winner = "resolved"
		}
		var wg sync.WaitGroup
		var errs [2]error
		var ns [2]int
		start := make(chan struct{})
		for i := range ops {
			wg.Go(func() {
				<-start
				ns[i], errs[i] = ops[i]()
			})
		}
		close(start)
		wg.Wait()
		won := 0
		for i := range 2 {
			switch {
			case errs[i] == nil && ns[i] == 3:
				won++
				if i == 0 {
					winner = "resolved"
				}
			case errors.Is(errs[i], outbox.ErrStatusConflict):
			default:
				t.Fatalf("round %d: operation %d returned %d, %v", round, i, ns[i], errs[i])
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d operations won, want exactly 1 (%v)", round, won, errs)
		}
		if winner == "resolved" {
			messages += 3
		}
		for _, id := range ids {
			page, err := ob.DeadLetterPage(e.ctx, outbox.DeadLetterFilter{Status: winner, Queue: "q", Limit: MaxLimit})
			if err != nil || !slices.Contains(dlIDs(page.DeadLetters), id) {
				t.Fatalf("round %d: dead letter %d is not %s (%v)", round, id, winner, err)
			}
		}
	}
	// Each round's three originals have seqs 1..3 in their partition.
	if n := int64(e.count("SELECT COUNT(*) FROM " + e.table("messages") + " WHERE seq IS NULL OR seq > 3")); n != messages {
		t.Fatalf("%d requeued messages exist, want %d (each winning requeue once)", n, messages)
	}
}

// testReplayClaims: concurrent claimers get disjoint rows; a claimed row
// is not claimable again while its deadline lasts; resolve and return act
// once, only with the claim's token, and return makes the row pending with
// one more attempt and the reason.
func testReplayClaims(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, outbox.Config{})
	other := e.outbox(e.pool(), outbox.Config{})
	e.declare(ob, "q", 2)
	e.declare(ob, "r", 1)
	ids := append(e.deadLetter(ob, "q", 0, "1", "2", "3", "4", "5"), e.deadLetter(ob, "q", 1, "6", "7", "8", "9", "10")...)
	rOnly := e.deadLetter(ob, "r", 0, "r1")

	var claims [2]outbox.DeadLetterHold
	var errs [2]error
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, o := range []*outbox.Outbox{ob, other} {
		wg.Go(func() {
			<-start
			claims[i], errs[i] = o.HoldDeadLetters(e.ctx, "q", 6, time.Hour)
		})
	}
	close(start)
	wg.Wait()
	seen := map[int64]int{}
	for i, c := range claims {
		if errs[i] != nil {
			t.Fatalf("claim %d: %v", i, errs[i])
		}
		for _, d := range c.DeadLetters {
			seen[d.ID]++
			if d.Status != "reprocessing" || !d.Deadline.Equal(c.Deadline) || d.Queue != "q" {
				t.Errorf("claimed row %d: status %q deadline %v queue %q, want reprocessing until %v in q", d.ID, d.Status, d.Deadline, d.Queue, c.Deadline)
			}
		}
	}
	if len(claims[0].DeadLetters)+len(claims[1].DeadLetters) != len(ids) || len(seen) != len(ids) {
		t.Fatalf("claims got %v and %v: want the %d rows of q, each once", dlIDs(claims[0].DeadLetters), dlIDs(claims[1].DeadLetters), len(ids))
	}
	if c, err := ob.HoldDeadLetters(e.ctx, "q", 10, time.Hour); err != nil || len(c.DeadLetters) != 0 {
		t.Fatalf("a third claim while the deadlines last got %v, %v; want none", dlIDs(c.DeadLetters), err)
	}
	if c, err := ob.HoldDeadLetters(e.ctx, "", 10, time.Hour); err != nil || !slices.Equal(dlIDs(c.DeadLetters), rOnly) {
		t.Fatalf("a claim of any queue got %v, %v; want only r's %v", dlIDs(c.DeadLetters), err, rOnly)
	}

	c0, c1 := claims[0], claims[1]
	if len(c0.DeadLetters) == 0 || len(c1.DeadLetters) == 0 {
		t.Skipf("one claimer got every row (%d and %d); the token checks need both", len(c0.DeadLetters), len(c1.DeadLetters))
	}
	mine, theirs := c0.DeadLetters[0].ID, c1.DeadLetters[0].ID
	if c0.Token != c1.Token { // equal only if both claims began in one microsecond
		if err := ob.ResolveDeadLetter(e.ctx, c1.Token, mine); !errors.Is(err, outbox.ErrStatusConflict) {
			t.Errorf("resolve with another claim's token: %v, want ErrStatusConflict", err)
		}
	}
	if err := ob.ResolveDeadLetter(e.ctx, c0.Token, mine); err != nil {
		t.Fatalf("resolve: %v", err)
	}
	if err := ob.ResolveDeadLetter(e.ctx, c0.Token, mine); !errors.Is(err, outbox.ErrStatusConflict) {
		t.Errorf("second resolve: %v, want ErrStatusConflict", err)
	}
	if err := ob.ReturnDeadLetter(e.ctx, c0.Token, mine, "too late"); !errors.Is(err, outbox.ErrStatusConflict) {
		t.Errorf("return after resolve: %v, want ErrStatusConflict", err)
	}
	if err := other.ReturnDeadLetter(e.ctx, c1.Token, theirs, "downstream still down"); err != nil {
		t.Fatalf("return: %v", err)
	}
	if err := other.ResolveDeadLetter(e.ctx, c1.Token, theirs); !errors.Is(err, outbox.ErrStatusConflict) {
		t.Errorf("resolve after return: %v, want ErrStatusConflict", err)
	}
	if err := ob.ResolveDeadLetter(e.ctx, c0.Token, 1<<40); !errors.Is(err, outbox.ErrDeadLetterNotFound) {
		t.Errorf("resolve of no row: %v, want ErrDeadLetterNotFound", err)
	}
	all, _ := e.allPages(ob, outbox.DeadLetterFilter{Queue: "q"})
	for _, d := range all {
		switch d.ID {
		case mine:
			if d.Status != "resolved" || d.CompletedAt.IsZero() {
				t.Errorf("resolved row: status %q completed %v", d.Status, d.CompletedAt)
			}
		case theirs:
			if d.Status != "pending" || d.Attempts != 2 || d.Reason != "downstream still down" || !d.Deadline.IsZero() {
				t.Errorf("returned row: status %q attempts %d reason %q deadline %v; want pending, 2, the reason, none",
					d.Status, d.Attempts, d.Reason, d.Deadline)
			}
		default:
			if d.Status != "reprocessing" {
				t.Errorf("row %d: status %q, want reprocessing", d.ID, d.Status)
			}
		}
	}
	// The returned row is claimable again.
	if c, err := ob.HoldDeadLetters(e.ctx, "q", 10, time.Hour); err != nil || !slices.Equal(dlIDs(c.DeadLetters), []int64{theirs}) {
		t.Errorf("claim after return: %v, %v; want [%d]", dlIDs(c.DeadLetters), err, theirs)
	}
}

// testReplayExpiredClaim: a reprocessing row whose deadline passed is
// claimable again, and the expired claim's token no longer acts on it.
func testReplayExpiredClaim(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, outbox.Config{})
	e.declare(ob, "q", 1)
	ids := e.deadLetter(ob, "q", 0, "one")
	first, err := ob.HoldDeadLetters(e.ctx, "q", 1, 50*time.Millisecond)
	if err != nil || len(first.DeadLetters) != 1 {
		t.Fatalf("claim: %v, %v", dlIDs(first.DeadLetters), err)
	}
	var second outbox.DeadLetterHold
	e.pollUntil("the claim's deadline to pass", func() bool {
		second, err = ob.HoldDeadLetters(e.ctx, "q", 1, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return len(second.DeadLetters) == 1
	})
	if second.DeadLetters[0].ID != ids[0] || !second.Deadline.After(first.Deadline) {
		t.Fatalf("reclaim got %v until %v (first until %v)", dlIDs(second.DeadLetters), second.Deadline, first.Deadline)
	}
	if err := ob.ResolveDeadLetter(e.ctx, first.Token, ids[0]); !errors.Is(err, outbox.ErrStatusConflict) {
		t.Fatalf("resolve with the expired claim: %v, want ErrStatusConflict", err)
	}
	if err := ob.ResolveDeadLetter(e.ctx, second.Token, ids[0]); err != nil {
		t.Fatalf("resolve with the live claim: %v", err)
	}
}

// countingCleanup counts the batches of a cleanup and checks each is
// bounded.
type countingCleanup struct {
	dialect.Dialect
	calls   *atomic.Int64
	maxSeen *atomic.Int64
}

func (c countingCleanup) CleanupDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.CleanupDeadLettersParams) (*dialect.CleanupDeadLettersResult, error) {
	c.calls.Add(1)
	r, err := c.Dialect.CleanupDeadLetters(ctx, q, p)
	if err == nil && int64(r.Deleted) > c.maxSeen.Load() {
		c.maxSeen.Store(int64(r.Deleted))
	}
	return r, err
}

// testCleanup: cleanup deletes only resolved and discarded rows completed
// long enough ago, in batches no larger than asked.
func testCleanup(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, outbox.Config{})
	e.declare(ob, "q", 1)
	requeued := e.deadLetter(ob, "q", 0, "r1", "r2", "r3")
	discarded := e.deadLetter(ob, "q", 0, "d1", "d2")
	pending := e.deadLetter(ob, "q", 0, "p1", "p2") // the claim below takes p1
	more := e.deadLetter(ob, "q", 0, "p3")
	if _, err := ob.RequeueDeadLetters(e.ctx, requeued); err != nil {
		t.Fatal(err)
	}
	if _, err := ob.DiscardDeadLetters(e.ctx, discarded); err != nil {
		t.Fatal(err)
	}
	if c, err := ob.HoldDeadLetters(e.ctx, "q", 1, time.Hour); err != nil || !slices.Equal(dlIDs(c.DeadLetters), pending[:1]) {
		t.Fatalf("claim: %v, %v", dlIDs(c.DeadLetters), err)
	}
	if n, err := ob.CleanupDeadLetters(e.ctx, time.Hour, 10); err != nil || n != 0 {
		t.Fatalf("cleanup of rows older than an hour: %d, %v; want 0", n, err)
	}
	var calls, biggest atomic.Int64
	counted, err := outbox.New(e.db, countingCleanup{b.Dialect, &calls, &biggest}, outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := counted.CleanupDeadLetters(e.ctx, 0, 2); err != nil || n != 5 {
		t.Fatalf("cleanup: %d, %v; want the 5 resolved and discarded rows", n, err)
	}
	if calls.Load() != 3 || biggest.Load() > 2 {
		t.Errorf("cleanup took %d batches, the largest %d rows; want 3 batches of at most 2", calls.Load(), biggest.Load())
	}
	left, _ := e.allPages(ob, outbox.DeadLetterFilter{})
	var leftIDs []int64
	for _, d := range left {
		if d.Status != "pending" && d.Status != "reprocessing" {
			t.Errorf("row %d with status %q survived cleanup", d.ID, d.Status)
		}
		leftIDs = append(leftIDs, d.ID)
	}
	slices.Sort(leftIDs)
	if want := append(slices.Clone(pending), more...); !slices.Equal(leftIDs, want) {
		t.Errorf("left %v, want the pending and reprocessing %v", leftIDs, want)
	}
}

// testStatus: a queue's status shows each partition's backlog (unsequenced
// rows included) and age, a retrying partition's error and next attempt,
// a leased one's lease, a healthy one with no retry pending even though
// its next_attempt_at lies ahead, and the dead letters by status.
func testStatus(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, outbox.Config{})
	e.declare(ob, "s", 4)
	e.declare(ob, "other", 1)
	d := b.Dialect
	lr, err := d.LookupQueue(e.ctx, e.db, &dialect.LookupQueueParams{Queue: "s"})
	if err != nil {
		t.Fatal(err)
	}
	pid := lr.PartitionIDs

	// Partition 2: leased, one message.
	e.enqueue(ob, msg("s", 2, "leased"))
	e.sequenceAll(ob)
	claim, err := claimLeases(e.ctx, d, e.db, &dialect.ClaimLeaseParams{Queues: []string{"s"}, Limit: 10, Token: "holder-1", Lease: time.Hour})
	if err != nil || len(claim.Partitions) != 1 || claim.Partitions[0].Partition != 2 {
		t.Fatalf("setup lease: %+v, %v", claim, err)
	}
	// Partition 1: two dead letters (one discarded), then a retrying head.
	dls := e.deadLetter(ob, "s", 1, "x", "y")
	if _, err := ob.DiscardDeadLetters(e.ctx, dls[:1]); err != nil {
		t.Fatal(err)
	}
	e.deadLetter(ob, "other", 0, "elsewhere")
	// Queue other, partition 0: blocked at its head (the PoisonBlock policy).
	e.enqueue(ob, msg("other", 0, "stuck"))
	e.sequenceAll(ob)
	olr, err := d.LookupQueue(e.ctx, e.db, &dialect.LookupQueueParams{Queue: "other"})
	if err != nil {
		t.Fatal(err)
	}
	ost, err := ob.PartitionStatus(e.ctx, "other", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := updateCursor(e.ctx, d, e.db, &dialect.CursorUpdate{PartitionID: olr.PartitionIDs[0], ProcessedSeq: ost.ProcessedSeq,
		Attempts: 3, LastError: "poison", Block: true}); err != nil {
		t.Fatal(err)
	}
	e.enqueue(ob, msg("s", 1, "retrying"))
	e.sequenceAll(ob)
	if _, err := updateCursor(e.ctx, d, e.db, &dialect.CursorUpdate{PartitionID: pid[1], ProcessedSeq: 2, Attempts: 2, LastError: "boom", RetryAfter: time.Hour}); err != nil {
		t.Fatal(err)
	}
	// Partition 3: healthy, next_attempt_at ahead (as every ack leaves it).
	if _, err := updateCursor(e.ctx, d, e.db, &dialect.CursorUpdate{PartitionID: pid[3], RetryAfter: time.Hour}); err != nil {
		t.Fatal(err)
	}
	// Partition 0: three sequenced, then two unsequenced.
	e.enqueue(ob, msg("s", 0, "a"), msg("s", 0, "b"), msg("s", 0, "c"))
	e.sequenceAll(ob)
	e.enqueue(ob, msg("s", 0, "d"), msg("s", 0, "e"))

	st, err := ob.QueueStatus(e.ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Partitions) != 4 || st.Queue != "s" || st.Now.IsZero() {
		t.Fatalf("status: %+v", st)
	}
	p0, p1, p2, p3 := st.Partitions[0], st.Partitions[1], st.Partitions[2], st.Partitions[3]
	if p0.LastSeq != 3 || p0.ProcessedSeq != 0 || p0.Unsequenced != 2 || p0.Backlog != 5 ||
		p0.OldestCreatedAt.IsZero() || p0.Age < 0 || !p0.NextAttemptAt.IsZero() || p0.Leased {
		t.Errorf("partition 0 (backlog): %+v", p0)
	}
	if p1.Attempts != 2 || p1.LastError != "boom" || !p1.NextAttemptAt.After(st.Now) || p1.Backlog != 1 || p1.Leased {
		t.Errorf("partition 1 (retrying): %+v", p1)
	}
	if !p2.Leased || p2.LeaseToken != "holder-1" || !p2.LeaseUntil.After(st.Now) || p2.Backlog != 1 || !p2.NextAttemptAt.IsZero() {
		t.Errorf("partition 2 (leased): %+v", p2)
	}
	if p3.Backlog != 0 || !p3.NextAttemptAt.IsZero() || !p3.OldestCreatedAt.IsZero() || p3.Age != 0 || p3.Leased {
		t.Errorf("partition 3 (healthy, idle): %+v; want no retry pending", p3)
	}
	for _, p := range st.Partitions {
		if p.Blocked || !p.BlockedAt.IsZero() {
			t.Errorf("partition %d reported blocked", p.Partition)
		}
	}
	if st.Backlog != 7 || st.Unsequenced != 2 || st.Retrying != 1 || st.Leased != 1 || st.Blocked != 0 || st.Age != max(p0.Age, p1.Age, p2.Age) {
		t.Errorf("totals: backlog %d unsequenced %d retrying %d leased %d blocked %d age %v", st.Backlog, st.Unsequenced, st.Retrying, st.Leased, st.Blocked, st.Age)
	}
	if want := map[string]int64{"pending": 1, "discarded": 1, "resolved": 0, "reprocessing": 0}; fmt.Sprint(st.DeadLetters) != fmt.Sprint(want) {
		t.Errorf("dead letters by status: %v, want %v", st.DeadLetters, want)
	}

	all, err := ob.Status(e.ctx)
	if err != nil || len(all) != 2 || all[0].Queue != "other" || all[1].Queue != "s" ||
		all[0].DeadLetters["pending"] != 1 || all[1].Backlog != st.Backlog {
		t.Fatalf("Status: %+v, %v", all, err)
	}
	if op := all[0].Partitions[0]; all[0].Blocked != 1 || !op.Blocked || op.BlockedAt.IsZero() || op.Attempts != 3 ||
		op.LastError != "poison" || op.Backlog != 1 || op.Leased || !op.NextAttemptAt.IsZero() {
		t.Errorf("blocked partition: %+v (queue blocked count %d)", op, all[0].Blocked)
	}
	if _, err := ob.QueueStatus(e.ctx, "never-declared"); !errors.Is(err, outbox.ErrUnknownQueue) {
		t.Errorf("unknown queue: %v", err)
	}
	if _, err := ob.QueueStatus(e.ctx, "bad name"); !errors.Is(err, outbox.ErrInvalidQueueName) {
		t.Errorf("bad queue name: %v", err)
	}
}

// countingStatus counts the statements QueueStatus runs on its executor.
type countingStatus struct {
	dialect.Dialect
	n *atomic.Int64
}

func (c countingStatus) QueueStatus(ctx context.Context, q dialect.DBTX, p *dialect.QueueStatusParams) (*dialect.QueueStatusResult, error) {
	return c.Dialect.QueueStatus(ctx, countingDBTX{DBTX: q, n: c.n}, p)
}

type countingDBTX struct {
	dialect.DBTX
	n *atomic.Int64
}

func (c countingDBTX) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	c.n.Add(1)
	return c.DBTX.ExecContext(ctx, query, args...)
}

func (c countingDBTX) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	c.n.Add(1)
	return c.DBTX.QueryContext(ctx, query, args...)
}

func (c countingDBTX) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	c.n.Add(1)
	return c.DBTX.QueryRowContext(ctx, query, args...)
}

// testStatusStatements: a queue's status takes as many statements for 64
// partitions with backlogs as for one idle partition, counted on the
// executor the operations store is given; Status of every queue too.
func testStatusStatements(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	var n atomic.Int64
	ob, err := outbox.New(e.db, countingStatus{b.Dialect, &n}, outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e.declare(ob, "small", 1)
	e.declare(ob, "big", 64)
	msgs := make([]outbox.Message, 0, 128)
	for i := range 128 {
		msgs = append(msgs, msg("big", i%64, itoa(i)))
	}
	e.enqueue(ob, msgs...)
	count := func(f func() error) int64 {
		t.Helper()
		n.Store(0)
		if err := f(); err != nil {
			t.Fatal(err)
		}
		return n.Load()
	}
	small := count(func() error { _, err := ob.QueueStatus(e.ctx, "small"); return err })
	big := count(func() error { _, err := ob.QueueStatus(e.ctx, "big"); return err })
	every := count(func() error { _, err := ob.Status(e.ctx); return err })
	if small == 0 || big != small || every != small || small > 3 {
		t.Errorf("statements: %d for 1 partition, %d for 64, %d for every queue; want the same small number", small, big, every)
	}
}
