// Package bench measures the outbox against the raw database it runs on.
// cmd/outbox-bench and the Go benchmarks of this package share its code:
// every scenario opens an isolated database (PostgreSQL schema, MariaDB
// database or SQLite file), runs the outbox and a plain-SQL baseline with
// the same pool, producer count and payload, verifies what was delivered,
// and drops the database.
//
// Scenarios:
//
//   - enqueue: one message per transaction (InTx + Enqueue) from N
//     producers versus INSERT+COMMIT of one row; and batches of Batch
//     messages per transaction (EnqueueBatch) versus a multi-row INSERT.
//   - drain: a backlog enqueued while no outbox runs, consumed by a no-op
//     batch handler (decoupled and transactional) until every message is
//     delivered and vacuumed, versus SELECT … LIMIT 100 FOR UPDATE SKIP
//     LOCKED + DELETE on a one-table queue (SQLite: the same under BEGIN
//     IMMEDIATE).
//   - e2e: producers at a fixed rate through InTx, latency from commit
//     return to handler start, with the default poll interval so that the
//     in-process wake-up is what is measured.
//   - concurrent: producers at full speed and Start running at once (the
//     steady state of a loaded service), delivered rate versus INSERT+COMMIT
//     with as many clients, and versus a reference queue (the same producers
//     with SKIP LOCKED claim + DELETE consumers: what a plain queue table
//     costs on that database); optionally with the workers in other
//     processes.
//   - soak: e2e at a steady rate for minutes, sampling table sizes and the
//     Go heap.
//   - relay: the backlog drained through package relay to a broker versus
//     the same drain with a no-op handler; the broker's publish rate from
//     one client; latency from commit to stored on the broker.
package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Queue is the queue the scenarios use.
const Queue = "bench.events"

// PayloadType is the payload type of every benchmark message.
const PayloadType = "application/octet-stream"

// Scenario names.
const (
	ScenarioEnqueue = "enqueue"
	ScenarioDrain   = "drain"
	ScenarioE2E     = "e2e"
	ScenarioSoak    = "soak"
)

// DefaultScenarios run when none are chosen; soak is opt-in.
var DefaultScenarios = []string{ScenarioEnqueue, ScenarioDrain, ScenarioE2E, ScenarioConcurrent}

// Options configure a run. Zero fields take the defaults of withDefaults.
type Options struct {
	Dialect      string `json:"dialect"`
	DSN          string `json:"-"`
	Driver       string `json:"driver,omitempty"`     // PostgreSQL: "pq" (default) or "pgx"
	Messages     int    `json:"messages"`             // per enqueue mode, and the drain backlog
	Partitions   int    `json:"partitions"`           // default 16
	Producers    int    `json:"producers"`            // default 4
	Consumers    int    `json:"consumers"`            // outbox MaxConcurrency and baseline drain workers; default 4
	Batch        int    `json:"batch"`                // messages per transaction in the batch enqueue mode; default 100
	PayloadBytes int    `json:"payload_bytes"`        // default 256, at least 16
	Sequencers   int    `json:"sequencers,omitempty"` // outbox Config.Sequencers; 0: the library default
	// CoalesceDelay is outbox Config.CoalesceDelay; 0: the library
	// default, negative: Config.NoCoalesce.
	CoalesceDelay time.Duration `json:"coalesce_delay,omitempty"`
	// Preset is the outbox Config preset the fields above start from:
	// "default" (or ""), "low-latency", "high-throughput" or "relaxed".
	Preset string `json:"preset,omitempty"`
	// DefaultPool leaves the cross scenario's worker process with
	// database/sql's default pool settings (2 idle connections) instead of
	// the sizing docs/configuration.md advises.
	DefaultPool bool `json:"default_pool,omitempty"`
	// Processes > 1 runs the concurrent scenario's workers in Processes-1
	// child processes (the outbox-bench binary re-executed with WorkerFlag);
	// the producers stay in this one. 0 or 1: all in-process.
	Processes int `json:"processes,omitempty"`
	Rate      int `json:"rate"` // e2e and soak msg/s; default 500
	// To is the relay scenario's broker: nats, amqp, redis (the local
	// servers) or a nats://, amqp://, redis:// URL.
	To string `json:"to,omitempty"`
	// RelayRate is the relay scenario's producer rate, msg/s; default 200.
	RelayRate   int           `json:"relay_rate,omitempty"`
	E2EDuration time.Duration `json:"e2e_duration"` // default 10s
	// E2EQueues is how many queues of Partitions partitions each the e2e
	// scenario declares and handles (messages spread over all of their
	// partitions); default 1.
	E2EQueues int `json:"e2e_queues,omitempty"`
	// E2EIdle is how long the e2e scenario's outbox runs idle before the
	// producers start (the trickle after a quiet spell); default 0.
	E2EIdle      time.Duration `json:"e2e_idle,omitempty"`
	SoakDuration time.Duration `json:"soak_duration"` // default 2m
	// Timeout bounds each wait for deliveries; default 2m (plus the
	// producing time for e2e and soak).
	Timeout time.Duration `json:"timeout"`
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any) `json:"-"`
}

