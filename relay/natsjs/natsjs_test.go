package natsjs_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/modkit-go/db/internal/relaytest"
	"github.com/modkit-go/db/outbox"
	"github.com/modkit-go/db/relay"
	"github.com/modkit-go/db/relay/natsjs"
)

func connect(t testing.TB, u string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(u, opts...)
	if err != nil {
		t.Fatalf("nats %s: %v", u, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// stream creates a memory stream of its own for the test, deleted at its end.
func stream(t testing.TB, js jetstream.JetStream, cfg jetstream.StreamConfig) jetstream.Stream {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	cfg.Name = "relaytest_" + hex.EncodeToString(b[:])
	cfg.Subjects = []string{cfg.Name + ".>"}
	cfg.Storage = jetstream.MemoryStorage
	s, err := js.CreateStream(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), cfg.Name) })
	return s
}

func count(t testing.TB, s jetstream.Stream) int {
	info, err := s.Info(context.Background())
	if err != nil {
		t.Errorf("stream info: %v", err)
		return 0
	}
	return int(info.State.Msgs)
}

// readBack returns what the stream stored, in stream order, checking each
// message's subject, id and headers.
func readBack(t testing.TB, s jetstream.Stream, prefix string) []relaytest.Stored {
	t.Helper()
	ctx := context.Background()
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []relaytest.Stored
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get %d: %v", seq, err)
		}
		p, _ := strconv.Atoi(m.Header.Get(relay.HeaderPartition))
		sq, _ := strconv.ParseInt(m.Header.Get(relay.HeaderSeq), 10, 64)
		id := m.Header.Get(relay.HeaderID)
		if m.Header.Get(jetstream.MsgIDHeader) != id || id == "" {
			t.Errorf("stream seq %d: Nats-Msg-Id %q, Outbox-Id %q", seq, m.Header.Get(jetstream.MsgIDHeader), id)
		}
		if want := prefix + ".orders." + strconv.Itoa(p); m.Subject != want {
			t.Errorf("stream seq %d: subject %s, want %s", seq, m.Subject, want)
		}
		if m.Header.Get("n") != string(m.Data) {
			t.Errorf("stream seq %d: header n %q, payload %q", seq, m.Header.Get("n"), m.Data)
		}
		got = append(got, relaytest.Stored{Partition: p, Seq: sq, ID: id})
	}
	return got
}

func relayTo(t testing.TB, js jetstream.JetStream, prefix string) outbox.Handler {
	return relay.Handler(natsjs.New(js, natsjs.WithTimeout(time.Second)), relay.WithTemplate(prefix+".{queue}.{partition}"))
}

func start(t testing.TB, ob *outbox.Outbox, h outbox.Handler) {
	t.Helper()
	if err := ob.Handle("orders", h); err != nil {
		t.Fatal(err)
	}
	if err := ob.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ob.Stop(context.Background()) })
}

func checkNoDuplicates(t *testing.T, s jetstream.Stream, prefix string, partitions, n int) {
	t.Helper()
	c := relaytest.Check(t, readBack(t, s, prefix), relaytest.Want(partitions, n))
	if c.Duplicates != 0 {
		t.Errorf("%v: JetStream deduplicates by Nats-Msg-Id, want no duplicates", c)
	}
	t.Log(c)
}

func TestRelay(t *testing.T) {
	u := relaytest.URL(t, relaytest.NATSEnv)
	relaytest.ForEachBackend(t, func(t *testing.T, e relaytest.Env) {
		js := connect(t, u)
		s := stream(t, js, jetstream.StreamConfig{})
		prefix := s.CachedInfo().Config.Name
		ob := relaytest.Outbox(t, e, outbox.Config{}, "orders", 4)
		relaytest.Produce(t, ob, "orders", 4, 300)
		start(t, ob, relayTo(t, js, prefix))
		relaytest.WaitDrained(t, ob, "orders", time.Minute)
		checkNoDuplicates(t, s, prefix, 4, 300)
	})
}

