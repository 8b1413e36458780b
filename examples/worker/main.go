// Command worker delivers the messages of examples/producer, in a process
// of its own, on PostgreSQL. LISTEN/NOTIFY wakes it when a producer
// commits, so a message reaches the handler within milliseconds; polling
// stays the safety net.
//
// Its handler is transactional and keeps an inbox: in the transaction that
// acknowledges a message it records the message's (queue, partition, seq)
// in the inbox table and applies the message's effect (a customer's
// running total). The inbox row, the effect and the acknowledgement commit
// together or not at all, so each message's effect happens exactly once,
// whatever crashes or redeliveries happen; the inbox's primary key would
// refuse a second application.
//
//	export OUTBOX_EXAMPLE_DSN='postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
//	go run ./examples/worker
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver "pgx"

	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/dialect/postgres/pgxlisten"
	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
)

// Queue is the queue examples/producer enqueues to.
const Queue = "orders.placed"

// Partitions must match the producer's.
const Partitions = 8

type order struct {
	ID       int64  `json:"order_id"`
	Customer string `json:"customer"`
	Amount   int64  `json:"amount_cents"`
}

func main() {
	dsn := flag.String("dsn", os.Getenv("OUTBOX_EXAMPLE_DSN"), "PostgreSQL DSN (default $OUTBOX_EXAMPLE_DSN)")
	flag.Parse()
	if *dsn == "" {
		log.Fatal("worker: set -dsn or OUTBOX_EXAMPLE_DSN")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *dsn); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, dsn string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	cfg := outbox.DefaultConfig()
	cfg.Logger = slog.Default()
	cfg.MaxAttempts = 10 // then the message is dead-lettered (outboxctl dead-letters list)
	// The outbox's goroutines, each transactional handler's transaction,
	// and pgxlisten's connection, kept idle too: database/sql keeps only
	// 2 idle connections by default and would reopen the rest on every pass.
	pool := cfg.MaxConcurrency + cfg.Sequencers + 2 + 1
	db.SetMaxOpenConns(pool)
	db.SetMaxIdleConns(pool)

	d := postgres.New(postgres.WithListener(pgxlisten.New()))
	if err := migrations.Up(ctx, db, d); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `
		CREATE TABLE IF NOT EXISTS inbox (
			queue TEXT NOT NULL, partition_num INT NOT NULL, seq BIGINT NOT NULL,
			received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			PRIMARY KEY (queue, partition_num, seq));
		CREATE TABLE IF NOT EXISTS customer_totals (
			customer TEXT PRIMARY KEY, orders BIGINT NOT NULL, amount_cents BIGINT NOT NULL)`); err != nil {
		return err
	}
	ob, err := outbox.New(db, d, cfg)
	if err != nil {
		return err
	}
	if err := ob.DeclareQueue(ctx, Queue, Partitions); err != nil {
		return err
	}
	if err := ob.Handle(Queue, outbox.TxPerMessageE(apply)); err != nil {
		return err
	}
	if err := ob.Start(ctx); err != nil {
		return err
	}
	slog.Info("worker running; stop with Ctrl-C")
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return ob.Stop(sctx) // lets handlers finish, releases the partitions
}

// apply records m in the inbox and applies its effect, in tx: both commit
// with the acknowledgement, or neither does.
func apply(ctx context.Context, tx *sql.Tx, m outbox.Delivery) error {
	var o order
	if err := json.Unmarshal(m.Payload, &o); err != nil {
		return outbox.Permanent(fmt.Errorf("decode order: %w", err))
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO inbox (queue, partition_num, seq) VALUES ($1, $2, $3)`,
		m.Queue, m.Partition, m.Seq); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO customer_totals (customer, orders, amount_cents) VALUES ($1, 1, $2)
		ON CONFLICT (customer) DO UPDATE
		SET orders = customer_totals.orders + 1, amount_cents = customer_totals.amount_cents + EXCLUDED.amount_cents`,
		o.Customer, o.Amount); err != nil {
		return err
	}
	slog.Info("order applied", "order", o.ID, "customer", o.Customer, "partition", m.Partition, "seq", m.Seq,
		"latency", time.Since(m.CreatedAt).Round(time.Millisecond))
	return nil
}
