package mysql_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/mysql"
	"github.com/modkit-go/db/internal/testdb"
	"github.com/modkit-go/db/migrations"
)

// The behaviour of every method is checked by conformance.RunDialect (see
// conformance_test.go); what stays here is MySQL's own.

func TestMigrationsIdempotent(t *testing.T) {
	for _, d := range []*mysql.Dialect{mysql.New(), mysql.New(mysql.WithPrefix("ob2_"))} {
		db := testdb.MySQL(t)()
		for i := range 2 {
			if err := migrations.Up(context.Background(), db, d); err != nil {
				t.Fatalf("Up %d (prefix %q): %v", i+1, d.Prefix(), err)
			}
		}
		if _, err := d.Stats(context.Background(), db, &dialect.StatsParams{}); err != nil {
			t.Fatalf("prefix %q: %v", d.Prefix(), err)
		}
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
		if got := d.ClassifyError(c.err) == dialect.ErrorRetryable; got != c.want {
			t.Errorf("ClassifyError(%v) retryable = %v", c.err, got)
		}
	}
	if d.TxOptions() == nil || d.TxOptions().Isolation != sql.LevelReadCommitted {
		t.Error("TxOptions must be READ COMMITTED")
	}
}

// session is a migrated MySQL test database on one connection, so that
// every statement and the session status reads run in the same session,
// with one queue declared.
type session struct {
	t   *testing.T
	ctx context.Context
	db  *sql.DB
	d   *mysql.Dialect
	q   string
	ids []int64 // the queue's partition ids
}

func newSession(t *testing.T, queue string, partitions int) *session {
	ctx := context.Background()
	db := testdb.MySQL(t)()
	d := mysql.New()
	if err := migrations.Up(ctx, db, d); err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	tx, err := db.BeginTx(ctx, d.TxOptions())
	if err != nil {
		t.Fatal(err)
	}
	dq, err := d.DeclareQueue(ctx, tx, &dialect.DeclareQueueParams{Queue: queue, Partitions: partitions})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return &session{t: t, ctx: ctx, db: db, d: d, q: queue, ids: dq.PartitionIDs}
}

// status reads a session status counter.
func (s *session) status(name string) int64 {
	var n int64
	if err := s.db.QueryRowContext(s.ctx, "SHOW SESSION STATUS LIKE '"+name+"'").Scan(&name, &n); err != nil {
		s.t.Fatal(err)
	}
	return n
}

// insert inserts n messages round-robin over the queue's partitions, in
// one InsertMessages.
func (s *session) insert(n int, headers []byte) {
	rows := make([]dialect.InsertRow, n)
	for i := range rows {
		rows[i] = dialect.InsertRow{Queue: s.q, Partition: i % len(s.ids), Payload: []byte("payload"), PayloadType: "t", Headers: headers}
	}
	if _, err := s.d.InsertMessages(s.ctx, s.db, &dialect.InsertMessagesParams{Rows: rows}); err != nil {
		s.t.Fatal(err)
	}
}

// sequence sequences up to 100 rows of every partition in one transaction.
func (s *session) sequence() {
	tx, err := s.db.BeginTx(s.ctx, s.d.TxOptions())
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := s.d.SequencePartitions(s.ctx, tx, &dialect.SequencePartitionsParams{PartitionIDs: s.ids, Limit: 100}); err != nil {
		s.t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		s.t.Fatal(err)
	}
}

// TestHotPathNoDiskTemporaryTables: the statements a delivery runs
// (insert, pick and number, read, ack) create no on-disk temporary table.
// MariaDB writes a temporary table that holds a BLOB column to a file it
// creates and deletes, so such a statement costs file-system work per call
// (ReadPartitions with derived-table branches did, once per partition).
func TestHotPathNoDiskTemporaryTables(t *testing.T) {
	s := newSession(t, "tmp", 4)
	ctx, d := s.ctx, s.d
	before := s.status("Created_tmp_disk_tables")
	s.insert(40, []byte(`{"k":"v"}`))
	s.sequence()
	var reads []dialect.PartitionRead
	for _, id := range s.ids {
		reads = append(reads, dialect.PartitionRead{PartitionID: id, Limit: 100})
	}
	r, err := d.ReadPartitions(ctx, s.db, &dialect.ReadPartitionsParams{Reads: reads})
	if err != nil {
		t.Fatal(err)
	}
	for i, ms := range r.Messages {
		if len(ms) != 10 {
			t.Fatalf("read %d: %d messages, want 10", i, len(ms))
		}
	}
	if _, err := d.ReadPartitions(ctx, s.db, &dialect.ReadPartitionsParams{Reads: reads[:1]}); err != nil {
		t.Fatal(err)
	}
	// The acks of a round, with and without an error to record.
	ps := []*dialect.CursorUpdate{
		{PartitionID: s.ids[0], ProcessedSeq: 10, LastError: "boom"},
		{PartitionID: s.ids[1], ProcessedSeq: 10},
	}
	if got, err := d.UpdateCursors(ctx, s.db, &dialect.UpdateCursorsParams{Updates: ps, DB: s.db}); err != nil || !got.Updated[0] || !got.Updated[1] {
		t.Fatalf("UpdateCursors: %v, %v", got, err)
	}
	if n := s.status("Created_tmp_disk_tables") - before; n != 0 {
		t.Errorf("the hot path created %d on-disk temporary tables, want 0", n)
	}
}

