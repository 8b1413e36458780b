package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/modkit-go/db/dialect"
)

// PartitionState is a partition's delivery state. Times are the database's.
type PartitionState struct {
	Queue     string
	Partition int
	// LastSeq is the highest seq assigned; ProcessedSeq the highest
	// acknowledged (or dead-lettered). LastSeq-ProcessedSeq is the backlog.
	LastSeq      int64
	ProcessedSeq int64
	// Attempts counts failures of the head message; LastError is the last
	// reason given.
	Attempts  int
	LastError string
	// NextAttemptAt is when a retried partition becomes claimable again.
	NextAttemptAt time.Time
	// Leased reports a decoupled lease that has not expired; LeaseUntil is
	// its end (zero when none).
	Leased     bool
	LeaseUntil time.Time
	// Blocked reports a partition stopped at its head by PoisonBlock, since
	// BlockedAt (zero when not blocked); Attempts and LastError say why.
	// RetryPartition or SkipPartition resumes it.
	Blocked   bool
	BlockedAt time.Time
	// Now is the database clock when the state was read.
	Now time.Time
}

// PartitionState reads one partition's state. It returns an error wrapping
// ErrUnknownQueue when the queue or partition does not exist, and, before
// asking the database, ErrInvalidQueueName for an invalid name and
// ErrPartitionOutOfRange for a partition outside 0..MaxPartitions-1.
func (o *Outbox) PartitionState(ctx context.Context, queue string, partition int) (PartitionState, error) {
	if !ValidQueueName(queue) {
		return PartitionState{}, invalid(-1, "Queue", ErrInvalidQueueName, "%q", truncate(queue))
	}
	if partition < 0 || partition >= MaxPartitions {
		return PartitionState{}, invalid(-1, "Partition", ErrPartitionOutOfRange, "%d is not in 0..%d", partition, MaxPartitions-1)
	}
	res, err := o.d.QueueStatus(ctx, o.db, &dialect.QueueStatusParams{Queue: queue, Partition: &partition})
	if errors.Is(err, dialect.ErrQueueNotFound) || err == nil && len(res.Partitions) != 1 {
		return PartitionState{}, invalid(-1, "Queue", ErrUnknownQueue, "%q partition %d does not exist", truncate(queue), partition)
	}
	if err != nil {
		return PartitionState{}, cmp.Or(o.wrongDatabase(err), fmt.Errorf("outbox: partition state: %w", err))
	}
	r := res.Partitions[0]
	return PartitionState{
		Queue: queue, Partition: partition, LastSeq: r.LastSeq, ProcessedSeq: r.ProcessedSeq,
		Attempts: r.Attempts, LastError: r.LastError, NextAttemptAt: r.NextAttemptAt,
		Leased: r.LeaseToken != "" && r.LeaseUntil.After(res.Now), LeaseUntil: r.LeaseUntil, Now: res.Now,
		Blocked: !r.BlockedAt.IsZero(), BlockedAt: r.BlockedAt,
	}, nil
}

// DeadLetter is a message that was rejected, by its handler or by
// MaxAttempts, with a copy of its payload.
type DeadLetter struct {
	ID          int64
	Queue       string
	Partition   int
	Seq         int64
	Payload     []byte
	PayloadType string
	Headers     map[string]string
	CreatedAt   time.Time
	FailedAt    time.Time
	Attempts    int
	Reason      string
	// Status is "pending" when written; see "Dead letters" in the package
	// documentation for the others.
	Status string
	// Deadline is a reprocessing row's claim deadline; CompletedAt is when
	// the row became resolved or discarded. Zero otherwise.
	Deadline, CompletedAt time.Time
	// MessageID and Key are the message's (Delivery.ID and Key); a requeue
	// keeps both.
	MessageID, Key string
}

// DeadLetterFilter selects dead letters. Zero fields match everything.
type DeadLetterFilter struct {
	// Queue, when set, is a valid queue name.
	Queue string
	// Status, when set, is one of DeadLetterStatuses.
	Status string
	// Limit is 1..MaxDeadLetterLimit; 0 means 100. Count ignores it.
	Limit int
	// Partition, when set, is in 0..MaxPartitions-1.
	Partition *int
	// PayloadType, when set, is a valid payload type.
	PayloadType string
	// FailedFrom (inclusive) and FailedBefore (exclusive), when set, bound
	// the failure time (microseconds; finer parts are cut).
	FailedFrom, FailedBefore time.Time
	// After continues a listing: a DeadLetterPage's Next. Count ignores it.
	After string
}

// DeadLetterStatuses are the statuses a dead letter can have.
var DeadLetterStatuses = []string{"pending", "reprocessing", "resolved", "discarded"}

// MaxDeadLetterLimit is the largest DeadLetterFilter.Limit.
const MaxDeadLetterLimit = 10000

// DeadLetters lists dead letters, newest first: the first page of
// DeadLetterPage. An invalid filter is rejected before the database is
// asked: a bad Queue wraps ErrInvalidQueueName, any other bad field
// ErrInvalidFilter.
func (o *Outbox) DeadLetters(ctx context.Context, f DeadLetterFilter) ([]DeadLetter, error) {
	p, err := o.DeadLetterPage(ctx, f)
	return p.DeadLetters, err
}

// Stats counts the rows of the outbox tables.
type Stats struct {
	Queues      int64
	Partitions  int64
	Messages    int64 // rows not yet vacuumed, sequenced or not
	Unsequenced int64
	DeadLetters int64
}

// Stats reads row counts; useful for monitoring and tests.
func (o *Outbox) Stats(ctx context.Context) (Stats, error) {
	r, err := o.d.Stats(ctx, o.db, &dialect.StatsParams{})
	if err != nil {
		return Stats{}, fmt.Errorf("outbox: stats: %w", err)
	}
	return Stats(*r), nil
}
