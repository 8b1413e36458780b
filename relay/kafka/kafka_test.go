package kafka_test

import (
	"context"
	"database/sql"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/modkit-go/db/internal/relaytest"
	"github.com/modkit-go/db/outbox"
	"github.com/modkit-go/db/relay"
	"github.com/modkit-go/db/relay/kafka"
)

// cluster is an in-process Kafka (kfake), which speaks the Kafka wire
// protocol to the real franz-go client.
func cluster(t testing.TB, topic string, partitions int32) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func client(t testing.TB, addrs []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// start relays the queue "orders" with h until the test ends.
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

// sink consumes topic from the start, from when it is made to the test's
// end, and keeps the records in the order each Kafka partition holds them.
type sink struct {
	mu   sync.Mutex
	recs []*kgo.Record
}

func consume(t testing.TB, addrs []string, topic string) *sink {
	t.Helper()
	cl := client(t, addrs, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	s := &sink{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			recs := cl.PollFetches(ctx).Records()
			s.mu.Lock()
			s.recs = append(s.recs, recs...)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recs)
}

// wait waits until the sink holds n records.
func (s *sink) wait(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for s.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("consumed %d of %d records", s.count(), n)
		}
		time.Sleep(time.Millisecond) // polling an observable condition
	}
}

// stored returns what the sink consumed, grouped by Kafka partition (in
// order within each), checking each record's key and headers.
func (s *sink) stored(t testing.TB) []relaytest.Stored {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	byPart := map[int32][]*kgo.Record{}
	for _, r := range s.recs {
		byPart[r.Partition] = append(byPart[r.Partition], r)
	}
	var got []relaytest.Stored
	seen := map[int]int32{} // outbox partition → Kafka partition
	for kp, rs := range byPart {
		for _, r := range rs {
			h := map[string]string{}
			for _, x := range r.Headers {
				h[x.Key] = string(x.Value)
			}
			p, _ := strconv.Atoi(h[relay.HeaderPartition])
			sq, _ := strconv.ParseInt(h[relay.HeaderSeq], 10, 64)
			if prev, ok := seen[p]; ok && prev != kp {
				t.Errorf("outbox partition %d in Kafka partitions %d and %d", p, prev, kp)
			}
			seen[p] = kp
			if string(r.Key) != "orders/"+strconv.Itoa(p) || h["n"] != string(r.Value) {
				t.Errorf("record key %q, value %q, headers %v", r.Key, r.Value, h)
			}
			got = append(got, relaytest.Stored{Partition: p, Seq: sq, ID: h[relay.HeaderID]})
		}
	}
	return got
}

// readBack consumes n records of topic from the start (see sink.stored).
func readBack(t testing.TB, addrs []string, topic string, n int) []relaytest.Stored {
	t.Helper()
	s := consume(t, addrs, topic)
	s.wait(t, n)
	return s.stored(t)
}

func TestRelay(t *testing.T) {
	relaytest.ForEachBackend(t, func(t *testing.T, e relaytest.Env) {
		addrs := cluster(t, "orders-events", 3)
		ob := relaytest.Outbox(t, e, outbox.Config{}, "orders", 4)
		relaytest.Produce(t, ob, "orders", 4, 300)
		pub := kafka.New(client(t, addrs))
		start(t, ob, relay.Handler(pub, relay.WithTemplate("{queue}-events")))
		relaytest.WaitDrained(t, ob, "orders", time.Minute)
		c := relaytest.Check(t, readBack(t, addrs, "orders-events", 300), relaytest.Want(4, 300))
		if c.Duplicates != 0 {
			t.Errorf("%v: duplicates without a fault", c)
		}
		t.Log(c)
	})
}

// A record larger than the client's limit is dead-lettered; the rest of
// the partition follows in order.
func TestRecordTooLarge(t *testing.T) {
	addrs := cluster(t, "orders", 1)
	e := relaytest.Open(t, "sqlite")
	ob := relaytest.Outbox(t, e, outbox.Config{}, "orders", 1)
	relaytest.Produce(t, ob, "orders", 1, 2)
	if err := ob.InTx(context.Background(), func(tx *sql.Tx) error {
		return ob.Enqueue(context.Background(), tx, outbox.Message{Queue: "orders", Payload: make([]byte, 4096), PayloadType: "text/plain"})
	}); err != nil {
		t.Fatal(err)
	}
	relaytest.Produce(t, ob, "orders", 1, 1)
	pub := kafka.New(client(t, addrs, kgo.ProducerBatchMaxBytes(2048)))
	start(t, ob, relay.Handler(pub))
	relaytest.WaitDrained(t, ob, "orders", time.Minute)
	n, err := ob.CountDeadLetters(context.Background(), outbox.DeadLetterFilter{Queue: "orders"})
	if err != nil || n != 1 {
		t.Fatalf("dead letters %d (%v), want 1", n, err)
	}
	got := readBack(t, addrs, "orders", 3)
	if len(got) != 3 || got[2].Seq != 4 {
		t.Fatalf("stored %+v, want seqs 1, 2, 4", got)
	}
}

