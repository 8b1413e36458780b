package conformance

import (
	"testing"

	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
)

var migrationTests = []test{
	{"Migrations/UpTwiceIsNoop", testMigrationsUpTwice},
	{"Migrations/DocumentedColumns", testMigrationsColumns},
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
