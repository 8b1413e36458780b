package outbox

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/modkit-go/db/dialect"
)

// unknownKind is a Handler the worker does not know: it delivers
// nothing and reports the zero outcome.
type unknownKind struct{}

func (unknownKind) transactional() bool       { return false }
func (unknownKind) isNil() bool               { return false }
func (k unknownKind) wrap(Middleware) Handler { return k }
func (unknownKind) deliver(*callScope, []Delivery) (outcome, error) {
	return outcome{}, nil
}

func testMessages(n int) []dialect.Message {
	msgs := make([]dialect.Message, n)
	for i := range msgs {
		msgs[i] = dialect.Message{Seq: int64(11 + i)}
	}
	return msgs
}

// An outcome that does not explicitly finish the batch never acknowledges
// it: the zero outcome of an unknown handler kind, a Success that covers
// only part of the batch, or an outcome of an unknown kind is retried, with
// the cursor where it was.
func TestUnknownOutcomeIsRetriedNeverAcknowledged(t *testing.T) {
	p := &worker{o: &Outbox{cfg: Config{RetryBase: time.Second, RetryMax: time.Minute}, handlerCtx: context.Background()}}
	msgs := testMessages(3)
	out, err := unknownKind{}.deliver(&callScope{ctx: context.Background()}, deliveries(dialect.ClaimedPartition{}, msgs, 0))
	if err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]outcome{
		"unknown handler kind": out,
		"partial success":      {done: 2},
		"unknown result kind":  {done: 3, kind: resultKind(42)},
	} {
		cc := p.cursorChangeFor(p.o.cfg.queueDefaults(), o, msgs, 10, 0)
		if !cc.retry || cc.cursor > 10+int64(o.done) || cc.attempts != 1 || len(cc.dead) != 0 {
			t.Errorf("%s: cursor change %+v, want a retry that acknowledges nothing unfinished", name, cc)
		}
		if name != "partial success" && cc.cursor != 10 {
			t.Errorf("%s: cursor moved to %d, want 10", name, cc.cursor)
		}
	}
	if cc := p.cursorChangeFor(p.o.cfg.queueDefaults(), outcome{done: 3}, msgs, 10, 0); cc.retry || cc.cursor != 13 {
		t.Errorf("complete success: cursor change %+v, want the cursor past the batch", cc)
	}
}

// A wrapper around nothing, by value or by pointer, is refused, not
// accepted to panic on every message; a wrapper around a handler is taken.
func TestHandleRefusesEmptyWrappers(t *testing.T) {
	type wrapper struct{ Handler }
	cfg, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	o := &Outbox{cfg: cfg, handlers: map[string]Handler{}, queueConfigs: map[string]queueConfig{}}
	for name, h := range map[string]Handler{
		"nil":                 nil,
		"wrapper{nil}":        wrapper{},
		"(*wrapper)(nil)":     (*wrapper)(nil),
		"wrapper{Batch(nil)}": wrapper{Batch(nil)},
	} {
		if err := o.Handle("q", h); !errors.Is(err, ErrInvalidHandler) {
			t.Errorf("Handle(%s): %v, want ErrInvalidHandler", name, err)
		}
	}
	if err := o.Handle("q", wrapper{Batch(func(context.Context, []Delivery) Result { return Success() })}); err != nil {
		t.Errorf("Handle(wrapper{Batch(fn)}): %v", err)
	}
}

// A handler call that panics, calls runtime.Goexit or outlives its timeout
// ends as a Retry, and the caller goes on.
func TestCallEndsEveryWayAsAResult(t *testing.T) {
	s := &callScope{ctx: context.Background()}
	if r := s.call(nil, func(context.Context) Result { runtime.Goexit(); return Success() }); !r.IsRetry() || !strings.Contains(r.Reason(), "Goexit") {
		t.Errorf("Goexit: %v, want a Retry naming Goexit", r)
	}
	if r := s.call(nil, func(context.Context) Result { panic("kaboom") }); !r.IsRetry() || r.Reason() != "panic: kaboom" {
		t.Errorf("panic: %v, want Retry(panic: kaboom)", r)
	}
	if r := s.call(nil, func(context.Context) Result { panic(nil) }); !r.IsRetry() || !strings.HasPrefix(r.Reason(), "panic: ") {
		t.Errorf("panic(nil): %v, want a Retry", r)
	}
	if r := s.call(nil, func(context.Context) Result { return Reject("no") }); !r.IsReject() {
		t.Errorf("a returned result: %v, want it unchanged", r)
	}

	// With a timeout, the handler's context ends; with expire set
	// (transactional mode), expire runs while the call still hangs, and
	// the call's own result is replaced by a Retry.
	release := make(chan struct{})
	expired := make(chan struct{})
	s = &callScope{ctx: context.Background(), timeout: 20 * time.Millisecond, expire: func() {
		close(expired)
		close(release)
	}}
	var ctxErr error
	r := s.call(nil, func(ctx context.Context) Result {
		<-release // ignores its context
		ctxErr = ctx.Err()
		return Success()
	})
	select {
	case <-expired:
	default:
		t.Fatal("expire did not run")
	}
	if !r.IsRetry() || !strings.Contains(r.Reason(), "HandlerTimeout") || !errors.Is(ctxErr, context.DeadlineExceeded) {
		t.Errorf("timed-out call: %v (context %v), want a Retry naming HandlerTimeout and DeadlineExceeded", r, ctxErr)
	}
	// A call that returns in time is not expired.
	s.expire = func() { t.Error("expire ran for a call that returned in time") }
	if r := s.call(nil, func(context.Context) Result { return Success() }); !r.IsSuccess() {
		t.Errorf("a call in time: %v, want Success", r)
	}
}

// RejectOne after a finished prefix dead-letters exactly the next message
// and moves the cursor onto it: the prefix is acknowledged, the messages
// after it are delivered again without a retry or an attempt.
func TestRejectOneDeadLettersOnlyTheFirstUnfinished(t *testing.T) {
	p := &worker{o: &Outbox{cfg: Config{RetryBase: time.Second, RetryMax: time.Minute}, handlerCtx: context.Background()}}
	msgs := testMessages(4) // seqs 11..14
	for _, tc := range []struct {
		processed  int
		wantCursor int64
		wantDead   int64
	}{{0, 11, 11}, {2, 13, 13}, {3, 14, 14}} {
		out := batchOutcome(RejectOne("bad").WithProcessed(tc.processed), len(msgs))
		cc := p.cursorChangeFor(p.o.cfg.queueDefaults(), out, msgs, 10, 2)
		if cc.retry || cc.cursor != tc.wantCursor || len(cc.dead) != 1 || len(cc.dead[0].seqs) != 1 || cc.dead[0].seqs[0] != tc.wantDead {
			t.Errorf("RejectOne after %d: cursor change %+v, want cursor %d and seq %d alone dead-lettered", tc.processed, cc, tc.wantCursor, tc.wantDead)
		}
	}
	if out := batchOutcome(RejectOne("bad").WithProcessed(4), len(msgs)); out.done != 4 || out.kind != kindSuccess {
		t.Errorf("RejectOne with everything processed: %+v, want success", out)
	}
	if r := RejectOne("bad"); !r.IsReject() || r.Reason() != "bad" {
		t.Errorf("RejectOne: %v", r)
	}
}