// TestVacuumProbesSkipUnsequencedRows: finding the partitions with
// delivered rows reads a few index entries per partition, not the
// partition's unsequenced rows, which sort first in the (partition_id,
// seq) index. A correlated EXISTS read them all (MariaDB runs it as a ref
// on partition_id that filters seq).
func TestVacuumProbesSkipUnsequencedRows(t *testing.T) {
	s := newSession(t, "v", 2)
	s.insert(20, nil) // 10 per partition, sequenced and delivered below
	s.sequence()
	for _, pid := range s.ids {
		if u, err := s.d.UpdateCursors(s.ctx, s.db, &dialect.UpdateCursorsParams{Updates: []*dialect.CursorUpdate{{PartitionID: pid, ProcessedSeq: 10}}, DB: s.db}); err != nil || !u.Updated[0] {
			t.Fatalf("UpdateCursor: %+v, %v", u, err)
		}
	}
	s.insert(4000, nil) // a backlog the sequencer has not reached
	before := s.status("Handler_read_next")
	v, err := s.d.Vacuum(s.ctx, s.db, &dialect.VacuumParams{Limit: 1000})
	if err != nil || v.Deleted != 20 {
		t.Fatalf("Vacuum: %+v, %v; want the 20 delivered rows deleted", v, err)
	}
	// 20 rows picked and 2 probes; the old statement read 4,000 more.
	if n := s.status("Handler_read_next") - before; n > 200 {
		t.Fatalf("Vacuum read %d index entries in order for 20 delivered rows beside 4,000 unsequenced ones", n)
	}
}

