package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite" // driver "sqlite"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/internal/testdb"
	"github.com/modkit-go/db/migrations"
)

// open opens a pool on the file at path with dsn's options and maxConns
// connections; the pool closes at the test's end.
func open(t *testing.T, dsn string, maxConns int) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(maxConns)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// newDB creates a migrated database file and returns a one-connection pool
// on it (the library's recommended setting) and its path.
func newDB(t *testing.T, d *sqlite.Dialect) (*sql.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outbox.db")
	db := open(t, testdb.SQLiteDSN(path), 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := migrations.Up(ctx, db, d); err != nil {
		t.Fatal(err)
	}
	return db, path
}

func inTx[T any](t *testing.T, db *sql.DB, fn func(tx *sql.Tx) (T, error)) T {
	t.Helper()
	tx, err := db.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := fn(tx)
	if err != nil {
		_ = tx.Rollback()
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return v
}

// must returns a function that fails t on err, or returns v:
// must(f())(t).
func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func declare(t *testing.T, db *sql.DB, d *sqlite.Dialect, queue string, n int) []int64 {
	t.Helper()
	r := inTx(t, db, func(tx *sql.Tx) (*dialect.DeclareQueueResult, error) {
		return d.DeclareQueue(context.Background(), tx, &dialect.DeclareQueueParams{Queue: queue, Partitions: n})
	})
	if r.Partitions != n || len(r.PartitionIDs) != n {
		t.Fatalf("DeclareQueue(%s, %d) = %+v", queue, n, r)
	}
	return r.PartitionIDs
}

func insert(t *testing.T, db *sql.DB, d *sqlite.Dialect, pid int64, n int) {
	t.Helper()
	var queue string
	var num int
	if err := db.QueryRow("SELECT queue, partition_num FROM "+d.Prefix()+"partitions WHERE id = ?", pid).Scan(&queue, &num); err != nil {
		t.Fatal(err)
	}
	rows := make([]dialect.InsertRow, n)
	for i := range rows {
		rows[i] = dialect.InsertRow{Queue: queue, Partition: num, Payload: []byte(fmt.Sprint(i)), PayloadType: "t"}
	}
	must(d.InsertMessages(context.Background(), db, &dialect.InsertMessagesParams{Rows: rows}))(t)
}

// The behaviour of every method is checked by conformance.RunDialect (see
// conformance_test.go); what stays here is SQLite's own.

func TestMigrationsOneConnection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, d := range []*sqlite.Dialect{sqlite.New(), sqlite.New(sqlite.WithPrefix("ob2_"))} {
		path := filepath.Join(t.TempDir(), "m.db")
		db := open(t, testdb.SQLiteDSN(path), 1)
		for i := range 2 { // the second run is a no-op
			if err := migrations.Up(ctx, db, d); err != nil {
				t.Fatalf("%s: Up #%d: %v", d.Prefix(), i+1, err)
			}
		}
		var n int
		err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN
			(?1 || 'queues', ?1 || 'partitions', ?1 || 'messages', ?1 || 'processors', ?1 || 'dead_letters', ?1 || 'schema_version')`,
			d.Prefix()).Scan(&n)
		if err != nil || n != 6 {
			t.Fatalf("%s: %d of 6 tables, err %v", d.Prefix(), n, err)
		}
		if err := d.CheckDatabase(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
}

// TestConcurrentWriters runs claimers and sequencers on several pools of
// one file opened with deferred transactions (no _txlock=immediate): the
// write-first statements must still hand each partition to one claimer and
// assign gap-free seqs.
func TestConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	d := sqlite.New()
	db, path := newDB(t, d)
	const parts, perPart, workers = 8, 12, 4
	pids := declare(t, db, d, "q", parts)
	for _, pid := range pids {
		insert(t, db, d, pid, perPart)
	}
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"
	pools := make([]*sql.DB, workers)
	for i := range pools {
		pools[i] = open(t, dsn, 2)
	}

	// Sequencers race over every partition in small steps.
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; round < perPart; round++ {
				for _, pid := range pids {
					tx, err := pools[w].BeginTx(ctx, nil)
					if err != nil {
						errs <- err
						return
					}
					if _, err := d.SequencePartitions(ctx, tx, &dialect.SequencePartitionsParams{PartitionIDs: []int64{pid}, Limit: 3}); err != nil {
						_ = tx.Rollback()
						errs <- err
						return
					}
					if err := tx.Commit(); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("sequencer: %v (retryable %v)", err, d.ClassifyError(err) == dialect.ErrorRetryable)
	}
	var rows, bad int
	if err := db.QueryRow(`SELECT count(*), coalesce(sum(m.seq IS NULL OR m.seq <> m.rn OR p.last_seq <> ?1), 0) FROM (
			SELECT partition_id, seq, row_number() OVER (PARTITION BY partition_id ORDER BY id) AS rn FROM outbox_messages
		) m JOIN outbox_partitions p ON p.id = m.partition_id`, perPart).Scan(&rows, &bad); err != nil {
		t.Fatal(err)
	}
	if rows != parts*perPart || bad != 0 {
		t.Fatalf("%d rows, %d with a wrong seq", rows, bad)
	}

	// Claimers race for the partitions: each goes to exactly one token.
	var mu sync.Mutex
	owner := map[int64]string{}
	errs = make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				token := fmt.Sprintf("w%d-%d", w, i)
				r, err := d.ClaimLeases(ctx, dialect.Pool{DB: pools[w], Q: pools[w]}, &dialect.ClaimLeaseParams{Queues: []string{"q"}, Limit: 2, Token: token, Lease: time.Hour})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, c := range r.Partitions {
					if prev, ok := owner[c.PartitionID]; ok {
						errs <- fmt.Errorf("partition %d claimed by %s and %s", c.PartitionID, prev, token)
					}
					owner[c.PartitionID] = token
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(owner) != parts {
		t.Fatalf("%d of %d partitions claimed", len(owner), parts)
	}
}

func TestIsRetryable(t *testing.T) {
	ctx := context.Background()
	d := sqlite.New()
	_, path := newDB(t, d)
	holder := open(t, testdb.SQLiteDSN(path), 1)
	tx, err := holder.BeginTx(ctx, nil) // BEGIN IMMEDIATE: holds the write lock
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()

	other := open(t, "file:"+path+"?_pragma=busy_timeout(0)&_txlock=immediate", 1)
	_, err = other.ExecContext(ctx, "INSERT INTO outbox_queues (name, partitions) VALUES ('x', 1)")
	if err == nil {
		t.Fatal("second writer did not fail")
	}
	if d.ClassifyError(err) != dialect.ErrorRetryable || d.ClassifyError(fmt.Errorf("wrapped: %w", err)) != dialect.ErrorRetryable {
		t.Fatalf("ClassifyError(%v) retryable = false", err)
	}
	if d.ClassifyError(errors.New("no such table")) == dialect.ErrorRetryable || d.ClassifyError(nil) == dialect.ErrorRetryable {
		t.Fatal("retryable for a non-SQLite error")
	}
	_, err = other.ExecContext(ctx, "SELECT * FROM nope")
	if err == nil || d.ClassifyError(err) == dialect.ErrorRetryable {
		t.Fatalf("ClassifyError(%v) retryable = true", err)
	}
}

func TestPrefixValidation(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("New accepted an invalid prefix")
		}
	}()
	sqlite.New(sqlite.WithPrefix("Bad-Prefix"))
}

// TestInsertWithoutTrigger: in a database whose schema predates the
// floor trigger (version 3), a single-row insert leaves its row to
// the sequencer rather than taking a seq the counter would not record.
func TestInsertWithoutFloorTrigger(t *testing.T) {
	d := sqlite.New()
	db, _ := newDB(t, d)
	ctx := t.Context()
	if _, err := db.ExecContext(ctx, "DROP TRIGGER outbox_messages_seq_floor"); err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.DeclareQueue(ctx, tx, &dialect.DeclareQueueParams{Queue: "q", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		r, err := d.InsertMessages(ctx, db, &dialect.InsertMessagesParams{Rows: []dialect.InsertRow{{Queue: "q", Payload: []byte("x"), PayloadType: "t"}}})
		if err != nil || r.Inserted != 1 || r.Sequenced != 0 {
			t.Fatalf("insert %d without the trigger: %+v, %v; want inserted, not sequenced", i, r, err)
		}
	}
	st, err := d.Stats(ctx, db, &dialect.StatsParams{})
	if err != nil || st.Unsequenced != 2 {
		t.Fatalf("stats: %+v, %v; want 2 unsequenced", st, err)
	}
}

// TestCounterSurvivesVacuum: a single-row insert takes its seq from the
// partition's highest seq without writing the partitions row, so once the
// delivered rows are deleted only the floor trigger keeps the next seq
// above theirs; without it the next message would take seq 1 again, below
// the cursor, and never be delivered.
func TestCounterSurvivesVacuum(t *testing.T) {
	d := sqlite.New()
	db, _ := newDB(t, d)
	ctx := t.Context()
	pid := declare(t, db, d, "q", 1)[0]
	one := []dialect.InsertRow{{Queue: "q", Payload: []byte("x"), PayloadType: "t"}}
	for i := range 3 {
		if r := must(d.InsertMessages(ctx, db, &dialect.InsertMessagesParams{Rows: one}))(t); r.Sequenced != 1 {
			t.Fatalf("insert %d: %+v, want it sequenced", i, *r)
		}
	}
	// Two steps: rows below the highest first (the highest still counts),
	// then the highest.
	for _, step := range []struct{ cursor, deleted int64 }{{2, 2}, {3, 1}} {
		if r := must(d.UpdateCursors(ctx, db, &dialect.UpdateCursorsParams{Updates: []*dialect.CursorUpdate{{PartitionID: pid, ProcessedSeq: step.cursor}}}))(t); !r.Updated[0] {
			t.Fatal("cursor not moved")
		}
		if r := must(d.Vacuum(ctx, db, &dialect.VacuumParams{Limit: 100}))(t); int64(r.Deleted) != step.deleted {
			t.Fatalf("vacuum to %d deleted %d rows, want %d", step.cursor, r.Deleted, step.deleted)
		}
		if st := must(d.QueueStatus(ctx, db, &dialect.QueueStatusParams{Queue: "q"}))(t).Partitions[0]; st.LastSeq != 3 {
			t.Fatalf("counter after vacuuming to %d: %d, want 3", step.cursor, st.LastSeq)
		}
	}
	if r := must(d.InsertMessages(ctx, db, &dialect.InsertMessagesParams{Rows: one}))(t); r.Sequenced != 1 {
		t.Fatalf("insert after vacuum: %+v, want it sequenced", *r)
	}
	var seq int64
	if err := db.QueryRowContext(ctx, "SELECT seq FROM outbox_messages WHERE partition_id = ?", pid).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	st := must(d.QueueStatus(ctx, db, &dialect.QueueStatusParams{Queue: "q"}))(t).Partitions[0]
	if seq != 4 || st.LastSeq != 4 {
		t.Fatalf("after 3 delivered and vacuumed: next seq %d, counter %d; want 4 and 4", seq, st.LastSeq)
	}
	claim := must(d.ClaimLeases(ctx, dialect.Pool{DB: db, Q: db}, &dialect.ClaimLeaseParams{Queues: []string{"q"}, Token: "w", Lease: time.Minute, Limit: 1}))(t)
	if len(claim.Partitions) != 1 || claim.Partitions[0].LastSeq != 4 || claim.Partitions[0].ProcessedSeq != 3 {
		t.Fatalf("claim after the insert: %+v, want the partition with last_seq 4 over cursor 3", claim.Partitions)
	}
}

// TestVacuumManyPartitions: Vacuum deletes the delivered rows of more
// partitions than one of its statements names (vacuumRanges), up to its
// limit, lowest seqs first, and leaves undelivered rows.
func TestVacuumManyPartitions(t *testing.T) {
	d := sqlite.New()
	db, _ := newDB(t, d)
	ctx := t.Context()
	const parts = 131
	ids := declare(t, db, d, "q", parts)
	for _, pid := range ids {
		insert(t, db, d, pid, 3)
	}
	tx := must(db.BeginTx(ctx, nil))(t)
	for _, pid := range ids {
		if _, err := d.SequencePartitions(ctx, tx, &dialect.SequencePartitionsParams{PartitionIDs: []int64{pid}, Limit: 10}); err != nil {
			t.Fatal(err)
		}
		if r := must(d.UpdateCursors(ctx, tx, &dialect.UpdateCursorsParams{Updates: []*dialect.CursorUpdate{{PartitionID: pid, ProcessedSeq: 2}}}))(t); !r.Updated[0] {
			t.Fatal("cursor not moved")
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	count := func() (n int) {
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM outbox_messages").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if r := must(d.Vacuum(ctx, db, &dialect.VacuumParams{Limit: 5}))(t); r.Deleted != 5 || count() != 3*parts-5 {
		t.Fatalf("Vacuum(5): deleted %d, %d rows left; want 5 and %d", r.Deleted, count(), 3*parts-5)
	}
	if r := must(d.Vacuum(ctx, db, &dialect.VacuumParams{Limit: 10000}))(t); r.Deleted != 2*parts-5 || count() != parts {
		t.Fatalf("Vacuum(10000): deleted %d, %d rows left; want %d and %d", r.Deleted, count(), 2*parts-5, parts)
	}
	var wrong int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM outbox_messages WHERE seq <> 3").Scan(&wrong); err != nil || wrong != 0 {
		t.Fatalf("%d rows left other than each partition's undelivered seq 3 (%v)", wrong, err)
	}
}

// A NOT NULL failure that is not the missing partition (here the
// application's trigger) is returned as it is, not as ErrQueueNotFound.
func TestInsertNotNullFromTrigger(t *testing.T) {
	d := sqlite.New()
	db, _ := newDB(t, d)
	declare(t, db, d, "q", 2)
	if _, err := db.Exec(`CREATE TABLE audit (x INTEGER NOT NULL);
		CREATE TRIGGER audit_messages AFTER INSERT ON outbox_messages BEGIN INSERT INTO audit (x) VALUES (NULL); END`); err != nil {
		t.Fatal(err)
	}
	row := []dialect.InsertRow{{Queue: "q", Partition: 1, Payload: []byte("a"), PayloadType: "t"}}
	_, err := d.InsertMessages(context.Background(), db, &dialect.InsertMessagesParams{Rows: row})
	if err == nil || errors.Is(err, dialect.ErrQueueNotFound) {
		t.Fatalf("InsertMessages under a failing trigger: %v, want the trigger's NOT NULL error", err)
	}
	row[0].Partition = 2
	if _, err := d.InsertMessages(context.Background(), db, &dialect.InsertMessagesParams{Rows: row}); !errors.Is(err, dialect.ErrQueueNotFound) {
		t.Fatalf("InsertMessages into a missing partition: %v, want ErrQueueNotFound", err)
	}
}
