package dialect

import (
	"time"
)

// Dead-letter statuses. A dead letter is written pending; the dead-letter
// methods move it along these transitions, each guarded by the status it
// leaves (and, for a held row, by its hold's deadline):
//
//	pending      → resolved      requeue (TransitionDeadLetters inside RequeueDeadLetters)
//	pending      → discarded     discard
//	pending      → reprocessing  hold (HoldDeadLetters), with a deadline
//	reprocessing → reprocessing  hold again, once the deadline has passed
//	reprocessing → resolved      resolve, by the hold that holds it
//	reprocessing → pending       return, by the hold that holds it (attempts+1, reason)
//
// resolved and discarded are final; CleanupDeadLetters deletes them.
const (
	StatusPending      = "pending"
	StatusReprocessing = "reprocessing"
	StatusResolved     = "resolved"
	StatusDiscarded    = "discarded"
)

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
	// Deadline, when not zero, is the hold that must hold each row.
	Deadline time.Time
	// Reason is stored as last_error when To is pending.
	Reason string
}

// TransitionDeadLettersResult reports a transition.
type TransitionDeadLettersResult struct {
	Changed int
	// Missing are ids of no row; Refused are ids of rows whose status (or
	// hold) did not allow the transition. Both are set only when Changed
	// falls short, and then nothing is inserted (RequeueDeadLetters).
	Missing, Refused []int64
}

// RequeueDeadLettersParams are the arguments of RequeueDeadLetters.
type RequeueDeadLettersParams struct {
	IDs []int64 // distinct
}

// RequeueDeadLettersResult reports a requeue: the transition and, when
// every row changed, the rows to insert.
type RequeueDeadLettersResult struct {
	TransitionDeadLettersResult
	Rows []InsertRow
}

// HoldDeadLettersParams are the arguments of HoldDeadLetters.
type HoldDeadLettersParams struct {
	Queue string // empty: any queue
	Limit int
	For   time.Duration // deadline = now() + For
}

// HoldDeadLettersResult is a hold: its rows, oldest id first, and the
// deadline that fences them.
type HoldDeadLettersResult struct {
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
	// Partition, when set (with Queue), reports that partition only, and
	// no dead letters.
	Partition *int
}

// PartitionStatus is one partition's row, cursor row and backlog, as
// stored. Times are database times; zero when NULL.
type PartitionStatus struct {
	PartitionID   int64
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
