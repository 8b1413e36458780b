package outbox

import (
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Config tunes an Outbox. The zero value is valid: every zero field takes
// the default named in its comment. A non-zero value outside the field's
// range (stated in its comment) makes New return an error wrapping
// ErrInvalidConfig that names the field. The ranges keep the outbox from
// stopping itself (a lease shorter than a round trip), flooding the
// database (polling every nanosecond, a goroutine per unit of a huge
// count) or exceeding a database limit (MariaDB's 65535 placeholders, its
// 16 MiB max_allowed_packet).
type Config struct {
	// Logger receives the outbox's logs. Default: discard. Retries are
	// logged at debug level, dead letters and blocked partitions (a head
	// message that failed 3 times in a row) at warn level, each kind at
	// most 10 lines a second (the next line written says how many were
	// suppressed).
	Logger *slog.Logger
	// MeterProvider receives the outbox's metrics (docs/observability.md
	// lists them). Default (nil): no metrics, and no cost.
	// An Outbox registers a callback for its backlog gauges at New; Stop
	// unregisters it.
	MeterProvider metric.MeterProvider
	// TracerProvider creates a span per handler call, linked to the spans
	// that enqueued its messages; the handler's context carries it.
	// Default (nil): no spans. The library never reads the global
	// provider: pass otel.GetTracerProvider() to use it.
	TracerProvider trace.TracerProvider
	// Propagator writes the trace context of Enqueue's ctx into the
	// message's headers (when ctx carries a span, and never over a header
	// the caller set) and reads it back at delivery. Default (nil): W3C
	// Trace Context (propagation.TraceContext). To add nothing to headers,
	// pass propagation.NewCompositeTextMapPropagator() (it has no fields).
	Propagator propagation.TextMapPropagator
	// MaxPayloadBytes limits a message's payload. Default 64 KiB; at most
	// 4 MiB (MaxPayloadLimit), so that a message, escaped by the MySQL
	// driver's interpolateParams (up to twice its size), still fits
	// MariaDB's default 16 MiB max_allowed_packet.
	MaxPayloadBytes int
	// PollInterval is how often idle workers look for work when no wake-up
	// came (the safety net behind InTx/Notify). Default 200ms; 10ms–1h.
	PollInterval time.Duration
	// LeaseDuration is how long a decoupled worker owns a partition per
	// batch. A handler's context is cancelled at 80% of it. Default 30s;
	// 1s–24h (below a second, claim, read and ack round trips can outlast
	// the lease and no batch ever completes).
	LeaseDuration time.Duration
	// BatchSize is the most messages handed to one handler call. Default
	// 100; 1–10000.
	BatchSize int
	// MaxConcurrency bounds concurrent handler calls (one partition each),
	// one goroutine each. Each goroutine claims up to
	// ceil(partitions of decoupled queues / MaxConcurrency) partitions at
	// once (at most 8) and works them in turn. Default 4; 1–1024.
	MaxConcurrency int
	// Sequencers is the number of sequencer goroutines; they split the
	// pending partitions between them. Only the first polls fast after
	// finding work (for producers in other processes); the others poll
	// every PollInterval unless woken. On MariaDB, 1 trades latency for
	// throughput (docs/performance.md). Default 2; 1–64.
	Sequencers int
	// SequencerBatch is the most rows sequenced per transaction. Default
	// 1000; 1–10000 (a MySQL pass binds three placeholders per row).
	SequencerBatch int
	// RetryBase and RetryMax shape the exponential backoff after a Retry:
	// base·2^(attempts-1), capped at RetryMax, with equal jitter (the delay
	// is drawn from [d/2, d]). Defaults 1s and 60s; RetryBase 1ms–1h,
	// RetryMax 10ms–24h and not below RetryBase.
	RetryBase time.Duration
	RetryMax  time.Duration
	// MaxAttempts, when > 0, dead-letters a partition's head message once
	// it has failed that many times. 0 leaves giving up to the handler.
	// 0–1000000.
	MaxAttempts int
	// VacuumInterval is how often an idle outbox looks for delivered rows
	// to delete; after a pass that deleted some, the next comes a tenth
	// of it later (at least 10ms). Default 1s; 10ms–1h.
	VacuumInterval time.Duration
	// VacuumBatch is the most rows one vacuum statement deletes. Default
	// 1000; 1–10000 (a MySQL delete binds one placeholder per row).
	VacuumBatch int
	// ShutdownTimeout bounds each bookkeeping write (acks, lease releases)
	// made after Stop's context has ended. Before that, each of the
	// library's statements is bounded by LeaseDuration. Default 5s;
	// 10ms–10m.
	ShutdownTimeout time.Duration
	// CoalesceDelay is how long the sequencer and the workers of decoupled
	// queues wait before their next pass once two passes in a row found
	// work, and half of how long they wait from the third such pass on:
	// under sustained load work then gathers, and each statement and
	// commit serves more messages (docs/performance.md has the
	// figures). The sequencer also waits at least twice as long as its
	// last pass took, up to four times CoalesceDelay: its pass costs about
	// the same whatever it numbers. At a low rate a pass that finds work
	// is followed by one that finds none, so nothing waits. Workers of an
	// Outbox with a transactional queue never wait. Default 8ms;
	// 100µs–100ms.
	CoalesceDelay time.Duration
	// NoCoalesce turns CoalesceDelay off: every pass that found work is
	// followed at once by the next, for the lowest latency under load at
	// the cost of throughput.
	NoCoalesce bool
	// HandlerTimeout, when > 0, bounds each handler call: the handler's
	// context ends after it (in decoupled mode, or at 80% of the lease if
	// that comes first). In transactional mode a call that outlives it is
	// rolled back at once, which frees its connection and the partition's
	// row lock, and counts as a failed attempt with backoff; the call
	// still occupies its worker until it returns. 0 (the default) means no
	// timeout; otherwise 1ms–24h.
	HandlerTimeout time.Duration
}

// MaxPayloadLimit is the largest Config.MaxPayloadBytes (4 MiB).
const MaxPayloadLimit = 4 << 20

// limit is a Config field's range; zero (the default) is checked after
// defaults are applied.
type limit struct {
	name     string
	v        int64
	min, max int64
	duration bool
	optional bool // 0 stays valid after defaults (the feature is off)
}

func (c *Config) limits() []limit {
	d := func(name string, v, lo, hi time.Duration) limit {
		return limit{name: name, v: int64(v), min: int64(lo), max: int64(hi), duration: true}
	}
	n := func(name string, v, lo, hi int) limit {
		return limit{name: name, v: int64(v), min: int64(lo), max: int64(hi)}
	}
	return []limit{
		n("MaxPayloadBytes", c.MaxPayloadBytes, 1, MaxPayloadLimit),
		d("PollInterval", c.PollInterval, 10*time.Millisecond, time.Hour),
		d("LeaseDuration", c.LeaseDuration, time.Second, 24*time.Hour),
		n("BatchSize", c.BatchSize, 1, 10000),
		n("MaxConcurrency", c.MaxConcurrency, 1, 1024),
		n("Sequencers", c.Sequencers, 1, 64),
		n("SequencerBatch", c.SequencerBatch, 1, 10000),
		d("RetryBase", c.RetryBase, time.Millisecond, time.Hour),
		d("RetryMax", c.RetryMax, 10*time.Millisecond, 24*time.Hour),
		n("MaxAttempts", c.MaxAttempts, 0, 1_000_000),
		d("VacuumInterval", c.VacuumInterval, 10*time.Millisecond, time.Hour),
		n("VacuumBatch", c.VacuumBatch, 1, 10000),
		d("ShutdownTimeout", c.ShutdownTimeout, 10*time.Millisecond, 10*time.Minute),
		d("CoalesceDelay", c.CoalesceDelay, 100*time.Microsecond, 100*time.Millisecond),
		{name: "HandlerTimeout", v: int64(c.HandlerTimeout), min: int64(time.Millisecond), max: int64(24 * time.Hour), duration: true, optional: true},
	}
}

func (c Config) withDefaults() (Config, error) {
	def := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	defInt := func(p *int, d int) {
		if *p == 0 {
			*p = d
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Propagator == nil {
		c.Propagator = propagation.TraceContext{}
	}
	defInt(&c.MaxPayloadBytes, DefaultMaxPayloadBytes)
	def(&c.PollInterval, 200*time.Millisecond)
	def(&c.LeaseDuration, 30*time.Second)
	defInt(&c.BatchSize, 100)
	defInt(&c.MaxConcurrency, 4)
	defInt(&c.Sequencers, 2)
	defInt(&c.SequencerBatch, 1000)
	def(&c.RetryBase, time.Second)
	def(&c.RetryMax, 60*time.Second)
	def(&c.VacuumInterval, time.Second)
	defInt(&c.VacuumBatch, 1000)
	def(&c.ShutdownTimeout, 5*time.Second)
	def(&c.CoalesceDelay, coalesceUnderLoad)
	for _, l := range c.limits() {
		if p := l.problem(); p != "" {
			return c, fmt.Errorf("%w: %s", ErrInvalidConfig, p)
		}
	}
	if c.RetryMax < c.RetryBase {
		return c, fmt.Errorf("%w: RetryMax (%v) is below RetryBase (%v)", ErrInvalidConfig, c.RetryMax, c.RetryBase)
	}
	return c, nil
}

// problem describes l's value out of its range, or is "" when it is in it.
func (l limit) problem() string {
	switch {
	case l.v >= l.min && l.v <= l.max || l.optional && l.v == 0:
		return ""
	case l.duration:
		return fmt.Sprintf("%s is %v, want %v to %v", l.name, time.Duration(l.v), time.Duration(l.min), time.Duration(l.max))
	}
	return fmt.Sprintf("%s is %d, want %d to %d", l.name, l.v, l.min, l.max)
}
