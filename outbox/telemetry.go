package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/modkit-go/db/dialect"
)

// instrumentationName names the outbox's meter and tracer.
const instrumentationName = "github.com/modkit-go/db/outbox"

// Attribute keys of the outbox's metrics, spans and logs.
const (
	attrQueue     = "outbox.queue"
	attrPartition = "outbox.partition"
	attrSeq       = "outbox.seq"
	attrSeqLast   = "outbox.seq.last"
	attrAttempts  = "outbox.attempts"
	attrResult    = "outbox.result"
	attrWorker    = "outbox.worker"
)

// stuckAfter is the failed-attempt count of a partition's head from which
// its retries are logged at warn level as a stuck partition (every later
// message of the partition waits behind it) instead of at debug level.
const stuckAfter = 3

// logsPerSecond bounds the retry, blocked-partition and dead-letter log
// lines: at most this many per second of each kind. The next line written
// after some were dropped carries their number as "suppressed".
const logsPerSecond = 10

// backlogTimeout bounds one collection of the backlog gauges (see
// queueBacklog).
const backlogTimeout = 5 * time.Second

// Histogram bucket boundaries in seconds: handler calls (OTel's
// recommendation for durations in seconds) and enqueue-to-delivery
// latency, which includes retries and backlogs and so reaches further.
var (
	durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
	latencyBuckets  = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}
)

// telemetry holds an Outbox's metric instruments, its tracer and propagator
// and its rate-bounded logs. A nil *telemetry records nothing: every hook
// the core calls accepts one (unit tests build an Outbox or a callScope
// without telemetry). With no MeterProvider and no
// TracerProvider configured, every hook returns after one boolean test, so
// the hot paths cost nothing measurable.
type telemetry struct {
	log  *slog.Logger
	now  func() time.Time // the rate limiter's clock; tests replace it
	prop propagation.TextMapPropagator

	tracer trace.Tracer // nil: no delivery spans

	metrics                                       bool // a MeterProvider was configured
	meter                                         metric.Meter
	enqueued, sequenced, delivered, retried, dead metric.Int64Counter
	leaseLost, workerErrors                       metric.Int64Counter
	handlerDuration, latency                      metric.Float64Histogram
	backlog                                       metric.Int64ObservableGauge
	oldestAge                                     metric.Float64ObservableGauge
	reg                                           metric.Registration
	unregister                                    sync.Once
	attrsMu                                       sync.RWMutex
	attrs                                         map[string]*queueAttrs
	logRetry, logStuck, logDead, logBacklog       logLimiter
}

// queueAttrs are a queue's attribute options, built once so that recording
// a measurement allocates nothing.
type queueAttrs struct {
	add    []metric.AddOption
	record []metric.RecordOption
	// byResult are the handler-duration options per resultKind.
	byResult [3][]metric.RecordOption
	observe  []metric.ObserveOption
}

func newTelemetry(cfg *Config) (*telemetry, error) {
	t := &telemetry{log: cfg.Logger, now: time.Now, prop: cfg.Propagator, attrs: make(map[string]*queueAttrs)}
	if cfg.TracerProvider != nil {
		t.tracer = cfg.TracerProvider.Tracer(instrumentationName)
	}
	if cfg.MeterProvider == nil {
		return t, nil
	}
	t.metrics = true
	m := cfg.MeterProvider.Meter(instrumentationName)
	t.meter = m
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	histogram := func(name, desc string, bounds []float64) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc), metric.WithExplicitBucketBoundaries(bounds...))
		errs = append(errs, err)
		return h
	}
	t.enqueued = counter("outbox.messages.enqueued", "{message}", "Messages inserted by Enqueue and EnqueueBatch (counted at the insert, before the caller's transaction commits or rolls back).")
	t.sequenced = counter("outbox.messages.sequenced", "{message}", "Messages given their partition's next seq: by this process's sequencers once committed, or by Enqueue's own insert where the dialect sequences on insert (SQLite; counted at the insert, like outbox.messages.enqueued).")
	t.delivered = counter("outbox.messages.delivered", "{message}", "Messages whose handler succeeded and whose acknowledgement was committed.")
	t.retried = counter("outbox.messages.retried", "{message}", "Failed deliveries of a partition's head message that will be tried again after backoff.")
	t.dead = counter("outbox.messages.dead_lettered", "{message}", "Messages moved to the dead-letter table (Reject or MaxAttempts).")
	t.leaseLost = counter("outbox.lease.lost", "{lease}", "Leases this process found gone (expired and possibly taken over) when it tried to record a result.")
	t.workerErrors = counter("outbox.worker.errors", "{error}", "Failed passes of a background loop (sequencer, worker, vacuum) or of the wake-up listener.")
	t.handlerDuration = histogram("outbox.handler.duration", "Duration of one handler call.", durationBuckets)
	t.latency = histogram("outbox.delivery.latency", "Time from a message's insert (database clock) to its acknowledgement (this process's clock).", latencyBuckets)
	var err error
	t.backlog, err = m.Int64ObservableGauge("outbox.queue.backlog", metric.WithUnit("{message}"),
		metric.WithDescription("Sequenced messages of a queue not yet acknowledged or dead-lettered, across all processes."))
	errs = append(errs, err)
	t.oldestAge, err = m.Float64ObservableGauge("outbox.queue.oldest_age", metric.WithUnit("s"),
		metric.WithDescription("Age of a queue's oldest sequenced, unacknowledged message (database clock); 0 when there is none."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: MeterProvider: %w", ErrInvalidConfig, err)
	}
	return t, nil
}

