package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modkit-go/db/outbox"
)

// message is benchmark message id: partition id % Partitions, its index in
// that partition id / Partitions + 1.
func (o Options) message(id int) outbox.Message {
	part := id % o.Partitions
	return outbox.Message{
		Queue:       Queue,
		Partition:   part,
		Payload:     payload(uint64(id), uint32(part), uint32(id/o.Partitions+1), o.PayloadBytes),
		PayloadType: PayloadType,
	}
}

// Presets are the names --preset takes, and the outbox Config of each.
var Presets = map[string]func() outbox.Config{
	"default":         outbox.DefaultConfig,
	"low-latency":     outbox.LowLatencyConfig,
	"high-throughput": outbox.HighThroughputConfig,
	"relaxed":         outbox.RelaxedConfig,
}

// PresetConfig returns the Config of the preset named name ("" is
// "default"), or false for an unknown name.
func PresetConfig(name string) (outbox.Config, bool) {
	if name == "" {
		name = "default"
	}
	f, ok := Presets[name]
	if !ok {
		return outbox.Config{}, false
	}
	return f(), true
}

func (o Options) config() outbox.Config {
	c, _ := PresetConfig(o.Preset) // validated by the command
	c.MaxConcurrency = o.Consumers
	c.MaxPayloadBytes = max(outbox.DefaultMaxPayloadBytes, o.PayloadBytes)
	if o.Sequencers > 0 {
		c.Sequencers = o.Sequencers
	}
	if o.CoalesceDelay > 0 {
		c.CoalesceDelay = o.CoalesceDelay
	}
	if o.CoalesceDelay < 0 {
		c.NoCoalesce = true
	}
	return c
}

