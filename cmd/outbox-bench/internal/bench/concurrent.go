package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modkit-go/db/outbox"
)

// ScenarioConcurrent is producers and workers at once: the steady state of
// a loaded service.
const ScenarioConcurrent = "concurrent"

// Concurrent measures the pipeline under load: Producers goroutines commit
// one message per transaction (InTx + Enqueue) as fast as they can while
// Start runs a decoupled Batch handler with the default Config (in the same
// process, or with Processes > 1 in worker processes of their own). It
// reports the delivered rate from the first commit to the last handler
// call, the producers' own rate, commit→handler latency, and the raw
// INSERT+COMMIT rate of as many clients on the same database (half before,
// half after the outbox run) and of the reference queue (rawQueue), and
// verifies that every message arrived once and in order per partition.
func Concurrent(ctx context.Context, o Options) ([]Result, error) {
	o = o.withDefaults()
	mode := "decoupled Batch, in-process"
	if o.Processes > 1 {
		mode = fmt.Sprintf("decoupled Batch, %d worker processes", o.Processes-1)
	}
	res := Result{Scenario: ScenarioConcurrent, Mode: mode, Messages: o.Messages,
		Baseline: fmt.Sprintf("INSERT 1 row + COMMIT, %d clients", o.Producers)}
	if o.Processes > 1 && o.Dialect == "sqlite" {
		return []Result{res}, errors.New("--processes needs a server database (SQLite is one writer process)")
	}
	env, err := Open(ctx, o.Dialect, o.DSN, o.poolSize())
	if err != nil {
		return []Result{res}, err
	}
	defer env.Close()
	ob, err := outbox.New(env.DB, env.D, o.config())
	if err != nil {
		return []Result{res}, err
	}
	if err := ob.DeclareQueue(ctx, Queue, o.Partitions); err != nil {
		return []Result{res}, err
	}
	retry := retryableOf(env.D)
	rawRun := func(lo, hi int) (time.Duration, error) {
		return runProducers(ctx, o.Producers, hi-lo, 1, retry, func(ctx context.Context, s, _ int) error {
			return rawInsert(ctx, env, o, lo+s, lo+s+1)
		})
	}
	// Warm-up of the baseline's table and plans, not measured.
	if _, err := rawRun(0, min(o.Messages/10, 1000)); err != nil {
		return []Result{res}, fmt.Errorf("baseline warm-up: %w", err)
	}
	half := o.Messages / 2
	base1, err := rawRun(0, half)
	if err != nil {
		return []Result{res}, fmt.Errorf("baseline: %w", err)
	}

	n := o.Messages
	rec := newRecorder(n, o.Partitions, o.PayloadBytes, false, true)
	var lastNS atomic.Int64
	var workers *workerProcs
	if o.Processes > 1 {
		// Deliveries stream back from the workers; recorded after the run
		// in handler-start order (see workerProcs.replay).
		if workers, err = startWorkers(ctx, o, env.DSN); err != nil {
			return []Result{res}, err
		}
		defer workers.kill()
	} else {
		h := outbox.Batch(func(_ context.Context, ms []outbox.Delivery) outbox.Result {
			start := time.Now().UnixNano()
			for _, m := range ms {
				rec.record(m.Partition, m.Seq, m.Payload, start)
			}
			lastNS.Store(start)
			return outbox.Success()
		})
		if err := ob.Handle(Queue, h); err != nil {
			return []Result{res}, err
		}
		if err := ob.Start(ctx); err != nil {
			return []Result{res}, err
		}
	}
	o.Logf("%s concurrent %s: %d messages, %d producers at full speed", o.Dialect, mode, n, o.Producers)

	commitNS := make([]atomic.Int64, n)
	tx0 := env.Tx.total()
	t0 := time.Now()
	produced, prodErr := runProducers(ctx, o.Producers, n, 1, retry, func(ctx context.Context, s, _ int) error {
		if err := outboxInsert(ctx, ob, o, s, s+1); err != nil {
			return err
		}
		commitNS[s].Store(time.Now().UnixNano())
		return nil
	})
	var waitErr, stopErr error
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if workers != nil {
		waitErr = workers.wait(wctx, n)
		stopErr = workers.stop()
		workers.replay(rec, &lastNS)
	} else if prodErr == nil {
		select {
		case <-rec.done:
		case <-wctx.Done():
			waitErr = fmt.Errorf("timed out %v after the last commit with %d of %d messages delivered", o.Timeout, rec.total.Load(), n)
		}
	}
	if workers == nil {
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		stopErr = ob.Stop(sctx)
		scancel()
	}
	if prodErr != nil {
		return []Result{res}, fmt.Errorf("producer: %w", prodErr)
	}
	delivered := time.Duration(lastNS.Load() - t0.UnixNano())
	// The producers' n commits and whatever the pipeline (and the vacuum)
	// wrote in this process meanwhile.
	pipelineTx := env.Tx.total() - tx0 - int64(n)

	base2, err := rawRun(half, n)
	if err != nil {
		return []Result{res}, fmt.Errorf("baseline: %w", err)
	}
	base := base1 + base2
	// The reference is auxiliary: its failure is reported, not allowed to
	// discard the outbox's verified figure.
	queue, queueErr := rawQueue(ctx, env, o)

	res.Seconds, res.Rate = delivered.Seconds(), rate(n, delivered)
	res.BaselineSeconds, res.BaselineRate = base.Seconds(), rate(n, base)
	res.Ratio = ratio(res.Rate, res.BaselineRate)
	res.Latency = commitToStart(commitNS, rec.startNS)
	res.Details = map[string]any{
		"producing_seconds":  produced.Seconds(),
		"producer_msg_per_s": rate(n, produced),
	}
	if queueErr != nil {
		res.Details["queue_error"] = queueErr.Error()
	} else {
		res.Details["queue_msg_per_s"] = rate(n, queue)
		res.Details["queue_ratio"] = ratio(res.Rate, rate(n, queue))
	}
	if workers == nil {
		res.Details["pipeline_write_tx_per_msg"] = float64(pipelineTx) / float64(n)
	}
	if o.Dialect == "sqlite" {
		res.Target = ">= 0.50x baseline"
		res.Met = ptr(res.Ratio >= 0.5)
	} else {
		res.Target = ">= 0.85x baseline, p99 <= 50ms"
		res.Met = ptr(res.Ratio >= 0.85 && res.Latency.P99 <= 50)
	}
	verdict(&res, errors.Join(waitErr, rec.verify(perPartition(n, o.Partitions)), stopErr))
	return []Result{res}, nil
}

