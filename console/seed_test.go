package console_test

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/mysql"
	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/internal/testdb"
	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
)

// Hostile strings, as a sender or a handler could write them.
const (
	xssScript = `<script>fetch('/stolen?c='+document.cookie);alert(1)</script>`
	xssAttr   = `"><img src=x onerror=alert(2)>`
	xssURL    = `javascript:alert(3)`
	badUTF8   = "bytes \xff\xfe\xc3 end"
)

// hostilePayload is a text payload, hostileBinary one that is not UTF-8.
var (
	hostilePayload = xssScript + "\n" + xssAttr + "\n" + xssURL
	hostileBinary  = "\xff\xfe" + xssScript + badUTF8
	hostileHeaders = map[string]string{xssScript: xssAttr, "link": xssURL, "x-attr": `' onmouseover='alert(4)`}
	hostileReason  = "rejected: " + xssScript + xssAttr + " " + xssURL + " " + badUTF8
)

type backend struct {
	name string
	open func(t *testing.T) func() *sql.DB
	d    func() dialect.Dialect
}

func backends() []backend {
	return []backend{
		{"sqlite", func(t *testing.T) func() *sql.DB { return testdb.SQLite(t) }, func() dialect.Dialect { return sqlite.New() }},
		{"postgres", func(t *testing.T) func() *sql.DB { return testdb.Postgres(t) }, func() dialect.Dialect { return postgres.New() }},
		{"mysql", func(t *testing.T) func() *sql.DB { return testdb.MySQL(t) }, func() dialect.Dialect { return mysql.New() }},
	}
}

// seeded is a database in a known state, and a way to open more pools.
type seeded struct {
	open func() *sql.DB
	d    dialect.Dialect
	ob   *outbox.Outbox // an idle Outbox over the database, for the console
}

