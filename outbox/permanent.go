package outbox

import (
	"context"
	"database/sql"
	"errors"
)

// PermanentError marks an error that retrying cannot fix (a payload that
// cannot be decoded, a request the downstream refuses for good): a handler
// built with PerMessageE, BatchE, TxPerMessageE or TxBatchE that returns
// one, wrapped or not, dead-letters its messages instead of retrying them.
// Build one with Permanent; detect one with errors.As.
type PermanentError struct {
	Err error
}

// Error returns the wrapped error's text, so that the dead letter's
// reason reads as the error did.
func (e *PermanentError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as permanent (see PermanentError). Permanent(nil) is
// nil, so `return outbox.Permanent(err)` is safe after any call.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// FromError turns a handler's error into its Result: nil is Success, an
// error that wraps a *PermanentError is Reject, and any other error is
// Retry; the error's text is the reason. Add WithProcessed for a batch
// that finished a prefix before the error.
func FromError(err error) Result {
	if err == nil {
		return Success()
	}
	if pe := (*PermanentError)(nil); errors.As(err, &pe) {
		return Reject(err.Error())
	}
	return Retry(err.Error())
}

// BatchE is Batch for a function that returns an error: nil acknowledges
// the batch, a permanent error (see Permanent) dead-letters it, and any
// other error retries it after backoff, with the error's text as the
// reason (see FromError). Return a Result from a Batch handler instead to
// acknowledge part of a batch (WithProcessed).
func BatchE(fn func(ctx context.Context, msgs []Delivery) error) Handler {
	if fn == nil {
		return Batch(nil)
	}
	return Batch(func(ctx context.Context, msgs []Delivery) Result { return FromError(fn(ctx, msgs)) })
}

// PerMessageE is PerMessage for a function that returns an error: nil
// acknowledges the message, a permanent error (see Permanent) dead-letters
// it and goes on with the next, and any other error stops the call and
// retries the message after backoff, with the error's text as the reason.
func PerMessageE(fn func(ctx context.Context, msg Delivery) error) Handler {
	if fn == nil {
		return PerMessage(nil)
	}
	return PerMessage(func(ctx context.Context, msg Delivery) Result { return FromError(fn(ctx, msg)) })
}

// TxBatchE is TxBatch for a function that returns an error: nil commits
// its writes with the acknowledgement; any error undoes its writes, and a
// permanent one (see Permanent) dead-letters the batch while any other
// retries it after backoff, with the error's text as the reason.
func TxBatchE(fn func(ctx context.Context, tx *sql.Tx, msgs []Delivery) error) Handler {
	if fn == nil {
		return TxBatch(nil)
	}
	return TxBatch(func(ctx context.Context, tx *sql.Tx, msgs []Delivery) Result { return FromError(fn(ctx, tx, msgs)) })
}

// TxPerMessageE is TxPerMessage for a function that returns an error: nil
// keeps the message's writes and acknowledges it; any error undoes its
// writes, and a permanent one (see Permanent) dead-letters the message and
// goes on with the next, while any other stops the call and retries the
// message after backoff, with the error's text as the reason.
func TxPerMessageE(fn func(ctx context.Context, tx *sql.Tx, msg Delivery) error) Handler {
	if fn == nil {
		return TxPerMessage(nil)
	}
	return TxPerMessage(func(ctx context.Context, tx *sql.Tx, msg Delivery) Result { return FromError(fn(ctx, tx, msg)) })
}
