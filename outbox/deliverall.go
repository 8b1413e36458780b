package outbox

import (
	"context"
	"sort"
	"sync"

	"github.com/modkit-go/db/dialect"
)

// DeliveryReport says what DeliverAll did, message by message, in the
// order the results were recorded (within a partition, seq order).
type DeliveryReport struct {
	// Delivered are the messages whose handler finished them and whose
	// acknowledgement committed.
	Delivered []Delivery
	// Retried are the messages whose delivery failed and will be tried
	// again after backoff (Retry, an error, a panic, a timeout), and heads
	// that PoisonBlock stopped; the later messages of their partitions
	// wait behind them and are not listed.
	Retried []FailedDelivery
	// DeadLettered are the messages copied to the dead-letter table (Reject,
	// a permanent error, MaxAttempts).
	DeadLettered []FailedDelivery
}

// FailedDelivery is a message that was retried or dead-lettered, with the
// reason that was stored.
type FailedDelivery struct {
	Delivery
	Reason string
}

// DeliverAll sequences and delivers, through the registered handlers and
// in the calling goroutine, every message that is deliverable now, and
// returns what happened to each. It returns once no partition of a
// handled queue has a message it may deliver: messages waiting for a
// retry's backoff, behind a blocked head or leased by another process are
// left. Messages that handlers enqueue while it runs are delivered too.
//
// It is for tests and tools that want delivery without Start (the test
// kit outboxtest builds on it): results, acknowledgements and dead letters
// are written exactly as the workers write them. It returns ErrAlreadyStarted
// on a started Outbox, and ErrStopped after Stop; Start is refused while it
// runs. Cancelling ctx cancels the handlers' contexts, as Stop does.
func (o *Outbox) DeliverAll(ctx context.Context) (DeliveryReport, error) {
	o.mu.Lock()
	switch {
	case o.stopped:
		o.mu.Unlock()
		return DeliveryReport{}, ErrStopped
	case o.started || o.delivering:
		o.mu.Unlock()
		return DeliveryReport{}, ErrAlreadyStarted
	}
	var decoupled, transactional []string
	for q, h := range o.handlers {
		if h.transactional() {
			transactional = append(transactional, q)
		} else {
			decoupled = append(decoupled, q)
		}
	}
	sort.Strings(decoupled)
	sort.Strings(transactional)
	o.delivering = true
	o.handlerCtx, o.cancelHandlers = context.WithCancel(ctx)
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.cancelHandlers()
		o.delivering = false
		o.mu.Unlock()
	}()

	rep := &deliveryReport{}
	w := newWorker(o, decoupled, transactional)
	w.report = rep
	pass := w.goroutine()
	for {
		if err := ctx.Err(); err != nil {
			return rep.get(), err
		}
		sequenced, err := o.SequenceAll(ctx)
		if err != nil {
			return rep.get(), err
		}
		busy, err := pass(ctx)
		if err != nil {
			return rep.get(), err
		}
		if !busy && sequenced == 0 {
			return rep.get(), nil
		}
	}
}

// deliveryReport collects a DeliveryReport; acks may record from several
// goroutines.
type deliveryReport struct {
	mu  sync.Mutex
	rep DeliveryReport
}

func (r *deliveryReport) get() DeliveryReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rep
}

// add records a committed result: cc applied to msgs of partition c, whose
// cursor was before and whose head had failed attempts times. Nil-safe: the
// workers of Start report nothing.
func (r *deliveryReport) add(c dialect.ClaimedPartition, msgs []dialect.Message, before int64, attempts int, cc cursorChange) {
	if r == nil {
		return
	}
	ds := deliveries(c, msgs, attempts)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, m := range msgs {
		if m.Seq <= before {
			continue
		}
		if g, ok := deadGroupOf(cc.dead, m.Seq); ok {
			r.rep.DeadLettered = append(r.rep.DeadLettered, FailedDelivery{Delivery: ds[i], Reason: g.reason})
			continue
		}
		if m.Seq <= cc.cursor {
			r.rep.Delivered = append(r.rep.Delivered, ds[i])
			continue
		}
		// A retry that counts an attempt has a backoff; a blocked head
		// has none but stops the partition. A shutdown's retry (neither)
		// is no failure of the message.
		if m.Seq == cc.cursor+1 && cc.retry && (cc.retryAfter > 0 || cc.block) {
			r.rep.Retried = append(r.rep.Retried, FailedDelivery{Delivery: ds[i], Reason: cc.lastError})
		}
	}
}

func deadGroupOf(groups []deadGroup, seq int64) (deadGroup, bool) {
	for _, g := range groups {
		for _, s := range g.seqs {
			if s == seq {
				return g, true
			}
		}
	}
	return deadGroup{}, false
}
