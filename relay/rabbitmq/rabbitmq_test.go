package rabbitmq_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/modkit-go/db/internal/relaytest"
	"github.com/modkit-go/db/outbox"
	"github.com/modkit-go/db/relay"
	"github.com/modkit-go/db/relay/rabbitmq"
)

// broker is a test's exchange and queue on the shared server.
type broker struct {
	t        testing.TB
	ch       *amqp.Channel
	exchange string
	queue    string
	got      []relaytest.Stored
}

// newBroker declares a topic exchange and a queue of the test's own;
// bind says whether the queue is bound to the exchange (key "#").
func newBroker(t testing.TB, u string, queueArgs amqp.Table, bind bool) *broker {
	t.Helper()
	conn, err := amqp.Dial(u)
	if err != nil {
		t.Fatalf("rabbitmq %s: %v", u, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	b := &broker{t: t, ch: ch, exchange: "relaytest_x_" + hex.EncodeToString(r[:]), queue: "relaytest_q_" + hex.EncodeToString(r[:])}
	if err := ch.ExchangeDeclare(b.exchange, "topic", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(b.queue, false, false, false, false, queueArgs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = ch.QueueDelete(b.queue, false, false, false)
		_ = ch.ExchangeDelete(b.exchange, false, false)
	})
	if bind {
		b.bind("#")
	}
	return b
}

func (b *broker) bind(key string) {
	if err := b.ch.QueueBind(b.queue, key, b.exchange, false, nil); err != nil {
		b.t.Fatal(err)
	}
}

// drain moves what the queue holds to b.got, in queue order, checking
// each message's properties.
func (b *broker) drain() int {
	b.t.Helper()
	for {
		d, ok, err := b.ch.Get(b.queue, true)
		if err != nil {
			b.t.Fatal(err)
		}
		if !ok {
			return len(b.got)
		}
		h := func(k string) string { s, _ := d.Headers[k].(string); return s }
		p, _ := strconv.Atoi(h(relay.HeaderPartition))
		sq, _ := strconv.ParseInt(h(relay.HeaderSeq), 10, 64)
		if d.MessageId != h(relay.HeaderID) || d.MessageId == "" || d.DeliveryMode != amqp.Persistent || d.Type != "text/plain" {
			b.t.Errorf("message-id %q (header %q), delivery mode %d, type %q", d.MessageId, h(relay.HeaderID), d.DeliveryMode, d.Type)
		}
		if d.RoutingKey != "orders."+strconv.Itoa(p) || h("n") != string(d.Body) {
			b.t.Errorf("routing key %q for partition %d; header n %q, body %q", d.RoutingKey, p, h("n"), d.Body)
		}
		b.got = append(b.got, relaytest.Stored{Partition: p, Seq: sq, ID: d.MessageId})
	}
}

func (b *broker) count() int {
	q, err := b.ch.QueueDeclarePassive(b.queue, false, false, false, false, nil)
	if err != nil {
		b.t.Errorf("queue: %v", err)
		return 0
	}
	return q.Messages
}

func start(t testing.TB, ob *outbox.Outbox, pub *rabbitmq.Publisher) {
	t.Helper()
	t.Cleanup(func() { _ = pub.Close() })
	if err := ob.Handle("orders", relay.Handler(pub, relay.WithTemplate("orders.{partition}"))); err != nil {
		t.Fatal(err)
	}
	if err := ob.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ob.Stop(context.Background()) })
}

func TestRelay(t *testing.T) {
	u := relaytest.URL(t, relaytest.AMQPEnv)
	relaytest.ForEachBackend(t, func(t *testing.T, e relaytest.Env) {
		b := newBroker(t, u, nil, true)
		ob := relaytest.Outbox(t, e, outbox.Config{}, "orders", 4)
		relaytest.Produce(t, ob, "orders", 4, 300)
		start(t, ob, rabbitmq.New(u, rabbitmq.WithExchange(b.exchange)))
		relaytest.WaitDrained(t, ob, "orders", time.Minute)
		b.drain()
		c := relaytest.Check(t, b.got, relaytest.Want(4, 300))
		if c.Duplicates != 0 {
			t.Errorf("%v: duplicates without a fault", c)
		}
		t.Log(c)
	})
}

// The client's connection is cut three times mid-stream by a proxy; the
// queue holds every message, in order per partition, copies counted.
func TestConnectionCut(t *testing.T) {
	u := relaytest.URL(t, relaytest.AMQPEnv)
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	relaytest.ForEachBackend(t, func(t *testing.T, e relaytest.Env) {
		const n = 600
		b := newBroker(t, u, nil, true)
		proxy := relaytest.NewProxy(t, pu.Host)
		viaProxy := *pu
		viaProxy.Host = proxy.Addr()
		ob := relaytest.Outbox(t, e, outbox.Config{BatchSize: 20}, "orders", 4)
		relaytest.Produce(t, ob, "orders", 4, n)
		start(t, ob, rabbitmq.New(viaProxy.String(), rabbitmq.WithExchange(b.exchange), rabbitmq.WithTimeout(2*time.Second)))
		cuts := proxy.CutAt(b.count, n/4, n/2, 3*n/4)
		relaytest.WaitDrained(t, ob, "orders", time.Minute)
		b.drain()
		t.Logf("connections cut: %d", cuts)
		t.Log(relaytest.Check(t, b.got, relaytest.Want(4, n)))
	})
}