// The client's connection is cut three times mid-stream (a proxy between
// client and server drops it); the stream still holds every message once,
// in order.
func TestConnectionCut(t *testing.T) {
	u := relaytest.URL(t, relaytest.NATSEnv)
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	relaytest.ForEachBackend(t, func(t *testing.T, e relaytest.Env) {
		const n = 600
		proxy := relaytest.NewProxy(t, pu.Host)
		js := connect(t, "nats://"+proxy.Addr(), nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond))
		s := stream(t, connect(t, u), jetstream.StreamConfig{})
		prefix := s.CachedInfo().Config.Name
		ob := relaytest.Outbox(t, e, outbox.Config{BatchSize: 20}, "orders", 4)
		relaytest.Produce(t, ob, "orders", 4, n)
		start(t, ob, relayTo(t, js, prefix))
		cuts := proxy.CutAt(func() int { return count(t, s) }, n/4, n/2, 3*n/4)
		relaytest.WaitDrained(t, ob, "orders", time.Minute)
		t.Logf("connections cut: %d", cuts)
		checkNoDuplicates(t, s, prefix, 4, n)
	})
}

// A full stream (DiscardNew at MaxMsgs) refuses messages: the relay
// retries them, in order, and once the stream has room again every
// message is stored once.
func TestFullStream(t *testing.T) {
	u := relaytest.URL(t, relaytest.NATSEnv)
	relaytest.ForEachBackend(t, func(t *testing.T, e relaytest.Env) {
		js := connect(t, u)
		s := stream(t, js, jetstream.StreamConfig{MaxMsgs: 50, Discard: jetstream.DiscardNew})
		prefix := s.CachedInfo().Config.Name
		ob := relaytest.Outbox(t, e, outbox.Config{}, "orders", 2)
		relaytest.Produce(t, ob, "orders", 2, 120)
		start(t, ob, relayTo(t, js, prefix))
		deadline := time.Now().Add(time.Minute)
		for {
			qs, err := ob.QueueStatus(context.Background(), "orders")
			if err == nil && count(t, s) == 50 && qs.Retrying == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("want a full stream (50) and both partitions retrying: %d stored, %+v, %v", count(t, s), qs, err)
			}
			time.Sleep(5 * time.Millisecond) // polling an observable condition
		}
		cfg := s.CachedInfo().Config
		cfg.MaxMsgs = -1
		if _, err := js.UpdateStream(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		relaytest.WaitDrained(t, ob, "orders", time.Minute)
		checkNoDuplicates(t, s, prefix, 2, 120)
	})
}

// A message too large for the stream is dead-lettered; the others are
// stored in order.
func TestMessageTooLarge(t *testing.T) {
	u := relaytest.URL(t, relaytest.NATSEnv)
	js := connect(t, u)
	s := stream(t, js, jetstream.StreamConfig{MaxMsgSize: 1024})
	prefix := s.CachedInfo().Config.Name
	e := relaytest.Open(t, "sqlite")
	ob := relaytest.Outbox(t, e, outbox.Config{}, "orders", 1)
	relaytest.Produce(t, ob, "orders", 1, 3)
	if err := ob.InTx(context.Background(), func(tx *sql.Tx) error {
		return ob.Enqueue(context.Background(), tx, outbox.Message{Queue: "orders", Payload: make([]byte, 2048), PayloadType: "text/plain"})
	}); err != nil {
		t.Fatal(err)
	}
	relaytest.Produce(t, ob, "orders", 1, 2)
	start(t, ob, relayTo(t, js, prefix))
	relaytest.WaitDrained(t, ob, "orders", time.Minute)
	got := readBack(t, s, prefix)
	if len(got) != 5 || got[3].Seq != 5 {
		t.Fatalf("stored %+v, want seqs 1-3 and 5-6", got)
	}
	dlsPage, err := ob.DeadLetterPage(context.Background(), outbox.DeadLetterFilter{Queue: "orders"})
	dls := dlsPage.DeadLetters
	if err != nil || len(dls) != 1 || dls[0].Seq != 4 {
		t.Fatalf("dead letters %+v (%v), want seq 4", dls, err)
	}
}