// rawQueue is the reference for what any queue in this database pays: the
// baseline's producers (INSERT 1 row + COMMIT) with Consumers workers
// claiming up to 100 rows with SKIP LOCKED and deleting them, polling every
// millisecond when they find none; no partitions, order or seq. It returns
// the time from the producers' start to the last delete's commit.
func rawQueue(ctx context.Context, env *Env, o Options) (time.Duration, error) {
	n := o.Messages
	o.Logf("%s concurrent: reference queue, %d rows, %d producers, %d consumers", o.Dialect, n, o.Producers, o.Consumers)
	if _, err := env.DB.ExecContext(ctx, "DELETE FROM bench_raw"); err != nil {
		return 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	rc := newRawConsumers(env, n)
	consumed := make(chan error, 1)
	t0 := time.Now()
	go func() {
		err := rc.run(wctx, o.Consumers, time.Millisecond)
		if err != nil {
			cancel() // stop the producers too
		}
		consumed <- err
	}()
	_, err := runProducers(wctx, o.Producers, n, 1, retryableOf(env.D), func(ctx context.Context, s, _ int) error {
		return rawInsert(ctx, env, o, s, s+1)
	})
	if err != nil {
		cancel()
		if cerr := <-consumed; cerr != nil && !errors.Is(cerr, context.Canceled) {
			return 0, cerr // the consumers failed first
		}
		return 0, err
	}
	if err := <-consumed; err != nil {
		return 0, err
	}
	return time.Duration(rc.lastNS.Load() - t0.UnixNano()), rc.check(ctx)
}

// WorkerFlag is the first argument that makes the outbox-bench command a
// worker process of the concurrent scenario (see ServeWorker).
const WorkerFlag = "--internal-concurrent-worker"

// workerSpec is what a worker process is told on its command line.
type workerSpec struct {
	Options
	AttachDSN string `json:"attach_dsn"`
}

// ServeWorker is the body of a worker process: it attaches to the parent's
// database (spec is the JSON the parent passed), runs Start with the
// benchmark's Batch handler, writes "ready", then one line per delivery
// ("partition seq handler-start-unix-ns payload-hex"), and stops when in
// is closed.
func ServeWorker(ctx context.Context, spec string, in io.Reader, out io.Writer) error {
	var ws workerSpec
	if err := json.Unmarshal([]byte(spec), &ws); err != nil {
		return fmt.Errorf("worker spec: %w", err)
	}
	o := ws.Options.withDefaults()
	env, err := Attach(ctx, o.Dialect, ws.AttachDSN, o.Consumers+4)
	if err != nil {
		return err
	}
	defer env.Close()
	ob, err := outbox.New(env.DB, env.D, o.config())
	if err != nil {
		return err
	}
	var mu sync.Mutex
	w := bufio.NewWriter(out)
	h := outbox.Batch(func(_ context.Context, ms []outbox.Delivery) outbox.Result {
		start := strconv.FormatInt(time.Now().UnixNano(), 10)
		mu.Lock()
		defer mu.Unlock()
		for _, m := range ms {
			fmt.Fprintf(w, "%d %d %s %x\n", m.Partition, m.Seq, start, m.Payload)
		}
		if err := w.Flush(); err != nil {
			return outbox.Retry("stdout: " + err.Error())
		}
		return outbox.Success()
	})
	if err := ob.Handle(Queue, h); err != nil {
		return err
	}
	if err := ob.Start(ctx); err != nil {
		return err
	}
	mu.Lock()
	fmt.Fprintln(w, "ready")
	err = w.Flush()
	mu.Unlock()
	if err == nil {
		_, _ = io.Copy(io.Discard, in) // until the parent closes our stdin
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return errors.Join(err, ob.Stop(sctx))
}

type delivery struct {
	part    int
	seq     int64
	startNS int64
	payload []byte
}

// workerProcs are the worker processes of one concurrent run.
type workerProcs struct {
	cmds   []*exec.Cmd
	stdins []io.WriteCloser
	mu     sync.Mutex
	got    []delivery
	count  atomic.Int64
	more   chan struct{} // a line arrived
	readWG sync.WaitGroup
	errs   chan error
}

func startWorkers(ctx context.Context, o Options, dsn string) (*workerProcs, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	spec := workerSpec{Options: o, AttachDSN: dsn}
	spec.Processes = 1
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	wp := &workerProcs{more: make(chan struct{}, 1), errs: make(chan error, o.Processes)}
	for range o.Processes - 1 {
		cmd := exec.Command(exe, WorkerFlag, string(b))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			wp.kill()
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			wp.kill()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			wp.kill()
			return nil, fmt.Errorf("start worker process: %w", err)
		}
		wp.cmds, wp.stdins = append(wp.cmds, cmd), append(wp.stdins, stdin)
		ready := make(chan error, 1)
		wp.readWG.Add(1)
		go wp.read(stdout, ready)
		select {
		case err := <-ready:
			if err != nil {
				wp.kill()
				return nil, err
			}
		case <-ctx.Done():
			wp.kill()
			return nil, ctx.Err()
		case <-time.After(time.Minute):
			wp.kill()
			return nil, errors.New("worker process not ready after 1m")
		}
	}
	return wp, nil
}

func (wp *workerProcs) read(r io.Reader, ready chan<- error) {
	defer wp.readWG.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<22)
	if !sc.Scan() || sc.Text() != "ready" {
		ready <- fmt.Errorf("worker process did not start: %q %v", sc.Text(), sc.Err())
		return
	}
	ready <- nil
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		var d delivery
		var err error
		if len(f) != 4 {
			err = fmt.Errorf("bad line %q", sc.Text())
		} else {
			d.part, err = strconv.Atoi(f[0])
			if err == nil {
				d.seq, err = strconv.ParseInt(f[1], 10, 64)
			}
			if err == nil {
				d.startNS, err = strconv.ParseInt(f[2], 10, 64)
			}
			if err == nil {
				_, err = fmt.Sscanf(f[3], "%x", &d.payload)
			}
		}
		if err != nil {
			wp.errs <- fmt.Errorf("worker output: %w", err)
			return
		}
		wp.mu.Lock()
		wp.got = append(wp.got, d)
		wp.mu.Unlock()
		wp.count.Add(1)
		select {
		case wp.more <- struct{}{}:
		default:
		}
	}
}

