package dialect

import (
	"context"
	"database/sql"
	"time"
)

// Dead-letter statuses. A dead letter is written pending; the Operator
// methods move it along these transitions, each guarded by the status it
// leaves (and, for a claimed row, by its claim's deadline):
//
//	pending      → resolved      requeue (TransitionDeadLetters inside RequeueDeadLetters)
//	pending      → discarded     discard
//	pending      → reprocessing  claim (ClaimDeadLetters), with a deadline
//	reprocessing → reprocessing  claim again, once the deadline has passed
//	reprocessing → resolved      resolve, by the claim that holds it
//	reprocessing → pending       return, by the claim that holds it (attempts+1, reason)
//
// resolved and discarded are final; CleanupDeadLetters deletes them.
const (
	StatusPending      = "pending"
	StatusReprocessing = "reprocessing"
	StatusResolved     = "resolved"
	StatusDiscarded    = "discarded"
)

// OperatorSource is optionally implemented by a Dialect whose [Operator] is
// a separate value (the built-in dialects share theirs through an internal
// package). The outbox core uses a Dialect that implements Operator itself
// first, then one that implements OperatorSource.
type OperatorSource interface {
	// Operator returns the dialect's Operator for the same tables.
	Operator() Operator
}

// Operator is the optional operations store: the outbox's dead-letter
// methods (list, count, requeue, discard, replay, cleanup) and its status
// methods call it, and return an error wrapping outbox.ErrNotSupported
// when the dialect lacks it. The pipeline never depends on it.
//
// Every status change is one guarded statement (UPDATE … WHERE status = …),
// so of two operators acting on one row exactly one changes it; a caller
// that needs all-or-nothing over several rows runs the method in a
// transaction and rolls back when fewer rows changed than it asked for.
// Database time (now()) decides deadlines and completion times.
type Operator interface {
	// FindDeadLetters lists the dead letters p selects, newest first: by
	// failed_at descending, then id descending (a total order, so paging
	// with After never repeats nor skips a row, even among rows with equal
	// failed_at).
	FindDeadLetters(ctx context.Context, q DBTX, p *FindDeadLettersParams) (*ListDeadLettersResult, error)
	// CountDeadLetters counts the dead letters p selects (After and Limit
	// are ignored).
	CountDeadLetters(ctx context.Context, q DBTX, p *FindDeadLettersParams) (*CountDeadLettersResult, error)
	// TransitionDeadLetters moves the rows p.IDs names from p.From to p.To
	// in one guarded statement: a row changes only if its status is From
	// (and, when Deadline is set, it is held by that claim: its deadline
	// equals Deadline and has not passed). Setting To resolved or
	// discarded stamps completed_at; To pending (a return) also sets
	// last_error to Reason, adds one to attempts and clears the deadline.
	// When fewer rows changed than p.IDs names, the result says which
	// ids were missing and which were refused; the caller rolls back.
	// Rows are locked in id order where the database has row locks, so
	// overlapping calls do not deadlock.
	TransitionDeadLetters(ctx context.Context, q DBTX, p *TransitionDeadLettersParams) (*TransitionDeadLettersResult, error)
	// RequeueDeadLetters, on q inside a transaction, moves the pending
	// rows p.IDs names to resolved (as TransitionDeadLetters) and, only
	// when every one of them changed, inserts them as new messages of
	// their queue and partition through the dialect's InsertMessages, in
	// (queue, partition, seq, id) order: new ids in that order, sequenced
	// after what the partition already holds. It never leaves rows marked
	// without their messages: when the marks fall short it inserts nothing
	// and reports the shortfall; when the insert fails it returns the error
	// (ErrQueueNotFound for a partition that no longer exists). Either way
	// the caller rolls the transaction back.
	RequeueDeadLetters(ctx context.Context, q DBTX, p *RequeueDeadLettersParams) (*TransitionDeadLettersResult, error)
	// ClaimDeadLetters, in a transaction of its own committed before it
	// returns, claims up to p.Limit dead letters that are pending, or
	// reprocessing with a deadline that has passed, oldest id first,
	// skipping rows other transactions hold (SKIP LOCKED where the
	// database has it), and moves them to reprocessing with deadline
	// now()+p.For. Every row of one claim gets the same deadline, which
	// the result reports and which fences Resolve and Return: two claims
	// never hold one row at the same time.
	ClaimDeadLetters(ctx context.Context, db *sql.DB, p *ClaimDeadLettersParams) (*ClaimDeadLettersResult, error)
	// CleanupDeadLetters deletes up to p.Limit resolved or discarded rows
	// completed at least p.OlderThan ago (database time), and no other
	// row. The caller repeats it until a call deletes fewer than Limit.
	CleanupDeadLetters(ctx context.Context, q DBTX, p *CleanupDeadLettersParams) (*CleanupDeadLettersResult, error)
	// QueueStatus reports every partition of p.Queue (of every queue when
	// empty) and its dead letters by status, in a number of statements
	// that does not depend on the partition count. It returns
	// ErrQueueNotFound for a named queue that has no partitions.
	QueueStatus(ctx context.Context, q DBTX, p *QueueStatusParams) (*QueueStatusResult, error)
}

