package bench

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modkit-go/db/dialect"
	mysqld "github.com/modkit-go/db/dialect/mysql"
	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/dialect/postgres/pgxlisten"
	"github.com/modkit-go/db/dialect/postgres/pqlisten"
	"github.com/modkit-go/db/outbox"
)

// ScenarioCross is the cross-process latency scenario: this process
// enqueues (InTx, no Start) and a worker process it starts (its own binary
// with CrossWorkerArg) delivers; latency is commit return to handler start,
// at 20 and 200 msg/s. PostgreSQL wakes the worker with LISTEN/NOTIFY
// (pqlisten or pgxlisten, by --driver); MariaDB relies on adaptive polling.
const ScenarioCross = "cross"

// CrossWorkerArg is the first argument that makes the bench binary run the
// worker side of the cross scenario (see RunCrossWorker).
const CrossWorkerArg = "-cross-worker"

// crossRates are the producer rates of the cross scenario.
var crossRates = []int{20, 200}

// CrossProcess runs the cross scenario once per rate in crossRates.
func CrossProcess(ctx context.Context, o Options) ([]Result, error) {
	o = o.withDefaults()
	if o.Dialect == "sqlite" {
		return []Result{{Scenario: ScenarioCross, Mode: "-", Target: "none (SQLite: one writer process)", Verified: true}}, nil
	}
	var out []Result
	for _, r := range crossRates {
		res, err := crossRun(ctx, o, r)
		out = append(out, res)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func crossRun(ctx context.Context, o Options, perSec int) (Result, error) {
	n := max(int(float64(perSec)*o.E2EDuration.Seconds()), 1)
	res := Result{Scenario: ScenarioCross, Mode: fmt.Sprintf("decoupled Batch @%d/s", perSec), Messages: n}
	if o.Dialect == "postgres" {
		res.Mode += " " + cmpOr(o.Driver, "pq")
	}
	env, ob, err := openOutbox(ctx, o)
	if err != nil {
		return res, err
	}
	defer env.Close()
	self, err := os.Executable()
	if err != nil {
		return res, err
	}
	wctx, cancel := context.WithTimeout(ctx, o.Timeout+o.E2EDuration)
	defer cancel()
	cmd := exec.CommandContext(wctx, self, CrossWorkerArg, o.Dialect, env.Driver, env.DSN,
		strconv.Itoa(o.Consumers), strconv.Itoa(max(outbox.DefaultMaxPayloadBytes, o.PayloadBytes)),
		cmpOr(o.Preset, "default"), strconv.FormatBool(o.DefaultPool))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return res, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("start worker process: %w", err)
	}
	defer func() { _ = cmd.Wait() }()
	defer stdin.Close()

	rec := newRecorder(n, o.Partitions, o.PayloadBytes, false, true)
	ready := make(chan struct{})
	readErr := make(chan error, 1)
	go func() { readErr <- readDeliveries(stdout, rec, ready) }()
	select {
	case <-ready:
	case err := <-readErr:
		return res, fmt.Errorf("worker process: %w", errors.Join(err, errors.New("exited before it was ready")))
	case <-wctx.Done():
		return res, fmt.Errorf("worker process not ready: %w", wctx.Err())
	}
	o.Logf("%s %s %s: %d messages over %v, %d producers, worker in pid %d", o.Dialect, ScenarioCross, res.Mode, n, o.E2EDuration, o.Producers, cmd.Process.Pid)

	commitNS := make([]atomic.Int64, n)
	t0 := time.Now()
	if err := produceAt(ctx, o, ob, env.D, perSec, commitNS); err != nil {
		return res, fmt.Errorf("producer: %w", err)
	}
	var waitErr error
	select {
	case <-rec.done:
	case <-wctx.Done():
		waitErr = fmt.Errorf("timed out with %d of %d messages delivered", rec.total.Load(), n)
	}
	elapsed := time.Since(t0)
	_ = stdin.Close() // the worker stops
	if err := <-readErr; err != nil {
		waitErr = errors.Join(waitErr, err)
	}
	res.Seconds, res.Rate = elapsed.Seconds(), rate(n, elapsed)
	res.Latency = commitToStart(commitNS, rec.startNS)
	res.Details = map[string]any{"offered_rate": perSec, "driver": env.Driver}
	switch {
	case o.Dialect == "postgres":
		res.Target = "p50 <= 5ms, p99 <= 20ms"
		res.Met = ptr(res.Latency.P50 <= 5 && res.Latency.P99 <= 20)
	case perSec <= 20:
		res.Target = "p50 <= 25ms"
		res.Met = ptr(res.Latency.P50 <= 25)
	}
	verdict(&res, errors.Join(waitErr, rec.verify(perPartition(n, o.Partitions))))
	return res, nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// produceAt enqueues messages 0..len(commitNS)-1 at perSec (open loop:
// message i is due at t0 + i/perSec) from o.Producers goroutines, each in
// its own InTx, and records when each commit returned.
func produceAt(ctx context.Context, o Options, ob *outbox.Outbox, d dialect.Dialect, perSec int, commitNS []atomic.Int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	var first error
	var once sync.Once
	t0 := time.Now()
	interval := time.Second / time.Duration(perSec)
	for range o.Producers {
		wg.Go(func() {
			for ctx.Err() == nil {
				id := int(next.Add(1)) - 1
				if id >= len(commitNS) {
					return
				}
				time.Sleep(time.Until(t0.Add(time.Duration(id) * interval)))
				m := o.message(id)
				err := retry(d, func() error {
					return ob.InTx(ctx, func(tx *sql.Tx) error { return ob.Enqueue(ctx, tx, m) })
				})
				if err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
				commitNS[id].Store(time.Now().UnixNano())
			}
		})
	}
	wg.Wait()
	return first
}

// retry runs fn until it succeeds, fails for good, or 20 tries.
func retry(d dialect.Dialect, fn func() error) error {
	var err error
	for range 20 {
		if err = fn(); err == nil || !(d.ClassifyError(err) == dialect.ErrorRetryable) {
			return err
		}
	}
	return err
}

// readDeliveries reads the worker's lines: "ready" once, then one line per
// delivery ("partition seq startNS payload-hex"), until EOF.
func readDeliveries(r io.Reader, rec *recorder, ready chan struct{}) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "ready" {
			close(ready)
			continue
		}
		f := strings.Fields(line)
		if len(f) != 4 {
			return fmt.Errorf("worker: unexpected line %q", line)
		}
		part, err1 := strconv.Atoi(f[0])
		seq, err2 := strconv.ParseInt(f[1], 10, 64)
		start, err3 := strconv.ParseInt(f[2], 10, 64)
		p, err4 := hex.DecodeString(f[3])
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			return fmt.Errorf("worker: line %q: %w", line, err)
		}
		rec.record(part, seq, p, start)
	}
	return sc.Err()
}

