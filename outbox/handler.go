package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/modkit-go/db/dialect"
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
	one       bool // with kindReject: the first unfinished message only
}

// Success acknowledges every message of the call.
func Success() Result { return Result{} }

// Retry asks for the unfinished messages to be delivered again after
// exponential backoff; reason is stored as the partition's last error,
// sanitized and bounded to MaxReasonBytes.
func Retry(reason string) Result { return Result{kind: kindRetry, reason: reason} }

// Reject sends the unfinished messages to the dead-letter table with reason
// (sanitized and bounded to MaxReasonBytes) and moves on.
func Reject(reason string) Result { return Result{kind: kindReject, reason: reason} }

// RejectOne dead-letters the first unfinished message alone, with reason
// (sanitized and bounded to MaxReasonBytes), and delivers the messages
// after it again at once, in order, without counting an attempt. It is
// what a batch handler returns when one message can never be processed
// but those after it may: with WithProcessed(n), the message rejected is
// the batch's n+1th, and the first n are acknowledged.
func RejectOne(reason string) Result { return Result{kind: kindReject, reason: reason, one: true} }

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
// TxBatch or TxPerMessage (or their error-returning forms BatchE,
// PerMessageE, TxBatchE and TxPerMessageE), and wrap it in middleware with
// Wrap. A type that embeds a Handler is a Handler too and delivers through
// the embedded one.
type Handler interface {
	transactional() bool
	isNil() bool
	// wrap returns a handler of the same kind whose calls run through mw.
	wrap(mw Middleware) Handler
	// deliver calls the handler on a batch. The handler value does the
	// calling, so that a type embedding a Handler forwards it. An error
	// means the delivery broke down (a transactional handler's savepoint
	// failed, say); the worker counts it as a failed attempt.
	deliver(s *callScope, ds []Delivery) (outcome, error)
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

func (h batchHandler) deliver(s *callScope, ds []Delivery) (outcome, error) {
	return batchOutcome(s.call(ds, func(ctx context.Context) Result { return h.fn(ctx, ds) }), len(ds)), nil
}

func (h messageHandler) deliver(s *callScope, ds []Delivery) (outcome, error) {
	return perMessage(ds, func(d Delivery) Result {
		return s.call([]Delivery{d}, func(ctx context.Context) Result { return h.fn(ctx, d) })
	}), nil
}

func (h txBatchHandler) deliver(s *callScope, ds []Delivery) (outcome, error) {
	if s.tx == nil {
		return outcome{}, errNotInTx
	}
	return s.txBatch(ds, h.fn)
}

func (h txMessageHandler) deliver(s *callScope, ds []Delivery) (outcome, error) {
	if s.tx == nil {
		return outcome{}, errNotInTx
	}
	return s.txPerMessage(ds, h.fn)
}

// errNotInTx: a transactional handler reached the decoupled path.
var errNotInTx = fmt.Errorf("%w: a transactional handler needs a transaction", ErrInvalidHandler)

// handlerIsNil reports whether h cannot deliver: nil, built from a nil
// function, or a wrapper around nothing (whose methods would panic).
func handlerIsNil(h Handler) (isNil bool) {
	defer func() {
		if recover() != nil {
			isNil = true
		}
	}()
	return h == nil || h.isNil()
}

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

// outcome is a handler call's result in the worker's terms. Messages
// [0, done) are finished (acknowledged, or dead-lettered if listed in
// rejected); kind applies to messages [done, n).
type outcome struct {
	done     int
	rejected []rejection
	kind     resultKind
	reason   string
	headOnly bool // a Reject of messages[done] alone (MaxAttempts)
	block    bool // with kindRetry: block at the head (PoisonBlock, MaxAttempts)
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
	return outcome{done: done, kind: r.kind, reason: r.reason, headOnly: r.one}
}

// settled returns out for a batch of n messages, unless it would
// acknowledge what the handler never finished: a Success that does not
// cover the batch (the zero outcome) retries the rest, and an outcome of
// an unknown kind or with an impossible count retries the whole batch.
// Only an explicit, complete result acknowledges.
func (out outcome) settled(n int) outcome {
	switch {
	case out.kind == kindSuccess && out.done == n:
		return out
	case out.done < 0 || out.done >= n:
		// An impossible count: nothing of the outcome can be trusted.
	case out.kind == kindSuccess:
		out.kind = kindRetry
		out.reason = fmt.Sprintf("outbox: the handler call ended without a result for messages %d..%d", out.done+1, n)
		return out
	case out.kind == kindRetry || out.kind == kindReject:
		return out
	}
	return outcome{kind: kindRetry, reason: "outbox: the handler call ended without a valid result"}
}

// callScope is what one delivery's handler calls share: the context they
// derive theirs from, the per-call timeout, and in transactional mode the
// transaction and its savepoints.
type callScope struct {
	ctx     context.Context
	timeout time.Duration // Config.HandlerTimeout; 0: none
	// expire, when set, runs as soon as a call outlives its timeout
	// (transactional mode: roll back and count the attempt); the call
	// still runs to its end, and its result is replaced by a Retry.
	expire func()
	tx     *sql.Tx
	sp     func(name string, op dialect.SavepointOp) error
	tel    *telemetry // nil: no spans or handler metrics
}

// call runs fn, the handler's call on ds, and records it: a span that fn's
// context carries, and its duration (see telemetry.startCall).
func (s *callScope) call(ds []Delivery, fn func(ctx context.Context) Result) Result {
	if s.tel == nil {
		return s.run(s.ctx, fn)
	}
	ctx, span, start := s.tel.startCall(s.ctx, ds)
	r := s.run(ctx, fn)
	s.tel.endCall(ds, span, start, r)
	return r
}

// run runs fn in a goroutine of its own and returns its result. A panic
// becomes a Retry whose reason is the panic value; a call that ended
// without returning (runtime.Goexit) becomes a Retry too, so neither ends
// the worker. The worker waits for fn however long it takes, which keeps
// at most MaxConcurrency calls running.
func (s *callScope) run(base context.Context, fn func(ctx context.Context) Result) Result {
	ctx, cancel := base, context.CancelFunc(func() {})
	if s.timeout > 0 {
		ctx, cancel = context.WithTimeout(base, s.timeout)
	}
	defer cancel()
	res := make(chan Result, 1)
	go func() {
		returned := false
		defer func() {
			if returned {
				return
			}
			r := Retry("handler called runtime.Goexit")
			if p := recover(); p != nil {
				r = Retry(fmt.Sprintf("panic: %v", p))
			}
			res <- r
		}()
		r := fn(ctx)
		returned = true
		res <- r
	}()
	if s.expire == nil || s.timeout <= 0 {
		return <-res
	}
	select {
	case r := <-res:
		return r
	case <-ctx.Done():
	}
	select {
	case r := <-res: // returned as the deadline passed
		return r
	default:
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return <-res // cancelled by Stop: the call ends as it likes
	}
	s.expire()
	<-res
	return Retry(fmt.Sprintf("handler timed out after %v (HandlerTimeout)", s.timeout))
}
