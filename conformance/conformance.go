// Package conformance is the shared test suite every dialect must pass. A
// dialect is proven by calling Run from an ordinary test:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, conformance.Backend{
//			Name:        "postgres",
//			Dialect:     postgres.New(),
//			NewDatabase: testdb.Postgres,
//		})
//	}
//
// and, method by method, by calling RunDialect (see
// docs/writing-a-dialect.md in the repository):
//
//	func TestDialectContract(t *testing.T) {
//		conformance.RunDialect(t, conformance.Backend{…})
//	}
//
// Each test gets its own empty database from NewDatabase, applies the
// dialect's migrations, and checks behaviour against the real server: atomic
// enqueue, gap-free sequencing under out-of-order commits and concurrency,
// per-partition order, leases and fencing, retries, dead letters, the
// transactional mode's savepoints, vacuum and shutdown. Guarantees are never
// gated by flags; Backend's flags only describe mechanisms that differ.
package conformance

import (
	"context"
	"database/sql"
	"fmt"
	"runtime/pprof"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
)

// Backend describes the database under test.
type Backend struct {
	// Name labels the subtests, e.g. "postgres".
	Name string
	// Dialect is the implementation under test.
	Dialect dialect.Dialect
	// NewDatabase creates an empty database for one test and returns a
	// function that opens a new connection pool to it; each call stands for
	// another process. It cleans up through t.Cleanup.
	NewDatabase func(t testing.TB) func() *sql.DB
	// WithPrefix, when set, builds the dialect with another table prefix,
	// so the suite can check that nothing hard-codes "outbox_".
	WithPrefix func(prefix string) dialect.Dialect
	// TerminateSessions, when set, ends every session connected to the
	// test's database except db's own (db is a pool to that database with
	// one connection), as pg_terminate_backend or KILL would, and returns
	// how many it ended. The connection-loss cases run only when it is set.
	// It must not end sessions of other tests' databases.
	TerminateSessions func(ctx context.Context, db *sql.DB) (int, error)
	// StopServer and StartServer, when both set, stop the database server
	// and start it again (waiting until it accepts connections). Only the
	// opt-in restart case uses them; it disturbs every user of the server.
	StopServer, StartServer func(ctx context.Context) error
	// TerminateListeners, for a dialect.Waker, ends the database sessions
	// that listen for d's wake-ups (d is built by WithPrefix with a prefix
	// no other case uses) and returns how many it ended. When set, the
	// suite checks that the listener recovers.
	TerminateListeners func(ctx context.Context, db *sql.DB, d dialect.Dialect) (int, error)
	// BindType is the placeholder style (sqlx.DOLLAR, sqlx.QUESTION, …)
	// of the suite's own application-table statements. Zero derives it from
	// Name, falling back to "?".
	BindType int
}

// test is one conformance case.
type test struct {
	name string
	fn   func(t *testing.T, b *Backend)
}

// Run runs every conformance case against b as parallel subtests.
func Run(t *testing.T, b Backend) {
	t.Helper()
	b.init(t)
	groups := [][]test{
		migrationTests, enqueueTests, sequencerTests,
		deliveryTests, faultTests, txTests, lifecycleTests, wakeTests(&b), batchingTests,
		queueTests, opsTests, identityTests,
	}
	if b.TerminateSessions != nil {
		groups = append(groups, connLossTests)
	}
	if b.StopServer != nil && b.StartServer != nil {
		groups = append(groups, restartTests)
	}
	for _, group := range groups {
		for _, tc := range group {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				tc.fn(t, &b)
			})
		}
	}
}

// init checks b and fills in its defaults.
func (b *Backend) init(t testing.TB) {
	t.Helper()
	if b.Dialect == nil || b.NewDatabase == nil {
		t.Fatal("conformance: Backend needs Dialect and NewDatabase")
	}
	if b.BindType == 0 {
		b.BindType = sqlx.BindType(b.Name)
		if b.BindType == sqlx.UNKNOWN {
			b.BindType = sqlx.QUESTION
		}
	}
}

// env is one test's database.
type env struct {
	t    *testing.T
	b    *Backend
	open func() *sql.DB
	db   *sql.DB
	ctx  context.Context
	// labels holds the goroutine label value each started outbox runs
	// under (see start and checkNoGoroutines).
	labels sync.Map // *outbox.Outbox -> string
}

// newEnv creates a database with the schema applied.
func newEnv(t *testing.T, b *Backend) *env {
	t.Helper()
	e := newBareEnv(t, b)
	if err := migrations.Up(e.ctx, e.db, b.Dialect); err != nil {
		t.Fatalf("migrations: %v", err)
	}
	return e
}

// newBareEnv creates an empty database, without the schema.
func newBareEnv(t *testing.T, b *Backend) *env {
	t.Helper()
	open := b.NewDatabase(t)
	return &env{t: t, b: b, open: open, db: open(), ctx: t.Context()}
}

// pool returns a pool standing for another process: a new one, or the
// shared one on a single-writer backend.
func (e *env) pool() *sql.DB {
	if e.b.singleWriter() {
		return e.db
	}
	return e.open()
}

// fast is a config whose timings suit tests; fields set in over win.
func fast(over outbox.Config) outbox.Config {
	c := over
	if c.PollInterval == 0 {
		c.PollInterval = 20 * time.Millisecond
	}
	if c.RetryBase == 0 {
		c.RetryBase = 10 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 50 * time.Millisecond
	}
	if c.VacuumInterval == 0 {
		c.VacuumInterval = 50 * time.Millisecond
	}
	return c
}

