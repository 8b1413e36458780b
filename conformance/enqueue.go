package conformance

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/outbox"
)

var enqueueTests = []test{
	{"Enqueue/RolledBackNeverAppears", testRolledBack},
	{"Enqueue/BadInputChangesNothing", testBadInput},
	{"Enqueue/DeclareQueue", testDeclareQueue},
	{"Enqueue/LargeBatchKeepsOrder", testLargeBatch},
	{"Enqueue/LargestMessageFits", testLargestMessage},
	{"Enqueue/FailedBatchLeavesNothing", testFailedBatch},
	{"Enqueue/ForeignTransaction", testForeignTx},
	{"Inspect/BadInputIsTyped", testInspectBadInput},
	{"Dialect/CheckKeepsCause", testCheckKeepsCause},
	{"Dialect/ZeroValueAndTypedNil", testZeroValueDialect},
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
	var rec recorder
	if err := ob.Handle("q", outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
		rec.add(ds...)
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	e.start(ob)
	await(t, rec.reached(1), "the committed message")
	e.stop(ob)
	if got := rec.payloads(-1); len(got) != 1 || got[0] != "kept" {
		t.Fatalf("delivered %v, want only %q", got, "kept")
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
	stBefore := e.state(ob, "orders", 0) // "existing" may be sequenced already (Capabilities.SequencesOnInsert)

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
		{name: "huge partition", msgs: []outbox.Message{with(func(m *outbox.Message) { m.Partition = 1 << 40 })}, want: outbox.ErrPartitionOutOfRange},
		{name: "queue name with NUL", msgs: []outbox.Message{with(func(m *outbox.Message) { m.Queue = "or\x00ders" })}, want: outbox.ErrInvalidQueueName},
		{name: "payload over the limit", msgs: []outbox.Message{with(func(m *outbox.Message) { m.Payload = bytes.Repeat([]byte("x"), 1025) })}, want: outbox.ErrPayloadTooLarge},
		{name: "empty payload type", msgs: []outbox.Message{with(func(m *outbox.Message) { m.PayloadType = "" })}, want: outbox.ErrInvalidPayloadType},
		{name: "payload type with newline", msgs: []outbox.Message{with(func(m *outbox.Message) { m.PayloadType = "a\nb" })}, want: outbox.ErrInvalidPayloadType},
		{name: "payload type not ASCII", msgs: []outbox.Message{with(func(m *outbox.Message) { m.PayloadType = "tÿpe" })}, want: outbox.ErrInvalidPayloadType},
		{name: "payload type too long", msgs: []outbox.Message{with(func(m *outbox.Message) { m.PayloadType = strings.Repeat("t", 1025) })}, want: outbox.ErrInvalidPayloadType},
		{name: "empty header key", msgs: []outbox.Message{with(func(m *outbox.Message) { m.Headers = map[string]string{"": "v"} })}, want: outbox.ErrInvalidHeaders},
		{name: "header value not UTF-8", msgs: []outbox.Message{with(func(m *outbox.Message) { m.Headers = map[string]string{"k": "\xff"} })}, want: outbox.ErrInvalidHeaders},
		{name: "header key not UTF-8", msgs: []outbox.Message{with(func(m *outbox.Message) { m.Headers = map[string]string{"\xc3": "v"} })}, want: outbox.ErrInvalidHeaders},
		{name: "header key too long", msgs: []outbox.Message{with(func(m *outbox.Message) {
			m.Headers = map[string]string{strings.Repeat("k", outbox.MaxHeaderKeyLen+1): "v"}
		})}, want: outbox.ErrInvalidHeaders},
		{name: "17 MiB header value", msgs: []outbox.Message{with(func(m *outbox.Message) { m.Headers = map[string]string{"k": strings.Repeat("v", 17<<20)} })}, want: outbox.ErrInvalidHeaders},
		{name: "headers over MaxHeaderBytes encoded", msgs: []outbox.Message{with(func(m *outbox.Message) {
			// Under the limit raw, over it once JSON escapes the quotes.
			m.Headers = map[string]string{"k": strings.Repeat(`"`, outbox.MaxHeaderBytes/2+1)}
		})}, want: outbox.ErrInvalidHeaders},
		{name: "200,000 headers", msgs: []outbox.Message{with(func(m *outbox.Message) { m.Headers = manyHeaders(200_000) })}, want: outbox.ErrInvalidHeaders},
		{name: "MaxHeaders+1 headers", msgs: []outbox.Message{with(func(m *outbox.Message) { m.Headers = manyHeaders(outbox.MaxHeaders + 1) })}, want: outbox.ErrInvalidHeaders},
		{name: "batch with oversized headers last", batch: true, msgs: []outbox.Message{good, with(func(m *outbox.Message) { m.Headers = manyHeaders(200_000) })}, want: outbox.ErrInvalidHeaders},
		{name: "nil tx", nilTx: true, msgs: []outbox.Message{good}, want: outbox.ErrNilTx},
		{name: "committed tx", tx: committed, msgs: []outbox.Message{good}, want: outbox.ErrTxDone},
		{name: "rolled-back tx", tx: rolledBack, msgs: []outbox.Message{good}, want: sql.ErrTxDone},
		{name: "batch with one bad item", batch: true, msgs: []outbox.Message{good, good, with(func(m *outbox.Message) { m.Partition = 9 }), good}, want: outbox.ErrPartitionOutOfRange},
		{name: "batch with unknown queue last", batch: true, msgs: []outbox.Message{good, with(func(m *outbox.Message) { m.Queue = "missing" })}, want: outbox.ErrUnknownQueue},
		{name: "empty batch", batch: true, msgs: nil, want: outbox.ErrEmptyBatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
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
				t.Errorf("got %v, want %v", err, c.want)
			}
			var ve *outbox.ValidationError
			if c.batch && len(c.msgs) > 0 && (!errors.As(err, &ve) || ve.Index < 0) {
				t.Errorf("want a *ValidationError with the item's index, got %#v", err)
			}
			if after := e.stats(ob); after != before {
				t.Fatalf("bad input changed the tables: before %+v, after %+v", before, after)
			}
		})
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
	if st := e.state(ob, "orders", 0); st.LastSeq != stBefore.LastSeq || st.ProcessedSeq != 0 {
		t.Fatalf("partition state changed: %+v, was %+v", st, stBefore)
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
	if _, err := other.PartitionStatus(e.ctx, "q", 16); !errors.Is(err, outbox.ErrUnknownQueue) {
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

// manyHeaders returns n distinct small headers.
func manyHeaders(n int) map[string]string {
	h := make(map[string]string, n)
	for i := range n {
		h["h"+itoa(i)] = "v"
	}
	return h
}

// testLargestMessage: a message at every limit at once (payload of
// MaxPayloadLimit bytes that escaping doubles, headers just under
// MaxHeaderBytes encoded) is stored intact: the limits fit what each
// database accepts with its default settings.
func testLargestMessage(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, outbox.Config{MaxPayloadBytes: outbox.MaxPayloadLimit})
	e.declare(ob, "q", 1)
	payload := bytes.Repeat([]byte{'\'', 0, '\\', '"'}, outbox.MaxPayloadLimit/4)
	h := map[string]string{"k": strings.Repeat("v", outbox.MaxHeaderBytes-len(`{"k":""}`))}
	m := outbox.Message{Queue: "q", Payload: payload, PayloadType: strings.Repeat("t", outbox.MaxPayloadTypeLen), Headers: h}
	e.enqueue(ob, m)
	if n := e.count("SELECT COUNT(*) FROM "+e.table("messages")+" WHERE length(payload) = ? AND length(payload_type) = ?",
		len(payload), len(m.PayloadType)); n != 1 {
		t.Fatalf("the largest message was not stored intact (%d matching rows)", n)
	}
	h2 := map[string]string{}
	var raw string
	if err := e.db.QueryRowContext(e.ctx, "SELECT headers FROM "+e.table("messages")).Scan(&raw); err != nil || json.Unmarshal([]byte(raw), &h2) != nil || h2["k"] != h["k"] {
		t.Fatalf("the largest headers came back changed (%d bytes, %v)", len(raw), err)
	}
}

// failingExec wraps a transaction so that the INSERT statement numbered
// failAt (0-based) fails without running: a later chunk of a multi-statement
// insert failing in the database, after earlier chunks were written.
type failingExec struct {
	dialect.DBTX
	n, failAt int
}

func (f *failingExec) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if !strings.Contains(query, "INSERT INTO") {
		return f.DBTX.ExecContext(ctx, query, args...) // savepoints and the like
	}
	f.n++
	if f.n-1 == f.failAt {
		return nil, errors.New("conformance: injected failure of a later insert chunk")
	}
	return f.DBTX.ExecContext(ctx, query, args...)
}

// QueryContext counts and fails an INSERT sent as a query (an insert inside
// a CTE that reports its row count, as PostgreSQL's wake-up form is) like
// ExecContext does.
func (f *failingExec) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if strings.Contains(query, "INSERT INTO") {
		f.n++
		if f.n-1 == f.failAt {
			return nil, errors.New("conformance: injected failure of a later insert chunk")
		}
	}
	return f.DBTX.QueryContext(ctx, query, args...)
}