// An exchange with no queue bound returns every message: none counts as
// delivered, the partitions retry in order, and once a queue is bound
// every message arrives.
func TestUnroutableIsRetried(t *testing.T) {
	u := relaytest.URL(t, relaytest.AMQPEnv)
	relaytest.ForEachBackend(t, func(t *testing.T, e relaytest.Env) {
		b := newBroker(t, u, nil, false)
		ob := relaytest.Outbox(t, e, outbox.Config{}, "orders", 2)
		relaytest.Produce(t, ob, "orders", 2, 100)
		start(t, ob, rabbitmq.New(u, rabbitmq.WithExchange(b.exchange)))
		deadline := time.Now().Add(time.Minute)
		for {
			qs, err := ob.QueueStatus(context.Background(), "orders")
			if err == nil && qs.Retrying == 2 && qs.Backlog == 100 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("want both partitions retrying with nothing acknowledged: %+v, %v", qs, err)
			}
			time.Sleep(5 * time.Millisecond) // polling an observable condition
		}
		b.bind("#")
		relaytest.WaitDrained(t, ob, "orders", time.Minute)
		b.drain()
		c := relaytest.Check(t, b.got, relaytest.Want(2, 100))
		if c.Duplicates != 0 {
			t.Errorf("%v: a returned message was stored", c)
		}
		t.Log(c)
	})
}

// With WithUnroutableDeadLettered, partition 1's messages (no binding for
// orders.1) are dead-lettered and partition 0's are delivered.
func TestUnroutableDeadLettered(t *testing.T) {
	u := relaytest.URL(t, relaytest.AMQPEnv)
	b := newBroker(t, u, nil, false)
	b.bind("orders.0")
	e := relaytest.Open(t, "sqlite")
	ob := relaytest.Outbox(t, e, outbox.Config{}, "orders", 2)
	relaytest.Produce(t, ob, "orders", 2, 20)
	start(t, ob, rabbitmq.New(u, rabbitmq.WithExchange(b.exchange), rabbitmq.WithUnroutableDeadLettered()))
	relaytest.WaitDrained(t, ob, "orders", time.Minute)
	b.drain()
	relaytest.Check(t, b.got, map[int]int{0: 10})
	dlsPage, err := ob.DeadLetterPage(context.Background(), outbox.DeadLetterFilter{Queue: "orders", Limit: 100})
	dls := dlsPage.DeadLetters
	if err != nil || len(dls) != 10 {
		t.Fatalf("dead letters: %d (%v), want partition 1's 10", len(dls), err)
	}
	for _, d := range dls {
		if d.Partition != 1 {
			t.Errorf("dead letter of partition %d", d.Partition)
		}
	}
}

// A full queue (x-max-length with reject-publish) nacks: the relay retries
// in order until the consumer makes room, and nothing is lost.
func TestFullQueue(t *testing.T) {
	u := relaytest.URL(t, relaytest.AMQPEnv)
	relaytest.ForEachBackend(t, func(t *testing.T, e relaytest.Env) {
		b := newBroker(t, u, amqp.Table{"x-max-length": int32(30), "x-overflow": "reject-publish"}, true)
		ob := relaytest.Outbox(t, e, outbox.Config{}, "orders", 2)
		relaytest.Produce(t, ob, "orders", 2, 100)
		start(t, ob, rabbitmq.New(u, rabbitmq.WithExchange(b.exchange)))
		deadline := time.Now().Add(time.Minute)
		for {
			qs, err := ob.QueueStatus(context.Background(), "orders")
			if err == nil && b.count() == 30 && qs.Retrying > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("want a full queue and a partition retrying: %d stored, %+v, %v", b.count(), qs, err)
			}
			time.Sleep(5 * time.Millisecond) // polling an observable condition
		}
		for b.drain() < 100 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // polling an observable condition
		}
		relaytest.WaitDrained(t, ob, "orders", time.Minute)
		b.drain()
		t.Log(relaytest.Check(t, b.got, relaytest.Want(2, 100)))
	})
}

// The relay process is SIGKILLed twice mid-stream and restarted; the queue
// holds every message, in order per partition, copies counted.
func TestKilledRelay(t *testing.T) {
	relaytest.RunChild(func() outbox.Handler {
		pub := rabbitmq.New(os.Getenv(relaytest.AMQPEnv), rabbitmq.WithExchange(os.Getenv("RELAYTEST_EXCHANGE")))
		return relay.Handler(pub, relay.WithTemplate("orders.{partition}"))
	})
	u := relaytest.URL(t, relaytest.AMQPEnv)
	relaytest.ForEachBackend(t, func(t *testing.T, e relaytest.Env) {
		const n = 1000
		b := newBroker(t, u, nil, true)
		ob := relaytest.Outbox(t, e, outbox.Config{}, "orders", 4)
		relaytest.Produce(t, ob, "orders", 4, n)
		killed := relaytest.Children(t, e, ob, "orders", []string{"RELAYTEST_EXCHANGE=" + b.exchange},
			b.count, []int{n / 4, n / 2})
		b.drain()
		t.Logf("relay processes killed: %d", killed)
		t.Log(relaytest.Check(t, b.got, relaytest.Want(4, n)))
	})
}
