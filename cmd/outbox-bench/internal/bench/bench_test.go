package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/modkit-go/db/internal/testdb"
)

// The benchmarks run the command's scenario code with b.N messages: on
// SQLite always, on PostgreSQL and MariaDB when OUTBOX_TEST_POSTGRES_DSN /
// OUTBOX_TEST_MYSQL_DSN are set (skipped with a message naming the variable
// otherwise). ns/op is the outbox's time per message; msg/s, baseline-msg/s
// and x-baseline compare it with the raw database. Use a fixed count, e.g.
//
//	go test ./cmd/outbox-bench/internal/bench -run '^$' -bench . -benchtime 5000x

var backends = []string{"sqlite", "postgres", "mysql"}

func backendOptions(b testing.TB, name string) Options {
	switch name {
	case "postgres":
		return Options{Dialect: name, DSN: testdb.DSN(b, testdb.PostgresEnv)}
	case "mysql":
		return Options{Dialect: name, DSN: testdb.DSN(b, testdb.MySQLEnv)}
	}
	return Options{Dialect: name, DSN: b.TempDir()}
}

func forEachBackend(b *testing.B, fn func(b *testing.B, o Options)) {
	for _, name := range backends {
		b.Run(name, func(b *testing.B) {
			fn(b, backendOptions(b, name))
		})
	}
}

// leaf sets the message count of a leaf benchmark to its b.N.
func leaf(b *testing.B, o Options) Options {
	o.Messages = b.N
	return o.withDefaults()
}

func report(b *testing.B, r Result, err error) {
	b.Helper()
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if !r.Verified {
		b.Fatalf("verification failed: %s", r.VerifyError)
	}
	if r.Rate > 0 {
		b.ReportMetric(1e9/r.Rate, "ns/op")
		b.ReportMetric(r.Rate, "msg/s")
	}
	if r.BaselineRate > 0 {
		b.ReportMetric(r.BaselineRate, "baseline-msg/s")
		b.ReportMetric(r.Ratio, "x-baseline")
	}
	if r.Latency != nil && r.Latency.Samples > 0 {
		b.ReportMetric(r.Latency.P50, "p50-ms")
		b.ReportMetric(r.Latency.P99, "p99-ms")
	}
}

func BenchmarkEnqueue(b *testing.B) {
	forEachBackend(b, func(b *testing.B, o Options) {
		b.Run("1msg", func(b *testing.B) {
			r, err := enqueueMode(context.Background(), leaf(b, o), 1)
			report(b, r, err)
		})
		b.Run("batch100", func(b *testing.B) {
			r, err := enqueueMode(context.Background(), leaf(b, o), 100)
			report(b, r, err)
		})
	})
}

func BenchmarkDrain(b *testing.B) {
	forEachBackend(b, func(b *testing.B, o Options) {
		for _, tx := range []bool{false, true} {
			name := map[bool]string{false: "decoupled", true: "transactional"}[tx]
			b.Run(name, func(b *testing.B) {
				o := leaf(b, o)
				r, base, err := drainMode(context.Background(), o, tx, true, nil)
				r.BaselineRate = rate(o.Messages, base)
				r.Ratio = ratio(r.Rate, r.BaselineRate)
				report(b, r, err)
			})
		}
	})
}

// BenchmarkEndToEnd sends b.N messages at Rate (500/s): b.N/500 seconds.
func BenchmarkEndToEnd(b *testing.B) {
	forEachBackend(b, func(b *testing.B, o Options) {
		for _, tx := range []bool{false, true} {
			name := map[bool]string{false: "decoupled", true: "transactional"}[tx]
			b.Run(name, func(b *testing.B) {
				o := leaf(b, o)
				d := time.Duration(float64(o.Messages) / float64(o.Rate) * float64(time.Second))
				r, err := steady(context.Background(), o, tx, d, false, nil)
				report(b, r, err)
			})
		}
	})
}

