package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
	in, err := o.inspector("partition state")
	if err != nil {
		return PartitionState{}, err
	}
	r, err := in.PartitionState(ctx, o.db, &dialect.PartitionStateParams{Queue: queue, Partition: partition})
	if errors.Is(err, dialect.ErrQueueNotFound) {
		return PartitionState{}, invalid(-1, "Queue", ErrUnknownQueue, "%q partition %d does not exist", truncate(queue), partition)
	}
	if err != nil {
		return PartitionState{}, fmt.Errorf("outbox: partition state: %w", err)
	}
	return PartitionState{
		Queue: queue, Partition: partition, LastSeq: r.LastSeq, ProcessedSeq: r.ProcessedSeq,
		Attempts: r.Attempts, LastError: r.LastError, NextAttemptAt: r.NextAttemptAt,
		Leased: r.LeaseToken != "" && r.LeaseUntil.After(r.Now), LeaseUntil: r.LeaseUntil, Now: r.Now,
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
	if f.Queue != "" && !ValidQueueName(f.Queue) {
		return nil, invalid(-1, "Queue", ErrInvalidQueueName, "%q", truncate(f.Queue))
	}
	if f.Status != "" && !slices.Contains(DeadLetterStatuses, f.Status) {
		return nil, invalid(-1, "Status", ErrInvalidFilter, "%q is not one of %v", truncate(f.Status), DeadLetterStatuses)
	}
	if f.Limit == 0 {
		f.Limit = 100
	}
	if f.Limit < 1 || f.Limit > MaxDeadLetterLimit {
		return nil, invalid(-1, "Limit", ErrInvalidFilter, "%d is not in 1..%d", f.Limit, MaxDeadLetterLimit)
	}
	if _, err := o.operator("dead letters"); err == nil || f.paged() {
		// The operations store knows every filter field (deadletters.go).
		p, err := o.DeadLetterPage(ctx, f)
		return p.DeadLetters, err
	}
	in, err := o.inspector("dead letters")
	if err != nil {
		return nil, err
	}
	r, err := in.ListDeadLetters(ctx, o.db, &dialect.ListDeadLettersParams{Queue: f.Queue, Status: f.Status, Limit: f.Limit})
	if err != nil {
		return nil, fmt.Errorf("outbox: dead letters: %w", err)
	}
	out := make([]DeadLetter, len(r.DeadLetters))
	for i, d := range r.DeadLetters {
		out[i] = DeadLetter{
			ID: d.ID, Queue: d.Queue, Partition: d.Partition, Seq: d.Seq, Payload: d.Payload,
			PayloadType: d.PayloadType, CreatedAt: d.CreatedAt, FailedAt: d.FailedAt,
			Attempts: d.Attempts, Reason: d.LastError, Status: d.Status,
		}
		if len(d.Headers) > 0 {
			_ = json.Unmarshal(d.Headers, &out[i].Headers)
		}
	}
	return out, nil
}

// Stats counts the rows of the outbox tables.
type Stats struct {
	Queues      int64
	Partitions  int64
	Messages    int64 // rows not yet vacuumed, sequenced or not
	Unsequenced int64
	DeadLetters int64
}

// Stats reads row counts; useful for monitoring and tests. Like
// PartitionState and DeadLetters, it returns an error wrapping
// ErrNotSupported when the dialect does not implement dialect.Inspector.
func (o *Outbox) Stats(ctx context.Context) (Stats, error) {
	in, err := o.inspector("stats")
	if err != nil {
		return Stats{}, err
	}
	r, err := in.Stats(ctx, o.db, &dialect.StatsParams{})
	if err != nil {
		return Stats{}, fmt.Errorf("outbox: stats: %w", err)
	}
	return Stats(*r), nil
}

// inspector returns the dialect's optional inspection methods, or an error
// wrapping ErrNotSupported naming what needed them.
func (o *Outbox) inspector(what string) (dialect.Inspector, error) {
	in, ok := o.d.(dialect.Inspector)
	if !ok {
		return nil, fmt.Errorf("outbox: %s: dialect %s does not implement dialect.Inspector: %w", what, o.d.Name(), ErrNotSupported)
	}
	return in, nil
}
