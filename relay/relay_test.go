package relay_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modkit-go/db/internal/relaytest"
	"github.com/modkit-go/db/outbox"
	"github.com/modkit-go/db/relay"
)

// memBroker is a Publisher that stores in memory, failing on demand.
type memBroker struct {
	mu     sync.Mutex
	stored []relay.Message
	calls  int
	// fail decides, per call, how many messages to store and what to
	// return; nil stores everything.
	fail func(call int, msgs []relay.Message) (stored int, n int, err error)
}

func (b *memBroker) Publish(_ context.Context, msgs []relay.Message) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	stored, n, err := len(msgs), len(msgs), error(nil)
	if b.fail != nil {
		stored, n, err = b.fail(b.calls, msgs)
	}
	b.stored = append(b.stored, msgs[:stored]...)
	return n, err
}

func (b *memBroker) read() []relaytest.Stored {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]relaytest.Stored, len(b.stored))
	for i, m := range b.stored {
		out[i] = relaytest.Stored{Partition: m.Delivery.Partition, Seq: m.Delivery.Seq, ID: m.ID}
	}
	return out
}

func run(t *testing.T, b relay.Publisher, partitions, n int, opts ...relay.Option) *outbox.Outbox {
	t.Helper()
	e := relaytest.Open(t, "sqlite")
	ob := relaytest.Outbox(t, e, outbox.Config{BatchSize: 7}, "orders", partitions)
	relaytest.Produce(t, ob, "orders", partitions, n)
	if err := ob.Handle("orders", relay.Handler(b, opts...)); err != nil {
		t.Fatal(err)
	}
	if err := ob.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ob.Stop(context.Background()) })
	relaytest.WaitDrained(t, ob, "orders", time.Minute)
	return ob
}

// A publisher that stops part-way, with or without storing more than it
// confirmed (a confirm lost with the connection), never makes the broker
// hold a partition out of order or with a gap: the relay acknowledges
// exactly the confirmed prefix and publishes the rest again.
func TestHandlerAcknowledgesTheConfirmedPrefix(t *testing.T) {
	b := &memBroker{fail: func(call int, msgs []relay.Message) (int, int, error) {
		switch call % 3 {
		case 1: // the broker stored a prefix and confirmed it
			k := len(msgs) / 2
			return k, k, errors.New("connection reset")
		case 2: // stored all, confirmed a prefix: duplicates follow
			return len(msgs), len(msgs) / 3, errors.New("confirm lost")
		}
		return len(msgs), len(msgs), nil
	}}
	run(t, b, 3, 200)
	c := relaytest.Check(t, b.read(), relaytest.Want(3, 200))
	if c.Duplicates == 0 {
		t.Errorf("%v: want duplicates from the lost confirms", c)
	}
	t.Log(c)
}

// A permanent failure dead-letters that message alone; the partition goes
// on with the next, in order.
func TestPermanentFailureDeadLettersOneMessage(t *testing.T) {
	b := &memBroker{fail: func(_ int, msgs []relay.Message) (int, int, error) {
		for i, m := range msgs {
			if m.Delivery.Partition == 1 && m.Delivery.Seq == 4 {
				return i, i, outbox.Permanent(errors.New("unroutable"))
			}
		}
		return len(msgs), len(msgs), nil
	}}
	ob := run(t, b, 2, 40)
	got := b.read()
	var p1 []int64
	for _, s := range got {
		if s.Partition == 1 {
			p1 = append(p1, s.Seq)
		}
	}
	if len(got) != 39 || len(p1) != 19 || p1[2] != 3 || p1[3] != 5 {
		t.Fatalf("stored %d messages, partition 1 seqs %v: want all but partition 1 seq 4", len(got), p1)
	}
	dlsPage, err := ob.DeadLetterPage(context.Background(), outbox.DeadLetterFilter{Queue: "orders"})
	dls := dlsPage.DeadLetters
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].Partition != 1 || dls[0].Seq != 4 || !strings.Contains(dls[0].Reason, "unroutable") {
		t.Fatalf("dead letters %+v, want partition 1 seq 4 (unroutable)", dls)
	}
}

// A message the template cannot route is dead-lettered; the others are
// published to their destination.
func TestUnroutableMessageIsDeadLettered(t *testing.T) {
	b := &memBroker{}
	route := func(d outbox.Delivery) (string, error) {
		if d.Seq == 2 && d.Partition == 0 {
			return "", fmt.Errorf("%w: no destination for seq 2", relay.ErrRoute)
		}
		return fmt.Sprintf("orders.%d", d.Partition), nil
	}
	ob := run(t, b, 1, 5, relay.WithRoute(route))
	b.mu.Lock()
	var seqs []int64
	for _, m := range b.stored {
		seqs = append(seqs, m.Delivery.Seq)
		if m.Destination != "orders.0" {
			t.Errorf("destination %q", m.Destination)
		}
	}
	b.mu.Unlock()
	if fmt.Sprint(seqs) != "[1 3 4 5]" {
		t.Fatalf("stored seqs %v, want [1 3 4 5]", seqs)
	}
	n, err := ob.CountDeadLetters(context.Background(), outbox.DeadLetterFilter{Queue: "orders"})
	if err != nil || n != 1 {
		t.Fatalf("dead letters %d (%v), want 1", n, err)
	}
}

// A publisher that accepts less than the batch without saying why is
// retried, never acknowledged past what it accepted.
func TestShortCountWithoutErrorIsRetried(t *testing.T) {
	b := &memBroker{fail: func(call int, msgs []relay.Message) (int, int, error) {
		if call == 1 {
			return 1, 1, nil
		}
		return len(msgs), len(msgs), nil
	}}
	run(t, b, 1, 10)
	relaytest.Check(t, b.read(), relaytest.Want(1, 10))
}

func TestMessageHeaders(t *testing.T) {
	b := &memBroker{}
	run(t, b, 1, 1)
	m := b.stored[0]
	want := map[string]string{
		"n": "0", relay.HeaderQueue: "orders", relay.HeaderPartition: "0", relay.HeaderSeq: "1",
		relay.HeaderPayloadType: "text/plain", relay.HeaderID: m.ID,
	}
	if fmt.Sprint(m.Headers) != fmt.Sprint(want) || m.ID == "" || m.Destination != "orders" {
		t.Fatalf("message %+v, want headers %v and destination orders", m, want)
	}
}

func TestTemplate(t *testing.T) {
	d := outbox.Delivery{Queue: "orders", Partition: 3, Seq: 9, PayloadType: "t.v1", Headers: map[string]string{"tenant": "acme"}}
	for _, tc := range []struct{ tmpl, want, err string }{
		{"orders.{partition}", "orders.3", ""},
		{"{queue}.{payload_type}", "orders.t.v1", ""},
		{"{queue}.{header:tenant}", "orders.acme", ""},
		{"{queue}", "orders", ""},
		{"{queue}.{key}", "", "needs a key"},
		{"{queue}.{header:region}", "", "needs header"},
	} {
		r, err := relay.Template(tc.tmpl)
		if err != nil {
			t.Fatalf("%s: %v", tc.tmpl, err)
		}
		got, err := r(d)
		if tc.err != "" {
			if !errors.Is(err, relay.ErrRoute) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want ErrRoute (%s)", tc.tmpl, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.tmpl, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "{", "a}", "{nope}", "{header:}", "x{queue"} {
		if _, err := relay.Template(bad); err == nil {
			t.Errorf("Template(%q) accepted", bad)
		}
	}
}
