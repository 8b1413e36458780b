// Package kafka publishes outbox messages to Kafka with franz-go.
//
// Each message becomes a record of the topic its route chose, with the
// message's key as the record key (or, for a message without a key,
// "queue/partition", so that one outbox partition stays in one Kafka
// partition and keeps its order), the payload as the value, and the
// relay's headers as record headers, Outbox-Id included. A message is
// produced once the previous one is acknowledged by the broker. Give the
// client the idempotent producer (franz-go's default) with acks from all
// in-sync replicas (also the default): a produce request retried by the
// client after a lost response is then stored once.
package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/modkit-go/db/outbox"
	"github.com/modkit-go/db/relay"
)

// Publisher produces to Kafka through a franz-go client. It is safe for
// concurrent use.
type Publisher struct {
	cl *kgo.Client
}

var _ relay.Publisher = (*Publisher)(nil)

// New returns a Publisher over cl, a producing client (kgo.NewClient with
// kgo.SeedBrokers). The client's own options decide retries and timeouts.
func New(cl *kgo.Client) *Publisher { return &Publisher{cl: cl} }

// Publish produces msgs in order, each once the previous is acknowledged,
// and returns how many were (see relay.Publisher).
func (p *Publisher) Publish(ctx context.Context, msgs []relay.Message) (int, error) {
	for i, m := range msgs {
		key := m.Key
		if key == "" {
			key = fmt.Sprintf("%s/%d", m.Delivery.Queue, m.Delivery.Partition)
		}
		r := &kgo.Record{Topic: m.Destination, Key: []byte(key), Value: m.Payload, Headers: make([]kgo.RecordHeader, 0, len(m.Headers))}
		for k, v := range m.Headers {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
		if err := p.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) ||
				errors.Is(err, kerr.InvalidRecord) {
				return i, outbox.Permanent(fmt.Errorf("kafka: %w", err))
			}
			return i, fmt.Errorf("kafka: %w", err)
		}
	}
	return len(msgs), nil
}
