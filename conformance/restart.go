package conformance

import (
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modkit-go/db/outbox"
)

// restartTests run only when Backend.StopServer and StartServer are set:
// an opt-in, since stopping the server disturbs everyone using it.
var restartTests = []test{
	{"Faults/ServerRestart", testServerRestart},
}

// checkDownErr fails unless err, returned while the server was down, is
// an error that wraps its cause and is not ErrWrongDialect.
func checkDownErr(t *testing.T, what string, err error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s succeeded while the server was down", what)
	case errors.Is(err, outbox.ErrWrongDialect):
		t.Errorf("%s while the server was down: %v: reported as ErrWrongDialect", what, err)
	case errors.Unwrap(err) == nil:
		t.Errorf("%s while the server was down: %v wraps no cause", what, err)
	default:
		t.Logf("%s while the server was down: %v", what, err)
	}
}

// testServerRestart: a producer enqueues while the outbox delivers in both
// modes (decoupled Batch, transactional TxPerMessage writing an effect
// row), and the server stops and starts again. While it is down, Enqueue
// in an open transaction, InTx, and the first Enqueue of a new outbox fail
// with errors that wrap the cause, never ErrWrongDialect. The running
// outbox needs no help: once the server is back, everything enqueued
// before and after is delivered, in seq order, with effects exactly once.
func testServerRestart(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	e.exec(e.db, "CREATE TABLE app_sent (k VARCHAR(200) PRIMARY KEY)")
	e.exec(e.db, "CREATE TABLE app_loss_effects (k VARCHAR(200) NOT NULL)")
	const parts, each = 4, 200
	ob := e.outbox(nil, fast(outbox.Config{LeaseDuration: 2 * time.Second, BatchSize: 20}))
	e.declare(ob, "d", parts)
	e.declare(ob, "t", parts)
	dlog, tlog := newLossLog(1<<30), newLossLog(1<<30)
	e.handle(ob, "d", e.lossHandler(lossBatch, dlog))
	e.handle(ob, "t", e.lossHandler(lossTxPerMessage, tlog))
	e.start(ob)

	var produced atomic.Int64
	stopProd := make(chan struct{})
	prodDone := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stopProd:
				prodDone <- nil
				return
			default:
			}
			msgs := []outbox.Message{msg("d", i%parts, fmt.Sprintf("d%d", i)), msg("t", i%parts, fmt.Sprintf("t%d", i))}
			if err := e.produceRetrying(e.ctx, ob, fmt.Sprintf("k%d", i), msgs, 50*time.Millisecond); err != nil {
				prodDone <- err
				return
			}
			produced.Add(1)
		}
	}()
	e.pollUntil(fmt.Sprintf("%d messages enqueued before the stop", each), func() bool { return produced.Load() >= each })

	open := e.begin(e.pool()) // a transaction the stop will cut
	fresh := e.outbox(e.pool(), fast(outbox.Config{}))
	began := time.Now()
	if err := b.StopServer(e.ctx); err != nil {
		t.Fatalf("stop the server: %v", err)
	}
	t.Logf("%s stopped in %v", b.Name, time.Since(began))
	checkDownErr(t, "Enqueue in an open transaction", ob.Enqueue(e.ctx, open, msg("d", 0, "cut")))
	checkDownErr(t, "InTx", ob.InTx(e.ctx, func(tx *sql.Tx) error { return ob.Enqueue(e.ctx, tx, msg("d", 0, "down")) }))
	checkDownErr(t, "a new outbox's first InTx", fresh.InTx(e.ctx, func(tx *sql.Tx) error { return fresh.Enqueue(e.ctx, tx, msg("d", 0, "down")) }))
	_ = open.Rollback()
	began = time.Now()
	if err := b.StartServer(e.ctx); err != nil {
		t.Fatalf("start the server: %v", err)
	}
	t.Logf("%s started in %v", b.Name, time.Since(began))
	mark := produced.Load()
	e.pollUntil(fmt.Sprintf("%d messages enqueued after the restart", each), func() bool { return produced.Load() >= mark+each })
	close(stopProd)
	if err := await(t, prodDone, "the producer to stop"); err != nil {
		t.Fatalf("producer: %v", err)
	}
	n := int(produced.Load())
	perPart := make([]int64, parts)
	for i := range n {
		perPart[i%parts]++
	}
	for _, q := range []string{"d", "t"} {
		for part := range parts {
			e.awaitProcessed(ob, q, part, perPart[part])
		}
	}
	e.stop(ob)
	for q, l := range map[string]*lossLog{"d": dlog, "t": tlog} {
		l.mu.Lock()
		got := len(l.distinct)
		maxSeq := map[int]int64{}
		for _, call := range l.calls {
			for _, d := range call {
				if d.Seq > maxSeq[d.Partition]+1 {
					t.Errorf("queue %s partition %d: seq %d delivered before seq %d", q, d.Partition, d.Seq, maxSeq[d.Partition]+1)
				}
				maxSeq[d.Partition] = max(maxSeq[d.Partition], d.Seq)
			}
		}
		l.mu.Unlock()
		if got != n {
			t.Errorf("queue %s: %d distinct messages delivered, want %d", q, got, n)
		}
	}
	var rows, distinct int
	if err := e.db.QueryRowContext(e.ctx, "SELECT COUNT(*), COUNT(DISTINCT k) FROM app_loss_effects").Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != n || distinct != n {
		t.Fatalf("%d effect rows for %d distinct messages, want exactly one for each of %d", rows, distinct, n)
	}
	t.Logf("%d messages per queue delivered across the restart", n)
}