// observeBacklog registers the backlog gauges' callback, which reads the
// backlog with fn within backlogTimeout. It stays registered until close.
// A queue fn could not read is left out of the collection (a gauge with no
// value rather than a wrong one) and logged at debug level.
func (t *telemetry) observeBacklog(fn func(context.Context) ([]queueBacklog, error)) error {
	if !t.metrics {
		return nil
	}
	reg, err := t.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, backlogTimeout)
		defer cancel()
		bs, err := fn(ctx)
		for _, b := range bs {
			qa := t.queue(b.queue)
			o.ObserveInt64(t.backlog, b.messages, qa.observe...)
			o.ObserveFloat64(t.oldestAge, b.oldest.Seconds(), qa.observe...)
		}
		if err != nil {
			t.logBounded(ctx, &t.logBacklog, slog.LevelDebug, "outbox: backlog gauges incomplete", slog.Any("err", err))
		}
		return nil
	}, t.backlog, t.oldestAge)
	if err != nil {
		return fmt.Errorf("%w: MeterProvider: register the backlog callback: %w", ErrInvalidConfig, err)
	}
	t.reg = reg
	return nil
}

// close unregisters the backlog callback; later calls do nothing.
func (t *telemetry) close() {
	if t == nil || t.reg == nil {
		return
	}
	t.unregister.Do(func() { _ = t.reg.Unregister() })
}

// queue returns queue's attribute options, building them on first use.
func (t *telemetry) queue(queue string) *queueAttrs {
	t.attrsMu.RLock()
	a, ok := t.attrs[queue]
	t.attrsMu.RUnlock()
	if ok {
		return a
	}
	q := attribute.String(attrQueue, queue)
	set := metric.WithAttributeSet(attribute.NewSet(q))
	a = &queueAttrs{add: []metric.AddOption{set}, record: []metric.RecordOption{set}, observe: []metric.ObserveOption{set}}
	for k, name := range [...]string{kindSuccess: "success", kindRetry: "retry", kindReject: "reject"} {
		a.byResult[k] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(q, attribute.String(attrResult, name)))}
	}
	t.attrsMu.Lock()
	if prev, ok := t.attrs[queue]; ok {
		a = prev
	} else {
		t.attrs[queue] = a
	}
	t.attrsMu.Unlock()
	return a
}

// traceFields returns the propagator's fields for the span context of ctx,
// or nil when ctx carries no valid span context: then nothing is added to
// the messages' headers, whatever the propagator.
func (t *telemetry) traceFields(ctx context.Context) map[string]string {
	if t == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	f := make(map[string]string, 2)
	t.prop.Inject(ctx, propagation.MapCarrier(f))
	if len(f) == 0 {
		return nil
	}
	return f
}

// withTraceFields returns h with fields added; a key the caller set keeps
// the caller's value.
func withTraceFields(fields, h map[string]string) map[string]string {
	out := make(map[string]string, len(fields)+len(h))
	for k, v := range fields {
		out[k] = v
	}
	for k, v := range h {
		out[k] = v
	}
	return out
}

// enqueuedRows counts inserted rows per queue.
func (t *telemetry) enqueuedRows(ctx context.Context, rows []dialect.InsertRow) {
	if t == nil || !t.metrics {
		return
	}
	for i := 0; i < len(rows); {
		j := i + 1
		for j < len(rows) && rows[j].Queue == rows[i].Queue {
			j++
		}
		t.enqueued.Add(ctx, int64(j-i), t.queue(rows[i].Queue).add...)
		i = j
	}
}

