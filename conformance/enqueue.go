package conformance

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/modkit-go/db/outbox"
)

var enqueueTests = []test{
	{"Enqueue/RolledBackNeverAppears", testRolledBack},
	{"Enqueue/BadInputChangesNothing", testBadInput},
	{"Enqueue/DeclareQueue", testDeclareQueue},
	{"Enqueue/LargeBatchKeepsOrder", testLargeBatch},
}

// testRolledBack: messages of a rolled-back transaction are never sequenced
// nor delivered; those of a committed one are.
func testRolledBack(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 2)

	tx := e.begin(nil)
	for i := range 5 {
		if err := ob.Enqueue(e.ctx, tx, msg("q", i%2, "rolled-back")); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	err := ob.InTx(e.ctx, func(tx *sql.Tx) error {
		if err := ob.Enqueue(e.ctx, tx, msg("q", 0, "fn-error")); err != nil {
			return err
		}
		return errors.New("app failure")
	})
	if err == nil || err.Error() != "app failure" {
		t.Fatalf("InTx returned %v, want the function's error", err)
	}
	e.enqueue(ob, msg("q", 0, "kept"))
	e.sequenceAll(ob)

	if s := e.stats(ob); s.Messages != 1 || s.Unsequenced != 0 {
		t.Fatalf("stats %+v, want exactly the committed message", s)
	}
	rec := newRecorder(1)
	if err := ob.Handle("q", outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
		rec.add(ds...)
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	e.start(ob)
	await(t, rec.done, "the committed message")
	e.stop(ob)
	if rec.total != 1 || rec.bodies["kept"] != 1 {
		t.Fatalf("delivered %v, want only %q", rec.bodies, "kept")
	}
	if st := e.state(ob, "q", 1); st.LastSeq != 0 {
		t.Fatalf("partition 1 got seq %d from rolled-back messages", st.LastSeq)
	}
}

// testBadInput: every rejection is typed and writes nothing.
func testBadInput(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, outbox.Config{MaxPayloadBytes: 1024})
	e.declare(ob, "orders", 4)
	e.enqueue(ob, msg("orders", 0, "existing"))
	before := e.stats(ob)

	good := msg("orders", 1, "ok")
	with := func(f func(m *outbox.Message)) outbox.Message {
		m := good
		f(&m)
		return m
	}
	committed := e.begin(nil)
	e.commit(committed)
	rolledBack := e.begin(nil)
	if err := rolledBack.Rollback(); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name  string
		tx    *sql.Tx // nil: a fresh transaction, committed after the call
		nilTx bool
		msgs  []outbox.Message
		batch bool
		want  error
	}{
		{name: "empty queue name", msgs: []outbox.Message{with(func(m *outbox.Message) { m.Queue = "" })}, want: outbox.ErrInvalidQueueName},
		{name: "queue name with space", msgs: []outbox.Message{with(func(m *outbox.Message) { m.Queue = "or ders" })}, want: outbox.ErrInvalidQueueName},
		{name: "queue name starting with dot", msgs: []outbox.Message{with(func(m *outbox.Message) { m.Queue = ".orders" })}, want: outbox.ErrInvalidQueueName},
		{name: "queue name ending with dash", msgs: []outbox.Message{with(func(m *outbox.Message) { m.Queue = "orders-" })}, want: outbox.ErrInvalidQueueName},
		{name: "queue name too long", msgs: []outbox.Message{with(func(m *outbox.Message) { m.Queue = strings.Repeat("a", 1025) })}, want: outbox.ErrInvalidQueueName},
		{name: "unknown queue", msgs: []outbox.Message{with(func(m *outbox.Message) { m.Queue = "nope" })}, want: outbox.ErrUnknownQueue},
		{name: "partition out of range", msgs: []outbox.Message{with(func(m *outbox.Message) { m.Partition = 4 })}, want: outbox.ErrPartitionOutOfRange},
		{name: "negative partition", msgs: []outbox.Message{with(func(m *outbox.Message) { m.Partition = -1 })}, want: outbox.ErrPartitionOutOfRange},
		{name: "payload over the limit", msgs: []outbox.Message{with(func(m *outbox.Message) { m.Payload = bytes.Repeat([]byte("x"), 1025) })}, want: outbox.ErrPayloadTooLarge},
		{name: "empty payload type", msgs: []outbox.Message{with(func(m *outbox.Message) { m.PayloadType = "" })}, want: outbox.ErrInvalidPayloadType},
		{name: "payload type with newline", msgs: []outbox.Message{with(func(m *outbox.Message) { m.PayloadType = "a\nb" })}, want: outbox.ErrInvalidPayloadType},
		{name: "payload type not ASCII", msgs: []outbox.Message{with(func(m *outbox.Message) { m.PayloadType = "tÿpe" })}, want: outbox.ErrInvalidPayloadType},
		{name: "payload type too long", msgs: []outbox.Message{with(func(m *outbox.Message) { m.PayloadType = strings.Repeat("t", 1025) })}, want: outbox.ErrInvalidPayloadType},
		{name: "empty header key", msgs: []outbox.Message{with(func(m *outbox.Message) { m.Headers = map[string]string{"": "v"} })}, want: outbox.ErrInvalidHeaders},
		{name: "header value not UTF-8", msgs: []outbox.Message{with(func(m *outbox.Message) { m.Headers = map[string]string{"k": "\xff"} })}, want: outbox.ErrInvalidHeaders},
		{name: "nil tx", nilTx: true, msgs: []outbox.Message{good}, want: outbox.ErrNilTx},
		{name: "committed tx", tx: committed, msgs: []outbox.Message{good}, want: outbox.ErrTxDone},
		{name: "rolled-back tx", tx: rolledBack, msgs: []outbox.Message{good}, want: sql.ErrTxDone},
		{name: "batch with one bad item", batch: true, msgs: []outbox.Message{good, good, with(func(m *outbox.Message) { m.Partition = 9 }), good}, want: outbox.ErrPartitionOutOfRange},
		{name: "batch with unknown queue last", batch: true, msgs: []outbox.Message{good, with(func(m *outbox.Message) { m.Queue = "missing" })}, want: outbox.ErrUnknownQueue},
		{name: "empty batch", batch: true, msgs: nil, want: outbox.ErrEmptyBatch},
	}
	for _, c := range cases {
		tx := c.tx
		own := tx == nil && !c.nilTx
		if own {
			tx = e.begin(nil)
		}
		var err error
		if c.batch {
			err = ob.EnqueueBatch(e.ctx, tx, c.msgs)
		} else {
			err = ob.Enqueue(e.ctx, tx, c.msgs[0])
		}
		if own {
			// Commit what the call left: a rejected call must have left nothing.
			e.commit(tx)
		}
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
		var ve *outbox.ValidationError
		if c.batch && len(c.msgs) > 0 && (!errors.As(err, &ve) || ve.Index < 0) {
			t.Errorf("%s: want a *ValidationError with the item's index, got %#v", c.name, err)
		}
	}

	// Declaration errors are typed too.
	var mm *outbox.PartitionCountMismatchError
	if err := ob.DeclareQueue(e.ctx, "orders", 8); !errors.Is(err, outbox.ErrPartitionCountMismatch) || !errors.As(err, &mm) || mm.Stored != 4 {
		t.Errorf("partition-count mismatch: got %v", err)
	}
	for _, n := range []int{0, -1, outbox.MaxPartitions + 1} {
		if err := ob.DeclareQueue(e.ctx, "other", n); !errors.Is(err, outbox.ErrInvalidPartitionCount) {
			t.Errorf("DeclareQueue with %d partitions: got %v", n, err)
		}
	}
	if err := ob.DeclareQueue(e.ctx, "bad name", 1); !errors.Is(err, outbox.ErrInvalidQueueName) {
		t.Errorf("DeclareQueue with a bad name: got %v", err)
	}
	if _, err := outbox.New(e.db, b.Dialect, outbox.Config{BatchSize: -1}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("negative BatchSize: got %v", err)
	}

	if after := e.stats(ob); after != before {
		t.Fatalf("bad input changed the tables: before %+v, after %+v", before, after)
	}
	if st := e.state(ob, "orders", 0); st.LastSeq != 0 || st.ProcessedSeq != 0 {
		t.Fatalf("partition state changed: %+v", st)
	}
}

