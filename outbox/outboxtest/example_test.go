package outboxtest_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/modkit-go/db/outbox"
	"github.com/modkit-go/db/outbox/outboxtest"
)

// exampleT stands in for the *testing.T a real test receives: it panics
// where a test would fail, and runs the cleanups when the example ends.
type exampleT struct {
	testing.TB // nil: only the methods below are used
	cleanups   []func()
	failed     bool
}

func (t *exampleT) Helper()                   {}
func (t *exampleT) Cleanup(f func())          { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (t *exampleT) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (t *exampleT) Errorf(f string, a ...any) { t.failed = true; fmt.Printf(f+"\n", a...) }
func (t *exampleT) Failed() bool              { return t.failed }
func (t *exampleT) TempDir() string {
	dir, err := os.MkdirTemp("", "outboxtest-example-")
	if err != nil {
		panic(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// done runs the cleanups, last registered first, as the testing package does.
func (t *exampleT) done() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

type orderPlaced struct {
	OrderID int `json:"order_id"`
}

// sendConfirmation is the handler under test: it decodes the order and
// "sends" a confirmation. A payload it cannot decode will never decode, so
// that error is permanent.
func sendConfirmation(sent *[]int) func(ctx context.Context, m outbox.Delivery) error {
	return func(ctx context.Context, m outbox.Delivery) error {
		var o orderPlaced
		if err := json.Unmarshal(m.Payload, &o); err != nil {
			return outbox.Permanent(fmt.Errorf("decode order: %w", err))
		}
		if o.OrderID == 0 {
			return errors.New("mail server unavailable") // transient: retried
		}
		*sent = append(*sent, o.OrderID)
		return nil
	}
}

// Testing a PerMessage handler: Drain delivers what is pending through the
// real pipeline and reports each message's fate, with no sleep.
func Example_perMessage() {
	t := &exampleT{}
	defer t.done()

	kit := outboxtest.New(t)
	kit.Declare("orders.placed", 1)
	var sent []int
	if err := kit.Outbox.Handle("orders.placed", outbox.PerMessageE(sendConfirmation(&sent))); err != nil {
		t.Fatal(err)
	}

	kit.Enqueue(
		outbox.Message{Queue: "orders.placed", Payload: []byte(`{"order_id":7}`), PayloadType: "application/json"},
		outbox.Message{Queue: "orders.placed", Payload: []byte(`not json`), PayloadType: "application/json"},
		outbox.Message{Queue: "orders.placed", Payload: []byte(`{"order_id":8}`), PayloadType: "application/json"},
		outbox.Message{Queue: "orders.placed", Payload: []byte(`{"order_id":0}`), PayloadType: "application/json"},
	)
	rep := kit.Drain()

	fmt.Println("sent:", sent)
	for _, d := range rep.Delivered {
		fmt.Println("delivered seq", d.Seq)
	}
	for _, f := range rep.DeadLettered {
		fmt.Printf("dead-lettered seq %d: %s\n", f.Seq, f.Reason)
	}
	for _, f := range rep.Retried {
		fmt.Printf("retried seq %d: %s\n", f.Seq, f.Reason)
	}
	// Output:
	// sent: [7 8]
	// delivered seq 1
	// delivered seq 3
	// dead-lettered seq 2: decode order: invalid character 'o' in literal null (expecting 'u')
	// retried seq 4: mail server unavailable
}

// Testing a TxPerMessage handler that writes to the application's table:
// its writes commit with the acknowledgement, and a failed message's
// writes are undone.
func Example_txPerMessage() {
	t := &exampleT{}
	defer t.done()

	kit := outboxtest.New(t)
	ctx := context.Background()
	if _, err := kit.DB.ExecContext(ctx, `CREATE TABLE shipments (order_id INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	kit.Declare("orders.paid", 2)
	ship := func(ctx context.Context, tx *sql.Tx, m outbox.Delivery) error {
		var o orderPlaced
		if err := json.Unmarshal(m.Payload, &o); err != nil {
			return outbox.Permanent(err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO shipments (order_id) VALUES (?)`, o.OrderID); err != nil {
			return err
		}
		if o.OrderID == 13 {
			return outbox.Permanent(errors.New("address unknown")) // undoes the insert above
		}
		return nil
	}
	if err := kit.Outbox.Handle("orders.paid", outbox.TxPerMessageE(ship)); err != nil {
		t.Fatal(err)
	}

	for _, id := range []int{11, 12, 13} {
		kit.Enqueue(outbox.Message{Queue: "orders.paid", Partition: id % 2,
			Payload: fmt.Appendf(nil, `{"order_id":%d}`, id), PayloadType: "application/json"})
	}
	rep := kit.Drain()

	var shipped []int
	rows, err := kit.DB.QueryContext(ctx, `SELECT order_id FROM shipments ORDER BY order_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		shipped = append(shipped, id)
	}
	fmt.Println("shipped:", shipped)
	fmt.Println("delivered:", len(rep.Delivered), "dead-lettered:", len(rep.DeadLettered), rep.DeadLettered[0].Reason)
	// Output:
	// shipped: [11 12]
	// delivered: 2 dead-lettered: 1 address unknown
}

// Checking a producer: the transaction that places an order must also
// enqueue its message.
func ExampleKit_AssertEnqueued() {
	t := &exampleT{}
	defer t.done()

	kit := outboxtest.New(t)
	ctx := context.Background()
	kit.Declare("orders.placed", 4)
	placeOrder := func(ctx context.Context, tx *sql.Tx, id int) error { // the code under test
		return kit.Outbox.Enqueue(ctx, tx, outbox.Message{Queue: "orders.placed", Partition: id % 4,
			Payload: fmt.Appendf(nil, `{"order_id":%d}`, id), PayloadType: "application/json"})
	}

	tx, err := kit.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := placeOrder(ctx, tx, 42); err != nil {
		t.Fatal(err)
	}
	kit.AssertEnqueued(t, tx, outbox.Message{Queue: "orders.placed", Partition: 2,
		Payload: []byte(`{"order_id":42}`), PayloadType: "application/json"})
	fmt.Println(len(kit.Enqueued(tx)), "message enqueued; test failed:", t.Failed())
	// Output: 1 message enqueued; test failed: false
}