// TestUpdateCursorsDeletesDelivered: the combined acks delete the rows
// they delivered (DeleteIDs), in their transaction, and only for entries
// whose update happened.
func TestUpdateCursorsDeletesDelivered(t *testing.T) {
	s := newSession(t, "d", 3)
	s.insert(30, nil) // 10 per partition
	s.sequence()
	count := func(pid int64) int {
		var n int
		if err := s.db.QueryRowContext(s.ctx, "SELECT COUNT(*) FROM outbox_messages WHERE partition_id = ?", pid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	claim, err := s.d.ClaimLeases(s.ctx, dialect.Pool{DB: s.db, Q: s.db}, &dialect.ClaimLeaseParams{Queues: []string{s.q}, Token: "w", Lease: time.Minute, Limit: 2})
	if err != nil || len(claim.Partitions) != 2 {
		t.Fatalf("ClaimLease: %+v, %v; want 2 partitions", claim, err)
	}
	// acks builds, for each claimed partition, the ack of its rows
	// (after, through] with the ids a worker would have read.
	acks := func(token string, after, through int64) []*dialect.CursorUpdate {
		var ps []*dialect.CursorUpdate
		for _, c := range claim.Partitions {
			read, err := s.d.ReadPartitions(s.ctx, s.db, &dialect.ReadPartitionsParams{Reads: []dialect.PartitionRead{{PartitionID: c.PartitionID, AfterSeq: after, Limit: int(through - after)}}})
			if err != nil || len(read.Messages[0]) != int(through-after) {
				t.Fatalf("ReadPartitions: %+v, %v", read, err)
			}
			up := &dialect.CursorUpdate{PartitionID: c.PartitionID, Token: token, ProcessedSeq: through, DeleteThrough: through, DeleteAfter: after}
			for _, m := range read.Messages[0] {
				up.DeleteIDs = append(up.DeleteIDs, m.ID)
			}
			ps = append(ps, up)
		}
		return ps
	}
	held := map[int64]bool{}
	for _, c := range claim.Partitions {
		held[c.PartitionID] = true
	}
	res, err := s.d.UpdateCursors(s.ctx, s.db, &dialect.UpdateCursorsParams{Updates: acks("w", 2, 7), DB: s.db})
	var out []bool
	if err == nil {
		out = res.Updated
	}
	if err != nil || len(out) != 2 || !out[0] || !out[1] {
		t.Fatalf("UpdateCursors: %v, %v", out, err)
	}
	for _, pid := range s.ids {
		// Held: seqs 3..7 deleted, 1, 2 (below DeleteAfter) and 8..10 stay.
		if want := map[bool]int{true: 5, false: 10}[held[pid]]; count(pid) != want {
			t.Fatalf("partition %d (held %v): %d rows after the acks, want %d", pid, held[pid], count(pid), want)
		}
	}
	// A lost lease: nothing changes, nothing is deleted.
	lost := acks("other", 7, 10)
	res, err = s.d.UpdateCursors(s.ctx, s.db, &dialect.UpdateCursorsParams{Updates: lost, DB: s.db})
	if err != nil || res.Updated[0] || res.Updated[1] {
		t.Fatalf("UpdateCursors with another token: %v, %v; want both fenced off", out, err)
	}
	for _, c := range claim.Partitions {
		if n := count(c.PartitionID); n != 5 {
			t.Fatalf("partition %d: %d rows after fenced-off acks, want 5", c.PartitionID, n)
		}
	}
}

// TestUpdateCursorsDeletesManyRows: a round's acks can name more rows than
// one DELETE should (maxDeleteIDs); all of them go.
func TestUpdateCursorsDeletesManyRows(t *testing.T) {
	s := newSession(t, "m", 2)
	const n = 2500 // per partition
	s.insert(2*n, nil)
	for range n / 100 {
		s.sequence()
	}
	claim, err := s.d.ClaimLeases(s.ctx, dialect.Pool{DB: s.db, Q: s.db}, &dialect.ClaimLeaseParams{Queues: []string{s.q}, Token: "w", Lease: time.Minute, Limit: 2})
	if err != nil || len(claim.Partitions) != 2 {
		t.Fatalf("ClaimLease: %+v, %v", claim, err)
	}
	read, err := s.d.ReadPartitions(s.ctx, s.db, &dialect.ReadPartitionsParams{Reads: []dialect.PartitionRead{{PartitionID: s.ids[0], Limit: n}}})
	if err != nil || len(read.Messages[0]) != n {
		t.Fatalf("ReadPartitions: %v, %v", read, err)
	}
	up := &dialect.CursorUpdate{PartitionID: s.ids[0], Token: "w", ProcessedSeq: n, DeleteThrough: n}
	for _, m := range read.Messages[0] {
		up.DeleteIDs = append(up.DeleteIDs, m.ID)
	}
	// The other partition's ack (nothing delivered) makes it a combined round.
	other := &dialect.CursorUpdate{PartitionID: s.ids[1], Token: "w"}
	out, err := s.d.UpdateCursors(s.ctx, s.db, &dialect.UpdateCursorsParams{Updates: []*dialect.CursorUpdate{up, other}, DB: s.db})
	if err != nil || !out.Updated[0] || !out.Updated[1] {
		t.Fatalf("UpdateCursors: %v, %v", out, err)
	}
	for i, want := range []int{0, n} {
		var left int
		if err := s.db.QueryRowContext(s.ctx, "SELECT COUNT(*) FROM outbox_messages WHERE partition_id = ?", s.ids[i]).Scan(&left); err != nil || left != want {
			t.Fatalf("partition %d: %d rows left, want %d (%v)", i, left, want, err)
		}
	}
}

// TestMessagesRowFormat: migration 00003 stores outbox_messages in the
// REDUNDANT row format, where a NULL seq keeps its 8 bytes and numbering a
// row updates it in place (DYNAMIC grows the row: about twice the cost).
func TestMessagesRowFormat(t *testing.T) {
	s := newSession(t, "f", 1)
	var format string
	if err := s.db.QueryRowContext(s.ctx, `SELECT ROW_FORMAT FROM information_schema.TABLES
		WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'outbox_messages'`).Scan(&format); err != nil {
		t.Fatal(err)
	}
	if format != "Redundant" {
		t.Fatalf("outbox_messages row format %q, want Redundant", format)
	}
}
