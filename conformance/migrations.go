package conformance

import (
	"context"
	"testing"

	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
)

var migrationTests = []test{
	{"Migrations/UpTwiceIsNoop", testMigrationsUpTwice},
	{"Migrations/DocumentedColumns", testMigrationsColumns},
	{"Migrations/TablePrefix", testTablePrefix},
}

// testTablePrefix: a dialect built with another prefix migrates, enqueues,
// sequences and delivers using only its own tables, beside a default one.
func testTablePrefix(t *testing.T, b *Backend) {
	if b.WithPrefix == nil {
		t.Skip("Backend.WithPrefix not set")
	}
	e := newEnv(t, b) // default prefix, in the same database
	pd := b.WithPrefix("app_ob_")
	if err := migrations.Up(e.ctx, e.db, pd); err != nil {
		t.Fatalf("Up with prefix: %v", err)
	}
	ob, err := outbox.New(e.db, pd, fast(outbox.Config{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ob.Stop(context.Background()) })
	if err := ob.DeclareQueue(e.ctx, "q", 2); err != nil {
		t.Fatal(err)
	}
	e.enqueue(ob, msg("q", 0, "a"), msg("q", 1, "b"))
	rec := newRecorder(2)
	if err := ob.Handle("q", outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
		rec.add(ds...)
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	e.start(ob)
	await(t, rec.done, "deliveries through prefixed tables")
	rec.checkExactlyOnce(t)
	if n := e.count("SELECT COUNT(*) FROM app_ob_partitions"); n != 2 {
		t.Fatalf("app_ob_partitions has %d rows, want 2", n)
	}
	if n := e.count("SELECT COUNT(*) FROM " + e.table("partitions")); n != 0 {
		t.Fatalf("the default-prefix tables were written: %d partitions", n)
	}
}

// testMigrationsUpTwice: a second Up changes nothing, keeps data, and
// leaves the caller's pool open.
func testMigrationsUpTwice(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, outbox.Config{})
	e.declare(ob, "orders", 2)
	e.enqueue(ob, msg("orders", 1, "a"))
	before := e.stats(ob)
	versions := e.count("SELECT COUNT(*) FROM " + e.table("schema_version"))
	for range 2 {
		if err := migrations.Up(e.ctx, e.db, b.Dialect); err != nil {
			t.Fatalf("Up again: %v", err)
		}
	}
	if err := e.db.PingContext(e.ctx); err != nil {
		t.Fatalf("Up closed the caller's *sql.DB: %v", err)
	}
	if after := e.stats(ob); after != before {
		t.Fatalf("Up changed data: before %+v, after %+v", before, after)
	}
	if v := e.count("SELECT COUNT(*) FROM " + e.table("schema_version")); v != versions {
		t.Fatalf("version rows: %d before, %d after", versions, v)
	}
}

// documentedColumns is the schema the README documents.
var documentedColumns = map[string][]string{
	"queues":       {"name", "partitions", "created_at"},
	"partitions":   {"id", "queue", "partition_num", "last_seq"},
	"messages":     {"id", "partition_id", "seq", "payload", "payload_type", "headers", "created_at"},
	"processors":   {"partition_id", "queue", "processed_seq", "attempts", "last_error", "lease_token", "lease_until", "next_attempt_at", "version"},
	"dead_letters": {"id", "queue", "partition_num", "seq", "payload", "payload_type", "headers", "created_at", "failed_at", "attempts", "last_error", "status", "deadline", "completed_at"},
}

func testMigrationsColumns(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	for table, cols := range documentedColumns {
		q := "SELECT "
		for i, c := range cols {
			if i > 0 {
				q += ", "
			}
			q += c
		}
		q += " FROM " + e.table(table) + " WHERE 1 = 0"
		rows, err := e.db.QueryContext(e.ctx, q)
		if err != nil {
			t.Fatalf("table %s lacks a documented column: %v", table, err)
		}
		got, err := rows.Columns()
		_ = rows.Close()
		if err != nil || len(got) != len(cols) {
			t.Fatalf("table %s: columns %v, %v", table, got, err)
		}
	}
}
