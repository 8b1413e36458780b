// Package relay publishes an outbox queue to a message broker: the last hop
// from the application's transaction to NATS JetStream, RabbitMQ, Redis
// Streams, Kafka or an HTTP endpoint, without a hand-written handler.
//
//	pub, err := natsjs.New(js)                  // or rabbitmq, redisstream, kafka, webhook
//	err = ob.Handle("orders", relay.Handler(pub, relay.WithTemplate("orders.{partition}")))
//
// # Guarantees
//
// A relay handler receives one partition's batch in seq order and hands it
// to a Publisher, which reports how many leading messages the broker
// durably accepted (a JetStream ack, a RabbitMQ publisher confirm of a
// routed message, a Redis reply, a Kafka produce response, an HTTP 2xx).
// The handler acknowledges exactly that prefix (outbox.Result's
// WithProcessed), so:
//
//   - Order: each partition reaches the broker in seq order, with no gap,
//     including after failures. A publisher never lets a message be stored
//     ahead of an earlier one of its batch that failed: the built-in ones
//     publish the next message only once the previous is confirmed, or send
//     the batch in one request the broker applies in order and stops at the
//     first failure (Redis).
//   - No loss: a message counts as delivered only once the broker confirmed
//     it. A crash, a cut connection or a refusal before that leaves it in
//     the outbox, and it is published again.
//   - At-least-once: a message confirmed by the broker whose acknowledgement
//     then failed in the database (or whose confirm was lost with the
//     connection) is published again. Each message carries an id that is
//     stable across redeliveries (Message.ID); the adapters send it as the
//     broker's deduplication or message id (JetStream drops the copy within
//     the stream's duplicate window), and consumers can drop copies by id,
//     or by the Outbox-Seq header per (Outbox-Queue, Outbox-Partition).
//
// # Failures
//
// A Publisher returns an error when it stops before the end of the batch.
// A permanent error (outbox.Permanent: an unroutable message, a
// message the broker will never take) dead-letters that one message, and
// the relay goes on with the next. Any other error is transient: the
// message and those after it are retried with the outbox's backoff. A
// message whose route cannot be computed (a template naming a key the
// message lacks) is permanent too.
//
// # Throughput
//
// Each partition is published one batch at a time; partitions are
// published concurrently, one per outbox worker (outbox.Config's
// MaxConcurrency). A relay spends most of its time waiting for the
// broker's confirms, so it gains from more workers than a CPU-bound
// handler would: docs/relay.md gives figures.
//
// # Headers
//
// A message's headers travel as broker headers, the trace context the
// outbox stored at Enqueue (W3C traceparent and tracestate by default)
// included, so the broker's consumer continues the producer's trace. The
// relay adds Outbox-Queue, Outbox-Partition, Outbox-Seq,
// Outbox-Payload-Type and Outbox-Id (and Outbox-Key when the message has a
// key); these win over application headers of the same name.
package relay
