package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/sqlbase"
)

// SequencePartition implements dialect.Dialect. tx must be READ COMMITTED
// (TxOptions): the pick below needs a snapshot taken after the lock.
func (d *Dialect) SequencePartition(ctx context.Context, tx *sql.Tx, p *dialect.SequencePartitionParams) (*dialect.SequencePartitionResult, error) {
	last, locked, err := sqlbase.LockPartition(ctx, tx, d.qs().lockPartition, p.PartitionID)
	if err != nil || !locked {
		return &dialect.SequencePartitionResult{}, err
	}
	ids, err := sqlbase.Int64s(ctx, tx, d.qs().unsequenced, p.PartitionID, p.Limit)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return &dialect.SequencePartitionResult{Locked: true, LastSeq: last}, nil
	}
	// Assign last+1, last+2, … in id order, by primary key only: the rows
	// are committed and, while we hold the partition lock, nobody else
	// writes unsequenced rows of this partition (producers never update
	// their rows, vacuum deletes only sequenced ones), so these record locks
	// are never contended. The secondary indexes on seq are not unique, so
	// no duplicate check locks a neighbouring (possibly uncommitted) entry.
	var b strings.Builder
	b.Grow(64 + 24*len(ids))
	b.WriteString("UPDATE ")
	b.WriteString(d.Prefix())
	b.WriteString("messages SET seq = CASE id")
	args := make([]any, 0, 3*len(ids))
	for i, id := range ids {
		b.WriteString(" WHEN ? THEN ?")
		args = append(args, id, last+int64(i)+1)
	}
	b.WriteString(" END WHERE id IN (")
	b.WriteString(sqlbase.Placeholders(len(ids)))
	b.WriteString(")")
	for _, id := range ids {
		args = append(args, id)
	}
	res, err := tx.ExecContext(ctx, b.String(), args...)
	if err != nil {
		return nil, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, err
	} else if n != int64(len(ids)) {
		// Cannot happen while the invariants above hold; refuse to leave a
		// gap in the sequence if it does.
		return nil, fmt.Errorf("mysql: sequencer updated %d of %d rows of partition %d", n, len(ids), p.PartitionID)
	}
	after := last + int64(len(ids))
	if _, err := tx.ExecContext(ctx, d.qs().bumpLastSeq, after, p.PartitionID); err != nil {
		return nil, err
	}
	return &dialect.SequencePartitionResult{Locked: true, Assigned: len(ids), LastSeq: after}, nil
}
