package conformance

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/modkit-go/db/dialect"
)

// The cases' one-partition views of the contract's batch methods.

// claimLeases runs ClaimLeases on db, unprepared.
func claimLeases(ctx context.Context, d dialect.Dialect, db *sql.DB, p *dialect.ClaimLeaseParams) (*dialect.ClaimResult, error) {
	return d.ClaimLeases(ctx, dialect.Pool{DB: db, Q: db}, p)
}

// updateCursor writes one cursor update: on a *sql.DB, committed by
// itself; else in the caller's transaction q.
func updateCursor(ctx context.Context, d dialect.Dialect, q dialect.DBTX, p *dialect.CursorUpdate) (bool, error) {
	up := &dialect.UpdateCursorsParams{Updates: []*dialect.CursorUpdate{p}}
	if db, ok := q.(*sql.DB); ok {
		up.DB = db
	}
	r, err := d.UpdateCursors(ctx, q, up)
	if err != nil {
		return false, err
	}
	if len(r.Updated) != 1 {
		return false, fmt.Errorf("UpdateCursors reported %d results for 1 update", len(r.Updated))
	}
	return r.Updated[0], nil
}

// readMessages reads one partition with ReadPartitions.
func readMessages(ctx context.Context, d dialect.Dialect, q dialect.DBTX, p dialect.PartitionRead) ([]dialect.Message, error) {
	r, err := d.ReadPartitions(ctx, q, &dialect.ReadPartitionsParams{Reads: []dialect.PartitionRead{p}})
	if err != nil {
		return nil, err
	}
	if len(r.Messages) != 1 {
		return nil, fmt.Errorf("ReadPartitions reported %d reads for 1", len(r.Messages))
	}
	return r.Messages[0], nil
}

// partitionState is one partition's row and cursor row, and the database
// clock when read.
type partitionState struct {
	dialect.PartitionStatus
	Now time.Time
}

// statusOf reads one partition's state with QueueStatus.
func statusOf(ctx context.Context, d dialect.Dialect, q dialect.DBTX, queue string, partition int) (*partitionState, error) {
	r, err := d.QueueStatus(ctx, q, &dialect.QueueStatusParams{Queue: queue, Partition: &partition})
	if err != nil {
		return nil, err
	}
	if len(r.Partitions) != 1 {
		return nil, fmt.Errorf("QueueStatus(%s/%d) reported %d partitions, want 1", queue, partition, len(r.Partitions))
	}
	return &partitionState{PartitionStatus: r.Partitions[0], Now: r.Now}, nil
}