func (o Options) withDefaults() Options {
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&o.Messages, 50000)
	def(&o.Partitions, 16)
	def(&o.Producers, 4)
	def(&o.Consumers, 4)
	def(&o.Batch, 100)
	def(&o.PayloadBytes, 256)
	def(&o.Rate, 500)
	def(&o.RelayRate, 200)
	def(&o.E2EQueues, 1)
	o.PayloadBytes = max(o.PayloadBytes, headerBytes)
	if o.E2EDuration <= 0 {
		o.E2EDuration = 10 * time.Second
	}
	if o.SoakDuration <= 0 {
		o.SoakDuration = 2 * time.Minute
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.DSN == "" {
		o.DSN = DefaultDSN(o.Dialect)
	}
	return o
}

// poolSize is the pool every scenario uses for both the outbox and its
// baseline: producers, consumers, and the sequencer, vacuum and claims.
func (o Options) poolSize() int { return o.Producers + o.Consumers + 4 }

// Result is one measured line: the outbox figure, its baseline and the
// target it is held to.
type Result struct {
	Scenario string  `json:"scenario"`
	Mode     string  `json:"mode"`
	Messages int     `json:"messages"`
	Seconds  float64 `json:"seconds"`
	Rate     float64 `json:"msg_per_s"`

	Baseline        string  `json:"baseline,omitempty"`
	BaselineSeconds float64 `json:"baseline_seconds,omitempty"`
	BaselineRate    float64 `json:"baseline_msg_per_s,omitempty"`
	Ratio           float64 `json:"ratio,omitempty"`

	Latency *Latency `json:"latency,omitempty"`

	Target string `json:"target,omitempty"`
	Met    *bool  `json:"met,omitempty"` // nil: no target for this line

	Verified    bool   `json:"verified"`
	VerifyError string `json:"verify_error,omitempty"`

	Details map[string]any `json:"details,omitempty"`
}

// Report is a whole run.
type Report struct {
	Dialect string    `json:"dialect"`
	Options Options   `json:"options"`
	Started time.Time `json:"started"`
	Results []Result  `json:"results"`
}

// VerificationErrors lists the lines whose deliveries were wrong.
func (r *Report) VerificationErrors() []string {
	var out []string
	for _, x := range r.Results {
		if !x.Verified {
			out = append(out, fmt.Sprintf("%s/%s: %s", x.Scenario, x.Mode, x.VerifyError))
		}
	}
	return out
}

// UnmetTargets lists the lines that missed their target.
func (r *Report) UnmetTargets() []string {
	var out []string
	for _, x := range r.Results {
		if x.Met != nil && !*x.Met {
			out = append(out, fmt.Sprintf("%s/%s: %s", x.Scenario, x.Mode, x.Target))
		}
	}
	return out
}

// Run runs the named scenarios in order (DefaultScenarios when empty). It
// returns the lines measured so far with the first setup or database error;
// verification failures are reported in the lines, not as an error.
func Run(ctx context.Context, o Options, scenarios []string) (Report, error) {
	o = o.withDefaults()
	if len(scenarios) == 0 {
		scenarios = DefaultScenarios
	}
	rep := Report{Dialect: o.Dialect, Options: o, Started: time.Now()}
	for _, s := range scenarios {
		fn, ok := scenarioFuncs[s]
		if !ok {
			return rep, fmt.Errorf("unknown scenario %q (want one of %s)", s, strings.Join(ScenarioNames(), ", "))
		}
		res, err := fn(ctx, o)
		rep.Results = append(rep.Results, res...)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", s, err)
		}
	}
	return rep, nil
}

var scenarioFuncs = map[string]func(context.Context, Options) ([]Result, error){
	ScenarioEnqueue:    Enqueue,
	ScenarioDrain:      Drain,
	ScenarioE2E:        EndToEnd,
	ScenarioSoak:       Soak,
	ScenarioCross:      CrossProcess,
	ScenarioConcurrent: Concurrent,
	ScenarioRelay:      Relay,
}

// ScenarioNames lists the known scenarios.
func ScenarioNames() []string {
	var out []string
	for k := range scenarioFuncs {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func ptr[T any](v T) *T { return &v }

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

func verdict(r *Result, err error) {
	r.Verified = err == nil
	if err != nil {
		r.VerifyError = err.Error()
	}
}
