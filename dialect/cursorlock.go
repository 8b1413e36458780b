package dialect

import (
	"context"
	"database/sql"
)

// CursorLocker is optionally implemented by a Dialect to let operators act on a
// blocked partition: the outbox's RetryPartition and SkipPartition call it,
// and return an error wrapping outbox.ErrNotSupported when the dialect
// lacks it. The pipeline never calls it.
//
// A partition is blocked by UpdateCursor with Block set (the "block" poison
// policy) and unblocked by any UpdateCursor without it; the operator calls
// run LockCursor, then UpdateCursor (and InsertDeadLetters) in the same
// transaction, unfenced, since they hold the row lock.
type CursorLocker interface {
	// LockCursor locks, inside tx, the cursor row of a queue's partition
	// and returns its state. Unlike LockPartition it waits for a lock
	// another transaction holds (bounded by ctx), and it takes blocked rows
	// too. It returns ErrQueueNotFound when the partition does not exist.
	LockCursor(ctx context.Context, tx *sql.Tx, p *LockCursorParams) (*LockCursorResult, error)
}

// LockCursorParams are the arguments of LockCursor.
type LockCursorParams struct {
	Queue     string
	Partition int
}

// LockCursorResult is a locked cursor row's state.
type LockCursorResult struct {
	PartitionID  int64
	ProcessedSeq int64
	LastSeq      int64
	Attempts     int
	LastError    string
	// Blocked reports blocked_at IS NOT NULL.
	Blocked bool
}
