package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/modkit-go/db/internal/relaytarget"
	"github.com/modkit-go/db/outbox"
	"github.com/modkit-go/db/relay"
)

// ScenarioRelay publishes through the relay to a broker (Options.To).
const ScenarioRelay = "relay"

// Local broker URLs for the short --to names.
var brokerURLs = map[string]string{
	"nats":  "nats://127.0.0.1:4222",
	"amqp":  "amqp://guest:guest@127.0.0.1:5672/",
	"redis": "redis://127.0.0.1:6379/0",
}

// Relay measures the relay (package relay) to the broker at Options.To:
// draining the backlog through it versus the same drain with a no-op Batch
// handler, in the same run; the broker's publish rate from one client
// with the same publisher; and the latency from commit to stored on the
// broker (the publisher's confirm) at RelayRate msg/s.
func Relay(ctx context.Context, o Options) ([]Result, error) {
	o = o.withDefaults()
	b, err := openBroker(ctx, o)
	if err != nil {
		return nil, err
	}
	defer b.close()
	var out []Result

	o.Logf("%s relay: the no-op drain", o.Dialect)
	noop, _, err := drainMode(ctx, o, false, false, nil)
	noop.Scenario, noop.Mode = ScenarioRelay, "drain, no-op Batch"
	out = append(out, noop)
	if err != nil {
		return out, err
	}

	o.Logf("%s relay: the drain to %s", o.Dialect, b.kind)
	rel, _, err := drainMode(ctx, o, false, false, b.handler)
	rel.Scenario, rel.Mode = ScenarioRelay, "drain, relay to "+b.kind
	if err == nil {
		rel.Baseline = "the same drain with a no-op Batch handler (line above)"
		rel.BaselineSeconds, rel.BaselineRate = noop.Seconds, noop.Rate
		rel.Ratio = ratio(rel.Rate, noop.Rate)
		rel.Target = ">= 0.80x the no-op drain"
		rel.Met = ptr(rel.Ratio >= 0.8)
		if n, cerr := b.count(ctx); cerr != nil || n != o.Messages {
			verdict(&rel, errors.Join(errors.New(rel.VerifyError), fmt.Errorf("the broker holds %d messages, want %d (%v)", n, o.Messages, cerr)))
		}
	}
	out = append(out, rel)
	if err != nil {
		return out, err
	}

	raw, err := b.rawPublish(ctx, o)
	out = append(out, raw)
	if err != nil {
		return out, err
	}

	lo := o
	lo.Rate = o.RelayRate
	o.Logf("%s relay: commit to stored on %s at %d msg/s", o.Dialect, b.kind, lo.Rate)
	lat, err := steady(ctx, lo, false, o.E2EDuration, false, b.handler)
	lat.Scenario, lat.Mode = ScenarioRelay, fmt.Sprintf("commit -> stored on %s @%d/s", b.kind, lo.Rate)
	out = append(out, lat)
	return out, err
}

// broker is the benchmark's destination on one broker kind.
type broker struct {
	kind  string
	url   string
	route string // routing template
	pub   relay.Publisher
	count func(ctx context.Context) (int, error)
	close func()
}

// handler is the relay handler whose publisher records what the broker
// confirmed, in order, with the time of the confirm.
func (b *broker) handler(rec *recorder) outbox.Handler {
	r, _ := relay.Template(b.route)
	return relay.Handler(relay.PublisherFunc(func(ctx context.Context, msgs []relay.Message) (int, error) {
		n, err := b.pub.Publish(ctx, msgs)
		now := time.Now().UnixNano()
		for _, m := range msgs[:max(min(n, len(msgs)), 0)] {
			rec.record(m.Delivery.Partition, m.Delivery.Seq, m.Payload, now)
		}
		return n, err
	}), relay.WithRoute(r))
}

