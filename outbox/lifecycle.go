package outbox

import (
	"context"
	"sort"
	"time"
)

// Start launches the sequencer, the workers of every queue with a
// handler, and the vacuum, and returns once they run. Each handled queue must
// have been declared (by this or another process). Cancelling ctx has the
// effect of Stop without waiting; call Stop to wait for the goroutines.
func (o *Outbox) Start(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stopped {
		return ErrStopped
	}
	if o.started || o.delivering {
		return ErrAlreadyStarted
	}
	var decoupled, transactional []string
	for q, h := range o.handlers {
		if _, err := o.partitionCount(ctx, o.db, q); err != nil {
			return o.enqueueErr(-1, q, err)
		}
		if h.transactional() {
			transactional = append(transactional, q)
		} else {
			decoupled = append(decoupled, q)
		}
	}
	sort.Strings(decoupled)
	sort.Strings(transactional)

	runCtx, cancel := context.WithCancel(ctx)
	o.handlerCtx, o.cancelHandlers = context.WithCancel(context.WithoutCancel(ctx))
	o.cancel = cancel
	o.done = make(chan struct{})
	o.started = true

	for i := range o.cfg.Sequencers {
		// One sequencer polls fast for producers in other processes;
		// under load the others' fast polls mostly find the work the
		// first one took (on MariaDB each costs a 4 ms read then).
		o.goLoop(runCtx, "sequencer", o.cfg.PollInterval, o.seq.wake, coalescer{delay: o.coalesce, paced: true, slow: i > 0}, o.seq.pass)
	}
	if len(decoupled)+len(transactional) > 0 {
		w := newWorker(o, decoupled, transactional)
		// A transactional pass works one partition in one transaction:
		// waiting between passes would not make them take more per
		// commit, only make each wait (p95 5 -> 20-28 ms at 500 msg/s).
		coalesce := o.coalesce
		if len(transactional) > 0 {
			coalesce = 0
		}
		for range o.cfg.MaxConcurrency {
			o.goLoop(runCtx, "worker", o.cfg.PollInterval, o.workWake, coalescer{delay: coalesce}, w.goroutine())
		}
	}
	o.goLoop(runCtx, "vacuum", o.cfg.VacuumInterval, nil, coalescer{trail: vacuumTrailWait(o.cfg.VacuumInterval)}, o.vacuumPass)
	pw := &poolWatch{stats: o.db.Stats, log: o.log, cfg: o.cfg}
	o.goLoop(runCtx, "pool", poolWatchEvery, nil, coalescer{}, pw.pass)
	o.goListen(runCtx)
	go func() {
		o.wg.Wait()
		cancel()
		o.cancelHandlers()
		if o.stmts != nil {
			// Statements are prepared again if the outbox is used
			// after Stop (InTx, say); until then they hold nothing.
			o.stmts.Close()
		}
		close(o.done)
	}()
	o.log.Info("outbox started", "dialect", o.d.Name(), "decoupled", decoupled, "transactional", transactional)
	return nil
}

// Stop stops claiming new work, lets in-flight handlers finish until ctx
// ends (then cancels their contexts), writes their acknowledgements,
// releases the leases it holds and returns once every goroutine has exited.
// It returns ctx.Err() if handlers had to be cancelled. Stop before Start,
// and a second Stop, return nil at once (after the first Stop finished).
func (o *Outbox) Stop(ctx context.Context) error {
	o.tel.close()
	o.mu.Lock()
	if !o.started {
		o.stopped = true
		o.mu.Unlock()
		return nil
	}
	o.stopped = true
	cancel, done := o.cancel, o.done
	o.mu.Unlock()

	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		o.cancelHandlers()
		<-done
		return ctx.Err()
	}
}

// bookkeeping returns a context for the library's own statements (claims,
// reads, savepoints, acks, releases), which must happen even during
// shutdown: detached from cancellation, and bounded per statement by
// LeaseDuration (a decoupled lease is lost by then anyway) until Stop's
// context ends; from then on by ShutdownTimeout, also for a statement
// already running.
func (o *Outbox) bookkeeping(ctx context.Context) (context.Context, context.CancelFunc) {
	base := context.WithoutCancel(ctx)
	if o.handlerCtx == nil || o.handlerCtx.Err() != nil {
		return context.WithTimeout(base, o.cfg.ShutdownTimeout)
	}
	stmtCtx, cancel := context.WithTimeout(base, o.cfg.LeaseDuration)
	stop := context.AfterFunc(o.handlerCtx, func() { time.AfterFunc(o.cfg.ShutdownTimeout, cancel) })
	return stmtCtx, func() {
		stop()
		cancel()
	}
}
