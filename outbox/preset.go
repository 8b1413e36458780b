package outbox

import "time"

// Presets name an intent instead of nine fields. Each returns a Config
// whose fields are all set; change any of them afterwards to override
// it, and add the Logger and providers as usual:
//
//	cfg := outbox.LowLatencyConfig()
//	cfg.Logger = logger
//	cfg.MaxAttempts = 10
//
// They leave MaxConcurrency at its default: how many handler calls may run
// at once is the application's capacity decision, not a latency one.
// docs/performance.md gives each preset's measured latency and throughput.

// DefaultConfig returns the defaults the zero Config stands for, with every
// field set: PollInterval 200ms, LeaseDuration 30s, BatchSize 100,
// MaxConcurrency 4, Sequencers 2, SequencerBatch 1000, RetryBase 1s,
// RetryMax 60s, VacuumInterval 1s, VacuumBatch 1000, ShutdownTimeout 5s,
// CoalesceDelay 8ms, MaxPayloadBytes 64 KiB. They balance latency at low
// rates (nothing waits) with throughput under sustained load (coalescing).
func DefaultConfig() Config {
	return Config{
		MaxPayloadBytes: DefaultMaxPayloadBytes,
		PollInterval:    200 * time.Millisecond,
		LeaseDuration:   30 * time.Second,
		BatchSize:       100,
		MaxConcurrency:  4,
		Sequencers:      2,
		SequencerBatch:  1000,
		RetryBase:       time.Second,
		RetryMax:        60 * time.Second,
		VacuumInterval:  time.Second,
		VacuumBatch:     1000,
		ShutdownTimeout: 5 * time.Second,
		CoalesceDelay:   coalesceUnderLoad,
	}
}

// LowLatencyConfig is DefaultConfig for the shortest commit-to-handler
// time under load: no coalescing (every pass that found work is followed
// at once by the next) and a 50ms poll, so a producer in another process
// without push wake-ups is seen sooner. It costs throughput under
// sustained load (more, smaller statements and commits) and about four
// times the idle polling.
func LowLatencyConfig() Config {
	c := DefaultConfig()
	c.NoCoalesce = true
	c.PollInterval = 50 * time.Millisecond
	return c
}

// HighThroughputConfig is DefaultConfig for the most messages per second
// under sustained load: a 20ms coalescing wait and larger batches for
// handlers (500), the sequencer (5000) and the vacuum (5000), so that each
// statement and commit serves more messages. A low rate is still
// delivered at once; under load each message waits longer, and a handler
// call carries more messages (size your handler's work and
// LeaseDuration for it).
func HighThroughputConfig() Config {
	c := DefaultConfig()
	c.CoalesceDelay = 20 * time.Millisecond
	c.BatchSize = 500
	c.SequencerBatch = 5000
	c.VacuumBatch = 5000
	return c
}

// RelaxedConfig is DefaultConfig for a quiet outbox that should cost the
// database little: one sequencer, a 1s poll and a 5s vacuum interval, so
// an idle Outbox runs a few statements a second instead of tens. Messages
// enqueued through InTx or Notify (or woken by LISTEN/NOTIFY) are still
// delivered at once; others wait up to a poll.
func RelaxedConfig() Config {
	c := DefaultConfig()
	c.Sequencers = 1
	c.PollInterval = time.Second
	c.VacuumInterval = 5 * time.Second
	c.CoalesceDelay = 20 * time.Millisecond
	return c
}
