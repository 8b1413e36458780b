package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/mysql"
	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/internal/testdb"
	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
)

// telBackends are the backends the telemetry tests run on: SQLite always,
// the servers when their DSN is set (see testdb).
var telBackends = []struct {
	name string
	d    func() schemaDialect
	open func(testing.TB) func() *sql.DB
}{
	{"sqlite", func() schemaDialect { return sqlite.New() }, testdb.SQLite},
	{"postgres", func() schemaDialect { return postgres.New() }, testdb.Postgres},
	{"mysql", func() schemaDialect { return mysql.New() }, testdb.MySQL},
}

// schemaDialect is a dialect that also owns its schema, as the built-in
// ones do.
type schemaDialect interface {
	dialect.Dialect
	dialect.Schema
}

// forEachBackend runs fn on a migrated, empty database of every backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, db *sql.DB, d dialect.Dialect)) {
	for _, b := range telBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			db := b.open(t)()
			d := b.d()
			if err := migrations.Up(t.Context(), db, d); err != nil {
				t.Fatal(err)
			}
			fn(t, db, d)
		})
	}
}

// records is a slog handler that keeps every record.
type records struct {
	mu sync.Mutex
	rs []slog.Record
}

func (h *records) Enabled(context.Context, slog.Level) bool { return true }
func (h *records) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *records) WithGroup(string) slog.Handler            { return h }
func (h *records) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rs = append(h.rs, r.Clone())
	return nil
}

// find returns the attributes of the records with message msg at level.
func (h *records) find(level slog.Level, msg string) []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]any
	for _, r := range h.rs {
		if r.Level != level || r.Message != msg {
			continue
		}
		m := map[string]any{}
		r.Attrs(func(a slog.Attr) bool {
			m[a.Key] = a.Value.Any()
			return true
		})
		out = append(out, m)
	}
	return out
}

// tracing returns a tracer provider that exports ended spans to exp at once.
func tracing(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, exp
}

// delivered is what a test handler saw of one message.
type delivered struct {
	d    outbox.Delivery
	span trace.SpanContext
	rec  bool // the span in the handler's context records
}

// Enqueue under a span stores its W3C trace context in the headers; the
// delivery's span is the handler context's span, a child of the producer's
// span and linked to it. Without a span nothing is added; a header the
// caller set is kept.
func TestTracePropagation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sql.DB, d dialect.Dialect) {
		ctx := t.Context()
		tp, exp := tracing(t)
		ob, err := outbox.New(db, d, outbox.Config{TracerProvider: tp, PollInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := ob.DeclareQueue(ctx, "traced", 1); err != nil {
			t.Fatal(err)
		}
		got := make(chan delivered, 3)
		err = ob.Handle("traced", outbox.PerMessage(func(ctx context.Context, m outbox.Delivery) outbox.Result {
			sp := trace.SpanFromContext(ctx)
			got <- delivered{d: m, span: sp.SpanContext(), rec: sp.IsRecording()}
			return outbox.Success()
		}))
		if err != nil {
			t.Fatal(err)
		}

		pctx, producer := tp.Tracer("test").Start(ctx, "produce")
		own := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		err = ob.InTx(ctx, func(tx *sql.Tx) error {
			for _, e := range []struct {
				ctx context.Context
				h   map[string]string
			}{{pctx, nil}, {ctx, nil}, {pctx, map[string]string{"traceparent": own}}} {
				if err := ob.Enqueue(e.ctx, tx, outbox.Message{Queue: "traced", Payload: []byte("x"), PayloadType: "t", Headers: e.h}); err != nil {
					return err
				}
			}
			return nil
		})
		producer.End()
		if err != nil {
			t.Fatal(err)
		}
		if err := ob.Start(ctx); err != nil {
			t.Fatal(err)
		}
		var ds []delivered
		for range 3 {
			ds = append(ds, <-got)
		}
		if err := ob.Stop(ctx); err != nil { // spans have ended once Stop returns
			t.Fatal(err)
		}

		psc := producer.SpanContext()
		want := fmt.Sprintf("00-%s-%s-01", psc.TraceID(), psc.SpanID())
		if h := ds[0].d.Headers["traceparent"]; h != want {
			t.Errorf("traced message: traceparent %q, want %q", h, want)
		}
		if ds[1].d.Headers != nil {
			t.Errorf("message enqueued without a span: headers %v, want none", ds[1].d.Headers)
		}
		if h := ds[2].d.Headers["traceparent"]; h != own {
			t.Errorf("caller's traceparent: got %q, want %q kept", h, own)
		}

		spans := map[trace.SpanID]tracetest.SpanStub{}
		for _, s := range exp.GetSpans() {
			spans[s.SpanContext.SpanID()] = s
		}
		for i, dl := range ds {
			s, ok := spans[dl.span.SpanID()]
			if !dl.span.IsValid() || !dl.rec || !ok {
				t.Fatalf("message %d: handler context's span %v (recording %v) is not an exported delivery span", i, dl.span, dl.rec)
			}
			if s.Name != "process traced" || s.SpanKind != trace.SpanKindConsumer {
				t.Errorf("message %d: span %q kind %v", i, s.Name, s.SpanKind)
			}
			attrs := attrMap(s.Attributes)
			if attrs["outbox.queue"] != "traced" || attrs["outbox.seq"] != dl.d.Seq || attrs["outbox.result"] != "success" || attrs["outbox.partition"] != int64(0) {
				t.Errorf("message %d: span attributes %v", i, attrs)
			}
		}
		first := spans[ds[0].span.SpanID()]
		if first.Parent.SpanID() != psc.SpanID() || first.SpanContext.TraceID() != psc.TraceID() || !first.Parent.IsRemote() {
			t.Errorf("delivery span's parent %v, want the producer's span %v", first.Parent, psc)
		}
		if len(first.Links) != 1 || first.Links[0].SpanContext.SpanID() != psc.SpanID() {
			t.Errorf("delivery span's links %v, want the producer's span", first.Links)
		}
		if second := spans[ds[1].span.SpanID()]; second.Parent.IsValid() || len(second.Links) != 0 {
			t.Errorf("message without trace context: parent %v, links %v; want a root span without links", second.Parent, second.Links)
		}
	})
}