// TestSmokeSQLite runs every default scenario on SQLite with a handful of
// messages: the code paths the command uses, verified end to end.
func TestSmokeSQLite(t *testing.T) {
	o := Options{Dialect: "sqlite", DSN: t.TempDir(), Messages: 300, Partitions: 4, Producers: 2,
		Consumers: 2, Batch: 25, Rate: 500, E2EDuration: 300 * time.Millisecond, Timeout: time.Minute}
	rep, err := Run(context.Background(), o, DefaultScenarios)
	if err != nil {
		t.Fatal(err)
	}
	if bad := rep.VerificationErrors(); len(bad) > 0 {
		t.Fatalf("verification failed: %s", strings.Join(bad, "; "))
	}
	if len(rep.Results) != 7 {
		t.Fatalf("%d result lines, want 7", len(rep.Results))
	}
	for _, r := range rep.Results {
		if r.Rate <= 0 {
			t.Errorf("%s/%s: rate %v", r.Scenario, r.Mode, r.Rate)
		}
		if r.Scenario == ScenarioConcurrent {
			if q, _ := r.Details["queue_msg_per_s"].(float64); q <= 0 {
				t.Errorf("concurrent: reference queue rate %v (%v)", r.Details["queue_msg_per_s"], r.Details["queue_error"])
			}
		}
	}
}

// TestRecorderRejectsWrongDeliveries: a fast wrong answer must fail.
func TestRecorderRejectsWrongDeliveries(t *testing.T) {
	const parts, size = 2, 32
	msg := func(id int) (int, []byte) {
		p := id % parts
		return p, payload(uint64(id), uint32(p), uint32(id/parts+1), size)
	}
	deliver := func(r *recorder, id int, seq int64) {
		p, b := msg(id)
		r.record(p, seq, b, 0)
	}
	cases := []struct {
		name string
		run  func(r *recorder)
		want string
	}{
		{"in order", func(r *recorder) {
			deliver(r, 0, 1)
			deliver(r, 2, 2)
			deliver(r, 1, 1)
			deliver(r, 3, 2)
		}, ""},
		{"missing", func(r *recorder) {
			deliver(r, 0, 1)
			deliver(r, 1, 1)
			deliver(r, 3, 2)
		}, "never delivered"},
		{"out of order", func(r *recorder) {
			deliver(r, 2, 2)
			deliver(r, 0, 1)
			deliver(r, 1, 1)
			deliver(r, 3, 2)
		}, "seq 2 delivered after seq 0"},
		{"duplicate", func(r *recorder) {
			deliver(r, 0, 1)
			deliver(r, 0, 1)
			deliver(r, 2, 2)
			deliver(r, 1, 1)
			deliver(r, 3, 2)
		}, "delivered 2 times"},
		{"wrong partition", func(r *recorder) {
			_, b := msg(1)
			r.record(0, 1, b, 0)
		}, "delivered on partition 0"},
		{"truncated payload", func(r *recorder) {
			_, b := msg(0)
			r.record(0, 1, b[:8], 0)
		}, "payload of 8 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRecorder(4, parts, size, true, false)
			c.run(r)
			err := r.verify(perPartition(4, parts))
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("unexpected failure: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	l := summarize(d)
	if l.P50 != 50 || l.P95 != 95 || l.P99 != 99 || l.Max != 100 {
		t.Fatalf("got %+v", l)
	}
}

// BenchmarkConcurrent: producers at full speed with Start running in the
// same process, b.N messages; x-baseline is delivered msg/s over raw
// INSERT+COMMIT with as many clients.
func BenchmarkConcurrent(b *testing.B) {
	forEachBackend(b, func(b *testing.B, o Options) {
		rs, err := Concurrent(context.Background(), leaf(b, o))
		var r Result
		if len(rs) > 0 {
			r = rs[0]
		}
		report(b, r, err)
	})
}