// FindDeadLettersParams select dead letters. Zero fields match everything.
type FindDeadLettersParams struct {
	Queue       string
	Partition   *int
	PayloadType string
	Status      string
	// FailedFrom (inclusive) and FailedBefore (exclusive) bound failed_at;
	// zero means unbounded.
	FailedFrom, FailedBefore time.Time
	// After, when AfterID > 0, continues a listing after the row with
	// this failed_at and id: rows with (failed_at, id) below that pair.
	AfterFailedAt time.Time
	AfterID       int64
	Limit         int
}

// CountDeadLettersResult is a count of dead letters.
type CountDeadLettersResult struct {
	Count int64
}

// TransitionDeadLettersParams are the arguments of TransitionDeadLetters.
type TransitionDeadLettersParams struct {
	IDs      []int64 // distinct
	From, To string
	// Deadline, when not zero, is the claim that must hold each row.
	Deadline time.Time
	// Reason is stored as last_error when To is pending.
	Reason string
}

// TransitionDeadLettersResult reports a transition.
type TransitionDeadLettersResult struct {
	Changed int
	// Missing are ids of no row; Refused are ids of rows whose status (or
	// claim) did not allow the transition. Both are set only when Changed
	// falls short, and then nothing is inserted (RequeueDeadLetters).
	Missing, Refused []int64
}

// RequeueDeadLettersParams are the arguments of RequeueDeadLetters.
type RequeueDeadLettersParams struct {
	IDs []int64 // distinct
}

// ClaimDeadLettersParams are the arguments of ClaimDeadLetters.
type ClaimDeadLettersParams struct {
	Queue string // empty: any queue
	Limit int
	For   time.Duration // deadline = now() + For
}

// ClaimDeadLettersResult is a claim: its rows, oldest id first, and the
// deadline that fences them.
type ClaimDeadLettersResult struct {
	Deadline    time.Time
	DeadLetters []DeadLetter
}

// CleanupDeadLettersParams are the arguments of CleanupDeadLetters.
type CleanupDeadLettersParams struct {
	OlderThan time.Duration
	Limit     int
}

// CleanupDeadLettersResult reports deleted rows.
type CleanupDeadLettersResult struct {
	Deleted int
}

// QueueStatusParams are the arguments of QueueStatus.
type QueueStatusParams struct {
	Queue string // empty: every queue
}

// PartitionStatus is one partition's row, cursor row and backlog, as
// stored. Times are database times; zero when NULL.
type PartitionStatus struct {
	Queue         string
	Partition     int
	LastSeq       int64
	ProcessedSeq  int64
	Unsequenced   int64
	Attempts      int
	LastError     string
	NextAttemptAt time.Time
	LeaseToken    string
	LeaseUntil    time.Time
	// OldestCreatedAt is the created_at of the partition's next message to
	// deliver: seq processed_seq+1, or else its first unsequenced row by
	// id; zero when it has none.
	OldestCreatedAt time.Time
	// BlockedAt is when the partition was blocked; zero when it is not
	// (or the schema has no blocked_at column yet).
	BlockedAt time.Time
}

// DeadLetterCount is how many dead letters of a queue have a status.
type DeadLetterCount struct {
	Queue  string
	Status string
	Count  int64
}

// QueueStatusResult is the state of one queue or of all, partitions in
// (queue, partition) order.
type QueueStatusResult struct {
	Partitions  []PartitionStatus
	DeadLetters []DeadLetterCount
	Now         time.Time // the database clock when read
}
