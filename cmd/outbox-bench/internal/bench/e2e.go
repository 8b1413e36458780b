package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/outbox"
)

// EndToEnd measures latency from commit (the return of InTx) to the start
// of the handler call that receives the message, with producers at Rate
// msg/s for E2EDuration, in decoupled then transactional mode. The outbox
// keeps its default 200ms poll interval: the figure is the in-process
// wake-up's.
func EndToEnd(ctx context.Context, o Options) ([]Result, error) {
	o = o.withDefaults()
	var out []Result
	for _, tx := range []bool{false, true} {
		r, err := steady(ctx, o, tx, o.E2EDuration, false, nil)
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Soak runs the decoupled end-to-end load for SoakDuration and samples the
// outbox table (rows and bytes) and the Go heap after a GC. It is met when
// deliveries verify, the table stays within a few seconds of traffic and
// the heap stays flat.
func Soak(ctx context.Context, o Options) ([]Result, error) {
	o = o.withDefaults()
	r, err := steady(ctx, o, false, o.SoakDuration, true, nil)
	return []Result{r}, err
}

// e2eQueue names the e2e scenario's i-th queue (see Options.E2EQueues).
func e2eQueue(i int) string {
	if i == 0 {
		return Queue
	}
	return fmt.Sprintf("%s.%d", Queue, i)
}

// e2eMessage is message id of the e2e scenario. Partition g (numbered
// queue*Partitions + partition) takes every all-th message, as message
// does, but consecutive messages land far apart, over every queue: g is id
// times a prime, modulo all, a permutation of 0..all-1.
func (o Options) e2eMessage(id int) outbox.Message {
	all := o.E2EQueues * o.Partitions
	g := o.e2ePartition(id)
	return outbox.Message{
		Queue:       e2eQueue(g / o.Partitions),
		Partition:   g % o.Partitions,
		Payload:     payload(uint64(id), uint32(g), uint32(id/all+1), o.PayloadBytes),
		PayloadType: PayloadType,
	}
}

// e2ePartition is the partition of message id, numbered as e2eMessage
// says.
func (o Options) e2ePartition(id int) int {
	const spread = 7919
	all := o.E2EQueues * o.Partitions
	if all%spread == 0 {
		return id % all
	}
	return id * spread % all
}

// e2ePerPartition is how many of n messages each partition of the e2e
// scenario takes.
func (o Options) e2ePerPartition(n int) []int64 {
	out := make([]int64, o.E2EQueues*o.Partitions)
	for id := range n {
		out[o.e2ePartition(id)]++
	}
	return out
}

type soakSample struct {
	At        float64 `json:"at_s"`
	Rows      int64   `json:"rows"`
	Bytes     int64   `json:"table_bytes"`
	HeapBytes uint64  `json:"heap_bytes"`
	Delivered int64   `json:"delivered"`
}

// steady produces at o.Rate for dur and measures the latency from commit
// to the handler's start, or with mk (whose handler records each delivery
// in rec with the time it counts as delivered) to that time.
func steady(ctx context.Context, o Options, transactional bool, dur time.Duration, soak bool, mk func(rec *recorder) outbox.Handler) (Result, error) {
	scenario, mode := ScenarioE2E, "decoupled Batch"
	if transactional {
		mode = "transactional TxBatch"
	}
	if soak {
		scenario = ScenarioSoak
	}
	n := max(int(float64(o.Rate)*dur.Seconds()), 1)
	mode = fmt.Sprintf("%s @%d/s", mode, o.Rate)
	res := Result{Scenario: scenario, Mode: mode, Messages: n}
	env, ob, err := openOutbox(ctx, o)
	if err != nil {
		return res, err
	}
	defer env.Close()
	queueIndex := map[string]int{}
	for i := range o.E2EQueues {
		queueIndex[e2eQueue(i)] = i
		if i > 0 {
			if err := ob.DeclareQueue(ctx, e2eQueue(i), o.Partitions); err != nil {
				return res, err
			}
		}
	}
	rec := newRecorder(n, o.E2EQueues*o.Partitions, o.PayloadBytes, false, true)
	commitNS := make([]atomic.Int64, n)
	recordAll := func(ms []outbox.Delivery) {
		start := time.Now().UnixNano()
		for _, m := range ms {
			rec.record(queueIndex[m.Queue]*o.Partitions+m.Partition, m.Seq, m.Payload, start)
		}
	}
	var h outbox.Handler = outbox.Batch(func(_ context.Context, ms []outbox.Delivery) outbox.Result {
		recordAll(ms)
		return outbox.Success()
	})
	if transactional {
		h = outbox.TxBatch(func(_ context.Context, _ *sql.Tx, ms []outbox.Delivery) outbox.Result {
			recordAll(ms)
			return outbox.Success()
		})
	}
	if mk != nil {
		h = mk(rec)
	}
	for q := range queueIndex {
		if err := ob.Handle(q, h); err != nil {
			return res, err
		}
	}
	if err := ob.Start(ctx); err != nil {
		return res, err
	}
	if o.E2EIdle > 0 {
		o.Logf("%s %s %s: idle for %v over %d queues of %d partitions", o.Dialect, scenario, mode, o.E2EIdle, o.E2EQueues, o.Partitions)
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(o.E2EIdle):
		}
	}
	stop := func() error {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return ob.Stop(sctx)
	}
	o.Logf("%s %s %s: %d messages over %v, %d producers", o.Dialect, scenario, mode, n, dur, o.Producers)

	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	ids := make(chan int, 4096)
	var wg sync.WaitGroup
	var prodErr error
	var errOnce sync.Once
	for range o.Producers {
		wg.Go(func() {
			for id := range ids {
				m := o.e2eMessage(id)
				var err error
				for try := 0; try < 20; try++ {
					err = ob.InTx(pctx, func(tx *sql.Tx) error { return ob.Enqueue(pctx, tx, m) })
					if err == nil || !(env.D.ClassifyError(err) == dialect.ErrorRetryable) {
						break
					}
				}
				if err != nil {
					errOnce.Do(func() { prodErr = err; pcancel() })
					continue
				}
				commitNS[id].Store(time.Now().UnixNano())
			}
		})
	}

	var samples []soakSample
	var sampleErr error
	sampled := make(chan struct{})
	t0 := time.Now()
	if soak {
		every := max(time.Second, dur/30)
		go func() {
			defer close(sampled)
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-pctx.Done():
					return
				case <-tick.C:
				}
				s, err := sample(pctx, env, ob, rec, t0)
				if err != nil {
					if pctx.Err() == nil {
						sampleErr = err
					}
					return
				}
				samples = append(samples, s)
			}
		}()
	} else {
		close(sampled)
	}

	// Open-loop pacing: message i is due at t0 + i/Rate.
	interval := time.Second / time.Duration(o.Rate)