// runProducers runs fn over ids [0, total) in chunks of per ids from
// producers goroutines, and returns the wall time. Transient conflicts
// (retryable errors) are retried, for the outbox and the baseline alike.
func runProducers(ctx context.Context, producers, total, per int, retryable func(error) bool,
	fn func(ctx context.Context, start, end int) error) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	var errOnce sync.Once
	var first error
	t0 := time.Now()
	for range producers {
		wg.Go(func() {
			for ctx.Err() == nil {
				start := int(next.Add(int64(per))) - per
				if start >= total {
					return
				}
				end := min(start+per, total)
				var err error
				for try := 0; try < 20; try++ {
					if err = fn(ctx, start, end); err == nil || !retryable(err) {
						break
					}
				}
				if err != nil {
					errOnce.Do(func() { first = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(t0), first
}

// rawInsert commits one transaction inserting ids [start, end) into
// bench_raw with one multi-row INSERT (one row when end = start+1).
func rawInsert(ctx context.Context, env *Env, o Options, start, end int) error {
	tx, err := env.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	args := make([]any, 0, 2*(end-start))
	for id := start; id < end; id++ {
		part := id % o.Partitions
		args = append(args, part, payload(uint64(id), uint32(part), uint32(id/o.Partitions+1), o.PayloadBytes))
	}
	if _, err := tx.ExecContext(ctx, env.insertRawSQL(end-start), args...); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// outboxInsert is the application side: InTx, then Enqueue (one message)
// or EnqueueBatch.
func outboxInsert(ctx context.Context, ob *outbox.Outbox, o Options, start, end int) error {
	return ob.InTx(ctx, func(tx *sql.Tx) error {
		if end-start == 1 {
			return ob.Enqueue(ctx, tx, o.message(start))
		}
		msgs := make([]outbox.Message, 0, end-start)
		for id := start; id < end; id++ {
			msgs = append(msgs, o.message(id))
		}
		return ob.EnqueueBatch(ctx, tx, msgs)
	})
}

const enqueueRounds = 4

// Enqueue measures producers: one message per transaction, then Batch
// messages per transaction, each against plain INSERTs of the same rows.
func Enqueue(ctx context.Context, o Options) ([]Result, error) {
	o = o.withDefaults()
	var out []Result
	for _, per := range []int{1, o.Batch} {
		r, err := enqueueMode(ctx, o, per)
		if err != nil {
			return out, err
		}
		out = append(out, r)
		if o.Batch == 1 {
			break
		}
	}
	return out, nil
}

func enqueueMode(ctx context.Context, o Options, per int) (Result, error) {
	mode := fmt.Sprintf("%d msgs/txn", per)
	if per == 1 {
		mode = "1 msg/txn"
	}
	res := Result{Scenario: ScenarioEnqueue, Mode: mode, Messages: o.Messages}
	env, ob, err := openOutbox(ctx, o)
	if err != nil {
		return res, err
	}
	defer env.Close()
	if err := ob.DeclareQueue(ctx, "bench.warmup", 1); err != nil {
		return res, err
	}
	retry := retryableOf(env.D)

	// Warm-up, not measured: both paths, so plans and caches are hot.
	warm := min(200*per, max(o.Messages/10, per))
	if _, err := runProducers(ctx, o.Producers, warm, per, retry, func(ctx context.Context, s, e int) error {
		return rawInsert(ctx, env, o, s, e)
	}); err != nil {
		return res, fmt.Errorf("baseline warm-up: %w", err)
	}
	if _, err := env.DB.ExecContext(ctx, "DELETE FROM bench_raw"); err != nil {
		return res, err
	}
	if _, err := runProducers(ctx, o.Producers, warm, per, retry, func(ctx context.Context, s, e int) error {
		return ob.InTx(ctx, func(tx *sql.Tx) error {
			msgs := make([]outbox.Message, 0, e-s)
			for id := s; id < e; id++ {
				m := o.message(id)
				m.Queue, m.Partition = "bench.warmup", 0
				msgs = append(msgs, m)
			}
			return ob.EnqueueBatch(ctx, tx, msgs)
		})
	}); err != nil {
		return res, fmt.Errorf("outbox warm-up: %w", err)
	}

	// Interleaved rounds (baseline, outbox, baseline, outbox, …) so that
	// drift in the server (checkpoints, flushing, purge, table growth)
	// weighs on both sides alike.
	o.Logf("%s enqueue %s: %d messages each for the baseline and the outbox, %d producers, %d interleaved rounds",
		o.Dialect, mode, o.Messages, o.Producers, enqueueRounds)
	var baseDur, obDur time.Duration
	for round := range enqueueRounds {
		lo, hi := o.Messages*round/enqueueRounds, o.Messages*(round+1)/enqueueRounds
		d, err := runProducers(ctx, o.Producers, hi-lo, per, retry, func(ctx context.Context, s, e int) error {
			return rawInsert(ctx, env, o, lo+s, lo+e)
		})
		if err != nil {
			return res, fmt.Errorf("baseline: %w", err)
		}
		baseDur += d
		d, err = runProducers(ctx, o.Producers, hi-lo, per, retry, func(ctx context.Context, s, e int) error {
			return outboxInsert(ctx, ob, o, lo+s, lo+e)
		})
		if err != nil {
			return res, fmt.Errorf("outbox: %w", err)
		}
		obDur += d
	}

	res.Seconds, res.Rate = obDur.Seconds(), rate(o.Messages, obDur)
	res.BaselineSeconds, res.BaselineRate = baseDur.Seconds(), rate(o.Messages, baseDur)
	res.Ratio = ratio(res.Rate, res.BaselineRate)
	if per == 1 {
		res.Baseline = "INSERT 1 row + COMMIT"
		res.Target = ">= 0.90x baseline"
		res.Met = ptr(res.Ratio >= 0.9)
	} else {
		res.Baseline = fmt.Sprintf("INSERT %d rows + COMMIT", per)
	}
	verdict(&res, verifyEnqueue(ctx, env, ob, o))
	return res, nil
}

// verifyEnqueue checks that exactly the enqueued messages committed: the
// baseline table holds every row, and sequencing the outbox gives each
// partition exactly seqs 1..n.
func verifyEnqueue(ctx context.Context, env *Env, ob *outbox.Outbox, o Options) error {
	var problems []string
	var n int64
	if err := env.DB.QueryRowContext(ctx, "SELECT count(*) FROM bench_raw").Scan(&n); err != nil {
		return err
	}
	if n != int64(o.Messages) {
		problems = append(problems, fmt.Sprintf("baseline table has %d rows, want %d", n, o.Messages))
	}
	if _, err := ob.SequenceAll(ctx); err != nil {
		return fmt.Errorf("sequence: %w", err)
	}
	want := perPartition(o.Messages, o.Partitions)
	for p := range o.Partitions {
		st, err := ob.PartitionStatus(ctx, Queue, p)
		if err != nil {
			return err
		}
		if st.LastSeq != want[p] {
			problems = append(problems, fmt.Sprintf("partition %d: %d messages committed, want %d", p, st.LastSeq, want[p]))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}