func attrMap(kvs []attribute.KeyValue) map[string]any {
	m := map[string]any{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

// A batch's span starts a trace of its own, linked to the span of every
// message's producer, and carries the batch's extent.
func TestTraceBatchLinksEveryProducer(t *testing.T) {
	db := testdb.SQLite(t)()
	ctx := t.Context()
	d := sqlite.New()
	if err := migrations.Up(ctx, db, d); err != nil {
		t.Fatal(err)
	}
	tp, exp := tracing(t)
	ob, err := outbox.New(db, d, outbox.Config{TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.DeclareQueue(ctx, "b", 1); err != nil {
		t.Fatal(err)
	}
	got := make(chan trace.SpanContext, 1)
	err = ob.Handle("b", outbox.Batch(func(ctx context.Context, ms []outbox.Delivery) outbox.Result {
		if len(ms) != 3 {
			t.Errorf("batch of %d, want 3", len(ms))
		}
		got <- trace.SpanFromContext(ctx).SpanContext()
		return outbox.Success()
	}))
	if err != nil {
		t.Fatal(err)
	}
	var producers []trace.SpanContext
	err = ob.InTx(ctx, func(tx *sql.Tx) error {
		for i := range 3 {
			pctx, sp := tp.Tracer("test").Start(ctx, fmt.Sprint("produce ", i))
			producers = append(producers, sp.SpanContext())
			err := ob.Enqueue(pctx, tx, outbox.Message{Queue: "b", Payload: []byte("x"), PayloadType: "t"})
			sp.End()
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Start(ctx); err != nil {
		t.Fatal(err)
	}
	sc := <-got
	if err := ob.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	var span *tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.SpanContext.SpanID() == sc.SpanID() {
			span = &s
		}
	}
	if span == nil {
		t.Fatal("the batch's span was not exported")
	}
	if span.Parent.IsValid() {
		t.Errorf("batch span has parent %v, want a new root", span.Parent)
	}
	if len(span.Links) != 3 {
		t.Fatalf("links %v, want one per producer", span.Links)
	}
	for i, l := range span.Links {
		if l.SpanContext.SpanID() != producers[i].SpanID() || attrMap(l.Attributes)["outbox.seq"] != int64(i+1) {
			t.Errorf("link %d: %v %v, want producer %v with seq %d", i, l.SpanContext, l.Attributes, producers[i], i+1)
		}
	}
	if a := attrMap(span.Attributes); a["outbox.seq"] != int64(1) || a["outbox.seq.last"] != int64(3) || a["messaging.batch.message_count"] != int64(3) {
		t.Errorf("batch span attributes %v", a)
	}
}

// testPropagator carries a span context as one header, "x-test-trace".
type testPropagator struct{}

func (testPropagator) Inject(ctx context.Context, c propagation.TextMapCarrier) {
	sc := trace.SpanContextFromContext(ctx)
	c.Set("x-test-trace", sc.TraceID().String()+"/"+sc.SpanID().String())
}

func (testPropagator) Extract(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	tid, sid, ok := strings.Cut(c.Get("x-test-trace"), "/")
	if !ok {
		return ctx
	}
	t, _ := trace.TraceIDFromHex(tid)
	s, _ := trace.SpanIDFromHex(sid)
	return trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: t, SpanID: s, Remote: true}))
}

func (testPropagator) Fields() []string { return []string{"x-test-trace"} }

// Config.Propagator replaces W3C Trace Context on both ends; an empty
// composite propagator adds nothing.
func TestCustomPropagator(t *testing.T) {
	for _, c := range []struct {
		name string
		prop propagation.TextMapPropagator
		want string // the header expected, "" for none
	}{{"custom", testPropagator{}, "x-test-trace"}, {"none", propagation.NewCompositeTextMapPropagator(), ""}} {
		t.Run(c.name, func(t *testing.T) {
			db := testdb.SQLite(t)()
			ctx := t.Context()
			d := sqlite.New()
			if err := migrations.Up(ctx, db, d); err != nil {
				t.Fatal(err)
			}
			tp, exp := tracing(t)
			ob, err := outbox.New(db, d, outbox.Config{TracerProvider: tp, Propagator: c.prop})
			if err != nil {
				t.Fatal(err)
			}
			if err := ob.DeclareQueue(ctx, "c", 1); err != nil {
				t.Fatal(err)
			}
			got := make(chan outbox.Delivery, 1)
			_ = ob.Handle("c", outbox.PerMessage(func(_ context.Context, m outbox.Delivery) outbox.Result {
				got <- m
				return outbox.Success()
			}))
			pctx, sp := tp.Tracer("test").Start(ctx, "produce")
			err = ob.InTx(ctx, func(tx *sql.Tx) error {
				return ob.Enqueue(pctx, tx, outbox.Message{Queue: "c", Payload: []byte("x"), PayloadType: "t"})
			})
			sp.End()
			if err != nil {
				t.Fatal(err)
			}
			if err := ob.Start(ctx); err != nil {
				t.Fatal(err)
			}
			m := <-got
			if err := ob.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			if _, ok := m.Headers["traceparent"]; ok {
				t.Errorf("headers %v carry traceparent; the configured propagator has no such field", m.Headers)
			}
			if c.want == "" {
				if m.Headers != nil {
					t.Errorf("headers %v, want none", m.Headers)
				}
				return
			}
			if m.Headers[c.want] == "" {
				t.Fatalf("headers %v lack %s", m.Headers, c.want)
			}
			for _, s := range exp.GetSpans() {
				if s.Name == "process c" && (len(s.Links) != 1 || s.Links[0].SpanContext.SpanID() != sp.SpanContext().SpanID()) {
					t.Errorf("delivery span's links %v, want the producer's span through the custom propagator", s.Links)
				}
			}
		})
	}
}

// collect reads every metric once, by name.
func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

// sum is a counter's value for the data points whose attributes include
// the given key=value pairs (all points when none are given).
func sum(t *testing.T, ms map[string]metricdata.Aggregation, name string, kv ...string) int64 {
	t.Helper()
	data, ok := ms[name]
	if !ok {
		return 0
	}
	var total int64
	switch d := data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			if hasAttrs(p.Attributes, kv) {
				total += p.Value
			}
		}
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			if hasAttrs(p.Attributes, kv) {
				total += p.Value
			}
		}
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			if hasAttrs(p.Attributes, kv) {
				total += int64(p.Count)
			}
		}
	default:
		t.Fatalf("%s: unexpected aggregation %T", name, data)
	}
	return total
}