// chunkFailer is b's dialect with InsertMessages running on a failingExec.
type chunkFailer struct {
	dialect.Dialect
	failAt int
}

func (c chunkFailer) InsertMessages(ctx context.Context, q dialect.DBTX, p *dialect.InsertMessagesParams) (*dialect.InsertMessagesResult, error) {
	return c.Dialect.InsertMessages(ctx, &failingExec{DBTX: q, failAt: c.failAt}, p)
}

// testFailedBatch: when a later statement of a multi-statement batch
// fails, the earlier ones are undone too; a caller that commits anyway
// commits none of the batch, and the transaction stays usable.
func testFailedBatch(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob, err := outbox.New(e.db, chunkFailer{Dialect: b.Dialect, failAt: 1}, outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.DeclareQueue(e.ctx, "q", 2); err != nil {
		t.Fatal(err)
	}
	const n = 2500 // more than one chunk on every built-in dialect
	msgs := make([]outbox.Message, n)
	for i := range msgs {
		msgs[i] = msg("q", i%2, itoa(i))
	}
	tx := e.begin(nil)
	e.exec(tx, "INSERT INTO "+e.table("queues")+" (name, partitions) VALUES (?, ?)", "app-write", 1)
	if err := ob.EnqueueBatch(e.ctx, tx, msgs); err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("EnqueueBatch: got %v, want the injected failure", err)
	}
	e.commit(tx)
	if got := e.count("SELECT COUNT(*) FROM " + e.table("messages")); got != 0 {
		t.Fatalf("%d rows of the failed batch were committed", got)
	}
	if got := e.count("SELECT COUNT(*) FROM "+e.table("queues")+" WHERE name = ?", "app-write"); got != 1 {
		t.Fatalf("the caller's own write before the batch was lost: %d rows", got)
	}
}