// The relay process is SIGKILLed twice mid-stream and restarted; the
// stream holds every message once, in order.
func TestKilledRelay(t *testing.T) {
	relaytest.RunChild(func() outbox.Handler {
		nc, err := nats.Connect(os.Getenv(relaytest.NATSEnv))
		if err != nil {
			panic(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			panic(err)
		}
		return relay.Handler(natsjs.New(js), relay.WithTemplate(os.Getenv("RELAYTEST_PREFIX")+".{queue}.{partition}"))
	})
	u := relaytest.URL(t, relaytest.NATSEnv)
	relaytest.ForEachBackend(t, func(t *testing.T, e relaytest.Env) {
		const n = 2000
		js := connect(t, u)
		s := stream(t, js, jetstream.StreamConfig{})
		prefix := s.CachedInfo().Config.Name
		ob := relaytest.Outbox(t, e, outbox.Config{}, "orders", 4)
		relaytest.Produce(t, ob, "orders", 4, n)
		killed := relaytest.Children(t, e, ob, "orders", []string{"RELAYTEST_PREFIX=" + prefix},
			func() int { return count(t, s) }, []int{n / 4, n / 2})
		t.Logf("relay processes killed: %d", killed)
		checkNoDuplicates(t, s, prefix, 4, n)
	})
}

// A subject the route built with a space or a wildcard dead-letters that
// message; the others are published.
func TestInvalidSubject(t *testing.T) {
	u := relaytest.URL(t, relaytest.NATSEnv)
	js := connect(t, u)
	s := stream(t, js, jetstream.StreamConfig{})
	prefix := s.CachedInfo().Config.Name
	e := relaytest.Open(t, "sqlite")
	ob := relaytest.Outbox(t, e, outbox.Config{}, "orders", 1)
	for _, k := range []string{"a", "b c", "*", "d"} {
		if err := ob.InTx(context.Background(), func(tx *sql.Tx) error {
			return ob.Enqueue(context.Background(), tx, outbox.Message{Queue: "orders", Key: k, Payload: []byte(k), PayloadType: "text/plain"})
		}); err != nil {
			t.Fatal(err)
		}
	}
	start(t, ob, relay.Handler(natsjs.New(js), relay.WithTemplate(prefix+".{key}")))
	relaytest.WaitDrained(t, ob, "orders", time.Minute)
	if n := count(t, s); n != 2 {
		t.Fatalf("stream holds %d messages, want 2 (a and d)", n)
	}
	if n, err := ob.CountDeadLetters(context.Background(), outbox.DeadLetterFilter{Queue: "orders"}); err != nil || n != 2 {
		t.Fatalf("dead letters %d (%v), want 2", n, err)
	}
}

// The producer's trace context travels from Enqueue through the relay to
// the broker: a consumer that extracts it from the NATS headers continues
// the producer's trace.
func TestTraceContinues(t *testing.T) {
	u := relaytest.URL(t, relaytest.NATSEnv)
	relaytest.ForEachBackend(t, func(t *testing.T, e relaytest.Env) {
		js := connect(t, u)
		s := stream(t, js, jetstream.StreamConfig{})
		prefix := s.CachedInfo().Config.Name
		ob := relaytest.Outbox(t, e, outbox.Config{}, "orders", 1)
		producer := trace.NewSpanContext(trace.SpanContextConfig{
			TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
			SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
			TraceFlags: trace.FlagsSampled,
		})
		ctx := trace.ContextWithSpanContext(context.Background(), producer)
		err := ob.InTx(ctx, func(tx *sql.Tx) error {
			return ob.Enqueue(ctx, tx, outbox.Message{Queue: "orders", Partition: 0, Payload: []byte("p"), PayloadType: "text/plain", Headers: map[string]string{"n": "p"}})
		})
		if err != nil {
			t.Fatal(err)
		}
		start(t, ob, relayTo(t, js, prefix))
		relaytest.WaitDrained(t, ob, "orders", time.Minute)
		m, err := s.GetMsg(context.Background(), 1)
		if err != nil {
			t.Fatal(err)
		}
		// NATS keeps header names as sent (no canonical form), so the
		// consumer reads them through a map, as a NATS consumer would.
		carrier := propagation.MapCarrier{}
		for k := range m.Header {
			carrier[k] = m.Header.Get(k)
		}
		got := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
		if got.TraceID() != producer.TraceID() || got.SpanID() != producer.SpanID() || !got.IsRemote() {
			t.Fatalf("the consumer extracted %v from traceparent %q, want the producer's span %v", got, m.Header.Get("traceparent"), producer)
		}
	})
}
