package conformance

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/modkit-go/db/outbox"
)

// connLossTests run only on backends that set Backend.TerminateSessions.
var connLossTests = []test{
	{"Faults/ConnectionLoss/Batch", func(t *testing.T, b *Backend) { testConnectionLoss(t, b, lossBatch) }},
	{"Faults/ConnectionLoss/PerMessage", func(t *testing.T, b *Backend) { testConnectionLoss(t, b, lossPerMessage) }},
	{"Faults/ConnectionLoss/TxBatch", func(t *testing.T, b *Backend) { testConnectionLoss(t, b, lossTxBatch) }},
	{"Faults/ConnectionLoss/TxPerMessage", func(t *testing.T, b *Backend) { testConnectionLoss(t, b, lossTxPerMessage) }},
}

type lossMode int

const (
	lossBatch lossMode = iota
	lossPerMessage
	lossTxBatch
	lossTxPerMessage
)

func (m lossMode) transactional() bool { return m == lossTxBatch || m == lossTxPerMessage }

// lossLog keeps every handler call's deliveries, in call order, and closes
// done once want distinct payloads were seen.
type lossLog struct {
	mu       sync.Mutex
	calls    [][]outbox.Delivery
	distinct map[string]bool
	want     int
	done     chan struct{}
}

func newLossLog(want int) *lossLog {
	return &lossLog{distinct: map[string]bool{}, want: want, done: make(chan struct{})}
}

func (l *lossLog) add(ds ...outbox.Delivery) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, ds)
	before := len(l.distinct)
	for _, d := range ds {
		l.distinct[string(d.Payload)] = true
	}
	if before < l.want && len(l.distinct) >= l.want {
		close(l.done)
	}
}

// handler returns the handler of mode m. Transactional handlers write one
// effect row per message through the handler's transaction into
// app_loss_effects, which has no unique key, so a second committed effect
// would show as a second row.
func (e *env) lossHandler(m lossMode, log *lossLog) outbox.Handler {
	insert := sqlx.Rebind(e.b.BindType, "INSERT INTO app_loss_effects (k) VALUES (?)")
	effect := func(ctx context.Context, tx *sql.Tx, d outbox.Delivery) error {
		_, err := tx.ExecContext(ctx, insert, string(d.Payload))
		return err
	}
	switch m {
	case lossBatch:
		return outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
			log.add(ds...)
			return outbox.Success()
		})
	case lossPerMessage:
		return outbox.PerMessage(func(_ context.Context, d outbox.Delivery) outbox.Result {
			log.add(d)
			return outbox.Success()
		})
	case lossTxBatch:
		return outbox.TxBatch(func(ctx context.Context, tx *sql.Tx, ds []outbox.Delivery) outbox.Result {
			log.add(ds...)
			for _, d := range ds {
				if err := effect(ctx, tx, d); err != nil {
					return outbox.Retry(err.Error()) // the connection is gone
				}
			}
			return outbox.Success()
		})
	default:
		return outbox.TxPerMessage(func(ctx context.Context, tx *sql.Tx, d outbox.Delivery) outbox.Result {
			log.add(d)
			if err := effect(ctx, tx, d); err != nil {
				return outbox.Retry(err.Error())
			}
			return outbox.Success()
		})
	}
}

// produceIdempotently enqueues msgs in one transaction together with the
// application row key, retrying through connection loss. A failed commit
// may still have committed, so before each retry it checks for key:
// present means the messages are in, and enqueuing again would duplicate
// them.
func (e *env) produceIdempotently(ctx context.Context, ob *outbox.Outbox, key string, msgs []outbox.Message) error {
	return e.produceRetrying(ctx, ob, key, msgs, 0)
}

// produceRetrying is produceIdempotently waiting pause after each failure
// (for a server that is down rather than a connection that was cut).
func (e *env) produceRetrying(ctx context.Context, ob *outbox.Outbox, key string, msgs []outbox.Message, pause time.Duration) error {
	insert := sqlx.Rebind(e.b.BindType, "INSERT INTO app_sent (k) VALUES (?)")
	exists := sqlx.Rebind(e.b.BindType, "SELECT COUNT(*) FROM app_sent WHERE k = ?")
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if last != nil {
			var n int
			if err := e.db.QueryRowContext(ctx, exists, key).Scan(&n); err != nil {
				last = err
				if err := nap(ctx, pause); err != nil {
					return err
				}
				continue // connection lost again; ask again
			}
			if n == 1 {
				return nil
			}
		}
		last = ob.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, insert, key); err != nil {
				return err
			}
			return ob.EnqueueBatch(ctx, tx, msgs)
		})
		if last == nil {
			return nil
		}
		if err := nap(ctx, pause); err != nil {
			return err
		}
	}
	return fmt.Errorf("enqueue %s: still failing after %v: %w", key, timeout, last)
}

