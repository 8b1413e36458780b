package relay

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/modkit-go/db/outbox"
)

// Headers the relay adds to every message (see the package doc).
const (
	HeaderQueue       = "Outbox-Queue"
	HeaderPartition   = "Outbox-Partition"
	HeaderSeq         = "Outbox-Seq"
	HeaderPayloadType = "Outbox-Payload-Type"
	HeaderID          = "Outbox-Id"
	HeaderKey         = "Outbox-Key"
)

// Message is one outbox delivery as a Publisher receives it, its
// destination resolved.
type Message struct {
	// ID identifies the message, stable across redeliveries: publishers
	// send it as the broker's deduplication or message id.
	ID string
	// Key is the message's key, "" when it has none.
	Key string
	// Destination is what the route chose: a NATS subject, an AMQP
	// routing key, a Redis stream, a Kafka topic, a URL path.
	Destination string
	// Payload is the message body.
	Payload []byte
	// Headers are the delivery's headers plus the relay's (HeaderQueue
	// and the others). Publishers must not modify them.
	Headers map[string]string
	// Delivery is the outbox delivery the message comes from.
	Delivery outbox.Delivery
}

// Publisher publishes a partition's batch to a broker.
//
// Publish publishes msgs in order and returns how many leading messages the
// broker durably accepted. It returns a nil error only when that is all of
// them. When it stops at message n it returns n and an error about that
// message, wrapped with outbox.Permanent when retrying can never succeed; and it
// must not have let any message after n be stored on the broker ahead of
// message n (publish the next only once the previous is confirmed, or use
// a request the broker applies in order and stops at the first failure).
// Publish respects ctx: cancelled, it returns what was confirmed so far.
type Publisher interface {
	Publish(ctx context.Context, msgs []Message) (int, error)
}

// PublisherFunc adapts a function to a Publisher.
type PublisherFunc func(ctx context.Context, msgs []Message) (int, error)

// Publish calls f.
func (f PublisherFunc) Publish(ctx context.Context, msgs []Message) (int, error) { return f(ctx, msgs) }

// isPermanent reports whether err's chain holds an outbox.PermanentError:
// a publish failure (or route error) that retrying cannot fix, which
// dead-letters the message.
func isPermanent(err error) bool {
	var p *outbox.PermanentError
	return errors.As(err, &p)
}

// ErrRoute is wrapped by the error of a message whose destination cannot
// be computed (a template naming a key the message lacks, say). A Route
// error that wraps ErrRoute, or is outbox.Permanent, dead-letters the message;
// any other Route error retries it.
var ErrRoute = errors.New("relay: no route")

// Route chooses a message's destination (see Message.Destination).
type Route func(d outbox.Delivery) (string, error)

// Option configures Handler.
type Option func(*config)

type config struct {
	route Route
}

// WithRoute sets the route. The default route is the queue's name.
func WithRoute(r Route) Option { return func(c *config) { c.route = r } }

// WithTemplate sets the route to a template (see Template). It panics on
// an invalid template: call Template first to handle the error.
func WithTemplate(t string) Option {
	r, err := Template(t)
	if err != nil {
		panic(err)
	}
	return WithRoute(r)
}

// Handler returns a decoupled batch handler that publishes each batch
// through pub and acknowledges what the broker accepted: a partition's
// messages reach the broker in seq order with no gap. Register it with
// outbox.Handle.
func Handler(pub Publisher, opts ...Option) outbox.Handler {
	c := config{route: func(d outbox.Delivery) (string, error) { return d.Queue, nil }}
	for _, o := range opts {
		o(&c)
	}
	return outbox.Batch(func(ctx context.Context, ds []outbox.Delivery) outbox.Result {
		return publish(ctx, pub, c.route, ds)
	})
}

// publish is the handler's body: route each message, publish the routable
// prefix, and turn what the broker accepted into a result.
func publish(ctx context.Context, pub Publisher, route Route, ds []outbox.Delivery) outbox.Result {
	msgs := make([]Message, 0, len(ds))
	var routeErr error
	for _, d := range ds {
		m, err := message(d, route)
		if err != nil {
			routeErr = err
			break
		}
		msgs = append(msgs, m)
	}
	n, err := 0, error(nil)
	if len(msgs) > 0 {
		n, err = pub.Publish(ctx, msgs)
		n = min(max(n, 0), len(msgs))
	}
	switch {
	case err != nil && isPermanent(err) && n < len(msgs):
		return outbox.RejectOne(err.Error()).WithProcessed(n)
	case err != nil:
		return outbox.Retry(err.Error()).WithProcessed(n)
	case n < len(msgs):
		return outbox.Retry(fmt.Sprintf("relay: the publisher accepted %d of %d messages without an error", n, len(msgs))).WithProcessed(n)
	case routeErr != nil && (errors.Is(routeErr, ErrRoute) || isPermanent(routeErr)):
		return outbox.RejectOne(routeErr.Error()).WithProcessed(n)
	case routeErr != nil:
		return outbox.Retry(routeErr.Error()).WithProcessed(n)
	}
	return outbox.Success()
}

// message builds the Message for d.
func message(d outbox.Delivery, route Route) (Message, error) {
	dest, err := route(d)
	if err != nil {
		return Message{}, fmt.Errorf("relay: route %s/%d seq %d: %w", d.Queue, d.Partition, d.Seq, err)
	}
	id, key := messageID(d), messageKey(d)
	h := make(map[string]string, len(d.Headers)+6)
	for k, v := range d.Headers {
		h[k] = v
	}
	h[HeaderQueue] = d.Queue
	h[HeaderPartition] = strconv.Itoa(d.Partition)
	h[HeaderSeq] = strconv.FormatInt(d.Seq, 10)
	h[HeaderPayloadType] = d.PayloadType
	h[HeaderID] = id
	if key != "" {
		h[HeaderKey] = key
	}
	return Message{ID: id, Key: key, Destination: dest, Payload: d.Payload, Headers: h, Delivery: d}, nil
}
