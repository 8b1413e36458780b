package conformance

import (
	"context"
	"database/sql"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/modkit-go/db/dialect"

	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
)

var migrationTests = []test{
	{"Migrations/UpTwiceIsNoop", testMigrationsUpTwice},
	{"Migrations/DocumentedColumns", testMigrationsColumns},
	{"Migrations/TablePrefix", testTablePrefix},
	{"Migrations/ConcurrentUp", testMigrationsConcurrentUp},
	{"Migrations/ConflictingTable", testMigrationsConflictingTable},
	{"Migrations/HalfApplied", testMigrationsHalfApplied},
	{"Migrations/TypedNilDialect", testMigrationsTypedNil},
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
	var rec recorder
	if err := ob.Handle("q", outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
		rec.add(ds...)
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	e.start(ob)
	await(t, rec.reached(2), "deliveries through prefixed tables")
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

// documentedColumns is the schema docs/operating.md documents.
var documentedColumns = map[string][]string{
	"queues":       {"name", "partitions", "created_at"},
	"partitions":   {"id", "queue", "partition_num", "last_seq"},
	"messages":     {"id", "partition_id", "seq", "payload", "payload_type", "headers", "created_at", "msg_id", "msg_key"},
	"processors":   {"partition_id", "queue", "processed_seq", "attempts", "last_error", "lease_token", "lease_until", "next_attempt_at", "version", "blocked_at"},
	"dead_letters": {"id", "queue", "partition_num", "seq", "payload", "payload_type", "headers", "created_at", "failed_at", "attempts", "last_error", "status", "deadline", "completed_at", "msg_id", "msg_key"},
}

func testMigrationsColumns(t *testing.T, b *Backend) {
	newEnv(t, b).checkColumns()
}

// checkColumns fails unless every outbox table has its documented columns.
func (e *env) checkColumns() {
	e.t.Helper()
	for table, cols := range documentedColumns {
		q := "SELECT " + strings.Join(cols, ", ") + " FROM " + e.table(table) + " WHERE 1 = 0"
		rows, err := e.db.QueryContext(e.ctx, q)
		if err != nil {
			e.t.Fatalf("table %s lacks a documented column: %v", table, err)
		}
		got, err := rows.Columns()
		_ = rows.Close()
		if err != nil || len(got) != len(cols) {
			e.t.Fatalf("table %s: columns %v, %v", table, got, err)
		}
	}
}

// exists reports whether table (with prefix) can be read.
func (e *env) exists(table string) bool {
	rows, err := e.db.QueryContext(e.ctx, "SELECT 1 FROM "+table+" WHERE 1 = 0")
	if err != nil {
		return false
	}
	_ = rows.Close()
	return true
}

// checkUsable fails unless an outbox on the schema delivers a message.
func (e *env) checkUsable() {
	e.t.Helper()
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "m", 1)
	var rec recorder
	if err := ob.Handle("m", outbox.PerMessage(func(_ context.Context, d outbox.Delivery) outbox.Result {
		rec.add(d)
		return outbox.Success()
	})); err != nil {
		e.t.Fatal(err)
	}
	e.enqueue(ob, msg("m", 0, "x"))
	e.start(ob)
	await(e.t, rec.reached(1), "a delivery after the migration")
}

// checkVersionOnce fails unless version 1 is recorded as applied once.
func (e *env) checkVersionOnce() {
	e.t.Helper()
	if n := e.count("SELECT COUNT(*) FROM " + e.table("schema_version") + " WHERE version_id = 1"); n != 1 {
		e.t.Fatalf("version 1 recorded %d times, want 1", n)
	}
}

// testMigrationsConcurrentUp: several processes migrating a fresh database
// at once all succeed (Up holds a database lock), and the schema is whole.
func testMigrationsConcurrentUp(t *testing.T, b *Backend) {
	e := newBareEnv(t, b)
	const callers = 6
	pools := make([]*sql.DB, callers)
	for i := range pools {
		pools[i] = e.open() // another process each
	}
	start := make(chan struct{})
	errs := make(chan error, callers)
	for _, db := range pools {
		go func() {
			<-start
			errs <- migrations.Up(e.ctx, db, b.Dialect)
		}()
	}
	close(start)
	for range callers {
		if err := await(t, errs, "a concurrent Up"); err != nil {
			t.Errorf("concurrent Up: %v", err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	e.checkColumns()
	e.checkVersionOnce()
	e.checkUsable()
}

// testMigrationsConflictingTable: a foreign table with an outbox name makes
// Up fail with a typed error naming it, before anything is created; once
// it is gone, Up completes.
func testMigrationsConflictingTable(t *testing.T, b *Backend) {
	e := newBareEnv(t, b)
	foreign := e.table("messages")
	e.exec(e.db, "CREATE TABLE "+foreign+" (id INTEGER, body VARCHAR(100))")
	err := migrations.Up(e.ctx, e.db, b.Dialect)
	var ce *migrations.ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, migrations.ErrSchemaConflict) || ce.Table != foreign {
		t.Fatalf("Up over a foreign %s: %v, want a *migrations.ConflictError naming it", foreign, err)
	}
	for _, table := range []string{"queues", "partitions", "processors", "dead_letters", "schema_version"} {
		if e.exists(e.table(table)) {
			t.Fatalf("the failed Up created %s", e.table(table))
		}
	}
	if err := migrations.Up(e.ctx, e.db, b.Dialect); !errors.Is(err, migrations.ErrSchemaConflict) {
		t.Fatalf("second Up over the foreign table: %v, want ErrSchemaConflict", err)
	}
	e.exec(e.db, "DROP TABLE "+foreign)
	if err := migrations.Up(e.ctx, e.db, b.Dialect); err != nil {
		t.Fatalf("Up after dropping the foreign table: %v", err)
	}
	e.checkColumns()
	e.checkVersionOnce()
	e.checkUsable()
}

// testMigrationsHalfApplied: an Up that stopped half-way (MariaDB commits
// each DDL statement, so a failure leaves the first tables and no version
// row, and no later version either) is completed by the next Up.
func testMigrationsHalfApplied(t *testing.T, b *Backend) {
	e := newBareEnv(t, b)
	if err := migrations.Up(e.ctx, e.db, firstVersion{b.Dialect}); err != nil {
		t.Fatalf("Up to version 1: %v", err)
	}
	e.exec(e.db, "DROP TABLE "+e.table("dead_letters"))
	e.exec(e.db, "DROP TABLE "+e.table("processors"))
	e.exec(e.db, "DELETE FROM "+e.table("schema_version")+" WHERE version_id >= 1")
	if err := migrations.Up(e.ctx, e.db, b.Dialect); err != nil {
		t.Fatalf("Up over a half-applied schema: %v", err)
	}
	e.checkColumns()
	e.checkVersionOnce()
	e.checkUsable()
}

// testMigrationsTypedNil: a nil pointer of the dialect's type is a typed
// error, not a panic.
func testMigrationsTypedNil(t *testing.T, b *Backend) {
	e := newBareEnv(t, b)
	v := reflect.ValueOf(b.Dialect)
	if v.Kind() != reflect.Pointer {
		t.Fatalf("%T is not a pointer; add a zero-value case instead", b.Dialect)
	}
	nilD := reflect.Zero(v.Type()).Interface().(dialect.Dialect)
	if err := migrations.Up(e.ctx, e.db, nilD); !errors.Is(err, migrations.ErrInvalidDialect) {
		t.Fatalf("Up with (%T)(nil): %v, want ErrInvalidDialect", b.Dialect, err)
	}
	if e.exists(e.table("schema_version")) {
		t.Fatal("Up with a nil dialect created the version table")
	}
}
