package outbox

import (
	"context"
	"database/sql"
	"fmt"
)

// Call is one handler call as a Middleware sees it.
type Call struct {
	// Messages are the call's deliveries, of one partition in seq order:
	// one for PerMessage and TxPerMessage, the batch for Batch and TxBatch.
	Messages []Delivery
	// Tx is the transaction that acknowledges the messages (TxBatch,
	// TxPerMessage), through which the handler writes; nil in decoupled
	// mode.
	Tx *sql.Tx
}

// CallFunc runs a handler call and returns its result.
type CallFunc func(ctx context.Context, c Call) Result

// Middleware wraps every call of a handler: it receives next, the call it
// wraps, and returns the function that runs in its place. That function
// sees the messages, the transaction in transactional mode and next's
// result, and the Result it returns is the one the outbox applies, so it
// may log, measure, delay, or change a Retry into a Reject (or the
// reverse). It may also return without calling next.
//
// It runs where the handler would: inside the call's span, under
// HandlerTimeout, with panics turned into a Retry, and in transactional
// mode inside the message's (or batch's) savepoint, so a Retry or Reject
// it returns undoes the handler's writes. It may change a message's
// contents before passing it on, but must pass next the same number of
// messages, in order, and the same Tx: the result applies to the messages
// the outbox delivered.
type Middleware func(next CallFunc) CallFunc

// Wrap returns h with mws around each of its calls, the first outermost:
// Wrap(h, a, b) runs a, which runs b, which runs h. The result is a
// handler of h's kind. A nil middleware is skipped; a nil h stays nil (and
// Handle refuses it).
func Wrap(h Handler, mws ...Middleware) Handler {
	if handlerIsNil(h) {
		return h
	}
	for i := len(mws) - 1; i >= 0; i-- {
		if mws[i] != nil {
			h = h.wrap(mws[i])
		}
	}
	return h
}

func (h batchHandler) wrap(mw Middleware) Handler {
	next := mw(func(ctx context.Context, c Call) Result { return h.fn(ctx, c.Messages) })
	return batchHandler{func(ctx context.Context, msgs []Delivery) Result {
		return next(ctx, Call{Messages: msgs})
	}}
}

func (h messageHandler) wrap(mw Middleware) Handler {
	next := mw(func(ctx context.Context, c Call) Result {
		if len(c.Messages) != 1 {
			return Retry(fmt.Sprintf("outbox: a middleware passed %d messages to a per-message handler", len(c.Messages)))
		}
		return h.fn(ctx, c.Messages[0])
	})
	return messageHandler{func(ctx context.Context, msg Delivery) Result {
		return next(ctx, Call{Messages: []Delivery{msg}})
	}}
}

func (h txBatchHandler) wrap(mw Middleware) Handler {
	next := mw(func(ctx context.Context, c Call) Result { return h.fn(ctx, c.Tx, c.Messages) })
	return txBatchHandler{func(ctx context.Context, tx *sql.Tx, msgs []Delivery) Result {
		return next(ctx, Call{Messages: msgs, Tx: tx})
	}}
}

func (h txMessageHandler) wrap(mw Middleware) Handler {
	next := mw(func(ctx context.Context, c Call) Result {
		if len(c.Messages) != 1 {
			return Retry(fmt.Sprintf("outbox: a middleware passed %d messages to a per-message handler", len(c.Messages)))
		}
		return h.fn(ctx, c.Tx, c.Messages[0])
	})
	return txMessageHandler{func(ctx context.Context, tx *sql.Tx, msg Delivery) Result {
		return next(ctx, Call{Messages: []Delivery{msg}, Tx: tx})
	}}
}
