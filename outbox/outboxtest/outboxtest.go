// Package outboxtest tests code that uses an outbox: handlers run through
// the real pipeline on a real database, and producers' transactions can be
// checked for the messages they enqueued, with no sleep and no polling.
//
// New gives a test a migrated, throw-away database (a SQLite file under
// t.TempDir() by default, or a fresh schema or database on a PostgreSQL or
// MariaDB/MySQL server) and an Outbox over it, both closed by t.Cleanup.
// Register handlers with the Outbox's Handle as in production, enqueue,
// then call Drain: it sequences and delivers everything pending, in the
// test's goroutine, and returns what happened to each message.
//
//	kit := outboxtest.New(t)
//	kit.Declare("orders", 4)
//	kit.Outbox.Handle("orders", outbox.PerMessageE(handleOrder))
//	kit.Enqueue(outbox.Message{Queue: "orders", Payload: []byte(`{"id":1}`), PayloadType: "application/json"})
//	rep := kit.Drain()
//	if len(rep.Delivered) != 1 { … }
package outboxtest

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/mysql"
	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/internal/testdb"
	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
	"github.com/modkit-go/db/outbox/internal/testhook"
)

// Kit is one test's outbox: a migrated database and an Outbox over it.
type Kit struct {
	// DB is the test's database. Create the tables your handlers write to
	// in it.
	DB *sql.DB
	// Outbox is the outbox under test. Register handlers with Handle;
	// Drain delivers without Start.
	Outbox *outbox.Outbox

	t        testing.TB
	mu       sync.Mutex
	enqueued map[*sql.Tx][]outbox.Message
}

// Option configures New.
type Option func(*options)

type options struct {
	cfg      outbox.Config
	postgres string
	mysql    string
}

// WithConfig sets the Outbox's Config (the zero Config by default).
func WithConfig(cfg outbox.Config) Option { return func(o *options) { o.cfg = cfg } }

// WithPostgres runs the kit on the PostgreSQL server at dsn (opened with
// lib/pq) instead of SQLite: a fresh schema, dropped at the test's end.
func WithPostgres(dsn string) Option { return func(o *options) { o.postgres = dsn } }

// WithMySQL runs the kit on the MariaDB or MySQL server at dsn instead of
// SQLite: a fresh database, dropped at the test's end.
func WithMySQL(dsn string) Option { return func(o *options) { o.mysql = dsn } }

// New returns a kit with a migrated, empty database and an Outbox over it.
// The database is removed, and the Outbox stopped if it was started, when
// the test ends. It fails the test if the database cannot be set up.
func New(t testing.TB, opts ...Option) *Kit {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var (
		open func() *sql.DB
		d    interface {
			dialect.Dialect
			dialect.Schema
		}
	)
	switch {
	case o.postgres != "" && o.mysql != "":
		t.Fatal("outboxtest: WithPostgres and WithMySQL both given")
	case o.postgres != "":
		open, d = testdb.PostgresAt(t, o.postgres), postgres.New()
	case o.mysql != "":
		open, d = testdb.MySQLAt(t, o.mysql), mysql.New()
	default:
		open, d = testdb.SQLite(t), sqlite.New()
	}
	db := open()
	if err := migrations.Up(context.Background(), db, d); err != nil {
		t.Fatalf("outboxtest: migrate: %v", err)
	}
	ob, err := outbox.New(db, d, o.cfg)
	if err != nil {
		t.Fatalf("outboxtest: %v", err)
	}
	k := &Kit{DB: db, Outbox: ob, t: t, enqueued: map[*sql.Tx][]outbox.Message{}}
	testhook.OnEnqueued(ob, func(tx *sql.Tx, msgs any) {
		k.mu.Lock()
		defer k.mu.Unlock()
		for _, m := range msgs.([]outbox.Message) {
			m.Payload = bytes.Clone(m.Payload)
			m.Headers = maps.Clone(m.Headers)
			k.enqueued[tx] = append(k.enqueued[tx], m)
		}
	})
	t.Cleanup(func() { _ = ob.Stop(context.Background()) })
	return k
}

// Declare declares queue with the given number of partitions, failing the
// test on error.
func (k *Kit) Declare(queue string, partitions int) {
	k.t.Helper()
	if err := k.Outbox.DeclareQueue(context.Background(), queue, partitions); err != nil {
		k.t.Fatalf("outboxtest: declare %q: %v", queue, err)
	}
}

// Enqueue enqueues msgs in one committed transaction, failing the test on
// error.
func (k *Kit) Enqueue(msgs ...outbox.Message) {
	k.t.Helper()
	err := k.Outbox.InTx(context.Background(), func(tx *sql.Tx) error {
		return k.Outbox.EnqueueBatch(context.Background(), tx, msgs)
	})
	if err != nil {
		k.t.Fatalf("outboxtest: enqueue: %v", err)
	}
}

// Drain sequences and delivers every message that is deliverable now
// through the registered handlers, in the test's goroutine, and returns
// what happened to each (see outbox.Outbox.DeliverAll). A message whose
// delivery failed waits for its backoff and is reported once, in Retried;
// call Drain again after the backoff to see its next attempt. It fails the
// test if the pipeline fails, or if the Outbox was started.
func (k *Kit) Drain() outbox.DeliveryReport {
	k.t.Helper()
	rep, err := k.Outbox.DeliverAll(context.Background())
	if err != nil {
		k.t.Fatalf("outboxtest: drain: %v", err)
	}
	return rep
}

// Enqueued returns the messages that Enqueue and EnqueueBatch wrote in tx
// through the kit's Outbox, in call order, as the caller passed them
// (whether tx committed or not).
func (k *Kit) Enqueued(tx *sql.Tx) []outbox.Message {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]outbox.Message(nil), k.enqueued[tx]...)
}

// AssertEnqueued fails the test (t.Errorf) unless tx enqueued, through the
// kit's Outbox, a message with want's Queue, Partition, Payload and
// PayloadType and at least want's Headers.
func (k *Kit) AssertEnqueued(t testing.TB, tx *sql.Tx, want outbox.Message) {
	t.Helper()
	got := k.Enqueued(tx)
	for _, m := range got {
		if matches(m, want) {
			return
		}
	}
	var b strings.Builder
	for _, m := range got {
		fmt.Fprintf(&b, "\n\t%s", describe(m))
	}
	if b.Len() == 0 {
		b.WriteString(" nothing")
	}
	t.Errorf("outboxtest: the transaction did not enqueue %s; it enqueued:%s", describe(want), b.String())
}

func matches(m, want outbox.Message) bool {
	if m.Queue != want.Queue || m.Partition != want.Partition || !bytes.Equal(m.Payload, want.Payload) || m.PayloadType != want.PayloadType {
		return false
	}
	for key, v := range want.Headers {
		if got, ok := m.Headers[key]; !ok || got != v {
			return false
		}
	}
	return true
}

func describe(m outbox.Message) string {
	s := fmt.Sprintf("{Queue: %q, Partition: %d, PayloadType: %q, Payload: %q", m.Queue, m.Partition, m.PayloadType, m.Payload)
	if len(m.Headers) > 0 {
		s += fmt.Sprintf(", Headers: %v", m.Headers)
	}
	return s + "}"
}
