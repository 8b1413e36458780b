package outbox

import (
	"context"
	"database/sql"
	"fmt"
)

type resultKind uint8

const (
	kindSuccess resultKind = iota
	kindRetry
	kindReject
)

// Result is what a handler returns: Success, Retry or Reject, optionally
// with the number of leading messages of the batch it finished
// (WithProcessed). The zero Result is Success.
type Result struct {
	kind      resultKind
	reason    string
	processed int
	partial   bool
}

// Success acknowledges every message of the call.
func Success() Result { return Result{} }

// Retry asks for the unfinished messages to be delivered again after
// exponential backoff; reason is stored as the partition's last error.
func Retry(reason string) Result { return Result{kind: kindRetry, reason: reason} }

// Reject sends the unfinished messages to the dead-letter table with reason
// and moves on.
func Reject(reason string) Result { return Result{kind: kindReject, reason: reason} }

// WithProcessed says the first n messages of the batch were finished: they
// are acknowledged, and the result applies to the rest only. Values are
// clamped to [0, len(batch)].
func (r Result) WithProcessed(n int) Result {
	r.processed, r.partial = n, true
	return r
}

// IsSuccess reports whether r is a Success.
func (r Result) IsSuccess() bool { return r.kind == kindSuccess }

// IsRetry reports whether r is a Retry.
func (r Result) IsRetry() bool { return r.kind == kindRetry }

// IsReject reports whether r is a Reject.
func (r Result) IsReject() bool { return r.kind == kindReject }

// Reason is the reason given to Retry or Reject.
func (r Result) Reason() string { return r.reason }

// String renders r as "success", "retry: reason" or "reject: reason".
func (r Result) String() string {
	switch r.kind {
	case kindRetry:
		return "retry: " + r.reason
	case kindReject:
		return "reject: " + r.reason
	}
	return "success"
}

// Handler processes a queue's messages. Build one with Batch, PerMessage,
// TxBatch or TxPerMessage.
type Handler interface {
	transactional() bool
	isNil() bool
}

// BatchFunc handles a batch of one partition's messages, in seq order,
// outside any transaction (decoupled mode).
type BatchFunc func(ctx context.Context, msgs []Delivery) Result

// MessageFunc handles one message outside any transaction.
type MessageFunc func(ctx context.Context, msg Delivery) Result

// TxBatchFunc handles a batch inside the transaction that acknowledges it.
type TxBatchFunc func(ctx context.Context, tx *sql.Tx, msgs []Delivery) Result

// TxMessageFunc handles one message inside the transaction that
// acknowledges it.
type TxMessageFunc func(ctx context.Context, tx *sql.Tx, msg Delivery) Result

type batchHandler struct{ fn BatchFunc }
type messageHandler struct{ fn MessageFunc }
type txBatchHandler struct{ fn TxBatchFunc }
type txMessageHandler struct{ fn TxMessageFunc }

func (batchHandler) transactional() bool     { return false }
func (messageHandler) transactional() bool   { return false }
func (txBatchHandler) transactional() bool   { return true }
func (txMessageHandler) transactional() bool { return true }

func (h batchHandler) isNil() bool     { return h.fn == nil }
func (h messageHandler) isNil() bool   { return h.fn == nil }
func (h txBatchHandler) isNil() bool   { return h.fn == nil }
func (h txMessageHandler) isNil() bool { return h.fn == nil }

// Batch is a decoupled batch handler: at-least-once, under a lease.
func Batch(fn BatchFunc) Handler { return batchHandler{fn} }

// PerMessage is a decoupled handler called once per message, in order. It
// stops at the first Retry; a Reject dead-letters that one message and
// continues with the next.
func PerMessage(fn MessageFunc) Handler { return messageHandler{fn} }

// TxBatch is a transactional batch handler: its writes through tx commit
// together with the acknowledgement, or not at all.
func TxBatch(fn TxBatchFunc) Handler { return txBatchHandler{fn} }

// TxPerMessage is a transactional handler called once per message, each
// inside its own savepoint: a Retry or Reject undoes that message's writes.
func TxPerMessage(fn TxMessageFunc) Handler { return txMessageHandler{fn} }

// rejection is one message dead-lettered inside a call.
type rejection struct {
	index  int
	reason string
}

// outcome is a handler call's result in the processor's terms. Messages
// [0, done) are finished (acknowledged, or dead-lettered if listed in
// rejected); kind applies to messages [done, n).
type outcome struct {
	done     int
	rejected []rejection
	kind     resultKind
	reason   string
	headOnly bool // a Reject of messages[done] alone (MaxAttempts)
}

func batchOutcome(r Result, n int) outcome {
	if r.kind == kindSuccess {
		return outcome{done: n}
	}
	done := 0
	if r.partial {
		done = min(max(r.processed, 0), n)
	}
	if done == n {
		return outcome{done: n}
	}
	return outcome{done: done, kind: r.kind, reason: r.reason}
}

// call runs fn, turning a panic into a Retry whose reason is the panic.
func call(fn func() Result) (r Result) {
	defer func() {
		if p := recover(); p != nil {
			r = Retry(fmt.Sprintf("panic: %v", p))
		}
	}()
	return fn()
}
