package outbox

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/internal/testdb"
	"github.com/modkit-go/db/migrations"
)

// levelRecorder is a logRecorder that wants only levels from min up.
type levelRecorder struct {
	logRecorder
	min slog.Level
}

func (h *levelRecorder) Enabled(_ context.Context, l slog.Level) bool { return l >= h.min }

func attrsOf(r slog.Record) map[string]any {
	m := map[string]any{}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.Any()
		return true
	})
	return m
}

// At most logsPerSecond lines of a kind are written per second; the first
// line after a suppression counts the lines dropped; kinds are bounded
// separately; a level the logger does not want is neither written nor
// counted as suppressed.
func TestLogRateBound(t *testing.T) {
	logs := &levelRecorder{min: slog.LevelInfo}
	now := time.Unix(1000, 0)
	tel := &telemetry{log: slog.New(logs), now: func() time.Time { return now }}
	for range 25 {
		tel.logBounded(t.Context(), &tel.logDead, slog.LevelWarn, "dead")
	}
	tel.logBounded(t.Context(), &tel.logStuck, slog.LevelWarn, "blocked") // another kind: its own budget
	for range 5 {
		tel.logBounded(t.Context(), &tel.logRetry, slog.LevelDebug, "retry") // not wanted
	}
	if got := len(logs.records); got != logsPerSecond+1 {
		t.Fatalf("%d lines in one second, want %d of one kind plus 1 of another", got, logsPerSecond+1)
	}
	now = now.Add(999 * time.Millisecond)
	tel.logBounded(t.Context(), &tel.logDead, slog.LevelWarn, "dead")
	if got := len(logs.records); got != logsPerSecond+1 {
		t.Fatalf("a line within the same second was written (%d lines)", got)
	}
	now = now.Add(time.Millisecond)
	tel.logBounded(t.Context(), &tel.logDead, slog.LevelWarn, "dead")
	tel.logBounded(t.Context(), &tel.logDead, slog.LevelWarn, "dead")
	rs := logs.records[logsPerSecond+1:]
	if len(rs) != 2 {
		t.Fatalf("%d lines in the next second, want 2", len(rs))
	}
	if got := attrsOf(rs[0])["suppressed"]; got != int64(16) {
		t.Errorf("first line of the next second: suppressed=%v, want 16", got)
	}
	if _, ok := attrsOf(rs[1])["suppressed"]; ok {
		t.Errorf("second line of the next second carries suppressed: %v", attrsOf(rs[1]))
	}
	if tel.logRetry.suppressed != 0 || tel.logRetry.n != 0 {
		t.Errorf("unwanted debug lines touched the limiter: n=%d suppressed=%d", tel.logRetry.n, tel.logRetry.suppressed)
	}
}

// A retry is logged at debug level until its head has failed stuckAfter
// times, then at warn level as a blocked partition; dead letters at warn
// level; each with queue, partition, seq, reason and attempts. A retry
// cancelled by shutdown (no backoff) is neither logged nor counted.
func TestRetryAndDeadLetterLogs(t *testing.T) {
	logs := &logRecorder{}
	tel := &telemetry{log: slog.New(logs), now: time.Now}
	c := dialect.ClaimedPartition{Queue: "q", Partition: 3}
	msgs := []dialect.Message{{Seq: 5}, {Seq: 6}, {Seq: 7}}
	tel.recorded(t.Context(), c, msgs, 4, cursorChange{cursor: 4, retry: true, attempts: 1, lastError: "down", retryAfter: time.Second})
	tel.recorded(t.Context(), c, msgs, 4, cursorChange{cursor: 4, retry: true, attempts: stuckAfter, lastError: "still down", retryAfter: time.Second})
	tel.recorded(t.Context(), c, msgs, 4, cursorChange{cursor: 4, retry: true, attempts: 2}) // shutdown
	tel.recorded(t.Context(), c, msgs, 4, cursorChange{cursor: 7, dead: []deadGroup{{seqs: []int64{6, 7}, reason: "bad", attempts: 2}}})

	want := []struct {
		level slog.Level
		msg   string
		attrs map[string]any
	}{
		{slog.LevelDebug, "outbox: retry", map[string]any{"queue": "q", "partition": int64(3), "seq": int64(5), "reason": "down", "attempts": int64(1)}},
		{slog.LevelWarn, "outbox: head message keeps failing; its partition waits behind it", map[string]any{"queue": "q", "partition": int64(3), "seq": int64(5), "reason": "still down", "attempts": int64(stuckAfter)}},
		{slog.LevelWarn, "outbox: dead-lettered", map[string]any{"queue": "q", "partition": int64(3), "seq": int64(6), "seq_last": int64(7), "messages": int64(2), "reason": "bad", "attempts": int64(2)}},
	}
	if len(logs.records) != len(want) {
		t.Fatalf("%d lines, want %d", len(logs.records), len(want))
	}
	for i, w := range want {
		r := logs.records[i]
		got := attrsOf(r)
		if r.Level != w.level || r.Message != w.msg {
			t.Errorf("line %d: %v %q, want %v %q", i, r.Level, r.Message, w.level, w.msg)
		}
		for k, v := range w.attrs {
			if got[k] != v {
				t.Errorf("line %d: %s=%v, want %v", i, k, got[k], v)
			}
		}
	}
}

