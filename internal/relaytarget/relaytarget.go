// Package relaytarget builds a relay.Publisher from a target URL, for the
// commands (outboxctl relay, outbox-bench): nats://, tls://, amqp://,
// amqps://, redis://, rediss://, kafka://host:port[,host:port], http://
// and https://.
package relaytarget

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/modkit-go/db/relay"
	"github.com/modkit-go/db/relay/kafka"
	"github.com/modkit-go/db/relay/natsjs"
	"github.com/modkit-go/db/relay/rabbitmq"
	"github.com/modkit-go/db/relay/redisstream"
	"github.com/modkit-go/db/relay/webhook"
)

// Options are the settings some targets take.
type Options struct {
	Exchange string // RabbitMQ exchange ("" : the default exchange)
	Secret   string // webhook signing secret
}

// ErrUsage is wrapped by the error for a URL that names no known target.
var ErrUsage = fmt.Errorf("relaytarget: bad target")

// Open returns the publisher for to and a function that closes its
// connection.
func Open(to string, o Options) (relay.Publisher, func(), error) {
	if hosts, ok := strings.CutPrefix(to, "kafka://"); ok {
		cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(strings.TrimSuffix(hosts, "/"), ",")...))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: kafka: %w", ErrUsage, err)
		}
		return kafka.New(cl), cl.Close, nil
	}
	u, err := url.Parse(to)
	if err != nil || u.Scheme == "" {
		return nil, nil, fmt.Errorf("%w: %q: want a URL such as nats://127.0.0.1:4222", ErrUsage, to)
	}
	switch u.Scheme {
	case "nats", "tls":
		nc, err := nats.Connect(to, nats.MaxReconnects(-1))
		if err != nil {
			return nil, nil, fmt.Errorf("nats: %w", err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return nil, nil, err
		}
		return natsjs.New(js), nc.Close, nil
	case "amqp", "amqps":
		p := rabbitmq.New(to, rabbitmq.WithExchange(o.Exchange))
		return p, func() { _ = p.Close() }, nil
	case "redis", "rediss":
		opt, err := redis.ParseURL(to)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrUsage, err)
		}
		rdb := redis.NewClient(opt)
		return redisstream.New(rdb), func() { _ = rdb.Close() }, nil
	case "http", "https":
		p, err := webhook.New(to, o.Secret)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrUsage, err)
		}
		return p, func() {}, nil
	}
	return nil, nil, fmt.Errorf("%w: %q: unknown scheme %q (nats, tls, amqp, amqps, redis, rediss, kafka, http, https)", ErrUsage, to, u.Scheme)
}

// Redact hides a URL's password, for logs.
func Redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
