package outbox

import (
	"database/sql"
	"errors"
	"fmt"
)

// Sentinel errors. Every error the package returns for bad input wraps one of
// these, so callers can test with errors.Is; details are in the wrapping
// *ValidationError or *PartitionCountMismatchError.
var (
	// ErrInvalidConfig: a Config field is out of range (the message names
	// it), or New got a nil *sql.DB or a nil dialect (typed nil included).
	ErrInvalidConfig = errors.New("outbox: invalid config")
	// ErrInvalidQueueName: a queue name is not [A-Za-z0-9._-]{1,1024} with an
	// alphanumeric first and last character.
	ErrInvalidQueueName = errors.New("outbox: invalid queue name")
	// ErrUnknownQueue: the queue was never declared with DeclareQueue.
	ErrUnknownQueue = errors.New("outbox: unknown queue")
	// ErrInvalidPartitionCount: a partition count outside 1..MaxPartitions.
	ErrInvalidPartitionCount = errors.New("outbox: invalid partition count")
	// ErrPartitionCountMismatch: a queue was declared again with another
	// partition count. See PartitionCountMismatchError.
	ErrPartitionCountMismatch = errors.New("outbox: partition count mismatch")
	// ErrPartitionOutOfRange: a message's partition is negative or not
	// below the queue's partition count.
	ErrPartitionOutOfRange = errors.New("outbox: partition out of range")
	// ErrPayloadTooLarge: the payload exceeds Config.MaxPayloadBytes.
	ErrPayloadTooLarge = errors.New("outbox: payload too large")
	// ErrInvalidPayloadType: the payload type is not 1–1024 bytes of
	// printable ASCII.
	ErrInvalidPayloadType = errors.New("outbox: invalid payload type")
	// ErrInvalidHeaders: a header key is empty or longer than
	// MaxHeaderKeyLen bytes, a key or value is not valid UTF-8, or the
	// headers exceed MaxHeaders entries or MaxHeaderBytes encoded.
	ErrInvalidHeaders = errors.New("outbox: invalid headers")
	// ErrInvalidKey: a message key too long, not UTF-8 or with a control
	// character.
	ErrInvalidKey = errors.New("outbox: invalid key")
	// ErrWrongDialect: the database is not of the dialect's kind (a
	// PostgreSQL dialect over a MySQL pool, say); checked before the first
	// schema access by DeclareQueue, Start and Enqueue. Only a real mismatch
	// matches it: when the check cannot ask (a cancelled context, a closed
	// *sql.DB, a server still starting up) the error wraps that cause
	// instead (context.Canceled, sql.ErrConnDone, the driver's error).
	ErrWrongDialect = errors.New("outbox: wrong dialect for this database")
	// ErrInvalidFilter: a DeadLetterFilter field is out of range, or an
	// argument of a dead-letter operation is (ids, counts, durations,
	// claim tokens).
	ErrInvalidFilter = errors.New("outbox: invalid filter")
	// ErrNilTx: Enqueue was given a nil *sql.Tx.
	ErrNilTx = errors.New("outbox: nil transaction")
	// ErrTxDone: the transaction was already committed or rolled back. It
	// also matches sql.ErrTxDone.
	ErrTxDone = fmt.Errorf("outbox: transaction already committed or rolled back: %w", sql.ErrTxDone)
	// ErrEmptyBatch: EnqueueBatch was given no messages.
	ErrEmptyBatch = errors.New("outbox: empty batch")
	// ErrInvalidHandler: a nil handler, or a second handler for one queue.
	ErrInvalidHandler = errors.New("outbox: invalid handler")
	// ErrAlreadyStarted: Start was called twice, or Handle after Start.
	ErrAlreadyStarted = errors.New("outbox: already started")
	// ErrStopped: Start was called after Stop.
	ErrStopped = errors.New("outbox: stopped")
)

// ValidationError describes one rejected input. It unwraps to one of the
// sentinel errors above.
type ValidationError struct {
	// Index is the message's position in an EnqueueBatch call, or -1.
	Index int
	// Field names the offending input, such as "Queue" or "Payload".
	Field string
	// Err is the sentinel, such as ErrPayloadTooLarge.
	Err error
	// Detail explains the problem.
	Detail string
}

// Error describes the rejected input.
func (e *ValidationError) Error() string {
	where := ""
	if e.Index >= 0 {
		where = fmt.Sprintf("message %d: ", e.Index)
	}
	return fmt.Sprintf("%s: %s%s: %s", e.Err, where, e.Field, e.Detail)
}

// Unwrap returns the sentinel.
func (e *ValidationError) Unwrap() error { return e.Err }

// PartitionCountMismatchError reports a queue declared with a partition
// count other than the one stored. It matches ErrPartitionCountMismatch.
type PartitionCountMismatchError struct {
	Queue     string
	Stored    int
	Requested int
}

// Error names the queue and both counts.
func (e *PartitionCountMismatchError) Error() string {
	return fmt.Sprintf("outbox: queue %q has %d partitions, declared with %d", e.Queue, e.Stored, e.Requested)
}

// Is makes errors.Is(err, ErrPartitionCountMismatch) true.
func (e *PartitionCountMismatchError) Is(target error) bool {
	return target == ErrPartitionCountMismatch
}

func invalid(index int, field string, sentinel error, format string, args ...any) error {
	return &ValidationError{Index: index, Field: field, Err: sentinel, Detail: fmt.Sprintf(format, args...)}
}
