package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	_ "modernc.org/sqlite"

	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
)

// openSQLite opens a fresh SQLite file with the recommended settings.
func openSQLite() (*sql.DB, func()) {
	dir, err := os.MkdirTemp("", "outbox-example-")
	if err != nil {
		log.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "app.db")+
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		log.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	return db, func() { _ = db.Close(); _ = os.RemoveAll(dir) }
}

// Decoupled delivery: the handler runs outside any transaction, under a
// lease; messages of one partition arrive in Seq order.
func Example_decoupled() {
	ctx := context.Background()
	db, cleanup := openSQLite()
	defer cleanup()
	d := sqlite.New()
	if err := migrations.Up(ctx, db, d); err != nil {
		log.Fatal(err)
	}
	ob, err := outbox.New(db, d, outbox.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.DeclareQueue(ctx, "greetings", 1); err != nil {
		log.Fatal(err)
	}

	done := make(chan struct{})
	err = ob.Handle("greetings", outbox.PerMessage(func(ctx context.Context, m outbox.Delivery) outbox.Result {
		fmt.Printf("partition %d seq %d: %s\n", m.Partition, m.Seq, m.Payload)
		if m.Seq == 3 {
			close(done)
		}
		return outbox.Success()
	}))
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer ob.Stop(ctx)

	// The messages commit with the application's transaction; InTx then
	// wakes the workers.
	err = ob.InTx(ctx, func(tx *sql.Tx) error {
		for _, s := range []string{"hello", "hallo", "bonjour"} {
			msg := outbox.Message{Queue: "greetings", Payload: []byte(s), PayloadType: "text/plain"}
			if err := ob.Enqueue(ctx, tx, msg); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	<-done
	// Output:
	// partition 0 seq 1: hello
	// partition 0 seq 2: hallo
	// partition 0 seq 3: bonjour
}

// Transactional delivery: the handler writes through the transaction that
// acknowledges the message, so its effect and the ack commit together. A
// Retry undoes that message's writes.
func Example_transactional() {
	ctx := context.Background()
	db, cleanup := openSQLite()
	defer cleanup()
	d := sqlite.New()
	if err := migrations.Up(ctx, db, d); err != nil {
		log.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE balances (account TEXT PRIMARY KEY, cents INTEGER NOT NULL)`); err != nil {
		log.Fatal(err)
	}
	ob, err := outbox.New(db, d, outbox.Config{RetryBase: time.Millisecond}) // retry almost at once, for the example
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.DeclareQueue(ctx, "deposits", 1); err != nil {
		log.Fatal(err)
	}

	done := make(chan struct{})
	err = ob.Handle("deposits", outbox.TxPerMessage(func(ctx context.Context, tx *sql.Tx, m outbox.Delivery) outbox.Result {
		if _, err := tx.ExecContext(ctx, `INSERT INTO balances (account, cents) VALUES ('alice', 100)
			ON CONFLICT (account) DO UPDATE SET cents = cents + 100`); err != nil {
			return outbox.Retry(err.Error())
		}
		if m.Attempts == 0 {
			return outbox.Retry("downstream busy") // the insert above is rolled back
		}
		close(done)
		return outbox.Success()
	}))
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.Start(ctx); err != nil {
		log.Fatal(err)
	}
	err = ob.InTx(ctx, func(tx *sql.Tx) error {
		return ob.Enqueue(ctx, tx, outbox.Message{Queue: "deposits", Payload: []byte(`{"cents":100}`), PayloadType: "application/json"})
	})
	if err != nil {
		log.Fatal(err)
	}
	<-done
	if err := ob.Stop(ctx); err != nil {
		log.Fatal(err)
	}
	var cents int
	if err := db.QueryRowContext(ctx, `SELECT cents FROM balances WHERE account = 'alice'`).Scan(&cents); err != nil {
		log.Fatal(err)
	}
	st, _ := ob.PartitionStatus(ctx, "deposits", 0)
	fmt.Printf("balance %d cents after one failed and one successful delivery; processed seq %d\n", cents, st.ProcessedSeq)
	// Output:
	// balance 100 cents after one failed and one successful delivery; processed seq 1
}

// PartitionFor maps a key to a partition with a stable hash, so every
// message about one customer is delivered in order.
func ExamplePartitionFor() {
	first := outbox.PartitionFor("customer-42", 16)
	again := outbox.PartitionFor("customer-42", 16)
	fmt.Println(first == again, first >= 0 && first < 16)
	// Output: true true
}

// Observability: metrics through any MeterProvider, a span per handler
// call through any TracerProvider, and the producer's trace context carried
// in the message's headers (W3C traceparent by default). The library
// imports only the OpenTelemetry API; the SDK (here with an in-memory
// reader and exporter) is the application's choice.
func Example_observability() {
	ctx := context.Background()
	db, cleanup := openSQLite()
	defer cleanup()
	d := sqlite.New()
	if err := migrations.Up(ctx, db, d); err != nil {
		log.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	ob, err := outbox.New(db, d, outbox.Config{MeterProvider: mp, TracerProvider: tp})
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.DeclareQueue(ctx, "orders", 1); err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	err = ob.Handle("orders", outbox.PerMessage(func(ctx context.Context, m outbox.Delivery) outbox.Result {
		// The handler's context carries the delivery span; spans the
		// handler starts are its children.
		fmt.Println("traceparent header:", m.Headers["traceparent"] != "")
		fmt.Println("handler span recording:", trace.SpanFromContext(ctx).IsRecording())
		close(done)
		return outbox.Success()
	}))
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.Start(ctx); err != nil {
		log.Fatal(err)
	}
	// The producer's request span: the delivery span is its child.
	pctx, span := tp.Tracer("shop").Start(ctx, "place order")
	err = ob.InTx(pctx, func(tx *sql.Tx) error {
		return ob.Enqueue(pctx, tx, outbox.Message{Queue: "orders", Payload: []byte(`{"id":1}`), PayloadType: "application/json"})
	})
	span.End()
	if err != nil {
		log.Fatal(err)
	}
	<-done
	if err := ob.Stop(ctx); err != nil {
		log.Fatal(err)
	}

	for _, s := range spans.GetSpans() {
		if s.Name == "process orders" {
			fmt.Println("delivery span in the producer's trace:", s.SpanContext.TraceID() == span.SpanContext().TraceID())
		}
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		log.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if s, ok := m.Data.(metricdata.Sum[int64]); ok && (m.Name == "outbox.messages.enqueued" || m.Name == "outbox.messages.delivered") {
				fmt.Println(m.Name, s.DataPoints[0].Value)
			}
		}
	}
	// Unordered output:
	// traceparent header: true
	// handler span recording: true
	// delivery span in the producer's trace: true
	// outbox.messages.enqueued 1
	// outbox.messages.delivered 1
}

// A handler rejects a message it cannot handle yet; once the cause is
// fixed, an operator finds the dead letter and requeues it: it is
// delivered again, in its partition's order, as a new message.
func ExampleOutbox_RequeueDeadLetters() {
	ctx := context.Background()
	db, cleanup := openSQLite()
	defer cleanup()
	// Two outboxes in turn (a stopped one cannot start again): one whose
	// handler rejects, one after the fix.
	run := func(handler func(m outbox.Delivery) outbox.Result, until string, work func(ob *outbox.Outbox)) {
		ob := exampleOutbox(ctx, db, "orders", 1)
		done := make(chan struct{})
		err := ob.Handle("orders", outbox.PerMessage(func(_ context.Context, m outbox.Delivery) outbox.Result {
			r := handler(m)
			if string(m.Payload) == until {
				close(done)
			}
			return r
		}))
		if err != nil {
			log.Fatal(err)
		}
		if err := ob.Start(ctx); err != nil {
			log.Fatal(err)
		}
		work(ob)
		<-done
		if err := ob.Stop(ctx); err != nil { // results are recorded before Stop returns
			log.Fatal(err)
		}
	}

	// The handler cannot deal with order-2 yet.
	run(func(m outbox.Delivery) outbox.Result {
		if string(m.Payload) == "order-2" {
			return outbox.Reject("unknown customer")
		}
		fmt.Printf("delivered %s (seq %d)\n", m.Payload, m.Seq)
		return outbox.Success()
	}, "order-3", func(ob *outbox.Outbox) {
		err := ob.InTx(ctx, func(tx *sql.Tx) error {
			for _, s := range []string{"order-1", "order-2", "order-3"} {
				if err := ob.Enqueue(ctx, tx, outbox.Message{Queue: "orders", Payload: []byte(s), PayloadType: "text/plain"}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			log.Fatal(err)
		}
	})

	// Fixed: requeue the pending dead letters of the queue.
	run(func(m outbox.Delivery) outbox.Result {
		fmt.Printf("delivered %s (seq %d)\n", m.Payload, m.Seq)
		return outbox.Success()
	}, "order-2", func(ob *outbox.Outbox) {
		page, err := ob.DeadLetterPage(ctx, outbox.DeadLetterFilter{Queue: "orders", Status: "pending"})
		if err != nil {
			log.Fatal(err)
		}
		var ids []int64
		for _, dl := range page.DeadLetters {
			fmt.Printf("dead letter: %s, %q\n", dl.Payload, dl.Reason)
			ids = append(ids, dl.ID)
		}
		n, err := ob.RequeueDeadLetters(ctx, ids)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("requeued", n)
	})
	// Output:
	// delivered order-1 (seq 1)
	// delivered order-3 (seq 3)
	// dead letter: order-2, "unknown customer"
	// requeued 1
	// delivered order-2 (seq 4)
}

// QueueStatus reports a queue's backlog, per partition and in total, with
// messages not yet sequenced counted in.
func ExampleOutbox_QueueStatus() {
	ctx := context.Background()
	db, cleanup := openSQLite()
	defer cleanup()
	ob := exampleOutbox(ctx, db, "orders", 2)
	err := ob.InTx(ctx, func(tx *sql.Tx) error {
		var msgs []outbox.Message
		for i, key := range []string{"alice", "bob", "alice"} {
			msgs = append(msgs, outbox.Message{Queue: "orders", Partition: outbox.PartitionFor(key, 2), Payload: []byte{byte(i)}, PayloadType: "bytes"})
		}
		return ob.EnqueueBatch(ctx, tx, msgs)
	})
	if err != nil {
		log.Fatal(err)
	}
	// Not started: the messages wait for the sequencer.
	st, err := ob.QueueStatus(ctx, "orders")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: backlog %d, retrying %d, leased %d, pending dead letters %d\n",
		st.Queue, st.Backlog, st.Retrying, st.Leased, st.DeadLetters["pending"])
	for _, p := range st.Partitions {
		fmt.Printf("partition %d: backlog %d (unsequenced %d), oldest enqueued: %v\n",
			p.Partition, p.Backlog, p.Unsequenced, !p.OldestCreatedAt.IsZero())
	}
	// Output:
	// orders: backlog 3, retrying 0, leased 0, pending dead letters 0
	// partition 0: backlog 1 (unsequenced 1), oldest enqueued: true
	// partition 1: backlog 2 (unsequenced 2), oldest enqueued: true
}

// exampleOutbox applies the schema to db (idempotent) and returns an
// outbox with queue declared.
func exampleOutbox(ctx context.Context, db *sql.DB, queue string, partitions int) *outbox.Outbox {
	d := sqlite.New()
	if err := migrations.Up(ctx, db, d); err != nil {
		log.Fatal(err)
	}
	ob, err := outbox.New(db, d, outbox.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.DeclareQueue(ctx, queue, partitions); err != nil {
		log.Fatal(err)
	}
	return ob
}
