package relay_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite"

	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
	"github.com/modkit-go/db/relay"
)

// A relay handler publishes each partition's messages in seq order and
// acknowledges what the publisher confirmed. Here the "broker" prints;
// the adapters under relay/ publish to NATS JetStream, RabbitMQ, Redis
// Streams, Kafka and webhooks.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "relay-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "app.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	d := sqlite.New()
	if err := migrations.Up(ctx, db, d); err != nil {
		log.Fatal(err)
	}
	ob, err := outbox.New(db, d, outbox.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.DeclareQueue(ctx, "orders", 1); err != nil {
		log.Fatal(err)
	}

	done := make(chan struct{})
	broker := relay.PublisherFunc(func(_ context.Context, msgs []relay.Message) (int, error) {
		for _, m := range msgs {
			fmt.Printf("%s seq %s: %s\n", m.Destination, m.Headers[relay.HeaderSeq], m.Payload)
			if m.Delivery.Seq == 3 {
				close(done)
			}
		}
		return len(msgs), nil
	})
	if err := ob.Handle("orders", relay.Handler(broker, relay.WithTemplate("shop.{queue}.{partition}"))); err != nil {
		log.Fatal(err)
	}

	err = ob.InTx(ctx, func(tx *sql.Tx) error {
		for _, p := range []string{"placed", "paid", "shipped"} {
			if err := ob.Enqueue(ctx, tx, outbox.Message{Queue: "orders", Payload: []byte(p), PayloadType: "text/plain"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.Start(ctx); err != nil {
		log.Fatal(err)
	}
	<-done
	if err := ob.Stop(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// shop.orders.0 seq 1: placed
	// shop.orders.0 seq 2: paid
	// shop.orders.0 seq 3: shipped
}
