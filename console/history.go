package console

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/modkit-go/db/outbox"
)

// sample is one queue's state at one time of the database clock.
type sample struct {
	At        time.Time
	Backlog   int64
	Processed int64   // sum of the partitions' processed seqs
	Rate      float64 // messages delivered (or dead-lettered) per second since the previous sample
}

// history keeps each queue's recent samples in memory, for the charts.
type history struct {
	mu       sync.Mutex
	interval time.Duration
	keep     time.Duration
	last     time.Time // local clock of the last sample taken
	queues   map[string][]sample
}

func newHistory(interval, keep time.Duration) *history {
	return &history{interval: interval, keep: keep, queues: map[string][]sample{}}
}

// observe records a status read, unless one was recorded less than half an
// interval ago (pages that refresh the status feed the charts too, so
// they fill while no sampler runs, and do not crowd them while one does).
func (h *history) observe(qs []outbox.QueueStatus) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	if !h.last.IsZero() && now.Sub(h.last) < h.interval/2 {
		return
	}
	h.last = now
	seen := make(map[string]bool, len(qs))
	for _, q := range qs {
		seen[q.Queue] = true
		s := sample{At: q.Now, Backlog: q.Backlog}
		for _, p := range q.Partitions {
			s.Processed += p.ProcessedSeq
		}
		old := h.queues[q.Queue]
		if n := len(old); n > 0 {
			prev := old[n-1]
			if !s.At.After(prev.At) {
				continue
			}
			if d := s.Processed - prev.Processed; d > 0 {
				s.Rate = float64(d) / s.At.Sub(prev.At).Seconds()
			}
		}
		cut := 0
		for cut < len(old) && s.At.Sub(old[cut].At) > h.keep {
			cut++
		}
		h.queues[q.Queue] = append(old[cut:], s)
	}
	for q := range h.queues {
		if !seen[q] {
			delete(h.queues, q)
		}
	}
}

// series returns copies of the samples, by queue name; only queue when set.
func (h *history) series(queue string) []historyJSON {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := []historyJSON{}
	for name, ss := range h.queues {
		if queue != "" && name != queue {
			continue
		}
		hj := historyJSON{Queue: name, Samples: make([]sampleJSON, len(ss))}
		for i, s := range ss {
			hj.Samples[i] = sampleJSON{At: s.At, Backlog: s.Backlog, Rate: s.Rate}
		}
		out = append(out, hj)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Queue < out[j].Queue })
	return out
}

// sampler is Start's loop.
type sampler struct {
	c      *Console
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// Start samples every queue's status each Options.SampleInterval until
// Stop, for the charts; it returns once the loop runs. A Console that is
// not started still charts what its pages read. Starting twice is an
// error.
func (c *Console) Start(ctx context.Context) error {
	s := &c.sampler
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return errors.New("console: already started")
	}
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.done = make(chan struct{})
	go s.run(ctx, s.done)
	return nil
}

// Stop ends the sampling loop and waits for it, or for ctx. It is
// idempotent.
func (c *Console) Stop(ctx context.Context) error {
	s := &c.sampler
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *sampler) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(s.c.opts.SampleInterval)
	defer t.Stop()
	for {
		s.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *sampler) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(s.c.opts.SampleInterval, time.Second))
	defer cancel()
	qs, err := s.c.ob.Status(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.c.log.Warn("console: status sample failed", "err", err)
		}
		return
	}
	s.c.history.observe(qs)
}
