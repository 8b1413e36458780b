package kafka_test

import (
	"context"
	"database/sql"
	"strconv"
	"testing"
	"time"

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

// readBack consumes n records of topic from the start, in order per Kafka
// partition, and returns them in that order (grouped by Kafka partition).
func readBack(t testing.TB, addrs []string, topic string, n int) []relaytest.Stored {
	t.Helper()
	cl := client(t, addrs, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", len(recs), n, err)
		}
		recs = append(recs, fs.Records()...)
	}
	byPart := map[int32][]*kgo.Record{}
	for _, r := range recs {
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

func TestRelay(t *testing.T) {
	relaytest.ForEachBackend(t, func(t *testing.T, e relaytest.Env) {
		addrs := cluster(t, "orders-events", 3)
		ob := relaytest.Outbox(t, e, outbox.Config{}, "orders", 4)
		relaytest.Produce(t, ob, "orders", 4, 300)
		pub := kafka.New(client(t, addrs))
		if err := ob.Handle("orders", relay.Handler(pub, relay.WithTemplate("{queue}-events"))); err != nil {
			t.Fatal(err)
		}
		if err := ob.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ob.Stop(context.Background()) })
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
	if err := ob.Handle("orders", relay.Handler(pub)); err != nil {
		t.Fatal(err)
	}
	if err := ob.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ob.Stop(context.Background()) })
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