// RunCrossWorker is the worker process of the cross scenario. args are
// dialect, driver, DSN, MaxConcurrency, MaxPayloadBytes, the Config
// preset and whether to keep database/sql's default pool settings. It
// starts an Outbox (and, on PostgreSQL, the driver's listener), prints
// "ready" once it listens, one line per delivery, and stops when in
// reaches EOF.
func RunCrossWorker(ctx context.Context, args []string, in io.Reader, out io.Writer) error {
	if len(args) != 7 {
		return fmt.Errorf("cross worker: want 7 arguments, got %d", len(args))
	}
	dialectName, driver, dsn := args[0], args[1], args[2]
	consumers, err1 := strconv.Atoi(args[3])
	maxPayload, err2 := strconv.Atoi(args[4])
	defaultPool, err3 := strconv.ParseBool(args[6])
	cfg, ok := PresetConfig(args[5])
	if !ok {
		err3 = errors.Join(err3, fmt.Errorf("unknown preset %q", args[5]))
	}
	if err := errors.Join(err1, err2, err3); err != nil {
		return fmt.Errorf("cross worker: %w", err)
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	// Sized as docs/configuration.md's pool advice says, idle connections included:
	// database/sql keeps only 2 idle by default, and a busier pool then
	// opens and closes connections all the time (a process fork per
	// connection on PostgreSQL).
	if !defaultPool {
		pool := consumers + cfg.Sequencers + 4 // MaxConcurrency + sequencers + claims, vacuum and the listener
		db.SetMaxOpenConns(pool)
		db.SetMaxIdleConns(pool)
	}
	var d dialect.Dialect = mysqld.New()
	if dialectName == "postgres" {
		var l postgres.Listener = pqlisten.New(dsn)
		if driver == "pgx" {
			l = pgxlisten.New()
		}
		d = postgres.New(postgres.WithListener(l))
	}
	listening := make(chan struct{})
	var once sync.Once
	logs := slog.New(readyHandler{func() { once.Do(func() { close(listening) }) }})
	cfg.MaxConcurrency, cfg.MaxPayloadBytes, cfg.Logger = consumers, maxPayload, logs
	ob, err := outbox.New(db, d, cfg)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	w := bufio.NewWriter(out)
	if err := ob.Handle(Queue, outbox.Batch(func(_ context.Context, ms []outbox.Delivery) outbox.Result {
		start := time.Now().UnixNano()
		mu.Lock()
		defer mu.Unlock()
		for _, m := range ms {
			fmt.Fprintf(w, "%d %d %d %x\n", m.Partition, m.Seq, start, m.Payload)
		}
		_ = w.Flush()
		return outbox.Success()
	})); err != nil {
		return err
	}
	if err := ob.Start(ctx); err != nil {
		return err
	}
	if _, ok := d.(dialect.Waker); ok {
		select {
		case <-listening:
		case <-time.After(30 * time.Second):
			return errors.New("cross worker: the wake-up listener did not start")
		}
	}
	mu.Lock()
	fmt.Fprintln(w, "ready")
	err = w.Flush()
	mu.Unlock()
	if err != nil {
		return err
	}
	began, before := time.Now(), db.Stats().MaxIdleClosed
	_, _ = io.Copy(io.Discard, in) // until the producer closes our stdin
	// How much the pool churned while the producer ran (see --default-pool).
	fmt.Fprintf(os.Stderr, "cross worker: the pool closed %d idle connections in %v\n",
		db.Stats().MaxIdleClosed-before, time.Since(began).Round(time.Second))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return ob.Stop(sctx)
}

// readyHandler is a slog handler that calls ready when the outbox logs that
// its wake-up listener is ready, prints warnings to stderr, and drops the
// other records.
type readyHandler struct{ ready func() }

func (readyHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h readyHandler) WithAttrs([]slog.Attr) slog.Handler     { return h }
func (h readyHandler) WithGroup(string) slog.Handler          { return h }
func (h readyHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "outbox: wake-up listener ready" {
		h.ready()
	}
	if r.Level >= slog.LevelWarn {
		fmt.Fprintf(os.Stderr, "cross worker: %s: %s\n", r.Level, r.Message)
	}
	return nil
}
