package outbox_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/mysql"
	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/outbox"
)

// A dialect over a database of another kind is a typed error before any
// schema access, from every entry point that touches the schema.
func TestWrongDialect(t *testing.T) {
	db, cleanup := openSQLite()
	defer cleanup()
	ctx := context.Background()
	for _, d := range []dialect.Dialect{postgres.New(), mysql.New()} {
		ob, err := outbox.New(db, d, outbox.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if err := ob.DeclareQueue(ctx, "q", 1); !errors.Is(err, outbox.ErrWrongDialect) || !errors.Is(err, dialect.ErrWrongDatabase) {
			t.Errorf("%s: DeclareQueue: %v", d.Name(), err)
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = ob.Enqueue(ctx, tx, outbox.Message{Queue: "q", Payload: []byte("x"), PayloadType: "t"})
		_ = tx.Rollback()
		if !errors.Is(err, outbox.ErrWrongDialect) {
			t.Errorf("%s: Enqueue: %v", d.Name(), err)
		}
		_ = ob.Handle("q", outbox.Batch(func(context.Context, []outbox.Delivery) outbox.Result { return outbox.Success() }))
		if err := ob.Start(ctx); !errors.Is(err, outbox.ErrWrongDialect) {
			t.Errorf("%s: Start: %v", d.Name(), err)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	db, cleanup := openSQLite()
	defer cleanup()
	for name, cfg := range map[string]outbox.Config{
		"negative lease":            {LeaseDuration: -1},
		"negative concurrency":      {MaxConcurrency: -1},
		"cap below base":            {RetryBase: 10, RetryMax: 5},
		"huge batch":                {BatchSize: 1 << 20},
		"negative handler timeout":  {HandlerTimeout: -1},
		"handler timeout below 1ms": {HandlerTimeout: time.Microsecond},
	} {
		if _, err := outbox.New(db, postgres.New(), cfg); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := outbox.New(nil, postgres.New(), outbox.Config{}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("nil db: %v", err)
	}
	if _, err := outbox.New(db, nil, outbox.Config{}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("nil dialect: %v", err)
	}
}
