// Package rabbitmq publishes outbox messages to RabbitMQ.
//
// Each message is published to the Publisher's exchange with the routing
// key its route chose, persistent, with the message id as the message-id
// property, the payload type as the type property, the relay's headers as
// AMQP headers and the mandatory flag set, on a channel in confirm mode.
// A message counts as delivered only once the broker confirmed it (basic.ack)
// and did not return it as unroutable (basic.return, which RabbitMQ sends
// before the ack): an exchange with no queue bound for the key never
// swallows a message. The next message is published once the previous is
// confirmed: a nack (a queue refusing with reject-publish, say) does not
// stop the broker from storing the messages after it, so publishing ahead
// could store a later message before an earlier one.
//
// RabbitMQ has no deduplication: a message whose confirm was lost (the
// connection cut after the broker stored it) is published again. Consumers
// drop copies by message-id or by the Outbox-Seq header per
// (Outbox-Queue, Outbox-Partition).
package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/modkit-go/db/outbox"
	"github.com/modkit-go/db/relay"
)

// ErrUnroutable is wrapped by the error for a message the broker returned
// because no queue is bound for its routing key.
var ErrUnroutable = errors.New("rabbitmq: message returned unroutable")

// Publisher publishes to one exchange of a RabbitMQ server. It keeps one
// connection, dialled on first use and again after it breaks, and a
// channel per concurrent Publish call. It is safe for concurrent use.
type Publisher struct {
	url, exchange       string
	timeout             time.Duration
	unroutablePermanent bool

	mu   sync.Mutex
	conn *amqp.Connection
	idle []*channel
}

var _ relay.Publisher = (*Publisher)(nil)

type channel struct {
	ch      *amqp.Channel
	returns chan amqp.Return
}

// Option configures a Publisher.
type Option func(*Publisher)

// WithExchange sets the exchange messages are published to. The default
// is "" (the default exchange, which routes to the queue named by the
// routing key).
func WithExchange(name string) Option { return func(p *Publisher) { p.exchange = name } }

// WithTimeout bounds dialling and the wait for each confirm (default 5s).
func WithTimeout(d time.Duration) Option { return func(p *Publisher) { p.timeout = d } }

// WithUnroutableDeadLettered makes an unroutable message (returned by the
// broker) a permanent failure, dead-lettered so the partition goes on.
// By default it is retried with backoff, holding its partition in order
// until a queue is bound for its key.
func WithUnroutableDeadLettered() Option { return func(p *Publisher) { p.unroutablePermanent = true } }

// New returns a Publisher for the server at url
// (amqp://user:password@host:port/vhost). It dials on first use.
func New(url string, opts ...Option) *Publisher {
	p := &Publisher{url: url, timeout: 5 * time.Second}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Close closes the connection. Publish dials again if called after it.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idle = nil
	if p.conn == nil {
		return nil
	}
	err := p.conn.Close()
	p.conn = nil
	if errors.Is(err, amqp.ErrClosed) {
		return nil
	}
	return err
}

// Publish publishes msgs in order, each once the previous is confirmed,
// and returns how many the broker confirmed (see relay.Publisher).
func (p *Publisher) Publish(ctx context.Context, msgs []relay.Message) (int, error) {
	c, err := p.channel()
	if err != nil {
		return 0, err
	}
	for i, m := range msgs {
		if err := p.publish(ctx, c, m); err != nil {
			if !errors.Is(err, ErrUnroutable) {
				// The channel's state is unknown (a confirm may be
				// late): never reuse it.
				_ = c.ch.Close()
			} else {
				p.release(c)
			}
			return i, err
		}
	}
	p.release(c)
	return len(msgs), nil
}

func (p *Publisher) publish(ctx context.Context, c *channel, m relay.Message) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	headers := make(amqp.Table, len(m.Headers))
	for k, v := range m.Headers {
		headers[k] = v
	}
	dc, err := c.ch.PublishWithDeferredConfirmWithContext(ctx, p.exchange, m.Destination, true, false, amqp.Publishing{
		Headers: headers, DeliveryMode: amqp.Persistent, MessageId: m.ID,
		Type: m.Delivery.PayloadType, Timestamp: m.Delivery.CreatedAt, Body: m.Payload,
	})
	if err != nil {
		return fmt.Errorf("rabbitmq: publish: %w", err)
	}
	acked, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("rabbitmq: wait for confirm: %w", err)
	}
	// A return comes before the ack on the channel's one reader, which
	// hands it to the buffered returns channel before the confirm.
	select {
	case r := <-c.returns:
		err := fmt.Errorf("%w: exchange %q, routing key %q: %d %s", ErrUnroutable, r.Exchange, r.RoutingKey, r.ReplyCode, r.ReplyText)
		if p.unroutablePermanent {
			return outbox.Permanent(err)
		}
		return err
	default:
	}
	if !acked {
		if c.ch.IsClosed() {
			return errors.New("rabbitmq: channel closed before the confirm")
		}
		return errors.New("rabbitmq: the broker nacked the message")
	}
	return nil
}

// channel returns an idle channel in confirm mode, or opens one.
func (p *Publisher) channel() (*channel, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if !c.ch.IsClosed() {
			return c, nil
		}
	}
	if p.conn == nil || p.conn.IsClosed() {
		conn, err := amqp.DialConfig(p.url, amqp.Config{Dial: amqp.DefaultDial(p.timeout)})
		if err != nil {
			return nil, fmt.Errorf("rabbitmq: dial: %w", err)
		}
		p.conn, p.idle = conn, nil
	}
	ch, err := p.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("rabbitmq: confirm mode: %w", err)
	}
	return &channel{ch: ch, returns: ch.NotifyReturn(make(chan amqp.Return, 1))}, nil
}

func (p *Publisher) release(c *channel) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !c.ch.IsClosed() {
		p.idle = append(p.idle, c)
	}
}