// wait returns once n deliveries arrived (or ctx ends).
func (wp *workerProcs) wait(ctx context.Context, n int) error {
	for wp.count.Load() < int64(n) {
		select {
		case <-wp.more:
		case err := <-wp.errs:
			return err
		case <-ctx.Done():
			return fmt.Errorf("timed out with %d of %d messages delivered", wp.count.Load(), n)
		}
	}
	return nil
}

// stop closes the workers' stdin (they Stop and exit) and waits for them.
func (wp *workerProcs) stop() error {
	for _, in := range wp.stdins {
		_ = in.Close()
	}
	wp.readWG.Wait()
	var errs []error
	for _, c := range wp.cmds {
		if err := c.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("worker process: %w", err))
		}
	}
	wp.cmds = nil
	return errors.Join(errs...)
}

func (wp *workerProcs) kill() {
	for _, c := range wp.cmds {
		if c.Process != nil {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
	wp.cmds = nil
}

// replay records the deliveries in handler-start order. Across processes
// the pipes' arrival order means nothing, but the start times do: the next
// batch of a partition is read only after the previous batch's handler
// returned and its ack committed, so per partition, start times order the
// batches.
func (wp *workerProcs) replay(rec *recorder, lastNS *atomic.Int64) {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	slices.SortStableFunc(wp.got, func(a, b delivery) int {
		if a.startNS != b.startNS {
			return int(max(min(a.startNS-b.startNS, 1), -1))
		}
		if a.part != b.part {
			return a.part - b.part
		}
		return int(max(min(a.seq-b.seq, 1), -1))
	})
	for _, d := range wp.got {
		rec.record(d.part, d.seq, d.payload, d.startNS)
		lastNS.Store(max(lastNS.Load(), d.startNS))
	}
}