// testForeignTx: Enqueue with a transaction of another database writes into
// that database's own partition of the queue, or fails with ErrUnknownQueue
// and writes nothing; never a row under the outbox's own partition id.
func testForeignTx(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	other := newEnv(t, b)
	ob := e.outbox(nil, outbox.Config{})
	ob2 := other.outbox(nil, outbox.Config{})
	// Different declaration orders and counts, so partition ids differ.
	e.declare(ob, "pad", 3)
	e.declare(ob, "q", 4)
	e.declare(ob, "only-here", 1)
	other.declare(ob2, "q", 2)

	tx := other.begin(nil)
	if err := ob.Enqueue(e.ctx, tx, msg("q", 1, "foreign")); err != nil {
		t.Fatalf("Enqueue with the other database's tx: %v", err)
	}
	other.commit(tx)
	if got := other.count("SELECT COUNT(*) FROM "+other.table("messages")+" m JOIN "+other.table("partitions")+
		" p ON p.id = m.partition_id WHERE p.queue = ? AND p.partition_num = ?", "q", 1); got != 1 {
		t.Fatalf("the other database's partition q/1 has %d messages, want 1", got)
	}

	rejected := []struct {
		name  string
		batch []outbox.Message
	}{
		{"queue undeclared there", []outbox.Message{msg("only-here", 0, "x")}},
		{"partition missing there", []outbox.Message{msg("q", 3, "x")}},
		{"batch whose last chunk misses", append(repeatMsg(msg("q", 0, "x"), 2499), msg("q", 3, "x"))},
		{"one-statement batch whose last row misses", []outbox.Message{msg("q", 0, "x"), msg("q", 1, "x"), msg("q", 3, "x")}},
	}
	for _, c := range rejected {
		tx := other.begin(nil)
		err := ob.EnqueueBatch(e.ctx, tx, c.batch)
		other.commit(tx)
		if !errors.Is(err, outbox.ErrUnknownQueue) {
			t.Errorf("%s: got %v, want ErrUnknownQueue", c.name, err)
		}
	}
	if got := other.count("SELECT COUNT(*) FROM " + other.table("messages")); got != 1 {
		t.Fatalf("the other database has %d messages, want only the first one", got)
	}
	if got := e.count("SELECT COUNT(*) FROM " + e.table("messages")); got != 0 {
		t.Fatalf("the outbox's own database got %d messages from foreign transactions", got)
	}
}