func gaugeF(ms map[string]metricdata.Aggregation, name, queue string) (float64, bool) {
	d, _ := ms[name].(metricdata.Gauge[float64])
	for _, p := range d.DataPoints {
		if hasAttrs(p.Attributes, []string{"outbox.queue", queue}) {
			return p.Value, true
		}
	}
	return 0, false
}

func hasAttrs(set attribute.Set, kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		if v, ok := set.Value(attribute.Key(kv[i])); !ok || v.String() != kv[i+1] {
			return false
		}
	}
	return true
}

// A run with a handler that retries one message once and rejects another
// produces matching counts: every message enqueued, sequenced and either
// delivered or dead-lettered, one retry, one handler call per attempt with
// its result, a latency per delivery; the backlog gauges report the
// sequenced backlog and then none; the retry is logged at debug level and
// the dead letter at warn level, with queue, partition, seq and reason.
func TestMetricsAndLogsOfARun(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sql.DB, d dialect.Dialect) {
		ctx := t.Context()
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
		logs := &records{}
		ob, err := outbox.New(db, d, outbox.Config{
			MeterProvider: mp, Logger: slog.New(logs), RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond,
			PollInterval: 20 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := ob.DeclareQueue(ctx, "m", 2); err != nil {
			t.Fatal(err)
		}
		const n = 10
		var mu sync.Mutex
		var once sync.Once
		seen := map[string]bool{}
		done := make(chan struct{})
		err = ob.Handle("m", outbox.PerMessage(func(_ context.Context, m outbox.Delivery) outbox.Result {
			p := string(m.Payload)
			r := outbox.Success()
			switch {
			case p == "flaky" && m.Attempts == 0:
				return outbox.Retry("flaky: first try fails")
			case p == "poison":
				r = outbox.Reject("poison: cannot parse")
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[p] = true; len(seen) == n {
				once.Do(func() { close(done) })
			}
			return r
		}))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err = ob.InTx(ctx, func(tx *sql.Tx) error {
			for i := range n {
				p := fmt.Sprint("ok-", i)
				switch i {
				case 3:
					p = "flaky"
				case 6:
					p = "poison"
				}
				if err := ob.Enqueue(ctx, tx, outbox.Message{Queue: "m", Partition: i % 2, Payload: []byte(p), PayloadType: "t"}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ob.SequenceAll(ctx); err != nil {
			t.Fatal(err)
		}
		ms := collect(t, reader)
		if got := sum(t, ms, "outbox.queue.backlog", "outbox.queue", "m"); got != n {
			t.Errorf("backlog before delivery %d, want %d", got, n)
		}
		if age, ok := gaugeF(ms, "outbox.queue.oldest_age", "m"); !ok || age <= 0 || age > time.Since(start).Seconds()+5 {
			t.Errorf("oldest age before delivery %v (reported %v), want in (0, %v]", age, ok, time.Since(start).Seconds()+5)
		}

		if err := ob.Start(ctx); err != nil {
			t.Fatal(err)
		}
		<-done
		if err := ob.Stop(ctx); err != nil { // writes the last acknowledgements
			t.Fatal(err)
		}
		ms = collect(t, reader)
		q := []string{"outbox.queue", "m"}
		for _, c := range []struct {
			name string
			kv   []string
			want int64
		}{
			{"outbox.messages.enqueued", q, n},
			{"outbox.messages.sequenced", nil, n},
			{"outbox.messages.delivered", q, n - 1},
			{"outbox.messages.retried", q, 1},
			{"outbox.messages.dead_lettered", q, 1},
			{"outbox.handler.duration", append(q, "outbox.result", "success"), n - 1},
			{"outbox.handler.duration", append(q, "outbox.result", "retry"), 1},
			{"outbox.handler.duration", append(q, "outbox.result", "reject"), 1},
			{"outbox.delivery.latency", q, n - 1},
			{"outbox.lease.lost", nil, 0},
			{"outbox.worker.errors", nil, 0},
		} {
			if got := sum(t, ms, c.name, c.kv...); got != c.want {
				t.Errorf("%s%v = %d, want %d", c.name, c.kv, got, c.want)
			}
		}
		// Stop unregistered the gauges' callback: collect through a new
		// Outbox on the same database.
		ob2, err := outbox.New(db, d, outbox.Config{MeterProvider: mp})
		if err != nil {
			t.Fatal(err)
		}
		if err := ob2.DeclareQueue(ctx, "m", 2); err != nil {
			t.Fatal(err)
		}
		ms = collect(t, reader)
		if got := sum(t, ms, "outbox.queue.backlog", q...); got != 0 {
			t.Errorf("backlog after delivery %d, want 0", got)
		}
		if age, ok := gaugeF(ms, "outbox.queue.oldest_age", "m"); !ok || age != 0 {
			t.Errorf("oldest age after delivery %v (reported %v), want 0", age, ok)
		}
		_ = ob2.Stop(ctx)

		retries := logs.find(slog.LevelDebug, "outbox: retry")
		if len(retries) != 1 || retries[0]["queue"] != "m" || retries[0]["partition"] != int64(1) ||
			retries[0]["seq"] != int64(2) || retries[0]["reason"] != "flaky: first try fails" || retries[0]["attempts"] != int64(1) {
			t.Errorf("retry log lines %v, want one for m/1 seq 2", retries)
		}
		deads := logs.find(slog.LevelWarn, "outbox: dead-lettered")
		if len(deads) != 1 || deads[0]["queue"] != "m" || deads[0]["partition"] != int64(0) ||
			deads[0]["seq"] != int64(4) || deads[0]["reason"] != "poison: cannot parse" {
			t.Errorf("dead-letter log lines %v, want one for m/0 seq 4", deads)
		}
	})
}
