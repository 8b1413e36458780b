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

func sequence(t *testing.T, db *sql.DB, d *sqlite.Dialect, pid int64, limit int) *dialect.SequencePartitionResult {
	t.Helper()
	return inTx(t, db, func(tx *sql.Tx) (*dialect.SequencePartitionResult, error) {
		return d.SequencePartition(context.Background(), tx, &dialect.SequencePartitionParams{PartitionID: pid, Limit: limit})
	})
}

func claim(t *testing.T, db *sql.DB, d *sqlite.Dialect, token string, lease time.Duration, queues ...string) []dialect.ClaimedPartition {
	t.Helper()
	r := must(d.ClaimLease(context.Background(), db, &dialect.ClaimLeaseParams{
		Queues: queues, Limit: 100, Token: token, Lease: lease,
	}))(t)
	return r.Partitions
}

func state(t *testing.T, db *sql.DB, d *sqlite.Dialect, queue string, partition int) *dialect.PartitionStateResult {
	t.Helper()
	return must(d.PartitionState(context.Background(), db, &dialect.PartitionStateParams{Queue: queue, Partition: partition}))(t)
}

func update(t *testing.T, db *sql.DB, d *sqlite.Dialect, p dialect.UpdateCursorParams) bool {
	t.Helper()
	return must(d.UpdateCursor(context.Background(), db, &p))(t).Updated
}

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