// outbox returns a new Outbox on db (e.db when nil), stopped at cleanup.
func (e *env) outbox(db *sql.DB, cfg outbox.Config) *outbox.Outbox {
	e.t.Helper()
	if db == nil {
		db = e.db
	}
	ob, err := outbox.New(db, e.b.Dialect, cfg)
	if err != nil {
		e.t.Fatalf("outbox.New: %v", err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = ob.Stop(ctx)
	})
	return ob
}

func (e *env) declare(ob *outbox.Outbox, queue string, partitions int) {
	e.t.Helper()
	if err := ob.DeclareQueue(e.ctx, queue, partitions); err != nil {
		e.t.Fatalf("DeclareQueue(%q, %d): %v", queue, partitions, err)
	}
}

// exec runs an application statement written with "?" placeholders.
func (e *env) exec(q dialect.DBTX, query string, args ...any) {
	e.t.Helper()
	if _, err := q.ExecContext(e.ctx, sqlx.Rebind(e.b.BindType, query), args...); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
}

// count runs a COUNT query written with "?" placeholders.
func (e *env) count(query string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.QueryRowContext(e.ctx, sqlx.Rebind(e.b.BindType, query), args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// table is a table name with the dialect's prefix.
func (e *env) table(name string) string { return e.b.Dialect.Prefix() + name }

// begin starts an application transaction.
func (e *env) begin(db *sql.DB) *sql.Tx {
	e.t.Helper()
	if db == nil {
		db = e.db
	}
	tx, err := db.BeginTx(e.ctx, nil)
	if err != nil {
		e.t.Fatalf("begin: %v", err)
	}
	return tx
}

func (e *env) commit(tx *sql.Tx) {
	e.t.Helper()
	if err := tx.Commit(); err != nil {
		e.t.Fatalf("commit: %v", err)
	}
}

// enqueue enqueues msgs in one committed transaction.
func (e *env) enqueue(ob *outbox.Outbox, msgs ...outbox.Message) {
	e.t.Helper()
	err := ob.InTx(e.ctx, func(tx *sql.Tx) error { return ob.EnqueueBatch(e.ctx, tx, msgs) })
	if err != nil {
		e.t.Fatalf("enqueue: %v", err)
	}
}

func (e *env) sequenceAll(ob *outbox.Outbox) int {
	e.t.Helper()
	n, err := ob.SequenceAll(e.ctx)
	if err != nil {
		e.t.Fatalf("SequenceAll: %v", err)
	}
	return n
}

func (e *env) stats(ob *outbox.Outbox) outbox.Stats {
	e.t.Helper()
	s, err := ob.Stats(e.ctx)
	if err != nil {
		e.t.Fatalf("Stats: %v", err)
	}
	return s
}

func (e *env) state(ob *outbox.Outbox, queue string, partition int) outbox.PartitionStatus {
	e.t.Helper()
	s, err := ob.PartitionStatus(e.ctx, queue, partition)
	if err != nil {
		e.t.Fatalf("PartitionStatus: %v", err)
	}
	return s
}

// start starts ob under a pprof label value of its own, which every
// goroutine ob starts inherits (and those they start), so that
// checkNoGoroutines can find them among those of parallel tests.
func (e *env) start(ob *outbox.Outbox) {
	e.t.Helper()
	id := strconv.FormatInt(outboxLabels.Add(1), 10)
	e.labels.Store(ob, id)
	var err error
	pprof.Do(e.ctx, pprof.Labels(goroutineLabel, id), func(ctx context.Context) { err = ob.Start(ctx) })
	if err != nil {
		e.t.Fatalf("Start: %v", err)
	}
}

func (e *env) stop(ob *outbox.Outbox) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	if err := ob.Stop(ctx); err != nil {
		e.t.Fatalf("Stop: %v", err)
	}
	if _, ok := e.labels.Load(ob); ok {
		e.checkNoGoroutines(ob)
	}
}

// msg builds a message whose payload names it.
func msg(queue string, partition int, payload string) outbox.Message {
	return outbox.Message{Queue: queue, Partition: partition, Payload: []byte(payload), PayloadType: "text/plain"}
}

// timeout bounds every wait on a signal; waits end as soon as the signal
// comes, so this only decides how long a broken implementation takes to fail.
const timeout = 60 * time.Second

// await waits for ch to be closed or to yield a value.
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// pollUntil polls cond until it holds. It is for background effects that
// have no signal (a cursor moving in the database), bounded by timeout; it
// gives up early once the test failed (a handler reported an error).
func (e *env) pollUntil(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if e.t.Failed() {
			e.t.FailNow()
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		select {
		case <-e.ctx.Done():
			e.t.Fatalf("waiting for %s: %v", what, e.ctx.Err())
		case <-tick.C:
		}
	}
}

// awaitProcessed waits until the partition's cursor reaches seq.
func (e *env) awaitProcessed(ob *outbox.Outbox, queue string, partition int, seq int64) outbox.PartitionStatus {
	e.t.Helper()
	var st outbox.PartitionStatus
	e.pollUntil(fmt.Sprintf("%s/%d processed through seq %d", queue, partition, seq), func() bool {
		// A failed read is a failed poll, not a failed test: after a
		// session-kill storm the pool may still hold a connection whose
		// session is gone (pgx reports it once, as 57P01).
		s, err := ob.PartitionStatus(e.ctx, queue, partition)
		if err != nil {
			e.t.Logf("PartitionStatus(%s/%d) while polling: %v", queue, partition, err)
			return false
		}
		st = s
		return st.ProcessedSeq >= seq
	})
	return st
}

// singleWriter reports a dialect whose database has one writer at a time
// (Capabilities.SingleWriter): cases that simulate several processes run
// several outboxes on one pool instead.
func (b *Backend) singleWriter() bool { return b.Dialect.Capabilities().SingleWriter }