// The client's connections are cut three times mid-stream (a proxy that
// every connection of the client goes through drops them); the topic
// still holds every message, in order per partition. The idempotent
// producer keeps a produce request that the client retried after a lost
// response from being stored twice.
func TestConnectionCut(t *testing.T) {
	relaytest.ForEachBackend(t, func(t *testing.T, e relaytest.Env) {
		const n = 600
		addrs := cluster(t, "orders", 3)
		proxy := relaytest.NewProxy(t, addrs[0])
		var d net.Dialer
		viaProxy := kgo.Dialer(func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, proxy.Addr())
		})
		s := consume(t, addrs, "orders")
		ob := relaytest.Outbox(t, e, outbox.Config{BatchSize: 20}, "orders", 4)
		relaytest.Produce(t, ob, "orders", 4, n)
		pub := kafka.New(client(t, addrs, viaProxy, kgo.RequestTimeoutOverhead(2*time.Second)))
		start(t, ob, relay.Handler(pub))
		cuts := proxy.CutAt(s.count, n/4, n/2, 3*n/4)
		relaytest.WaitDrained(t, ob, "orders", time.Minute)
		s.wait(t, n)
		t.Logf("connections cut: %d", cuts)
		t.Log(relaytest.Check(t, s.stored(t), relaytest.Want(4, n)))
	})
}

// The relay process is SIGKILLed mid-stream twice and restarted; the topic
// holds every message in order per partition. A message produced by a
// killed relay but not yet acknowledged in the outbox is produced again by
// the next one (a new producer id, so Kafka cannot tell): those
// duplicates are counted.
func TestKilledRelay(t *testing.T) {
	relaytest.RunChild(func() outbox.Handler {
		cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(os.Getenv("RELAYTEST_KAFKA"), ",")...))
		if err != nil {
			panic(err)
		}
		return relay.Handler(kafka.New(cl))
	})
	relaytest.ForEachBackend(t, func(t *testing.T, e relaytest.Env) {
		const n = 1000
		addrs := cluster(t, "orders", 3)
		s := consume(t, addrs, "orders")
		ob := relaytest.Outbox(t, e, outbox.Config{}, "orders", 4)
		relaytest.Produce(t, ob, "orders", 4, n)
		killed := relaytest.Children(t, e, ob, "orders", []string{"RELAYTEST_KAFKA=" + strings.Join(addrs, ",")},
			s.count, []int{n / 4, n / 2})
		s.wait(t, n)
		t.Logf("relay processes killed: %d", killed)
		t.Log(relaytest.Check(t, s.stored(t), relaytest.Want(4, n)))
	})
}

// A topic that does not exist (and is not created on demand) refuses every
// record: nothing counts as delivered, the partitions retry in order, and
// once the topic exists every message arrives.
func TestMissingTopicIsRetried(t *testing.T) {
	relaytest.ForEachBackend(t, func(t *testing.T, e relaytest.Env) {
		const n = 200
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		addrs := c.ListenAddrs()
		ob := relaytest.Outbox(t, e, outbox.Config{RetryBase: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond}, "orders", 4)
		relaytest.Produce(t, ob, "orders", 4, n)
		pub := kafka.New(client(t, addrs, kgo.RecordDeliveryTimeout(time.Second), kgo.UnknownTopicRetries(1)))
		start(t, ob, relay.Handler(pub))
		// Retried, not delivered: the partitions show attempts and no
		// progress.
		deadline := time.Now().Add(30 * time.Second)
		for {
			qs, err := ob.QueueStatus(context.Background(), "orders")
			if err != nil {
				t.Fatal(err)
			}
			if qs.Retrying > 0 {
				if qs.Backlog != n {
					t.Fatalf("backlog %d with no topic, want %d", qs.Backlog, n)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no partition retrying after 30s: %+v", qs)
			}
			time.Sleep(10 * time.Millisecond) // polling an observable condition
		}
		if dl, err := ob.CountDeadLetters(context.Background(), outbox.DeadLetterFilter{Queue: "orders"}); err != nil || dl != 0 {
			t.Fatalf("dead letters %d (%v), want none", dl, err)
		}
		if _, err := kadm.NewClient(client(t, addrs)).CreateTopic(context.Background(), 3, 1, nil, "orders"); err != nil {
			t.Fatal(err)
		}
		relaytest.WaitDrained(t, ob, "orders", time.Minute)
		t.Log(relaytest.Check(t, readBack(t, addrs, "orders", n), relaytest.Want(4, n)))
	})
}