// rawPublish publishes min(Messages, 20000) messages from one goroutine
// through the same publisher, in batches of 100 (each message once the
// previous is confirmed): the broker's rate for one client publishing as
// the relay does.
func (b *broker) rawPublish(ctx context.Context, o Options) (Result, error) {
	n := min(o.Messages, 20000)
	res := Result{Scenario: ScenarioRelay, Mode: "raw publish to " + b.kind + ", one client", Messages: n}
	o.Logf("%s relay: raw publish of %d messages to %s", o.Dialect, n, b.kind)
	r, _ := relay.Template(b.route)
	before, err := b.count(ctx)
	if err != nil {
		return res, err
	}
	msgs := make([]relay.Message, 0, 100)
	t0 := time.Now()
	for i := 0; i < n; i += 100 {
		msgs = msgs[:0]
		for id := i; id < min(i+100, n); id++ {
			d := outbox.Delivery{Queue: Queue, Partition: 0, Seq: int64(id + 1), Payload: payload(uint64(id), 0, uint32(id+1), o.PayloadBytes), PayloadType: PayloadType}
			dest, _ := r(d)
			msgs = append(msgs, relay.Message{ID: "raw-" + strconv.Itoa(id) + "-" + b.url, Destination: dest, Payload: d.Payload,
				Headers: map[string]string{relay.HeaderQueue: Queue, relay.HeaderPartition: "0", relay.HeaderSeq: strconv.Itoa(id + 1)}, Delivery: d})
		}
		if k, err := b.pub.Publish(ctx, msgs); err != nil {
			return res, fmt.Errorf("raw publish: %d of %d: %w", i+k, n, err)
		}
	}
	el := time.Since(t0)
	res.Seconds, res.Rate = el.Seconds(), rate(n, el)
	after, err := b.count(ctx)
	verdict(&res, err)
	if err == nil && after-before != n {
		verdict(&res, fmt.Errorf("the broker stored %d of %d", after-before, n))
	}
	return res, nil
}

// openBroker prepares a destination of the benchmark's own on the broker
// named by o.To, removed by close.
func openBroker(ctx context.Context, o Options) (*broker, error) {
	to := o.To
	if u, ok := brokerURLs[to]; ok {
		to = u
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	name := "outbox_bench_" + hex.EncodeToString(r[:])
	b := &broker{url: to}
	var closeAdmin func()
	switch {
	case strings.HasPrefix(to, "nats://"):
		nc, err := nats.Connect(to)
		if err != nil {
			return nil, fmt.Errorf("nats: %w", err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return nil, err
		}
		s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, Storage: jetstream.FileStorage})
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("nats: create stream: %w", err)
		}
		b.kind, b.route = "JetStream", name+".{partition}"
		b.count = func(ctx context.Context) (int, error) {
			info, err := s.Info(ctx)
			if err != nil {
				return 0, err
			}
			return int(info.State.Msgs), nil
		}
		closeAdmin = func() { _ = js.DeleteStream(context.Background(), name); nc.Close() }
	case strings.HasPrefix(to, "amqp://") || strings.HasPrefix(to, "amqps://"):
		conn, err := amqp.Dial(to)
		if err != nil {
			return nil, fmt.Errorf("amqp: %w", err)
		}
		ch, err := conn.Channel()
		if err == nil {
			err = ch.ExchangeDeclare(name, "topic", true, false, false, false, nil)
		}
		if err == nil {
			_, err = ch.QueueDeclare(name, true, false, false, false, nil)
		}
		if err == nil {
			err = ch.QueueBind(name, "#", name, false, nil)
		}
		if err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("amqp: declare: %w", err)
		}
		b.kind, b.route = "RabbitMQ", "orders.{partition}"
		b.count = func(context.Context) (int, error) {
			q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
			return q.Messages, err
		}
		closeAdmin = func() {
			_, _ = ch.QueueDelete(name, false, false, false)
			_ = ch.ExchangeDelete(name, false, false)
			_ = conn.Close()
		}
		o.Logf("RabbitMQ: durable topic exchange and queue %s, persistent messages", name)
		pub, closePub, err := relaytarget.Open(to, relaytarget.Options{Exchange: name})
		if err != nil {
			closeAdmin()
			return nil, err
		}
		b.pub, b.close = pub, func() { closePub(); closeAdmin() }
		return b, nil
	case strings.HasPrefix(to, "redis://"):
		opt, err := redis.ParseURL(to)
		if err != nil {
			return nil, err
		}
		rdb := redis.NewClient(opt)
		prefix := "outbox-bench:" + hex.EncodeToString(r[:])
		b.kind, b.route = "Redis Streams", prefix+".{partition}"
		keys := func(ctx context.Context) ([]string, error) {
			return rdb.Keys(ctx, prefix+".*").Result()
		}
		b.count = func(ctx context.Context) (int, error) {
			ks, err := keys(ctx)
			n := 0
			for _, k := range ks {
				l, e := rdb.XLen(ctx, k).Result()
				err = errors.Join(err, e)
				n += int(l)
			}
			return n, err
		}
		closeAdmin = func() {
			if ks, err := keys(context.Background()); err == nil && len(ks) > 0 {
				rdb.Del(context.Background(), ks...)
			}
			_ = rdb.Close()
		}
	default:
		return nil, fmt.Errorf("relay: --to %q: want nats, amqp or redis (or a nats://, amqp://, redis:// URL)", o.To)
	}
	pub, closePub, err := relaytarget.Open(to, relaytarget.Options{})
	if err != nil {
		closeAdmin()
		return nil, err
	}
	b.pub, b.close = pub, func() { closePub(); closeAdmin() }
	return b, nil
}