func repeatMsg(m outbox.Message, n int) []outbox.Message {
	out := make([]outbox.Message, n)
	for i := range out {
		out[i] = m
	}
	return out
}

// testInspectBadInput: PartitionStatus and DeadLetters reject bad input with
// typed errors before reaching the driver.
func testInspectBadInput(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, outbox.Config{})
	e.declare(ob, "q", 2)
	states := []struct {
		name      string
		queue     string
		partition int
		want      error
	}{
		{"queue with NUL", "q\x00", 0, outbox.ErrInvalidQueueName},
		{"queue not UTF-8", "\xff\xfe", 0, outbox.ErrInvalidQueueName},
		{"empty queue", "", 0, outbox.ErrInvalidQueueName},
		{"queue too long", strings.Repeat("q", outbox.MaxQueueNameLen+1), 0, outbox.ErrInvalidQueueName},
		{"negative partition", "q", -1, outbox.ErrPartitionOutOfRange},
		{"partition past MaxPartitions", "q", outbox.MaxPartitions, outbox.ErrPartitionOutOfRange},
		{"huge partition", "q", 1 << 40, outbox.ErrPartitionOutOfRange},
		{"undeclared partition", "q", 2, outbox.ErrUnknownQueue},
		{"undeclared queue", "nope", 0, outbox.ErrUnknownQueue},
	}
	for _, c := range states {
		t.Run("PartitionStatus/"+c.name, func(t *testing.T) {
			if _, err := ob.PartitionStatus(e.ctx, c.queue, c.partition); !errors.Is(err, c.want) {
				t.Errorf("got %v, want %v", err, c.want)
			}
		})
	}
	filters := []struct {
		name string
		f    outbox.DeadLetterFilter
		want error
	}{
		{"queue with NUL", outbox.DeadLetterFilter{Queue: "q\x00"}, outbox.ErrInvalidQueueName},
		{"queue not UTF-8", outbox.DeadLetterFilter{Queue: "\xff"}, outbox.ErrInvalidQueueName},
		{"status with NUL", outbox.DeadLetterFilter{Status: "pending\x00"}, outbox.ErrInvalidFilter},
		{"status not UTF-8", outbox.DeadLetterFilter{Status: "\xff"}, outbox.ErrInvalidFilter},
		{"unknown status", outbox.DeadLetterFilter{Status: "lost"}, outbox.ErrInvalidFilter},
		{"negative limit", outbox.DeadLetterFilter{Limit: -1}, outbox.ErrInvalidFilter},
		{"limit too large", outbox.DeadLetterFilter{Limit: outbox.MaxDeadLetterLimit + 1}, outbox.ErrInvalidFilter},
		{"huge limit", outbox.DeadLetterFilter{Limit: 1 << 40}, outbox.ErrInvalidFilter},
	}
	for _, c := range filters {
		t.Run("DeadLetters/"+c.name, func(t *testing.T) {
			if _, err := ob.DeadLetterPage(e.ctx, c.f); !errors.Is(err, c.want) {
				t.Errorf("got %v, want %v", err, c.want)
			}
		})
	}
	for _, status := range outbox.DeadLetterStatuses {
		if dl, err := ob.DeadLetterPage(e.ctx, outbox.DeadLetterFilter{Queue: "q", Status: status, Limit: outbox.MaxDeadLetterLimit}); err != nil || len(dl.DeadLetters) != 0 {
			t.Errorf("valid filter with status %q: %v, %v", status, dl, err)
		}
	}
}
