package mysql_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

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
		if got := d.IsRetryable(c.err); got != c.want {
			t.Errorf("IsRetryable(%v) = %v", c.err, got)
		}
	}
	if d.TxOptions() == nil || d.TxOptions().Isolation != sql.LevelReadCommitted {
		t.Error("TxOptions must be READ COMMITTED")
	}
}

// TestHotPathNoDiskTemporaryTables: the statements a delivery runs
// (insert, pick and number, read, ack) create no on-disk temporary table.
// MariaDB writes a temporary table that holds a BLOB column to a file it
// creates and deletes, so such a statement costs file-system work per call
// (ReadPartitions with derived-table branches did, once per partition).
func TestHotPathNoDiskTemporaryTables(t *testing.T) {
	ctx := context.Background()
	db := testdb.MySQL(t)()
	d := mysql.New()
	if err := migrations.Up(ctx, db, d); err != nil {
		t.Fatal(err)
	}
	// One connection, so every statement below and the status reads run
	// in the same session.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	conn := db
	diskTables := func() int64 {
		var name string
		var n int64
		if err := conn.QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Created_tmp_disk_tables'").Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := diskTables()

	dtx, err := db.BeginTx(ctx, d.TxOptions())
	if err != nil {
		t.Fatal(err)
	}
	dq, err := d.DeclareQueue(ctx, dtx, &dialect.DeclareQueueParams{Queue: "tmp", Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := dtx.Commit(); err != nil {
		t.Fatal(err)
	}
	var rows []dialect.InsertRow
	for i := range 40 {
		rows = append(rows, dialect.InsertRow{Queue: "tmp", Partition: i % 4, Payload: []byte("payload"), PayloadType: "t", Headers: []byte(`{"k":"v"}`)})
	}
	if _, err := d.InsertMessages(ctx, conn, &dialect.InsertMessagesParams{Rows: rows}); err != nil {
		t.Fatal(err)
	}
	tx, err := conn.BeginTx(ctx, d.TxOptions())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.SequencePartitions(ctx, tx, &dialect.SequencePartitionsParams{PartitionIDs: dq.PartitionIDs, Limit: 100}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var reads []dialect.ReadMessagesParams
	for _, id := range dq.PartitionIDs {
		reads = append(reads, dialect.ReadMessagesParams{PartitionID: id, Limit: 100})
	}
	r, err := d.ReadPartitions(ctx, conn, &dialect.ReadPartitionsParams{Reads: reads})
	if err != nil {
		t.Fatal(err)
	}
	for i, ms := range r.Messages {
		if len(ms) != 10 {
			t.Fatalf("read %d: %d messages, want 10", i, len(ms))
		}
	}
	if _, err := d.ReadMessages(ctx, conn, &reads[0]); err != nil {
		t.Fatal(err)
	}
	// The acks of a round, with and without an error to record.
	ps := []*dialect.UpdateCursorParams{
		{PartitionID: dq.PartitionIDs[0], ProcessedSeq: 10, LastError: "boom"},
		{PartitionID: dq.PartitionIDs[1], ProcessedSeq: 10},
	}
	if got, err := d.UpdateCursors(ctx, db, conn, ps); err != nil || !got[0] || !got[1] {
		t.Fatalf("UpdateCursors: %v, %v", got, err)
	}
	if n := diskTables() - before; n != 0 {
		t.Errorf("the hot path created %d on-disk temporary tables, want 0", n)
	}
}

// TestVacuumProbesSkipUnsequencedRows: finding the partitions with
// delivered rows reads a few index entries per partition, not the
// partition's unsequenced rows, which sort first in the (partition_id,
// seq) index. A correlated EXISTS read them all (MariaDB runs it as a ref
// on partition_id that filters seq).
func TestVacuumProbesSkipUnsequencedRows(t *testing.T) {
	ctx := context.Background()
	db := testdb.MySQL(t)()
	d := mysql.New()
	if err := migrations.Up(ctx, db, d); err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1) // one session: the status reads below are its own
	db.SetMaxIdleConns(1)
	tx, err := db.BeginTx(ctx, d.TxOptions())
	if err != nil {
		t.Fatal(err)
	}
	dq, err := d.DeclareQueue(ctx, tx, &dialect.DeclareQueueParams{Queue: "v", Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	insert := func(n int) {
		rows := make([]dialect.InsertRow, n)
		for i := range rows {
			rows[i] = dialect.InsertRow{Queue: "v", Partition: i % 2, Payload: []byte("p"), PayloadType: "t"}
		}
		if _, err := d.InsertMessages(ctx, db, &dialect.InsertMessagesParams{Rows: rows}); err != nil {
			t.Fatal(err)
		}
	}
	insert(20) // 10 per partition, sequenced and delivered below
	tx, err = db.BeginTx(ctx, d.TxOptions())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.SequencePartitions(ctx, tx, &dialect.SequencePartitionsParams{PartitionIDs: dq.PartitionIDs, Limit: 100}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range dq.PartitionIDs {
		if u, err := d.UpdateCursor(ctx, db, &dialect.UpdateCursorParams{PartitionID: pid, ProcessedSeq: 10}); err != nil || !u.Updated {
			t.Fatalf("UpdateCursor: %+v, %v", u, err)
		}
	}
	insert(4000) // a backlog the sequencer has not reached
	readNext := func() int64 {
		var name string
		var n int64
		if err := db.QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Handler_read_next'").Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := readNext()
	v, err := d.Vacuum(ctx, db, &dialect.VacuumParams{Limit: 1000})
	if err != nil || v.Deleted != 20 {
		t.Fatalf("Vacuum: %+v, %v; want the 20 delivered rows deleted", v, err)
	}
	// 20 rows picked and 2 probes; the old statement read 4,000 more.
	if n := readNext() - before; n > 200 {
		t.Fatalf("Vacuum read %d index entries in order for 20 delivered rows beside 4,000 unsequenced ones", n)
	}
}
