package outbox

import (
	"fmt"
	"log/slog"
	"time"
)

// Config tunes an Outbox. The zero value is valid: every zero field takes
// the default named in its comment. Negative values are an error wrapping
// ErrInvalidConfig.
type Config struct {
	// Logger receives the outbox's logs. Default: discard.
	Logger *slog.Logger
	// MaxPayloadBytes limits a message's payload. Default 64 KiB.
	MaxPayloadBytes int
	// PollInterval is how often idle workers look for work when no wake-up
	// came (the safety net behind InTx/Notify). Default 200ms.
	PollInterval time.Duration
	// LeaseDuration is how long a decoupled processor owns a partition per
	// batch. A handler's context is cancelled at 80% of it. Default 30s.
	LeaseDuration time.Duration
	// BatchSize is the most messages handed to one handler call. Default 100.
	BatchSize int
	// MaxConcurrency bounds concurrent handler calls (one partition each).
	// Default 4.
	MaxConcurrency int
	// Sequencers is the number of sequencer goroutines; they split the
	// pending partitions between them. Default 2.
	Sequencers int
	// SequencerBatch is the most rows sequenced per transaction. Default 1000.
	SequencerBatch int
	// RetryBase and RetryMax shape the exponential backoff after a Retry:
	// base·2^(attempts-1), capped at RetryMax, with equal jitter (the delay
	// is drawn from [d/2, d]). Defaults 1s and 60s.
	RetryBase time.Duration
	RetryMax  time.Duration
	// MaxAttempts, when > 0, dead-letters a partition's head message once
	// it has failed that many times. 0 leaves giving up to the handler.
	MaxAttempts int
	// VacuumInterval is how often delivered rows are deleted. Default 1s.
	VacuumInterval time.Duration
	// VacuumBatch is the most rows one vacuum statement deletes. Default 1000.
	VacuumBatch int
	// ShutdownTimeout bounds each bookkeeping write (acks, lease releases)
	// made after Stop's context has ended. Before that, each of the
	// library's statements is bounded by LeaseDuration. Default 5s.
	ShutdownTimeout time.Duration
	// HandlerTimeout, when > 0, bounds each handler call: the handler's
	// context ends after it (in decoupled mode, or at 80% of the lease if
	// that comes first). In transactional mode a call that outlives it is
	// rolled back at once, which frees its connection and the partition's
	// row lock, and counts as a failed attempt with backoff; the call
	// still occupies its worker until it returns. 0 (the default) means no
	// timeout; otherwise it must be at least 1ms.
	HandlerTimeout time.Duration
}

func (c Config) withDefaults() (Config, error) {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxPayloadBytes", int64(c.MaxPayloadBytes)},
		{"PollInterval", int64(c.PollInterval)},
		{"LeaseDuration", int64(c.LeaseDuration)},
		{"BatchSize", int64(c.BatchSize)},
		{"MaxConcurrency", int64(c.MaxConcurrency)},
		{"Sequencers", int64(c.Sequencers)},
		{"SequencerBatch", int64(c.SequencerBatch)},
		{"RetryBase", int64(c.RetryBase)},
		{"RetryMax", int64(c.RetryMax)},
		{"MaxAttempts", int64(c.MaxAttempts)},
		{"VacuumInterval", int64(c.VacuumInterval)},
		{"VacuumBatch", int64(c.VacuumBatch)},
		{"ShutdownTimeout", int64(c.ShutdownTimeout)},
	} {
		if f.v < 0 {
			return c, fmt.Errorf("%w: %s is negative (%d)", ErrInvalidConfig, f.name, f.v)
		}
	}
	def := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	defInt := func(p *int, d int) {
		if *p == 0 {
			*p = d
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	defInt(&c.MaxPayloadBytes, DefaultMaxPayloadBytes)
	def(&c.PollInterval, 200*time.Millisecond)
	def(&c.LeaseDuration, 30*time.Second)
	defInt(&c.BatchSize, 100)
	defInt(&c.MaxConcurrency, 4)
	defInt(&c.Sequencers, 2)
	defInt(&c.SequencerBatch, 1000)
	def(&c.RetryBase, time.Second)
	def(&c.RetryMax, 60*time.Second)
	def(&c.VacuumInterval, time.Second)
	defInt(&c.VacuumBatch, 1000)
	def(&c.ShutdownTimeout, 5*time.Second)
	if c.RetryMax < c.RetryBase {
		return c, fmt.Errorf("%w: RetryMax (%v) is below RetryBase (%v)", ErrInvalidConfig, c.RetryMax, c.RetryBase)
	}
	if c.HandlerTimeout != 0 && c.HandlerTimeout < time.Millisecond {
		return c, fmt.Errorf("%w: HandlerTimeout %v is neither 0 (none) nor at least 1ms", ErrInvalidConfig, c.HandlerTimeout)
	}
	if c.BatchSize > 10000 {
		return c, fmt.Errorf("%w: BatchSize %d is above 10000", ErrInvalidConfig, c.BatchSize)
	}
	return c, nil
}
