package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/modkit-go/db/dialect"
)

// PartitionStatus is one partition's delivery state (see
// Outbox.PartitionStatus and QueueStatus). Times are the database's; a
// time that does not apply (no retry pending, no live lease, not blocked)
// is zero.
type PartitionStatus struct {
	Queue     string
	Partition int
	// LastSeq is the highest seq the sequencer assigned, ProcessedSeq the
	// highest acknowledged (or dead-lettered).
	LastSeq, ProcessedSeq int64
	// Unsequenced counts committed messages not sequenced yet; Backlog is
	// every undelivered message: LastSeq-ProcessedSeq+Unsequenced.
	Unsequenced, Backlog int64
	// OldestCreatedAt is when the next message to deliver was enqueued (the
	// head: seq ProcessedSeq+1, or the first unsequenced one) and Age how
	// long ago that was; both zero when Backlog is 0.
	OldestCreatedAt time.Time
	Age             time.Duration
	// Attempts counts failures of the head; LastError is the last reason.
	Attempts  int
	LastError string
	// NextAttemptAt is when a retry is due: zero unless one is pending
	// (Attempts > 0 and the time has not come).
	NextAttemptAt time.Time
	// LeaseToken identifies the lease holder's claim while Leased (a
	// decoupled worker's unexpired lease); LeaseUntil is when it ends.
	LeaseToken string
	Leased     bool
	LeaseUntil time.Time
	// Blocked reports a partition stopped at its head by PoisonBlock since
	// BlockedAt; Attempts and LastError say why. RetryPartition or
	// SkipPartition resumes it.
	Blocked   bool
	BlockedAt time.Time
	// Now is the database clock when the state was read.
	Now time.Time
}

// QueueStatus is a queue's delivery state: totals, partitions and dead
// letters.
type QueueStatus struct {
	Queue string
	// Partitions, by partition number.
	Partitions []PartitionStatus
	// Totals over Partitions: Backlog and Unsequenced are sums, Age the
	// largest; Retrying, Leased and Blocked count partitions.
	Backlog, Unsequenced      int64
	Age                       time.Duration
	Retrying, Leased, Blocked int
	// DeadLetters counts the queue's dead letters by status; every status
	// of DeadLetterStatuses is present.
	DeadLetters map[string]int64
	// Now is the database clock when the state was read.
	Now time.Time
}

// QueueStatus reads the state of one queue in a fixed number of statements
// (two on the built-in dialects), whatever its partition count. It returns
// an error wrapping ErrInvalidQueueName for an invalid name and
// ErrUnknownQueue for a queue never declared.
func (o *Outbox) QueueStatus(ctx context.Context, queue string) (QueueStatus, error) {
	if !ValidQueueName(queue) {
		return QueueStatus{}, invalid(-1, "Queue", ErrInvalidQueueName, "%q", truncate(queue))
	}
	qs, err := o.status(ctx, queue)
	if errors.Is(err, dialect.ErrQueueNotFound) {
		return QueueStatus{}, invalid(-1, "Queue", ErrUnknownQueue, "%q was never declared", truncate(queue))
	}
	if err != nil {
		return QueueStatus{}, err
	}
	return qs[0], nil
}

// Status reads the state of every queue, by name, in as many statements as
// QueueStatus takes for one.
func (o *Outbox) Status(ctx context.Context) ([]QueueStatus, error) {
	return o.status(ctx, "")
}

func (o *Outbox) status(ctx context.Context, queue string) ([]QueueStatus, error) {
	r, err := o.d.QueueStatus(ctx, o.db, &dialect.QueueStatusParams{Queue: queue})
	if errors.Is(err, dialect.ErrQueueNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, cmp.Or(o.wrongDatabase(err), fmt.Errorf("outbox: status: %w", err))
	}
	var out []QueueStatus
	at := map[string]int{}
	get := func(name string) *QueueStatus {
		i, ok := at[name]
		if !ok {
			i = len(out)
			at[name] = i
			dl := make(map[string]int64, len(DeadLetterStatuses))
			for _, s := range DeadLetterStatuses {
				dl[s] = 0
			}
			out = append(out, QueueStatus{Queue: name, DeadLetters: dl, Now: r.Now})
		}
		return &out[i]
	}
	for _, p := range r.Partitions {
		q := get(p.Queue)
		s := partitionStatus(p, r.Now)
		q.Partitions = append(q.Partitions, s)
		q.Backlog += s.Backlog
		q.Unsequenced += s.Unsequenced
		q.Age = max(q.Age, s.Age)
		q.Retrying += b2i(!s.NextAttemptAt.IsZero())
		q.Leased += b2i(s.Leased)
		q.Blocked += b2i(s.Blocked)
	}
	for _, c := range r.DeadLetters {
		get(c.Queue).DeadLetters[c.Status] += c.Count
	}
	return out, nil
}

func partitionStatus(p dialect.PartitionStatus, now time.Time) PartitionStatus {
	s := PartitionStatus{
		Queue: p.Queue, Partition: p.Partition, Now: now, LastSeq: p.LastSeq, ProcessedSeq: p.ProcessedSeq,
		Unsequenced: p.Unsequenced, Backlog: p.LastSeq - p.ProcessedSeq + p.Unsequenced,
		OldestCreatedAt: p.OldestCreatedAt, Attempts: p.Attempts, LastError: p.LastError,
		Blocked: !p.BlockedAt.IsZero(), BlockedAt: p.BlockedAt,
	}
	if !p.OldestCreatedAt.IsZero() && now.After(p.OldestCreatedAt) {
		s.Age = now.Sub(p.OldestCreatedAt)
	}
	// next_attempt_at is written on every cursor update, healthy or not:
	// only a failure with a time still ahead is a pending retry.
	if p.Attempts > 0 && p.NextAttemptAt.After(now) {
		s.NextAttemptAt = p.NextAttemptAt
	}
	if p.LeaseToken != "" && p.LeaseUntil.After(now) {
		s.LeaseToken, s.Leased, s.LeaseUntil = p.LeaseToken, true, p.LeaseUntil
	}
	return s
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
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