// A failing loop pass counts one worker error per failure, named after
// the loop.
func TestWorkerErrorsCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		cfg := Config{MeterProvider: mp, Logger: slog.New(slog.DiscardHandler)}
		tel, err := newTelemetry(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		o := &Outbox{log: cfg.Logger, tel: tel}
		ctx, cancel := context.WithCancel(t.Context())
		calls := 0
		o.goLoop(ctx, "vacuum", 100*time.Millisecond, nil, coalescer{}, func(context.Context) (bool, error) {
			if calls++; calls <= 3 {
				return false, errors.New("connection refused")
			}
			if calls == 4 {
				cancel()
			}
			return false, nil
		})
		o.wg.Wait()
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		var got int64
		for _, m := range rm.ScopeMetrics[0].Metrics {
			if m.Name != "outbox.worker.errors" {
				continue
			}
			for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if v, _ := p.Attributes.Value("outbox.worker"); v == attribute.StringValue("vacuum") {
					got += p.Value
				}
			}
		}
		if got != 3 {
			t.Errorf("outbox.worker.errors{outbox.worker=vacuum} = %d, want 3", got)
		}
	})
}

// A fenced write that finds its lease gone counts outbox.lease.lost for the
// partition's queue.
func TestLeaseLostCounted(t *testing.T) {
	ctx := t.Context()
	db := testdb.SQLite(t)()
	d := sqlite.New()
	if err := migrations.Up(ctx, db, d); err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	o, err := New(db, d, Config{MeterProvider: mp})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.DeclareQueue(ctx, "q", 1); err != nil {
		t.Fatal(err)
	}
	if err := o.InTx(ctx, func(tx *sql.Tx) error {
		return o.Enqueue(ctx, tx, Message{Queue: "q", Payload: []byte("x"), PayloadType: "t"})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := o.SequenceAll(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := d.ClaimLeases(ctx, dialect.Pool{DB: db, Q: db}, &dialect.ClaimLeaseParams{Queues: []string{"q"}, Limit: 1, Token: "mine", Lease: time.Minute})
	if err != nil || len(res.Partitions) != 1 {
		t.Fatalf("claim: %v %v", res, err)
	}
	// The lease goes (as if it expired and another worker claimed it).
	if _, err := d.ReleaseLeases(ctx, db, &dialect.ReleaseLeasesParams{PartitionIDs: []int64{res.Partitions[0].PartitionID}, Token: "mine"}); err != nil {
		t.Fatal(err)
	}
	w := &worker{o: o}
	if err := w.unrecorded(ctx, res.Partitions[0], "mine", 0, 0, errors.New("ack failed")); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	var lost, retried int64
	for _, m := range rm.ScopeMetrics[0].Metrics {
		s, ok := m.Data.(metricdata.Sum[int64])
		if !ok {
			continue
		}
		for _, pt := range s.DataPoints {
			if v, _ := pt.Attributes.Value(attrQueue); v.AsString() != "q" {
				continue
			}
			switch m.Name {
			case "outbox.lease.lost":
				lost += pt.Value
			case "outbox.messages.retried":
				retried += pt.Value
			}
		}
	}
	if lost != 1 || retried != 0 {
		t.Errorf("lease.lost %d, messages.retried %d; want 1 and 0 (the takeover counts the attempt)", lost, retried)
	}
}

// With no MeterProvider and no TracerProvider (the defaults) the hooks on
// the enqueue and delivery paths allocate nothing and run no handler call
// differently: the hot paths cost what they cost before telemetry.
func TestDisabledTelemetryAllocatesNothing(t *testing.T) {
	cfg, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	tel, err := newTelemetry(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rows := []dialect.InsertRow{{Queue: "q"}, {Queue: "q"}}
	c := dialect.ClaimedPartition{Queue: "q"}
	msgs := []dialect.Message{{Seq: 1}, {Seq: 2}}
	ds := []Delivery{{Queue: "q", Seq: 1}}
	pl := cursorChange{cursor: 2}
	s := &callScope{ctx: ctx, tel: tel}
	for name, fn := range map[string]func(){
		"traceFields":   func() { _ = tel.traceFields(ctx) },
		"enqueuedRows":  func() { tel.enqueuedRows(ctx, rows) },
		"sequencedRows": func() { tel.sequencedRows(ctx, 2) },
		"recorded":      func() { tel.recorded(ctx, c, msgs, 0, pl) },
		"startCall/endCall": func() {
			_, span, start := tel.startCall(ctx, ds)
			tel.endCall(ds, span, start, Success())
		},
	} {
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s: %v allocations per call with telemetry off, want 0", name, n)
		}
	}
	// The call wrapper adds nothing to what a bare run costs.
	bare := testing.AllocsPerRun(100, func() { _ = s.run(ctx, func(context.Context) Result { return Success() }) })
	wrapped := testing.AllocsPerRun(100, func() { _ = s.call(ds, func(context.Context) Result { return Success() }) })
	if wrapped != bare {
		t.Errorf("call allocates %v per call, a bare run %v", wrapped, bare)
	}
}
