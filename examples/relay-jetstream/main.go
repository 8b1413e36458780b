// Command relay-jetstream relays an outbox queue to NATS JetStream: it
// places orders in an embedded SQLite database, each in a transaction that
// also enqueues an "order placed" message, relays the queue to a stream
// (subject orders.<partition>), and reads the stream back, in order per
// partition, with each message's id, seq and trace headers.
//
//	go run ./examples/relay-jetstream                    # NATS at nats://127.0.0.1:4222
//	NATS_URL=nats://host:4222 go run ./examples/relay-jetstream
package main

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	_ "modernc.org/sqlite" // pure-Go SQLite driver

	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
	"github.com/modkit-go/db/relay"
	"github.com/modkit-go/db/relay/natsjs"
)

const (
	orders     = 20
	partitions = 2
	stream     = "EXAMPLE_ORDERS"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The broker: a stream that stores the subjects the relay routes to.
	url := os.Getenv("NATS_URL")
	if url == "" {
		url = nats.DefaultURL
	}
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	_ = js.DeleteStream(ctx, stream) // a fresh stream on every run
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{"orders.>"}})
	if err != nil {
		return err
	}
	defer js.DeleteStream(context.Background(), stream)

	// The application's database, with the outbox schema.
	dir, err := os.MkdirTemp("", "relay-jetstream-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
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
	if _, err := db.ExecContext(ctx, "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT)"); err != nil {
		return err
	}
	ob, err := outbox.New(db, d, outbox.Config{})
	if err != nil {
		return err
	}
	if err := ob.DeclareQueue(ctx, "orders", partitions); err != nil {
		return err
	}

	// The relay: this is all the publishing code there is.
	if err := ob.Handle("orders", relay.Handler(natsjs.New(js), relay.WithTemplate("orders.{partition}"))); err != nil {
		return err
	}
	if err := ob.Start(ctx); err != nil {
		return err
	}
	defer ob.Stop(context.Background())

	// The application: each order and its message commit together.
	for i := 1; i <= orders; i++ {
		customer := fmt.Sprintf("customer-%d", i%5)
		err := ob.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, "INSERT INTO orders (id, customer) VALUES (?, ?)", i, customer); err != nil {
				return err
			}
			return ob.Enqueue(ctx, tx, outbox.Message{
				Queue:       "orders",
				Partition:   outbox.PartitionFor(customer, partitions), // one customer's orders stay in order
				Payload:     fmt.Appendf(nil, `{"order":%d,"customer":%q}`, i, customer),
				PayloadType: "application/json",
			})
		})
		if err != nil {
			return err
		}
	}

	// A consumer of the stream.
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	for got := 0; got < orders; {
		batch, err := cons.Fetch(orders-got, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return err
		}
		for m := range batch.Messages() {
			h := m.Headers()
			fmt.Printf("%-9s seq %-2s id %s  %s\n", m.Subject(), h.Get(relay.HeaderSeq), h.Get(jetstream.MsgIDHeader), m.Data())
			got++
		}
		if err := batch.Error(); err != nil {
			return err
		}
	}
	return nil
}