// sequencedRows counts rows the sequencer committed.
func (t *telemetry) sequencedRows(ctx context.Context, n int) {
	if t != nil && t.metrics && n > 0 {
		t.sequenced.Add(ctx, int64(n))
	}
}

// workerError counts a failed pass of the named worker.
func (t *telemetry) workerError(ctx context.Context, worker string) {
	if t != nil && t.metrics {
		t.workerErrors.Add(ctx, 1, metric.WithAttributes(attribute.String(attrWorker, worker)))
	}
}

// lostLease counts a lease found gone when a result was to be recorded.
func (t *telemetry) lostLease(ctx context.Context, queue string) {
	if t != nil && t.metrics {
		t.leaseLost.Add(ctx, 1, t.queue(queue).add...)
	}
}

// startCall starts a handler call on ds: a span when tracing is on, whose
// context the call's context derives from, and the start time when metrics
// are on (else zero).
func (t *telemetry) startCall(ctx context.Context, ds []Delivery) (context.Context, trace.Span, time.Time) {
	var start time.Time
	if t.metrics {
		start = time.Now()
	}
	if t.tracer == nil || len(ds) == 0 {
		return ctx, nil, start
	}
	first, last := ds[0], ds[len(ds)-1]
	links := make([]trace.Link, 0, len(ds))
	for _, d := range ds {
		if len(d.Headers) == 0 {
			continue
		}
		sc := trace.SpanContextFromContext(t.prop.Extract(context.Background(), propagation.MapCarrier(d.Headers)))
		if sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.Int64(attrSeq, d.Seq)}})
		}
	}
	attrs := []attribute.KeyValue{
		attribute.String("messaging.system", "outbox"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("messaging.operation.name", "process"),
		attribute.String("messaging.destination.name", first.Queue),
		attribute.String("messaging.destination.partition.id", strconv.Itoa(first.Partition)),
		attribute.String(attrQueue, first.Queue),
		attribute.Int(attrPartition, first.Partition),
		attribute.Int64(attrSeq, first.Seq),
		attribute.Int(attrAttempts, first.Attempts),
	}
	if len(ds) > 1 {
		attrs = append(attrs, attribute.Int64(attrSeqLast, last.Seq), attribute.Int("messaging.batch.message_count", len(ds)))
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...), trace.WithLinks(links...)}
	// One message: a child of its producer's span (and linked to it), so
	// the delivery shows in the producer's trace. Several: a trace of its
	// own, linked to each producer. Never a child of whatever span the
	// context Start got carried.
	if len(ds) == 1 && len(links) == 1 {
		ctx = trace.ContextWithRemoteSpanContext(ctx, links[0].SpanContext)
	} else {
		opts = append(opts, trace.WithNewRoot())
	}
	ctx, span := t.tracer.Start(ctx, "process "+first.Queue, opts...)
	return ctx, span, start
}

// endCall ends a handler call started by startCall with its result.
func (t *telemetry) endCall(ds []Delivery, span trace.Span, start time.Time, r Result) {
	kind := r.kind
	if kind > kindReject {
		kind = kindRetry // an unknown kind is retried (see outcome.settled)
	}
	if t.metrics && len(ds) > 0 {
		t.handlerDuration.Record(context.Background(), time.Since(start).Seconds(), t.queue(ds[0].Queue).byResult[kind]...)
	}
	if span == nil {
		return
	}
	span.SetAttributes(attribute.String(attrResult, [...]string{"success", "retry", "reject"}[kind]))
	if kind != kindSuccess {
		span.SetStatus(codes.Error, sanitizeReason(r.reason))
	}
	span.End()
}