// lossTimeout bounds the connection-loss run: reconnecting after every
// kill is slow on a loaded machine (a PostgreSQL session is a process).
const lossTimeout = 3 * time.Minute

// minRounds is the least number of kill rounds a connection-loss run makes.
const minRounds = 10

// nap waits d (no time for d <= 0), or until ctx ends.
func nap(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// testConnectionLoss: while producers enqueue 600 messages over several
// partitions and the outbox delivers them in mode m, every session of the
// test database except the killer's is terminated every 100-300 ms, until
// production ends (at least minRounds times).
// Nothing may be lost, each partition must be delivered in seq order
// (redeliveries restart at the cursor, never skip ahead), the seqs must
// follow each producer's commit order, transactional effects must exist
// exactly once, and the outbox must recover by itself: once the killing
// stops, everything is processed and a new message is delivered.
func testConnectionLoss(t *testing.T, b *Backend, m lossMode) {
	e := newEnv(t, b)
	e.exec(e.db, "CREATE TABLE app_sent (k VARCHAR(200) PRIMARY KEY)")
	e.exec(e.db, "CREATE TABLE app_loss_effects (k VARCHAR(200) NOT NULL)")
	const producers, chunks, chunkSize, parts = 2, 30, 10, 4
	const total = producers * chunks * chunkSize
	ob := e.outbox(nil, fast(outbox.Config{LeaseDuration: 2 * time.Second, BatchSize: 20}))
	e.declare(ob, "q", parts)

	plan := make([][][]outbox.Message, producers)
	var perPart [parts]int64
	for p := range producers {
		rng := rand.New(rand.NewPCG(uint64(p), 3))
		for c := range chunks {
			var chunk []outbox.Message
			for i := range chunkSize {
				part := rng.IntN(parts)
				perPart[part]++
				chunk = append(chunk, msg("q", part, fmt.Sprintf("p%d-%d", p, c*chunkSize+i)))
			}
			plan[p] = append(plan[p], chunk)
		}
	}
	log := newLossLog(total)
	e.handle(ob, "q", e.lossHandler(m, log))
	e.start(ob)

	// The killer: its own single-connection pool, which TerminateSessions
	// spares.
	killer := e.open()
	killer.SetMaxOpenConns(1)
	killCtx, stopKilling := context.WithCancel(e.ctx)
	defer stopKilling()
	var terminated, rounds atomic.Int64
	roundDone := make(chan struct{}, 1)
	killed := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			tm := time.NewTimer(time.Duration(100+rng.IntN(201)) * time.Millisecond)
			select {
			case <-killCtx.Done():
				tm.Stop()
				killed <- nil
				return
			case <-tm.C:
			}
			n, err := e.b.TerminateSessions(killCtx, killer)
			if err != nil && killCtx.Err() == nil {
				killed <- fmt.Errorf("TerminateSessions: %w", err)
				return
			}
			terminated.Add(int64(n))
			rounds.Add(1)
			select {
			case roundDone <- struct{}{}:
			default:
			}
		}
	}()

	began := time.Now()
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c, chunk := range plan[p] {
				if err := e.produceIdempotently(e.ctx, ob, fmt.Sprintf("p%d-c%d", p, c), chunk); err != nil {
					t.Errorf("producer %d: %v", p, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		stopKilling()
		t.FailNow()
	}
	produced := time.Since(began)
	// The storm ends with production (after a minimum of rounds): what
	// follows shows that the outbox recovers by itself, however far behind
	// the storm left it on a slow machine.
	for rounds.Load() < minRounds {
		select {
		case err := <-killed:
			t.Fatal(err)
		case <-time.After(timeout):
			t.Fatalf("the killer did only %d rounds in %v", rounds.Load(), timeout)
		case <-roundDone:
		}
	}
	stopKilling()
	if err := await(t, killed, "the killer to stop"); err != nil {
		t.Fatal(err)
	}
	log.mu.Lock()
	during := len(log.distinct)
	log.mu.Unlock()
	t.Logf("%s: %d rounds terminated %d sessions while %d messages were produced (%v) and %d delivered",
		b.Name, rounds.Load(), terminated.Load(), total, produced, during)
	if terminated.Load() < minRounds {
		t.Fatalf("only %d sessions were terminated: the run proved nothing", terminated.Load())
	}
	select {
	case <-log.done:
	case <-time.After(lossTimeout):
		log.mu.Lock()
		n := len(log.distinct)
		log.mu.Unlock()
		t.Fatalf("%v after the storm, %d of %d messages delivered", lossTimeout, n, total)
	}
	t.Logf("all delivered %v after the storm", time.Since(began)-produced)

	// Recovery without help: the cursors reach the end and a new message
	// is delivered.
	for part := range parts {
		e.awaitProcessed(ob, "q", part, perPart[part])
	}
	log.mu.Lock()
	log.want, log.done = total+1, make(chan struct{})
	done := log.done
	log.mu.Unlock()
	e.enqueue(ob, msg("q", 0, "after"))
	await(t, done, "a delivery after the sessions stopped being terminated")
	e.awaitProcessed(ob, "q", 0, perPart[0]+1)
	e.stop(ob)

	log.mu.Lock()
	defer log.mu.Unlock()
	// Per partition: seq order without skipping ahead, consecutive seqs in
	// each call, and one payload per seq.
	bySeq := make([]map[int64]string, parts)
	maxSeq := make([]int64, parts)
	redelivered := 0
	for i := range bySeq {
		bySeq[i] = map[int64]string{}
	}
	for _, call := range log.calls {
		for j, d := range call {
			if j > 0 && d.Seq != call[j-1].Seq+1 {
				t.Fatalf("partition %d: a call delivered seq %d after %d", d.Partition, d.Seq, call[j-1].Seq)
			}
			if d.Seq > maxSeq[d.Partition]+1 {
				t.Fatalf("partition %d: seq %d delivered before seq %d", d.Partition, d.Seq, maxSeq[d.Partition]+1)
			}
			if d.Seq <= maxSeq[d.Partition] {
				redelivered++
			}
			maxSeq[d.Partition] = max(maxSeq[d.Partition], d.Seq)
			if prev, ok := bySeq[d.Partition][d.Seq]; ok && prev != string(d.Payload) {
				t.Fatalf("partition %d seq %d: payload %q, earlier %q", d.Partition, d.Seq, d.Payload, prev)
			}
			bySeq[d.Partition][d.Seq] = string(d.Payload)
		}
	}
	seen := 0
	for part := range parts {
		want := perPart[part]
		if part == 0 {
			want++
		}
		if int64(len(bySeq[part])) != want || maxSeq[part] != want {
			t.Fatalf("partition %d: seqs 1..%d delivered as %d distinct, max %d", part, want, len(bySeq[part]), maxSeq[part])
		}
		last := map[int]int{}
		for s := int64(1); s <= want; s++ {
			var p, i int
			if pl := bySeq[part][s]; pl != "after" {
				if _, err := fmt.Sscanf(pl, "p%d-%d", &p, &i); err != nil {
					t.Fatalf("payload %q: %v", pl, err)
				}
				if prev, ok := last[p]; ok && i <= prev {
					t.Fatalf("partition %d: producer %d's message %d has a later seq than its message %d", part, p, prev, i)
				}
				last[p] = i
				seen++
			}
		}
	}
	if seen != total {
		t.Fatalf("%d distinct messages delivered, want %d", seen, total)
	}
	t.Logf("%d redeliveries", redelivered)
	if m.transactional() {
		var rows, distinct int
		q := "SELECT COUNT(*), COUNT(DISTINCT k) FROM app_loss_effects"
		if err := e.db.QueryRowContext(e.ctx, q).Scan(&rows, &distinct); err != nil {
			t.Fatal(err)
		}
		if rows != total+1 || distinct != total+1 {
			t.Fatalf("%d effect rows for %d distinct messages, want exactly one for each of %d", rows, distinct, total+1)
		}
	}
}
