// Package natsjs publishes outbox messages to NATS JetStream.
//
// Each message is published to the subject its route chose, with the
// message id as Nats-Msg-Id (so a redelivery within the stream's duplicate
// window, two minutes by default, is stored once) and the relay's headers
// as NATS headers. A message is published once the previous one is acked
// by the stream: JetStream applies a failed message's successors
// independently, so publishing ahead could store a later message before
// an earlier one that failed transiently.
package natsjs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/modkit-go/db/outbox"
	"github.com/modkit-go/db/relay"
)

// Publisher publishes to JetStream. It is safe for concurrent use.
type Publisher struct {
	js      jetstream.JetStream
	timeout time.Duration
}

var _ relay.Publisher = (*Publisher)(nil)

// Option configures a Publisher.
type Option func(*Publisher)

// WithTimeout bounds the wait for each message's ack (default 5s). A
// publish that times out is retried by the relay; the stream drops the
// copy if the first one was stored after all.
func WithTimeout(d time.Duration) Option { return func(p *Publisher) { p.timeout = d } }

// New returns a Publisher over js. The streams that store the routed
// subjects must exist: a message whose subject no stream takes is retried
// (the stream may be created later).
func New(js jetstream.JetStream, opts ...Option) *Publisher {
	p := &Publisher{js: js, timeout: 5 * time.Second}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Publish publishes msgs in order, each once the previous is acked, and
// returns how many the stream acked (see relay.Publisher).
func (p *Publisher) Publish(ctx context.Context, msgs []relay.Message) (int, error) {
	for i, m := range msgs {
		nm := &nats.Msg{Subject: m.Destination, Data: m.Payload, Header: make(nats.Header, len(m.Headers)+1)}
		for k, v := range m.Headers {
			nm.Header[k] = []string{v}
		}
		if err := p.publish(ctx, nm, m.ID); err != nil {
			return i, err
		}
	}
	return len(msgs), nil
}

func (p *Publisher) publish(ctx context.Context, nm *nats.Msg, id string) error {
	if err := validSubject(nm.Subject); err != nil {
		return outbox.Permanent(err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	_, err := p.js.PublishMsg(ctx, nm, jetstream.WithMsgID(id))
	if err == nil {
		return nil
	}
	// What no retry can fix: a subject NATS rejects, a message larger
	// than the server or the stream takes.
	var apiErr *jetstream.APIError
	if errors.Is(err, nats.ErrBadSubject) || errors.Is(err, nats.ErrMaxPayload) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum {
		return outbox.Permanent(err)
	}
	return err
}

// validSubject checks a subject to publish to: dot-separated non-empty
// tokens, no whitespace, no wildcard token. The client sends any string,
// and a space would break the protocol line (the server then closes the
// connection), so a route that produced one (a {key} with a space, say)
// must fail that message alone.
func validSubject(s string) error {
	if s == "" {
		return fmt.Errorf("natsjs: empty subject")
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n") {
			return fmt.Errorf("natsjs: invalid subject %q", s)
		}
	}
	return nil
}