pace:
	for i := range n {
		if d := time.Until(t0.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		select {
		case ids <- i:
		case <-pctx.Done():
			break pace
		}
	}
	close(ids)
	wg.Wait()
	produced := time.Since(t0)

	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	var waitErr error
	if prodErr == nil {
		select {
		case <-rec.done:
		case <-wctx.Done():
			waitErr = fmt.Errorf("timed out %v after the last commit with %d of %d messages delivered", o.Timeout, rec.total.Load(), n)
		}
	}
	elapsed := time.Since(t0)
	var final soakSample
	if soak {
		pcancel()
		<-sampled
		// One more vacuum tick, as in steady state, before the final sample.
		time.Sleep(1500 * time.Millisecond)
		final, err = sample(ctx, env, ob, rec, t0)
		if err != nil {
			sampleErr = errors.Join(sampleErr, err)
		}
	}
	stopErr := stop()
	if prodErr != nil {
		return res, fmt.Errorf("producer: %w", prodErr)
	}

	res.Seconds, res.Rate = elapsed.Seconds(), rate(n, elapsed)
	res.Latency = commitToStart(commitNS, rec.startNS)
	res.Details = map[string]any{"producing_seconds": produced.Seconds(), "offered_rate": o.Rate}
	if !soak {
		res.Target = "p50 <= 5ms, p99 <= 25ms"
		if o.Dialect == "sqlite" {
			res.Target = "none (PostgreSQL/MariaDB only)"
		} else {
			res.Met = ptr(res.Latency.P50 <= 5 && res.Latency.P99 <= 25)
		}
	}
	verr := rec.verify(o.e2ePerPartition(n))
	verdict(&res, errors.Join(waitErr, verr, stopErr))
	if soak {
		soakVerdict(&res, o, samples, final, sampleErr)
	}
	return res, nil
}

func sample(ctx context.Context, env *Env, ob *outbox.Outbox, rec *recorder, t0 time.Time) (soakSample, error) {
	s := soakSample{At: time.Since(t0).Seconds(), Delivered: rec.total.Load()}
	st, err := ob.Stats(ctx)
	if err != nil {
		return s, err
	}
	s.Rows = st.Messages
	if s.Bytes, err = env.TableBytes(ctx); err != nil {
		return s, err
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.HeapBytes = ms.HeapAlloc
	return s, nil
}

// soakVerdict: bounded table (rows at the end and at every sample within
// five seconds of traffic, at least 2000) and a flat heap (the end within
// 25% + 2 MiB of the heap a fifth of the way in).
func soakVerdict(res *Result, o Options, samples []soakSample, final soakSample, sampleErr error) {
	bound := int64(max(2000, 5*o.Rate))
	var maxRows int64
	var maxBytes int64
	for _, s := range append(samples, final) {
		maxRows = max(maxRows, s.Rows)
		maxBytes = max(maxBytes, s.Bytes)
	}
	var warm soakSample
	if len(samples) > 0 {
		warm = samples[len(samples)/5]
	}
	heapLimit := uint64(float64(warm.HeapBytes)*1.25) + 2<<20
	rowsOK := maxRows <= bound && final.Rows <= bound
	heapOK := warm.HeapBytes > 0 && final.HeapBytes <= heapLimit
	res.Target = fmt.Sprintf("rows <= %d; heap flat", bound)
	res.Met = ptr(res.Verified && sampleErr == nil && rowsOK && heapOK)
	res.Details["rows_max"] = maxRows
	res.Details["rows_end"] = final.Rows
	res.Details["table_bytes_max"] = maxBytes
	res.Details["table_bytes_end"] = final.Bytes
	res.Details["heap_warm_bytes"] = warm.HeapBytes
	res.Details["heap_end_bytes"] = final.HeapBytes
	res.Details["heap_limit_bytes"] = heapLimit
	res.Details["samples"] = samples
	if sampleErr != nil {
		res.Details["sample_error"] = sampleErr.Error()
	}
}
