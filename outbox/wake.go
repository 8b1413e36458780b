package outbox

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/modkit-go/db/dialect"
)

// Reconnect backoff of the wake-up listener: capped exponential with
// jitter (see backoff), so a database restart is not met by a reconnect
// storm from every worker process.
const (
	listenRetryBase = 100 * time.Millisecond
	listenRetryMax  = 10 * time.Second
)

// goListen starts the wake-up listener when the dialect can wake other
// processes (dialect.Waker): one goroutine that keeps a listening
// connection open until ctx ends and wakes the sequencers and workers on
// every wake-up. Polling goes on regardless; the listener only cuts latency.
func (o *Outbox) goListen(ctx context.Context) {
	w, ok := o.d.(dialect.Waker)
	if !ok {
		return
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.listen(ctx, w)
	}()
}

// listen runs w.Listen until ctx ends, reconnecting after failures. It logs
// the first failure of an outage and the recovery, not every retry.
func (o *Outbox) listen(ctx context.Context, w dialect.Waker) {
	failures := 0
	params := &dialect.ListenParams{
		Ready: func() {
			o.log.Debug("outbox: wake-up listener ready")
			if failures > 0 {
				o.log.Info("outbox: wake-up listener reconnected", "failures", failures)
			}
			failures = 0
			// Wake-ups sent while nobody listened are lost: look now.
			o.wake()
		},
		Wake: func(string) { o.wake() },
	}
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for {
		err := w.Listen(ctx, o.db, params)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, dialect.ErrNoWakeups) {
			o.log.Debug("outbox: no wake-up listener; polling only", "dialect", o.d.Name())
			return
		}
		failures++
		o.tel.workerError(ctx, "listener")
		if failures == 1 {
			o.log.Warn("outbox: wake-up listener failed; polling until it reconnects", "err", err)
		}
		timer.Reset(backoff(failures, listenRetryBase, listenRetryMax, jitter))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
	}
}

// wake wakes the sequencers (a producer committed) and the workers
// (another process's sequencer may have sequenced the rows already).
func (o *Outbox) wake() {
	o.seq.wake.broadcast()
	o.workWake.broadcast()
}

// fresh holds the partitions the sequencer's latest rounds numbered, when
// they numbered few, for the workers to claim by id. A claim by id reads
// those cursor rows only, where the claim of a queue group's claimable
// partitions reads every cursor row of the group: a trickle of messages
// over thousands of partitions must not wait for that. In a group of that
// many partitions (claimGroup.byID) every worker goroutine tries each
// offer once, by id, before its claim of the group,
// so the first of them to wake takes the partition before any full claim
// that the same wake-up started; the full claim still runs after (and
// alone, for a round that numbered many), so an offer that is dropped or
// lost to a race only costs latency.
type fresh struct {
	mu    sync.Mutex
	round uint64   // offers made so far
	ids   []int64  // the partitions offered, oldest first, at most maxFresh
	of    []uint64 // the offer each came with
}

// maxFresh bounds the partitions held for a claim by id: a round that
// numbers more is load, which the full claim serves well.
const maxFresh = 16

// offer offers the partitions of a round, unless they are more than
// maxFresh; the oldest offers make room.
func (f *fresh) offer(ids []int64) {
	if len(ids) == 0 || len(ids) > maxFresh {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.round++
	for _, id := range ids {
		f.ids = append(f.ids, id)
		f.of = append(f.of, f.round)
	}
	if drop := len(f.ids) - maxFresh; drop > 0 {
		f.ids = append(f.ids[:0], f.ids[drop:]...)
		f.of = append(f.of[:0], f.of[drop:]...)
	}
}

// since returns the partitions offered after the offer *seen and moves
// *seen to the latest: a worker goroutine's own place in the offers.
func (f *fresh) since(seen *uint64) []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int64
	for i, r := range f.of {
		if r > *seen {
			out = append(out, f.ids[i])
		}
	}
	*seen = f.round
	return out
}

// signal is a broadcast wake-up: every waiter holding the channel from
// before a broadcast is woken.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }

func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

func (s *signal) broadcast() {
	s.mu.Lock()
	close(s.ch)
	s.ch = make(chan struct{})
	s.mu.Unlock()
}
