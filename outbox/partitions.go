package outbox

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/modkit-go/db/dialect"
)

// PartitionStatus reads one partition's state, as QueueStatus lists it.
// It returns an error wrapping ErrUnknownQueue when the queue or
// partition does not exist, and, before asking the database,
// ErrInvalidQueueName for an invalid name and ErrPartitionOutOfRange for a
// partition outside 0..MaxPartitions-1.
func (o *Outbox) PartitionStatus(ctx context.Context, queue string, partition int) (PartitionStatus, error) {
	if !ValidQueueName(queue) {
		return PartitionStatus{}, invalid(-1, "Queue", ErrInvalidQueueName, "%q", truncate(queue))
	}
	if partition < 0 || partition >= MaxPartitions {
		return PartitionStatus{}, invalid(-1, "Partition", ErrPartitionOutOfRange, "%d is not in 0..%d", partition, MaxPartitions-1)
	}
	res, err := o.d.QueueStatus(ctx, o.db, &dialect.QueueStatusParams{Queue: queue, Partition: &partition})
	if errors.Is(err, dialect.ErrQueueNotFound) || err == nil && len(res.Partitions) != 1 {
		return PartitionStatus{}, invalid(-1, "Queue", ErrUnknownQueue, "%q partition %d does not exist", truncate(queue), partition)
	}
	if err != nil {
		return PartitionStatus{}, cmp.Or(o.wrongDatabase(err), fmt.Errorf("outbox: partition status: %w", err))
	}
	return partitionStatus(res.Partitions[0], res.Now), nil
}

// ErrNotBlocked is returned by RetryPartition and SkipPartition for a partition
// that is not blocked (see PoisonBlock); nothing was changed.
var ErrNotBlocked = errors.New("outbox: partition not blocked")

// RetryPartition resumes a partition that PoisonBlock stopped at its head:
// it clears the block, resets the head's attempts to 0 (so it gets the
// queue's MaxAttempts fresh tries) and its last error, and makes it
// claimable now. Workers of this process are woken; others find it at
// their next poll.
//
// Errors: ErrInvalidQueueName and ErrPartitionOutOfRange before the
// database is asked; ErrUnknownQueue when the partition does not exist;
// ErrNotBlocked when it is not blocked. On error nothing was changed.
func (o *Outbox) RetryPartition(ctx context.Context, queue string, partition int) error {
	err := o.unblock(ctx, "retry partition", queue, partition, func(_ *sql.Tx, r *dialect.LockCursorResult) (*dialect.CursorUpdate, error) {
		return &dialect.CursorUpdate{PartitionID: r.PartitionID, ProcessedSeq: r.ProcessedSeq}, nil
	})
	if err != nil {
		return err
	}
	o.log.Info("outbox: blocked partition retried", "queue", queue, "partition", partition)
	return nil
}

// SkipPartition resumes a partition that PoisonBlock stopped at its head by
// moving the head message to the dead-letter table, with its attempts and
// reason (the partition's last error when reason is empty), and advancing
// the cursor past it, with the block and the attempts cleared: all in one
// transaction, so the head is either dead-lettered and skipped or left as
// it was. The partition's later messages are then delivered in order.
//
// Errors are those of RetryPartition.
func (o *Outbox) SkipPartition(ctx context.Context, queue string, partition int, reason string) error {
	var seq int64
	err := o.unblock(ctx, "skip partition", queue, partition, func(tx *sql.Tx, r *dialect.LockCursorResult) (*dialect.CursorUpdate, error) {
		rm, err := o.d.ReadPartitions(ctx, tx, &dialect.ReadPartitionsParams{Reads: []dialect.PartitionRead{{PartitionID: r.PartitionID, AfterSeq: r.ProcessedSeq, Limit: 1}}})
		if err != nil {
			return nil, fmt.Errorf("read the head: %w", err)
		}
		if len(rm.Messages[0]) == 0 {
			return nil, fmt.Errorf("the blocked partition has no message after seq %d", r.ProcessedSeq)
		}
		seq = rm.Messages[0][0].Seq
		why := reason
		if why == "" {
			why = "skipped by an operator: " + r.LastError
		}
		dl, err := o.d.InsertDeadLetters(ctx, tx, &dialect.InsertDeadLettersParams{
			PartitionID: r.PartitionID, Seqs: []int64{seq}, Reason: sanitizeReason(why), Attempts: r.Attempts,
		})
		if err != nil {
			return nil, fmt.Errorf("dead letter: %w", err)
		}
		if dl.Inserted != 1 {
			return nil, fmt.Errorf("dead letter: %d rows written for seq %d, want 1", dl.Inserted, seq)
		}
		return &dialect.CursorUpdate{PartitionID: r.PartitionID, ProcessedSeq: seq, DeleteThrough: seq}, nil
	})
	if err != nil {
		return err
	}
	o.log.Warn("outbox: blocked partition's head skipped into the dead letters",
		"queue", queue, "partition", partition, "seq", seq, "reason", reason)
	return nil
}

// unblock runs an operator's action on a blocked partition in one
// transaction: it locks the cursor row, checks that it is blocked, and
// writes the update that act returns (unfenced: the row lock is held; the
// update clears blocked_at, attempts and last error, and makes the
// partition claimable now). Then it wakes this process's workers.
func (o *Outbox) unblock(ctx context.Context, what, queue string, partition int,
	act func(tx *sql.Tx, r *dialect.LockCursorResult) (*dialect.CursorUpdate, error)) error {
	if !ValidQueueName(queue) {
		return invalid(-1, "Queue", ErrInvalidQueueName, "%q", truncate(queue))
	}
	if partition < 0 || partition >= MaxPartitions {
		return invalid(-1, "Partition", ErrPartitionOutOfRange, "%d is not in 0..%d", partition, MaxPartitions-1)
	}
	if err := o.checkDatabase(ctx, o.db); err != nil {
		return err
	}
	err := o.withTx(ctx, func(tx *sql.Tx) error {
		r, err := o.d.LockCursor(ctx, tx, &dialect.LockCursorParams{Queue: queue, Partition: partition})
		if err != nil {
			return err
		}
		if !r.Blocked {
			return fmt.Errorf("%w: queue %q partition %d", ErrNotBlocked, truncate(queue), partition)
		}
		up, err := act(tx, r)
		if err != nil {
			return err
		}
		res, err := o.d.UpdateCursors(ctx, tx, &dialect.UpdateCursorsParams{Updates: []*dialect.CursorUpdate{up}})
		if err != nil {
			return fmt.Errorf("update cursor: %w", err)
		}
		if len(res.Updated) != 1 || !res.Updated[0] {
			return errors.New("update cursor: the locked row was not updated")
		}
		return nil
	})
	switch {
	case err == nil:
		o.workWake.broadcast()
		return nil
	case errors.Is(err, dialect.ErrQueueNotFound):
		return invalid(-1, "Queue", ErrUnknownQueue, "%q partition %d does not exist", truncate(queue), partition)
	case errors.Is(err, ErrNotBlocked):
		return err
	}
	return cmp.Or(o.wrongDatabase(err), fmt.Errorf("outbox: %s: %w", what, err))
}