// seed migrates a fresh database and brings it to a known state: queue
// orders (4 partitions) with dead letters from rejected messages in
// partitions 0 and 2 (bad-1, bad-2, and the hostile ones: a text payload
// with hostile type, headers and reason, and a binary payload), partitions
// 1 and 3 blocked at a poison head (PoisonBlock after 2 attempts), queue
// emails with a backlog of three and no worker, and queue bulk with one
// dead letter of hugeBytes when that is not 0.
func seed(t *testing.T, b backend, hugeBytes int) seeded {
	t.Helper()
	ctx := t.Context()
	open := b.open(t)
	db := open()
	d := b.d()
	if err := migrations.Up(ctx, db, d.(dialect.Schema)); err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.New(db, d, outbox.Config{PollInterval: 20 * time.Millisecond, MaxPayloadBytes: outbox.MaxPayloadLimit})
	if err != nil {
		t.Fatal(err)
	}
	for q, n := range map[string]int{"orders": 4, "emails": 2, "bulk": 1} {
		if err := ob.DeclareQueue(ctx, q, n); err != nil {
			t.Fatal(err)
		}
	}
	err = ob.Handle("bulk", outbox.PerMessage(func(context.Context, outbox.Delivery) outbox.Result {
		return outbox.Reject("too big to handle")
	}))
	if err != nil {
		t.Fatal(err)
	}
	err = ob.Handle("orders", outbox.PerMessage(func(_ context.Context, m outbox.Delivery) outbox.Result {
		switch p := string(m.Payload); {
		case strings.HasPrefix(p, "bad"):
			return outbox.Reject("invalid order " + p)
		case strings.HasPrefix(p, "poison"):
			return outbox.Retry("downstream refuses " + p)
		case m.PayloadType != "text/plain":
			return outbox.Reject(hostileReason)
		}
		return outbox.Success()
	}), outbox.WithPoisonPolicy(outbox.PoisonBlock), outbox.WithMaxAttempts(2),
		outbox.WithRetryBackoff(time.Millisecond, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	msgs := []outbox.Message{
		{Queue: "orders", Partition: 0, Payload: []byte("o1")},
		{Queue: "orders", Partition: 0, Payload: []byte("bad-1")},
		{Queue: "orders", Partition: 0, Payload: []byte("o2")},
		{Queue: "orders", Partition: 1, Payload: []byte("poison-1")},
		{Queue: "orders", Partition: 1, Payload: []byte("o3")},
		{Queue: "orders", Partition: 2, Payload: []byte("bad-2")},
		{Queue: "orders", Partition: 2, Payload: []byte(hostilePayload), PayloadType: xssAttr + xssURL, Headers: hostileHeaders},
		{Queue: "orders", Partition: 2, Payload: []byte(hostileBinary), PayloadType: "application/octet-stream"},
		{Queue: "orders", Partition: 3, Payload: []byte("poison-3")},
		{Queue: "emails", Partition: 0, Payload: []byte("e1")},
		{Queue: "emails", Partition: 0, Payload: []byte("e2")},
		{Queue: "emails", Partition: 1, Payload: []byte("e3")},
	}
	wantDead := 4
	if hugeBytes > 0 {
		wantDead += 10 // one in bulk
		huge := make([]byte, hugeBytes)
		for i := range huge {
			huge[i] = byte(i*7 + i>>8)
		}
		msgs = append(msgs, outbox.Message{Queue: "bulk", Payload: huge, PayloadType: "application/x-huge"})
	}
	err = ob.InTx(ctx, func(tx *sql.Tx) error {
		for _, m := range msgs {
			if m.PayloadType == "" {
				m.PayloadType = "text/plain"
			}
			if err := ob.Enqueue(ctx, tx, m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the seed to settle", func() bool {
		n, err := ob.CountDeadLetters(ctx, outbox.DeadLetterFilter{Queue: "orders"})
		if err != nil {
			t.Fatal(err)
		}
		q, err := ob.QueueStatus(ctx, "orders")
		if err != nil {
			t.Fatal(err)
		}
		if hugeBytes > 0 {
			n2, err := ob.CountDeadLetters(ctx, outbox.DeadLetterFilter{Queue: "bulk"})
			if err != nil {
				t.Fatal(err)
			}
			n += 10 * n2
		}
		return n == int64(wantDead) && q.Blocked == 2
	})
	if err := ob.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	idle, err := outbox.New(db, d, outbox.Config{MaxPayloadBytes: outbox.MaxPayloadLimit})
	if err != nil {
		t.Fatal(err)
	}
	return seeded{open: open, d: d, ob: idle}
}

// waitFor polls cond until it holds, failing the test at its deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("waiting for %s: %v", what, t.Context().Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// deadLetter returns the seeded dead letter whose payload starts with
// prefix.
func deadLetter(t *testing.T, ob *outbox.Outbox, prefix string) outbox.DeadLetter {
	t.Helper()
	dlsPage, err := ob.DeadLetterPage(t.Context(), outbox.DeadLetterFilter{Limit: outbox.MaxDeadLetterLimit})
	dls := dlsPage.DeadLetters
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dls {
		if strings.HasPrefix(string(d.Payload), prefix) {
			return d
		}
	}
	t.Fatalf("no dead letter with a payload starting %q", prefix)
	return outbox.DeadLetter{}
}

// worker runs a handler that accepts everything on queue orders and
// records what it received, until the test ends.
type worker struct {
	mu  sync.Mutex
	got []string
}

func startWorker(t *testing.T, s seeded) *worker {
	t.Helper()
	w := &worker{}
	ob, err := outbox.New(s.open(), s.d, outbox.Config{PollInterval: 100 * time.Millisecond, MaxPayloadBytes: outbox.MaxPayloadLimit})
	if err != nil {
		t.Fatal(err)
	}
	err = ob.Handle("orders", outbox.PerMessage(func(_ context.Context, m outbox.Delivery) outbox.Result {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.got = append(w.got, string(m.Payload))
		return outbox.Success()
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ob.Stop(context.Background()) })
	return w
}

func (w *worker) received(payload string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.got {
		if p == payload {
			return true
		}
	}
	return false
}
