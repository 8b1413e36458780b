// Command quickstart runs the outbox end to end on an embedded SQLite file:
// it places a few hundred orders, each in an application transaction that
// also enqueues an "order placed" message, and delivers the messages to a
// handler in order per partition. One delivery fails transiently and is
// retried; one poison message is dead-lettered. It prints what happened.
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
	"time"

	_ "modernc.org/sqlite" // pure-Go SQLite driver

	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
)

type orderPlaced struct {
	OrderID  int    `json:"order_id"`
	Customer string `json:"customer"`
	Amount   int    `json:"amount_cents"`
}

const (
	orders     = 300
	partitions = 4
	flakyOrder = 42 // its first delivery fails: the "payment service" times out
	poison     = 13 // its payload cannot be decoded: dead-lettered
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	dir, err := os.MkdirTemp("", "outbox-quickstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// WAL, a busy timeout and BEGIN IMMEDIATE are the recommended SQLite
	// settings; one connection queues writers in Go.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "shop.db")+
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	d := sqlite.New()
	if err := migrations.Up(ctx, db, d); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, amount INTEGER NOT NULL)`); err != nil {
		return err
	}

	ob, err := outbox.New(db, d, outbox.Config{
		PollInterval: 50 * time.Millisecond,
		RetryBase:    100 * time.Millisecond, // short, for the demo; default 1s
		MaxAttempts:  5,
	})
	if err != nil {
		return err
	}
	if err := ob.DeclareQueue(ctx, "orders.placed", partitions); err != nil {
		return err
	}

	var (
		mu        sync.Mutex
		delivered int
		handled   int // delivered or dead-lettered
		retried   int
		lastSeq   = map[int]int64{}
		outOfOrd  int
		finished  = make(chan struct{})
	)
	done := func() {
		if handled++; handled == orders {
			close(finished)
		}
	}
	handler := func(_ context.Context, m outbox.Delivery) outbox.Result {
		var ev orderPlaced
		if err := json.Unmarshal(m.Payload, &ev); err != nil {
			mu.Lock()
			defer mu.Unlock()
			lastSeq[m.Partition] = m.Seq
			done()
			return outbox.Reject("cannot decode payload: " + err.Error())
		}
		mu.Lock()
		defer mu.Unlock()
		if ev.OrderID == flakyOrder && m.Attempts == 0 {
			retried++
			return outbox.Retry("payment service timed out")
		}
		if m.Seq != lastSeq[m.Partition]+1 {
			outOfOrd++
		}
		lastSeq[m.Partition] = m.Seq
		delivered++
		done()
		return outbox.Success()
	}
	if err := ob.Handle("orders.placed", outbox.PerMessage(handler)); err != nil {
		return err
	}
	if err := ob.Start(ctx); err != nil {
		return err
	}

	start := time.Now()
	for id := 1; id <= orders; id++ {
		ev := orderPlaced{OrderID: id, Customer: fmt.Sprintf("customer-%d", id%20), Amount: 100 * id}
		payload, _ := json.Marshal(ev)
		if id == poison {
			payload = []byte("{not json")
		}
		// The order row and its message commit together, or not at all.
		err := ob.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO orders (id, customer, amount) VALUES (?, ?, ?)`, ev.OrderID, ev.Customer, ev.Amount); err != nil {
				return err
			}
			return ob.Enqueue(ctx, tx, outbox.Message{
				Queue:       "orders.placed",
				Partition:   outbox.PartitionFor(ev.Customer, partitions), // one customer, one partition: ordered
				Payload:     payload,
				PayloadType: "application/json",
				Headers:     map[string]string{"source": "quickstart"},
			})
		})
		if err != nil {
			return err
		}
	}

	select {
	case <-finished:
	case <-ctx.Done():
		return fmt.Errorf("timed out: %w", ctx.Err())
	}
	elapsed := time.Since(start)
	if err := ob.Stop(ctx); err != nil {
		return err
	}

	deadPage, err := ob.DeadLetterPage(ctx, outbox.DeadLetterFilter{})
	dead := deadPage.DeadLetters
	if err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	fmt.Printf("placed %d orders in %d partitions; delivered %d in %v\n", orders, partitions, delivered, elapsed.Round(time.Millisecond))
	fmt.Printf("per-partition order violations: %d\n", outOfOrd)
	fmt.Printf("transient failures retried: %d (order %d, delivered on its second attempt)\n", retried, flakyOrder)
	for _, dl := range dead {
		fmt.Printf("dead letter: partition %d seq %d payload %q: %s\n", dl.Partition, dl.Seq, dl.Payload, dl.Reason)
	}
	for p := 0; p < partitions; p++ {
		st, err := ob.PartitionStatus(ctx, "orders.placed", p)
		if err != nil {
			return err
		}
		fmt.Printf("partition %d: last seq %d, processed %d\n", p, st.LastSeq, st.ProcessedSeq)
	}
	if outOfOrd != 0 || delivered != orders-1 || len(dead) != 1 {
		return fmt.Errorf("unexpected result")
	}
	fmt.Println("ok")
	return nil
}