// testDeclareQueue: declaring is idempotent across outboxes and pools.
func testDeclareQueue(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	a := e.outbox(nil, outbox.Config{})
	c := e.outbox(e.pool(), outbox.Config{})
	e.declare(a, "q", 16)
	e.declare(c, "q", 16)
	e.declare(a, "q", 16)
	if s := e.stats(a); s.Queues != 1 || s.Partitions != 16 {
		t.Fatalf("stats %+v, want 1 queue with 16 partitions", s)
	}
	// A queue declared by another process is usable without declaring.
	other := e.outbox(e.pool(), outbox.Config{})
	e.enqueue(other, msg("q", 15, "x"))
	if _, err := other.PartitionState(e.ctx, "q", 16); !errors.Is(err, outbox.ErrUnknownQueue) {
		t.Fatalf("state of a missing partition: %v", err)
	}
}

// testLargeBatch: a batch larger than any dialect's chunk keeps call order.
func testLargeBatch(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, outbox.Config{})
	e.declare(ob, "q", 1)
	const n = 2500
	msgs := make([]outbox.Message, n)
	for i := range msgs {
		msgs[i] = msg("q", 0, itoa(i))
	}
	e.enqueue(ob, msgs...)
	if got := e.sequenceAll(ob); got != n {
		t.Fatalf("sequenced %d, want %d", got, n)
	}
	seqs := e.seqsByPayload()
	for i := range n {
		if seqs[itoa(i)] != int64(i+1) {
			t.Fatalf("message %d has seq %d, want %d", i, seqs[itoa(i)], i+1)
		}
	}
}
