package mysql_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/mysql"
	"github.com/modkit-go/db/migrations"
)

const dsnEnv = "OUTBOX_TEST_MYSQL_DSN"

// newDB creates a fresh database on the server named by OUTBOX_TEST_MYSQL_DSN
// (for example root@tcp(127.0.0.1:3306)/test?interpolateParams=true), applies
// the migrations of d and returns a handle to it. parseTime overrides the
// DSN's setting.
func newDB(t *testing.T, d *mysql.Dialect, parseTime bool) (*sql.DB, *driver.Config) {
	t.Helper()
	dsn := os.Getenv(dsnEnv)
	if dsn == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set", dsnEnv)
		}
		t.Skipf("set %s to run the MySQL/MariaDB dialect tests", dsnEnv)
	}
	cfg, err := driver.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "outbox_dialect_" + hex.EncodeToString(b)
	ctx := context.Background()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.ExecContext(context.Background(), "DROP DATABASE "+name) })
	cfg = cfg.Clone()
	cfg.DBName = name
	cfg.ParseTime = parseTime
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := migrations.Up(ctx, db, d); err != nil {
		t.Fatal(err)
	}
	return db, cfg
}

func inTx[T any](t *testing.T, db *sql.DB, d dialect.Dialect, fn func(tx *sql.Tx) (T, error)) T {
	t.Helper()
	tx, err := db.BeginTx(context.Background(), d.TxOptions())
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

func declare(t *testing.T, db *sql.DB, d dialect.Dialect, queue string, n int) *dialect.DeclareQueueResult {
	t.Helper()
	return inTx(t, db, d, func(tx *sql.Tx) (*dialect.DeclareQueueResult, error) {
		return d.DeclareQueue(context.Background(), tx, &dialect.DeclareQueueParams{Queue: queue, Partitions: n})
	})
}

func insert(t *testing.T, q dialect.DBTX, d dialect.Dialect, rows ...dialect.InsertRow) {
	t.Helper()
	if _, err := d.InsertMessages(context.Background(), q, &dialect.InsertMessagesParams{Rows: rows}); err != nil {
		t.Fatal(err)
	}
}

func sequence(t *testing.T, db *sql.DB, d dialect.Dialect, pid int64) *dialect.SequencePartitionResult {
	t.Helper()
	return inTx(t, db, d, func(tx *sql.Tx) (*dialect.SequencePartitionResult, error) {
		return d.SequencePartition(context.Background(), tx, &dialect.SequencePartitionParams{PartitionID: pid, Limit: 1000})
	})
}

func TestMigrationsIdempotent(t *testing.T) {
	for _, d := range []*mysql.Dialect{mysql.New(), mysql.New(mysql.WithPrefix("ob2_"))} {
		db, _ := newDB(t, d, true)
		if err := migrations.Up(context.Background(), db, d); err != nil {
			t.Fatalf("second Up (prefix %q): %v", d.Prefix(), err)
		}
		if _, err := d.Stats(context.Background(), db, &dialect.StatsParams{}); err != nil {
			t.Fatalf("prefix %q: %v", d.Prefix(), err)
		}
	}
}

// TestLifecycle runs one partition through every dialect method, with and
// without parseTime in the DSN.
func TestLifecycle(t *testing.T) {
	for _, parseTime := range []bool{true, false} {
		t.Run(map[bool]string{true: "parseTime", false: "noParseTime"}[parseTime], func(t *testing.T) {
			testLifecycle(t, parseTime)
		})
	}
}

func testLifecycle(t *testing.T, parseTime bool) {
	ctx := context.Background()
	d := mysql.New()
	db, _ := newDB(t, d, parseTime)

	dq := declare(t, db, d, "orders.v1", 4)
	if dq.Partitions != 4 || len(dq.PartitionIDs) != 4 {
		t.Fatalf("declare: %+v", dq)
	}
	if again := declare(t, db, d, "orders.v1", 4); len(again.PartitionIDs) != 4 || again.PartitionIDs[3] != dq.PartitionIDs[3] {
		t.Fatalf("redeclare: %+v", again)
	}
	if mm := declare(t, db, d, "orders.v1", 8); mm.Partitions != 4 || mm.PartitionIDs != nil {
		t.Fatalf("mismatch: %+v", mm)
	}
	if _, err := d.LookupQueue(ctx, db, &dialect.LookupQueueParams{Queue: "nope"}); !errors.Is(err, dialect.ErrQueueNotFound) {
		t.Fatalf("lookup unknown: %v", err)
	}
	// Case-sensitive names, like PostgreSQL's text.
	if _, err := d.LookupQueue(ctx, db, &dialect.LookupQueueParams{Queue: "ORDERS.v1"}); !errors.Is(err, dialect.ErrQueueNotFound) {
		t.Fatalf("lookup other case: %v", err)
	}
	pid := dq.PartitionIDs[2]

	// 2500 rows: three INSERT chunks, ids in slice order.
	var rows []dialect.InsertRow
	for i := range 2500 {
		r := dialect.InsertRow{Queue: "orders.v1", Partition: 2, Payload: []byte{byte(i), byte(i >> 8), 0, '\'', '\\'}, PayloadType: "t.v1"}
		if i == 0 {
			r.Headers = []byte(`{"k":"v é"}`)
		}
		rows = append(rows, r)
	}
	insert(t, db, d, rows...)
	pend, err := d.PendingPartitions(ctx, db, &dialect.PendingPartitionsParams{Limit: 10})
	if err != nil || len(pend.PartitionIDs) != 1 || pend.PartitionIDs[0] != pid {
		t.Fatalf("pending: %+v %v", pend, err)
	}
	tx, err := db.BeginTx(ctx, d.TxOptions())
	if err != nil {
		t.Fatal(err)
	}
	sr, err := d.SequencePartition(ctx, tx, &dialect.SequencePartitionParams{PartitionID: pid, Limit: 1000})
	if err != nil || !sr.Locked || sr.Assigned != 1000 || sr.LastSeq != 1000 {
		t.Fatalf("sequence: %+v %v", sr, err)
	}
	// A second sequencer of the same partition skips it.
	other := inTx(t, db, d, func(tx *sql.Tx) (*dialect.SequencePartitionResult, error) {
		return d.SequencePartition(ctx, tx, &dialect.SequencePartitionParams{PartitionID: pid, Limit: 1000})
	})
	if other.Locked || other.Assigned != 0 {
		t.Fatalf("concurrent sequencer: %+v", other)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if sr := sequence(t, db, d, pid); sr.Assigned != 1000 || sr.LastSeq != 2000 {
		t.Fatalf("sequence 2: %+v", sr)
	}
	if sr := sequence(t, db, d, pid); sr.Assigned != 500 || sr.LastSeq != 2500 {
		t.Fatalf("sequence 3: %+v", sr)
	}
	if sr := sequence(t, db, d, pid); !sr.Locked || sr.Assigned != 0 || sr.LastSeq != 2500 {
		t.Fatalf("sequence 4: %+v", sr)
	}
	rm, err := d.ReadMessages(ctx, db, &dialect.ReadMessagesParams{PartitionID: pid, AfterSeq: 0, Limit: 3000})
	if err != nil || len(rm.Messages) != 2500 {
		t.Fatalf("read: %d %v", len(rm.Messages), err)
	}
	for i, m := range rm.Messages {
		if m.Seq != int64(i+1) || m.Payload[0] != byte(i) || m.Payload[1] != byte(i>>8) || string(m.Payload[2:]) != "\x00'\\" {
			t.Fatalf("message %d: %+v", i, m)
		}
		if i > 0 && m.ID <= rm.Messages[i-1].ID {
			t.Fatalf("ids not increasing at %d", i)
		}
	}
	if string(rm.Messages[0].Headers) != `{"k":"v é"}` || rm.Messages[1].Headers != nil || rm.Messages[0].PayloadType != "t.v1" {
		t.Fatalf("headers/type: %+v", rm.Messages[:2])
	}
	if age := time.Since(rm.Messages[0].CreatedAt); rm.Messages[0].CreatedAt.IsZero() || age > 24*time.Hour || age < -24*time.Hour {
		t.Fatalf("created_at: %v", rm.Messages[0].CreatedAt)
	}

	// Claim with a lease.
	cl, err := d.ClaimLease(ctx, db, &dialect.ClaimLeaseParams{Queues: []string{"orders.v1", "other"}, Limit: 10, Token: "tok-1", Lease: time.Minute})
	if err != nil || len(cl.Partitions) != 1 {
		t.Fatalf("claim: %+v %v", cl, err)
	}
	c := cl.Partitions[0]
	if c.PartitionID != pid || c.Queue != "orders.v1" || c.Partition != 2 || c.ProcessedSeq != 0 || c.LastSeq != 2500 || c.Attempts != 0 {
		t.Fatalf("claimed: %+v", c)
	}
	if cl2, err := d.ClaimLease(ctx, db, &dialect.ClaimLeaseParams{Queues: []string{"orders.v1"}, Limit: 10, Token: "tok-2", Lease: time.Minute}); err != nil || len(cl2.Partitions) != 0 {
		t.Fatalf("claim of a leased partition: %+v %v", cl2, err)
	}
	st, err := d.PartitionState(ctx, db, &dialect.PartitionStateParams{Queue: "orders.v1", Partition: 2})
	if err != nil {
		t.Fatal(err)
	}
	if st.LeaseToken != "tok-1" || st.LastSeq != 2500 || st.Now.IsZero() {
		t.Fatalf("state: %+v", st)
	}
	if lease := st.LeaseUntil.Sub(st.Now); lease < 50*time.Second || lease > 61*time.Second {
		t.Fatalf("lease length %v (state %+v)", lease, st)
	}

	// Fencing: a wrong token changes nothing; the right one does, even when
	// no value but version changes.
	up := &dialect.UpdateCursorParams{PartitionID: pid, Token: "tok-2", ProcessedSeq: 10, Renew: time.Minute}
	if r, err := d.UpdateCursor(ctx, db, up); err != nil || r.Updated {
		t.Fatalf("update with a foreign token: %+v %v", r, err)
	}
	up.Token = "tok-1"
	for range 2 {
		if r, err := d.UpdateCursor(ctx, db, up); err != nil || !r.Updated {
			t.Fatalf("update with the token: %+v %v", r, err)
		}
	}
	st, _ = d.PartitionState(ctx, db, &dialect.PartitionStateParams{Queue: "orders.v1", Partition: 2})
	if st.ProcessedSeq != 10 || st.LeaseToken != "tok-1" || st.LeaseUntil.IsZero() {
		t.Fatalf("after renew: %+v", st)
	}
	// Retry with backoff, keeping the lease, then release with Renew 0.
	if r, err := d.UpdateCursor(ctx, db, &dialect.UpdateCursorParams{PartitionID: pid, Token: "tok-1", ProcessedSeq: 10,
		Attempts: 1, LastError: "boom", RetryAfter: time.Hour}); err != nil || !r.Updated {
		t.Fatalf("release with backoff: %+v %v", r, err)
	}
	st, _ = d.PartitionState(ctx, db, &dialect.PartitionStateParams{Queue: "orders.v1", Partition: 2})
	if st.LeaseToken != "" || !st.LeaseUntil.IsZero() || st.Attempts != 1 || st.LastError != "boom" ||
		st.NextAttemptAt.Sub(st.Now) < 59*time.Minute {
		t.Fatalf("after release: %+v", st)
	}
	if r, _ := d.UpdateCursor(ctx, db, up); r.Updated {
		t.Fatal("released token still updates")
	}
	// Backoff: not claimable.
	if cl, _ := d.ClaimLease(ctx, db, &dialect.ClaimLeaseParams{Queues: []string{"orders.v1"}, Limit: 10, Token: "tok-3", Lease: time.Minute}); len(cl.Partitions) != 0 {
		t.Fatalf("claimed during backoff: %+v", cl)
	}
	// Transactional mode: empty token, row lock.
	if r, err := d.UpdateCursor(ctx, db, &dialect.UpdateCursorParams{PartitionID: pid, ProcessedSeq: 10, Attempts: 1}); err != nil || !r.Updated {
		t.Fatalf("unfenced update: %+v %v", r, err)
	}

	// An unreleased lease that expired: the takeover counts an attempt.
	cl, err = d.ClaimLease(ctx, db, &dialect.ClaimLeaseParams{Queues: []string{"orders.v1"}, Limit: 10, Token: "tok-4", Lease: time.Millisecond})
	if err != nil || len(cl.Partitions) != 1 || cl.Partitions[0].Attempts != 1 || cl.Partitions[0].ProcessedSeq != 10 {
		t.Fatalf("claim: %+v %v", cl, err)
	}
	time.Sleep(20 * time.Millisecond)
	if r, _ := d.UpdateCursor(ctx, db, &dialect.UpdateCursorParams{PartitionID: pid, Token: "tok-4", ProcessedSeq: 11}); r.Updated {
		t.Fatal("expired lease still updates")
	}
	cl, err = d.ClaimLease(ctx, db, &dialect.ClaimLeaseParams{Queues: []string{"orders.v1"}, Limit: 10, Token: "tok-5", Lease: time.Minute})
	if err != nil || len(cl.Partitions) != 1 || cl.Partitions[0].Attempts != 2 {
		t.Fatalf("takeover: %+v %v", cl, err)
	}
	if r, err := d.ReleaseLeases(ctx, db, &dialect.ReleaseLeasesParams{PartitionIDs: []int64{pid, dq.PartitionIDs[0]}, Token: "tok-4"}); err != nil || r.Released != 0 {
		t.Fatalf("release foreign: %+v %v", r, err)
	}
	if r, err := d.ReleaseLeases(ctx, db, &dialect.ReleaseLeasesParams{PartitionIDs: []int64{pid, dq.PartitionIDs[0]}, Token: "tok-5"}); err != nil || r.Released != 1 {
		t.Fatalf("release: %+v %v", r, err)
	}

	// Dead letters, in the locking transaction of transactional mode.
	tx, err = db.BeginTx(ctx, d.TxOptions())
	if err != nil {
		t.Fatal(err)
	}
	if cl, err := d.ClaimLease(ctx, db, &dialect.ClaimLeaseParams{Queues: []string{"orders.v1"}, Limit: 1, Token: "tok-6", Lease: time.Minute}); err != nil || len(cl.Partitions) != 1 {
		t.Fatalf("claim before lock: %+v %v", cl, err)
	}
	if lp, err := d.LockPartition(ctx, tx, &dialect.LockPartitionParams{PartitionID: pid, Token: "tok-5"}); err != nil || len(lp.Partitions) != 0 {
		t.Fatalf("lock with a stale token: %+v %v", lp, err)
	}
	lp, err := d.LockPartition(ctx, tx, &dialect.LockPartitionParams{PartitionID: pid, Token: "tok-6"})
	if err != nil || len(lp.Partitions) != 1 || lp.Partitions[0].PartitionID != pid || lp.Partitions[0].Attempts != 2 || lp.Partitions[0].LastSeq != 2500 {
		t.Fatalf("lock: %+v %v", lp, err)
	}
	// Held: neither a claimer nor another locker gets it, and the sequencer
	// still locks the partition row.
	if cl, err := d.ClaimLease(ctx, db, &dialect.ClaimLeaseParams{Queues: []string{"orders.v1"}, Limit: 10, Token: "tok-7", Lease: time.Minute}); err != nil || len(cl.Partitions) != 0 {
		t.Fatalf("claim of a locked partition: %+v %v", cl, err)
	}
	if sr := sequence(t, db, d, pid); !sr.Locked {
		t.Fatal("sequencer skipped a partition whose cursor row a worker locked")
	}
	for _, op := range []dialect.SavepointOp{dialect.SavepointCreate, dialect.SavepointRollback, dialect.SavepointRelease} {
		if err := dialect.Savepoint(ctx, tx, "sp_1", op); err != nil {
			t.Fatal(err)
		}
	}
	dl, err := d.InsertDeadLetters(ctx, tx, &dialect.InsertDeadLettersParams{PartitionID: pid, Seqs: []int64{11, 12}, Reason: "bad", Attempts: 3})
	if err != nil || dl.Inserted != 2 {
		t.Fatalf("dead letters: %+v %v", dl, err)
	}
	if r, err := d.UpdateCursor(ctx, tx, &dialect.UpdateCursorParams{PartitionID: pid, ProcessedSeq: 2000}); err != nil || !r.Updated {
		t.Fatalf("ack: %+v %v", r, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	ls, err := d.ListDeadLetters(ctx, db, &dialect.ListDeadLettersParams{Queue: "orders.v1", Limit: 10})
	if err != nil || len(ls.DeadLetters) != 2 {
		t.Fatalf("list: %+v %v", ls, err)
	}
	if x := ls.DeadLetters[0]; x.Seq != 12 || x.Status != "pending" || x.LastError != "bad" || x.Attempts != 3 || x.Partition != 2 ||
		x.Payload[0] != 11 || x.FailedAt.IsZero() || x.CreatedAt.IsZero() || x.FailedAt.Before(x.CreatedAt) {
		t.Fatalf("newest dead letter: %+v", x)
	}
	for _, f := range []*dialect.ListDeadLettersParams{{Queue: "other", Limit: 10}, {Status: "resolved", Limit: 10}} {
		if ls, err := d.ListDeadLetters(ctx, db, f); err != nil || len(ls.DeadLetters) != 0 {
			t.Fatalf("list %+v: %+v %v", f, ls, err)
		}
	}
	if ls, err := d.ListDeadLetters(ctx, db, &dialect.ListDeadLettersParams{Status: "pending", Limit: 1}); err != nil || len(ls.DeadLetters) != 1 {
		t.Fatalf("list by status: %+v %v", ls, err)
	}

	// Vacuum in bounded batches, only behind the cursor.
	total := 0
	for {
		v, err := d.Vacuum(ctx, db, &dialect.VacuumParams{Limit: 300})
		if err != nil {
			t.Fatal(err)
		}
		if v.Deleted > 300 {
			t.Fatalf("vacuum deleted %d > limit", v.Deleted)
		}
		if v.Deleted == 0 {
			break
		}
		total += v.Deleted
	}
	if total != 2000 {
		t.Fatalf("vacuumed %d rows, want 2000", total)
	}
	s, err := d.Stats(ctx, db, &dialect.StatsParams{})
	if err != nil || s.Queues != 1 || s.Partitions != 4 || s.Messages != 500 || s.Unsequenced != 0 || s.DeadLetters != 2 {
		t.Fatalf("stats: %+v %v", s, err)
	}
	if rm, _ := d.ReadMessages(ctx, db, &dialect.ReadMessagesParams{PartitionID: pid, AfterSeq: 2000, Limit: 1}); len(rm.Messages) != 1 || rm.Messages[0].Seq != 2001 {
		t.Fatalf("read after vacuum: %+v", rm)
	}
}

// TestSequencerNeverWaitsOnProducers: uncommitted inserts into the same and
// the neighbouring partitions must neither block the sequencer nor be
// sequenced; they get the next seqs once committed.
func TestSequencerNeverWaitsOnProducers(t *testing.T) {
	ctx := context.Background()
	d := mysql.New()
	db, _ := newDB(t, d, true)
	ids := declare(t, db, d, "q", 3).PartitionIDs
	row := func(partition int, b byte) dialect.InsertRow {
		return dialect.InsertRow{Queue: "q", Partition: partition, Payload: []byte{b}, PayloadType: "t"}
	}
	// Open producer: rows in partitions 0, 1 and 2, before and after the
	// committed ones by id.
	open, err := db.BeginTx(ctx, nil) // the application's default isolation
	if err != nil {
		t.Fatal(err)
	}
	defer open.Rollback()
	insert(t, open, d, row(0, 1), row(1, 1), row(2, 1))
	insert(t, db, d, row(0, 2), row(1, 2))
	insert(t, open, d, row(1, 3), row(2, 3))

	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, pid := range ids[:2] {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			tx, err := db.BeginTx(sctx, d.TxOptions())
			if err != nil {
				t.Error(err)
				cancel()
				return
			}
			sr, err := d.SequencePartition(sctx, tx, &dialect.SequencePartitionParams{PartitionID: pid, Limit: 1000})
			if err == nil {
				err = tx.Commit()
			} else {
				_ = tx.Rollback()
			}
			cancel()
			if err != nil || !sr.Locked || sr.Assigned != 1 || sr.LastSeq != 1 {
				t.Errorf("sequence %d: %+v %v", pid, sr, err)
			}
		}
		// Vacuum and claims must not wait either.
		vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := d.UpdateCursor(vctx, db, &dialect.UpdateCursorParams{PartitionID: ids[0], ProcessedSeq: 1}); err != nil {
			t.Error(err)
		}
		if v, err := d.Vacuum(vctx, db, &dialect.VacuumParams{Limit: 100}); err != nil || v.Deleted != 1 {
			t.Errorf("vacuum: %+v %v", v, err)
		}
		if cl, err := d.ClaimLease(vctx, db, &dialect.ClaimLeaseParams{Queues: []string{"q"}, Limit: 10, Token: "t", Lease: time.Minute}); err != nil || len(cl.Partitions) != 1 || cl.Partitions[0].PartitionID != ids[1] {
			t.Errorf("claim: %+v %v", cl, err)
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("sequencer blocked on an uncommitted producer")
	}
	if err := open.Commit(); err != nil {
		t.Fatal(err)
	}
	if sr := sequence(t, db, d, ids[1]); sr.Assigned != 2 || sr.LastSeq != 3 {
		t.Fatalf("after commit: %+v", sr)
	}
	rm, err := d.ReadMessages(ctx, db, &dialect.ReadMessagesParams{PartitionID: ids[1], Limit: 10})
	if err != nil || len(rm.Messages) != 3 {
		t.Fatalf("read: %+v %v", rm, err)
	}
	// Commit order first (2), then the late transaction's rows in id order.
	for i, want := range []byte{2, 1, 3} {
		if rm.Messages[i].Payload[0] != want || rm.Messages[i].Seq != int64(i+1) {
			t.Fatalf("partition order: %+v", rm.Messages)
		}
	}
}

// TestConcurrentClaims: each claimable partition goes to exactly one of
// many concurrent claimers.
func TestConcurrentClaims(t *testing.T) {
	ctx := context.Background()
	d := mysql.New()
	db, _ := newDB(t, d, true)
	ids := declare(t, db, d, "q", 32).PartitionIDs
	for i, pid := range ids {
		insert(t, db, d, dialect.InsertRow{Queue: "q", Partition: i, Payload: []byte("x"), PayloadType: "t"})
		sequence(t, db, d, pid)
	}
	var mu sync.Mutex
	owner := make(map[int64]string)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := "w" + string(rune('a'+w))
			for range 10 {
				cl, err := d.ClaimLease(ctx, db, &dialect.ClaimLeaseParams{Queues: []string{"q"}, Limit: 3, Token: tok, Lease: time.Minute})
				if err != nil {
					t.Error(err)
					return
				}
				if len(cl.Partitions) > 3 {
					t.Errorf("claimed %d > limit", len(cl.Partitions))
				}
				mu.Lock()
				for _, c := range cl.Partitions {
					if prev, ok := owner[c.PartitionID]; ok {
						t.Errorf("partition %d claimed by %s and %s", c.PartitionID, prev, tok)
					}
					owner[c.PartitionID] = tok
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(owner) != len(ids) {
		t.Fatalf("claimed %d of %d partitions", len(owner), len(ids))
	}
}

// TestConcurrentDeclare: concurrent first declarations of one queue agree.
func TestConcurrentDeclare(t *testing.T) {
	d := mysql.New()
	db, _ := newDB(t, d, true)
	res := make([]*dialect.DeclareQueueResult, 6)
	var wg sync.WaitGroup
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tx, err := db.BeginTx(context.Background(), d.TxOptions())
			if err != nil {
				t.Error(err)
				return
			}
			r, err := d.DeclareQueue(context.Background(), tx, &dialect.DeclareQueueParams{Queue: "q", Partitions: 16})
			if err == nil {
				err = tx.Commit()
			} else {
				_ = tx.Rollback()
			}
			if err != nil {
				t.Error(err)
			}
			res[i] = r
		}()
	}
	wg.Wait()
	for _, r := range res {
		if r == nil || r.Partitions != 16 || len(r.PartitionIDs) != 16 || r.PartitionIDs[15] != res[0].PartitionIDs[15] {
			t.Fatalf("declare results differ: %+v", r)
		}
	}
	s, err := d.Stats(context.Background(), db, &dialect.StatsParams{})
	if err != nil || s.Queues != 1 || s.Partitions != 16 {
		t.Fatalf("stats: %+v %v", s, err)
	}
	var procs int
	if err := db.QueryRow("SELECT COUNT(*) FROM outbox_processors").Scan(&procs); err != nil || procs != 16 {
		t.Fatalf("processors: %d %v", procs, err)
	}
}

func TestIsRetryable(t *testing.T) {
	d := mysql.New()
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&driver.MySQLError{Number: 1213}, true},
		{&driver.MySQLError{Number: 1205}, true},
		{&driver.MySQLError{Number: 1062}, false},
		{&driver.MySQLError{Number: 9999, SQLState: [5]byte{'4', '0', '0', '0', '1'}}, true},
		{errors.New("x"), false},
		{nil, false},
	} {
		if got := d.IsRetryable(c.err); got != c.want {
			t.Errorf("IsRetryable(%v) = %v", c.err, got)
		}
	}
	if d.TxOptions() == nil || d.TxOptions().Isolation != sql.LevelReadCommitted {
		t.Error("TxOptions must be READ COMMITTED")
	}
}