func TestDialect(t *testing.T) {
	ctx := context.Background()
	d := sqlite.New()
	db, _ := newDB(t, d)

	pids := declare(t, db, d, "q", 2)
	if again := declare(t, db, d, "q", 2); again[0] != pids[0] || again[1] != pids[1] {
		t.Fatalf("redeclare: %v, want %v", again, pids)
	}
	r := inTx(t, db, func(tx *sql.Tx) (*dialect.DeclareQueueResult, error) {
		return d.DeclareQueue(ctx, tx, &dialect.DeclareQueueParams{Queue: "q", Partitions: 3})
	})
	if r.Partitions != 2 || r.PartitionIDs != nil {
		t.Fatalf("declare with another count: %+v", r)
	}
	if _, err := d.LookupQueue(ctx, db, &dialect.LookupQueueParams{Queue: "nope"}); !errors.Is(err, dialect.ErrQueueNotFound) {
		t.Fatalf("LookupQueue(nope): %v", err)
	}

	// More rows than one INSERT chunk, headers on the first.
	p0, p1 := pids[0], pids[1]
	must(d.InsertMessages(ctx, db, &dialect.InsertMessagesParams{Rows: []dialect.InsertRow{
		{Queue: "q", Partition: 0, Payload: []byte("first"), PayloadType: "t", Headers: []byte(`{"k":"v"}`)},
	}}))(t)
	insert(t, db, d, p0, 599)
	insert(t, db, d, p1, 1)
	pend := must(d.PendingPartitions(ctx, db, &dialect.PendingPartitionsParams{Limit: 10}))(t)
	if fmt.Sprint(pend.PartitionIDs) != fmt.Sprint([]int64{p0, p1}) {
		t.Fatalf("pending = %v", pend.PartitionIDs)
	}

	// Sequencing in id order, in steps.
	if s := sequence(t, db, d, p0, 250); !s.Locked || s.Assigned != 250 || s.LastSeq != 250 {
		t.Fatalf("sequence 1: %+v", s)
	}
	if s := sequence(t, db, d, p0, 1000); s.Assigned != 350 || s.LastSeq != 600 {
		t.Fatalf("sequence 2: %+v", s)
	}
	if s := sequence(t, db, d, p0, 1000); s.Assigned != 0 || s.LastSeq != 600 {
		t.Fatalf("sequence 3: %+v", s)
	}
	var bad int
	if err := db.QueryRow(`SELECT count(*) FROM (SELECT seq - row_number() OVER (ORDER BY id) AS gap
		FROM outbox_messages WHERE partition_id = ?) WHERE gap <> 0`, p0).Scan(&bad); err != nil || bad != 0 {
		t.Fatalf("seq not in id order from 1: %d rows off, err %v", bad, err)
	}
	if s := sequence(t, db, d, p1, 10); s.Assigned != 1 || s.LastSeq != 1 {
		t.Fatalf("sequence p1: %+v", s)
	}
	if st := must(d.Stats(ctx, db, &dialect.StatsParams{}))(t); *st != (dialect.StatsResult{Queues: 1, Partitions: 2, Messages: 601}) {
		t.Fatalf("stats: %+v", st)
	}

	msgs := must(d.ReadMessages(ctx, db, &dialect.ReadMessagesParams{PartitionID: p0, AfterSeq: 0, Limit: 2}))(t).Messages
	if len(msgs) != 2 || msgs[0].Seq != 1 || string(msgs[0].Payload) != "first" || string(msgs[0].Headers) != `{"k":"v"}` ||
		msgs[1].Seq != 2 || msgs[1].Headers != nil {
		t.Fatalf("read: %+v", msgs)
	}
	if c := msgs[0].CreatedAt; c.Location() != time.UTC || time.Since(c).Abs() > time.Minute {
		t.Fatalf("created_at %v", c)
	}

	// Claim both partitions with token A; B gets nothing.
	got := claim(t, db, d, "A", time.Hour, "q", "other")
	if len(got) != 2 {
		t.Fatalf("claim A: %+v", got)
	}
	for _, c := range got {
		want := dialect.ClaimedPartition{PartitionID: p0, Queue: "q", Partition: 0, LastSeq: 600}
		if c.PartitionID == p1 {
			want = dialect.ClaimedPartition{PartitionID: p1, Queue: "q", Partition: 1, LastSeq: 1}
		}
		if c != want {
			t.Fatalf("claimed %+v, want %+v", c, want)
		}
	}
	if got := claim(t, db, d, "B", time.Hour, "q"); len(got) != 0 {
		t.Fatalf("claim B while A holds: %+v", got)
	}
	st := state(t, db, d, "q", 0)
	if st.LeaseToken != "A" || st.LeaseUntil.Sub(st.Now) < 59*time.Minute || st.LeaseUntil.Sub(st.Now) > time.Hour {
		t.Fatalf("state after claim: %+v", st)
	}
	if st.Now.Location() != time.UTC || time.Since(st.Now).Abs() > time.Minute {
		t.Fatalf("database now %v", st.Now)
	}

	// LockPartition: only the token's lease.
	lock := func(token string) int {
		return len(inTx(t, db, func(tx *sql.Tx) (*dialect.ClaimResult, error) {
			return d.LockPartition(ctx, tx, &dialect.LockPartitionParams{PartitionID: p0, Token: token})
		}).Partitions)
	}
	if lock("B") != 0 || lock("A") != 1 {
		t.Fatal("LockPartition does not follow the lease token")
	}

	// Fencing: a wrong token changes nothing; the right one moves the cursor
	// and keeps the lease when renewing.
	if update(t, db, d, dialect.UpdateCursorParams{PartitionID: p0, Token: "B", ProcessedSeq: 600}) {
		t.Fatal("update with a wrong token succeeded")
	}
	if !update(t, db, d, dialect.UpdateCursorParams{PartitionID: p0, Token: "A", ProcessedSeq: 1, Renew: time.Hour}) {
		t.Fatal("update with the lease's token failed")
	}
	if st := state(t, db, d, "q", 0); st.ProcessedSeq != 1 || st.LeaseToken != "A" || st.LeaseUntil.IsZero() {
		t.Fatalf("after renewing update: %+v", st)
	}

	// Dead-letter seq 2 and 3, then move past them and release.
	dl := must(d.InsertDeadLetters(ctx, db, &dialect.InsertDeadLettersParams{
		PartitionID: p0, Seqs: []int64{2, 3}, Reason: "boom", Attempts: 4,
	}))(t)
	if dl.Inserted != 2 {
		t.Fatalf("dead letters inserted: %d", dl.Inserted)
	}
	list := must(d.ListDeadLetters(ctx, db, &dialect.ListDeadLettersParams{Queue: "q", Status: "pending", Limit: 10}))(t).DeadLetters
	if len(list) != 2 || list[0].Seq != 3 || list[1].Seq != 2 || list[0].LastError != "boom" || list[0].Attempts != 4 ||
		list[0].Status != "pending" || list[0].Partition != 0 || list[0].FailedAt.IsZero() || list[0].CreatedAt.IsZero() {
		t.Fatalf("dead letters (newest first): %+v", list)
	}
	if n := len(must(d.ListDeadLetters(ctx, db, &dialect.ListDeadLettersParams{Status: "resolved", Limit: 10}))(t).DeadLetters); n != 0 {
		t.Fatalf("resolved dead letters: %d", n)
	}
	if !update(t, db, d, dialect.UpdateCursorParams{PartitionID: p0, Token: "A", ProcessedSeq: 3}) {
		t.Fatal("releasing update failed")
	}
	if st := state(t, db, d, "q", 0); st.ProcessedSeq != 3 || st.LeaseToken != "" || !st.LeaseUntil.IsZero() {
		t.Fatalf("after releasing update: %+v", st)
	}
	rel := must(d.ReleaseLeases(ctx, db, &dialect.ReleaseLeasesParams{PartitionIDs: []int64{p0, p1}, Token: "A"}))(t)
	if rel.Released != 1 { // p0's lease is already gone
		t.Fatalf("released %d", rel.Released)
	}

	// Vacuum deletes only rows at or behind the cursor, in bounded batches.
	if v := must(d.Vacuum(ctx, db, &dialect.VacuumParams{Limit: 2}))(t); v.Deleted != 2 {
		t.Fatalf("vacuum 1: %d", v.Deleted)
	}
	if v := must(d.Vacuum(ctx, db, &dialect.VacuumParams{Limit: 100}))(t); v.Deleted != 1 {
		t.Fatalf("vacuum 2: %d", v.Deleted)
	}
	var minSeq, p1Rows int
	if err := db.QueryRow(`SELECT min(seq), (SELECT count(*) FROM outbox_messages WHERE partition_id = ?2)
		FROM outbox_messages WHERE partition_id = ?1`, p0, p1).Scan(&minSeq, &p1Rows); err != nil {
		t.Fatal(err)
	}
	if minSeq != 4 || p1Rows != 1 {
		t.Fatalf("after vacuum: min seq of p0 %d (want 4), rows of p1 %d (want 1)", minSeq, p1Rows)
	}

	// Savepoints roll back only what follows them.
	inTx(t, db, func(tx *sql.Tx) (any, error) {
		insert := func() error {
			_, err := d.InsertMessages(ctx, tx, &dialect.InsertMessagesParams{Rows: []dialect.InsertRow{{Queue: "q", Partition: 1, Payload: []byte{}, PayloadType: "t"}}})
			return err
		}
		for _, step := range []func() error{
			insert,
			func() error { return dialect.Savepoint(ctx, tx, "sp_1", dialect.SavepointCreate) },
			insert,
			func() error {
				return dialect.Savepoint(ctx, tx, "sp_1", dialect.SavepointRollback)
			},
			func() error {
				return dialect.Savepoint(ctx, tx, "sp_1", dialect.SavepointRelease)
			},
		} {
			if err := step(); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
	if st := must(d.Stats(ctx, db, &dialect.StatsParams{}))(t); st.Unsequenced != 1 {
		t.Fatalf("after savepoint rollback: %d unsequenced, want 1", st.Unsequenced)
	}
}

// waitDBTime waits, by the database's clock, until t has passed.
func waitDBTime(t *testing.T, db *sql.DB, d *sqlite.Dialect, queue string, until time.Time) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if st := state(t, db, d, queue, 0); st.Now.After(until) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("database clock did not pass %v", until)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLeaseExpiry(t *testing.T) {
	d := sqlite.New()
	db, _ := newDB(t, d)
	pid := declare(t, db, d, "q", 1)[0]
	insert(t, db, d, pid, 2)
	sequence(t, db, d, pid, 10)

	if got := claim(t, db, d, "A", 50*time.Millisecond, "q"); len(got) != 1 || got[0].Attempts != 0 {
		t.Fatalf("claim A: %+v", got)
	}
	st := state(t, db, d, "q", 0)
	waitDBTime(t, db, d, "q", st.LeaseUntil)

	// The lease is over: A's update is fenced off and B takes over; the
	// unreleased lease counts as a failed attempt.
	if update(t, db, d, dialect.UpdateCursorParams{PartitionID: pid, Token: "A", ProcessedSeq: 2}) {
		t.Fatal("update with an expired lease succeeded")
	}
	got := claim(t, db, d, "B", time.Hour, "q")
	if len(got) != 1 || got[0].Attempts != 1 || got[0].ProcessedSeq != 0 || got[0].LastSeq != 2 {
		t.Fatalf("claim B after expiry: %+v", got)
	}

	// Backoff: a released partition is not claimable before next_attempt_at.
	if !update(t, db, d, dialect.UpdateCursorParams{PartitionID: pid, Token: "B", ProcessedSeq: 1, Attempts: 0, RetryAfter: 50 * time.Millisecond}) {
		t.Fatal("update B failed")
	}
	st = state(t, db, d, "q", 0)
	if st.NextAttemptAt.Sub(st.Now) <= 0 || st.LeaseToken != "" {
		t.Fatalf("after retry update: %+v", st)
	}
	if got := claim(t, db, d, "C", time.Hour, "q"); len(got) != 0 {
		t.Fatalf("claimed during backoff: %+v", got)
	}
	waitDBTime(t, db, d, "q", st.NextAttemptAt)
	if got := claim(t, db, d, "C", time.Hour, "q"); len(got) != 1 || got[0].Attempts != 0 || got[0].ProcessedSeq != 1 {
		t.Fatalf("claim after backoff: %+v", got)
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
					if _, err := d.SequencePartition(ctx, tx, &dialect.SequencePartitionParams{PartitionID: pid, Limit: 3}); err != nil {
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
		t.Fatalf("sequencer: %v (retryable %v)", err, d.IsRetryable(err))
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
				r, err := d.ClaimLease(ctx, pools[w], &dialect.ClaimLeaseParams{Queues: []string{"q"}, Limit: 2, Token: token, Lease: time.Hour})
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
	if !d.IsRetryable(err) || !d.IsRetryable(fmt.Errorf("wrapped: %w", err)) {
		t.Fatalf("IsRetryable(%v) = false", err)
	}
	if d.IsRetryable(errors.New("no such table")) || d.IsRetryable(nil) {
		t.Fatal("IsRetryable true for a non-SQLite error")
	}
	_, err = other.ExecContext(ctx, "SELECT * FROM nope")
	if err == nil || d.IsRetryable(err) {
		t.Fatalf("IsRetryable(%v) = true", err)
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
