package outbox

import (
	"fmt"
	"slices"
	"time"

	"github.com/modkit-go/db/dialect"
)

// PoisonPolicy says what the library does with a partition whose head
// message has failed MaxAttempts times. A handler's own Reject always
// dead-letters, whatever the policy.
type PoisonPolicy int

const (
	// PoisonSkip (the default) dead-letters the head and goes on with the
	// partition's next message.
	PoisonSkip PoisonPolicy = iota
	// PoisonBlock dead-letters nothing: the partition stops at its head,
	// keeping its attempts and last error, and PartitionStatus reports it
	// as Blocked. Other partitions go on. It resumes when an operator calls
	// RetryPartition (the head gets MaxAttempts fresh tries) or
	// SkipPartition (the head goes to the dead-letter table). Use it when
	// a message must not be overtaken by later ones of its partition.
	// It needs MaxAttempts > 0.
	PoisonBlock
)

// String returns "skip" or "block".
func (p PoisonPolicy) String() string {
	switch p {
	case PoisonSkip:
		return "skip"
	case PoisonBlock:
		return "block"
	}
	return fmt.Sprintf("PoisonPolicy(%d)", int(p))
}

// QueueOption sets one of a queue's own options; pass them to Handle. A
// queue without them uses the Config's values. Each option's value has the
// range of the Config field of the same name; Handle returns an error
// wrapping ErrInvalidConfig, naming the field and the queue, for one out of
// range.
type QueueOption func(*queueConfig)

// WithMaxAttempts sets the queue's MaxAttempts (see Config.MaxAttempts):
// 0–1000000, where 0 leaves giving up to the handler.
func WithMaxAttempts(n int) QueueOption {
	return func(c *queueConfig) { c.maxAttempts = n }
}

// WithRetryBackoff sets the queue's RetryBase and RetryMax (see
// Config.RetryBase). A zero value keeps the Config's.
func WithRetryBackoff(base, maxDelay time.Duration) QueueOption {
	return func(c *queueConfig) {
		if base != 0 {
			c.retryBase = base
		}
		if maxDelay != 0 {
			c.retryMax = maxDelay
		}
	}
}

// WithLeaseDuration sets the queue's LeaseDuration (see
// Config.LeaseDuration). Zero keeps the Config's. Partitions of queues with
// different lease durations are claimed by separate statements.
func WithLeaseDuration(d time.Duration) QueueOption {
	return func(c *queueConfig) {
		if d != 0 {
			c.lease = d
		}
	}
}

// WithBatchSize sets the queue's BatchSize (see Config.BatchSize). Zero
// keeps the Config's.
func WithBatchSize(n int) QueueOption {
	return func(c *queueConfig) {
		if n != 0 {
			c.batchSize = n
		}
	}
}

// WithPoisonPolicy sets what happens once the queue's MaxAttempts is
// reached (default PoisonSkip). PoisonBlock needs MaxAttempts > 0.
func WithPoisonPolicy(p PoisonPolicy) QueueOption {
	return func(c *queueConfig) { c.poison = p }
}

// queueConfig is a handled queue's effective options.
type queueConfig struct {
	maxAttempts         int
	retryBase, retryMax time.Duration
	lease               time.Duration
	batchSize           int
	poison              PoisonPolicy
}

// queueDefaults are the options of a queue that sets none.
func (c *Config) queueDefaults() queueConfig {
	return queueConfig{
		maxAttempts: c.MaxAttempts, retryBase: c.RetryBase, retryMax: c.RetryMax,
		lease: c.LeaseDuration, batchSize: c.BatchSize,
	}
}

// queueFields are the Config fields a queue can set, checked with their
// Config ranges.
var queueFields = []string{"MaxAttempts", "RetryBase", "RetryMax", "LeaseDuration", "BatchSize"}

// newQueueConfig applies opts over cfg's values (cfg has its defaults) and
// validates the result.
func newQueueConfig(cfg Config, queue string, opts []QueueOption) (queueConfig, error) {
	qc := cfg.queueDefaults()
	for _, opt := range opts {
		if opt == nil {
			return qc, fmt.Errorf("%w: queue %q: nil QueueOption", ErrInvalidConfig, queue)
		}
		opt(&qc)
	}
	c := cfg
	c.MaxAttempts, c.RetryBase, c.RetryMax = qc.maxAttempts, qc.retryBase, qc.retryMax
	c.LeaseDuration, c.BatchSize = qc.lease, qc.batchSize
	for _, l := range c.limits() {
		if !slices.Contains(queueFields, l.name) {
			continue
		}
		if p := l.problem(); p != "" {
			return qc, fmt.Errorf("%w: queue %q: %s", ErrInvalidConfig, queue, p)
		}
	}
	switch {
	case qc.retryMax < qc.retryBase:
		return qc, fmt.Errorf("%w: queue %q: RetryMax (%v) is below RetryBase (%v)", ErrInvalidConfig, queue, qc.retryMax, qc.retryBase)
	case qc.poison != PoisonSkip && qc.poison != PoisonBlock:
		return qc, fmt.Errorf("%w: queue %q: PoisonPolicy is %v, want PoisonSkip or PoisonBlock", ErrInvalidConfig, queue, qc.poison)
	case qc.poison == PoisonBlock && qc.maxAttempts == 0:
		return qc, fmt.Errorf("%w: queue %q: PoisonPolicy block needs MaxAttempts > 0", ErrInvalidConfig, queue)
	}
	return qc, nil
}

// queueConfigOf returns a handled queue's options. The map is written by
// Handle before Start and only read afterwards.
func (o *Outbox) queueConfigOf(queue string) queueConfig {
	if qc, ok := o.queueConfigs[queue]; ok {
		return qc
	}
	return o.cfg.queueDefaults()
}

// exhausted reports whether a head that failed attempts times is past
// MaxAttempts already when claimed (a crashed worker's takeover, an
// unrecorded result): the handler is not called again.
func (qc queueConfig) exhausted(attempts int) bool {
	return qc.maxAttempts > 0 && attempts >= qc.maxAttempts
}

// exhaustedOutcome is what an exhausted head gets: dead-lettered
// (PoisonSkip) or blocked with its attempts as they are (PoisonBlock).
func (qc queueConfig) exhaustedOutcome() outcome {
	if qc.poison == PoisonBlock {
		return outcome{kind: kindRetry, block: true, reason: fmt.Sprintf("max attempts (%d) reached", qc.maxAttempts)}
	}
	return maxAttemptsOutcome(qc.maxAttempts)
}

// logBlocked reports a partition that PoisonBlock stopped at its head.
func (o *Outbox) logBlocked(c dialect.ClaimedPartition, cc cursorChange) {
	o.log.Warn("outbox: partition blocked at its head; RetryPartition or SkipPartition resumes it",
		"queue", c.Queue, "partition", c.Partition, "seq", cc.cursor+1,
		"attempts", cc.attempts, "reason", cc.lastError)
}
