// Command producer is an HTTP service that places orders: each order row
// and its "order placed" message are written in one transaction, so the
// message exists if and only if the order does. It delivers nothing
// itself; run examples/worker, in another process, for that. On
// PostgreSQL the enqueue also sends a NOTIFY, delivered when the
// transaction commits, which wakes the worker at once.
//
//	export OUTBOX_EXAMPLE_DSN='postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
//	go run ./examples/worker &
//	go run ./examples/producer &
//	curl -X POST localhost:8080/orders -d '{"customer":"ann","amount_cents":1200}'
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver "pgx"

	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
)

// Queue is the queue both examples use.
const Queue = "orders.placed"

// Partitions is the queue's partition count: one customer's orders go to
// one partition, so the worker sees them in the order they were placed.
const Partitions = 8

type order struct {
	ID       int64  `json:"order_id"`
	Customer string `json:"customer"`
	Amount   int64  `json:"amount_cents"`
}

func main() {
	dsn := flag.String("dsn", os.Getenv("OUTBOX_EXAMPLE_DSN"), "PostgreSQL DSN (default $OUTBOX_EXAMPLE_DSN)")
	addr := flag.String("addr", "localhost:8080", "listen address")
	flag.Parse()
	if *dsn == "" {
		log.Fatal("producer: set -dsn or OUTBOX_EXAMPLE_DSN")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *dsn, *addr); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, dsn, addr string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	d := postgres.New() // producers need no listener: the insert itself notifies
	if err := migrations.Up(ctx, db, d); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS orders (
		id BIGSERIAL PRIMARY KEY, customer TEXT NOT NULL, amount_cents BIGINT NOT NULL,
		placed_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
		return err
	}
	ob, err := outbox.New(db, d, outbox.Config{Logger: slog.Default()})
	if err != nil {
		return err
	}
	if err := ob.DeclareQueue(ctx, Queue, Partitions); err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) {
		var o order
		if err := json.NewDecoder(r.Body).Decode(&o); err != nil || o.Customer == "" || o.Amount <= 0 {
			http.Error(w, `want {"customer": "…", "amount_cents": n > 0}`, http.StatusBadRequest)
			return
		}
		if err := placeOrder(r.Context(), ob, &o); err != nil {
			slog.Error("place order", "err", err)
			http.Error(w, "could not place the order", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(o)
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	slog.Info("producer listening", "addr", addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// placeOrder writes the order and its message in one transaction. InTx
// commits, then wakes this process's workers (it has none); the worker
// process is woken by the NOTIFY that the commit delivers.
func placeOrder(ctx context.Context, ob *outbox.Outbox, o *order) error {
	return ob.InTx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `INSERT INTO orders (customer, amount_cents) VALUES ($1, $2) RETURNING id`,
			o.Customer, o.Amount).Scan(&o.ID); err != nil {
			return err
		}
		payload, err := json.Marshal(o)
		if err != nil {
			return err
		}
		return ob.Enqueue(ctx, tx, outbox.Message{
			Queue:       Queue,
			Partition:   outbox.PartitionFor(o.Customer, Partitions),
			Payload:     payload,
			PayloadType: "application/json",
		})
	})
}