// recorded accounts for a batch result that was written: the messages it
// acknowledged (with their enqueue-to-delivery latency), the dead letters it
// wrote and the retry it scheduled, and logs the last two. before is the
// cursor before the batch.
func (t *telemetry) recorded(ctx context.Context, c dialect.ClaimedPartition, msgs []dialect.Message, before int64, pl cursorChange) {
	if t == nil {
		return
	}
	if t.metrics {
		qa := t.queue(c.Queue)
		now := time.Now()
		var delivered int64
		for _, m := range msgs {
			if m.Seq <= before || m.Seq > pl.cursor || deadSeq(pl.dead, m.Seq) {
				continue
			}
			delivered++
			t.latency.Record(ctx, max(now.Sub(m.CreatedAt), 0).Seconds(), qa.record...)
		}
		if delivered > 0 {
			t.delivered.Add(ctx, delivered, qa.add...)
		}
		var dead int64
		for _, g := range pl.dead {
			dead += int64(len(g.seqs))
		}
		if dead > 0 {
			t.dead.Add(ctx, dead, qa.add...)
		}
	}
	for _, g := range pl.dead {
		attrs := []slog.Attr{slog.String("queue", c.Queue), slog.Int("partition", c.Partition),
			slog.Int64("seq", g.seqs[0]), slog.String("reason", g.reason), slog.Int("attempts", g.attempts)}
		if len(g.seqs) > 1 {
			attrs = append(attrs, slog.Int64("seq_last", g.seqs[len(g.seqs)-1]), slog.Int("messages", len(g.seqs)))
		}
		t.logBounded(ctx, &t.logDead, slog.LevelWarn, "outbox: dead-lettered", attrs...)
	}
	// A retry that counts an attempt has a backoff (always > 0); one
	// cancelled by shutdown keeps the count and has none.
	if pl.retry && pl.retryAfter > 0 {
		t.retry(ctx, c, pl.cursor+1, pl.attempts, pl.lastError, pl.retryAfter)
	}
}

// retry counts and logs a failed attempt at seq, the partition's head, which
// brought its failed attempts to attempts.
func (t *telemetry) retry(ctx context.Context, c dialect.ClaimedPartition, seq int64, attempts int, reason string, after time.Duration) {
	t.countRetry(ctx, c.Queue)
	lim, level, msg := &t.logRetry, slog.LevelDebug, "outbox: retry"
	if attempts >= stuckAfter {
		lim, level, msg = &t.logStuck, slog.LevelWarn, "outbox: head message keeps failing; its partition waits behind it"
	}
	t.logBounded(ctx, lim, level, msg, slog.String("queue", c.Queue), slog.Int("partition", c.Partition),
		slog.Int64("seq", seq), slog.String("reason", reason), slog.Int("attempts", attempts), slog.Duration("retry_in", after))
}

// countRetry counts a failed attempt that will be retried.
func (t *telemetry) countRetry(ctx context.Context, queue string) {
	if t != nil && t.metrics {
		t.retried.Add(ctx, 1, t.queue(queue).add...)
	}
}

func deadSeq(dead []deadGroup, seq int64) bool {
	for _, g := range dead {
		if slices.Contains(g.seqs, seq) {
			return true
		}
	}
	return false
}

// logBounded writes a log line through lim's rate bound. Nothing is built
// or counted when the logger does not want the level.
func (t *telemetry) logBounded(ctx context.Context, lim *logLimiter, level slog.Level, msg string, attrs ...slog.Attr) {
	if !t.log.Enabled(ctx, level) {
		return
	}
	ok, suppressed := lim.allow(t.now())
	if !ok {
		return
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	t.log.LogAttrs(ctx, level, msg, attrs...)
}

// logLimiter lets at most logsPerSecond lines through per one-second
// window and counts the rest.
type logLimiter struct {
	mu         sync.Mutex
	window     time.Time
	n          int
	suppressed int
}

// allow reports whether a line may be written now and, if so, how many
// were suppressed since the last one written.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.window) >= time.Second || now.Before(l.window) {
		l.window, l.n = now, 0
	}
	if l.n >= logsPerSecond {
		l.suppressed++
		return false, 0
	}
	l.n++
	s := l.suppressed
	l.suppressed = 0
	return true, s
}

// queueBacklog is one queue's backlog as the gauges report it.
type queueBacklog struct {
	queue    string
	messages int64
	oldest   time.Duration
}

// queueBacklog reads the backlog and the oldest message's age of every
// queue this Outbox knows (declared, handled or enqueued to here), for the
// backlog gauges, through QueueStatus: a fixed number of statements per
// queue, unsequenced messages included.
func (o *Outbox) queueBacklog(ctx context.Context) ([]queueBacklog, error) {
	o.queuesMu.RLock()
	queues := make([]string, 0, len(o.queues))
	for q := range o.queues {
		queues = append(queues, q)
	}
	o.queuesMu.RUnlock()
	slices.Sort(queues)
	var out []queueBacklog
	var errs []error
	for _, q := range queues {
		st, err := o.QueueStatus(ctx, q)
		if err != nil {
			errs = append(errs, fmt.Errorf("queue %q: %w", q, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		out = append(out, queueBacklog{queue: q, messages: st.Backlog, oldest: st.Age})
	}
	return out, errors.Join(errs...)
}
