package outbox

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestQueueOptionRanges: each per-queue value is checked against its
// Config field's range, just below, at and just above both ends; an error
// wraps ErrInvalidConfig and names the field and the queue.
func TestQueueOptionRanges(t *testing.T) {
	cfg, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	ms := time.Millisecond
	for _, c := range []struct {
		field string
		opt   QueueOption
		ok    bool
	}{
		{"MaxAttempts", WithMaxAttempts(-1), false},
		{"MaxAttempts", WithMaxAttempts(0), true},
		{"MaxAttempts", WithMaxAttempts(1_000_000), true},
		{"MaxAttempts", WithMaxAttempts(1_000_001), false},
		{"BatchSize", WithBatchSize(-1), false},
		{"BatchSize", WithBatchSize(1), true},
		{"BatchSize", WithBatchSize(10000), true},
		{"BatchSize", WithBatchSize(10001), false},
		{"LeaseDuration", WithLeaseDuration(time.Second - 1), false},
		{"LeaseDuration", WithLeaseDuration(time.Second), true},
		{"LeaseDuration", WithLeaseDuration(24 * time.Hour), true},
		{"LeaseDuration", WithLeaseDuration(24*time.Hour + 1), false},
		{"RetryBase", WithRetryBackoff(ms-1, 0), false},
		{"RetryBase", WithRetryBackoff(ms, 0), true},
		{"RetryBase", WithRetryBackoff(time.Hour, time.Hour), true},
		{"RetryBase", WithRetryBackoff(time.Hour+1, 24*time.Hour), false},
		{"RetryMax", WithRetryBackoff(ms, 10*ms-1), false},
		{"RetryMax", WithRetryBackoff(ms, 10*ms), true},
		{"RetryMax", WithRetryBackoff(0, 24*time.Hour), true},
		{"RetryMax", WithRetryBackoff(0, 24*time.Hour+1), false},
		{"RetryMax", WithRetryBackoff(2*time.Minute, time.Minute), false}, // below RetryBase
		{"PoisonPolicy", WithPoisonPolicy(PoisonBlock), false},            // Config.MaxAttempts is 0
		{"PoisonPolicy", WithPoisonPolicy(PoisonPolicy(2)), false},
		{"PoisonPolicy", WithPoisonPolicy(PoisonPolicy(-1)), false},
		{"PoisonPolicy", WithPoisonPolicy(PoisonSkip), true},
		{"QueueOption", nil, false},
	} {
		_, err := newQueueConfig(cfg, "orders", []QueueOption{c.opt})
		switch {
		case c.ok && err != nil:
			t.Errorf("%s: %v, want it accepted", c.field, err)
		case !c.ok && (!errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.field) ||
			!strings.Contains(err.Error(), `"orders"`)):
			t.Errorf("%s: %v, want ErrInvalidConfig naming %s and queue orders", c.field, err, c.field)
		}
	}
}

// TestQueueOptionsInherit: zero values and absent options take the
// Config's values; set values override them for that queue only.
func TestQueueOptionsInherit(t *testing.T) {
	cfg, err := Config{MaxAttempts: 5, LeaseDuration: 10 * time.Second, BatchSize: 7,
		RetryBase: 2 * time.Second, RetryMax: time.Minute}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	def := cfg.queueDefaults()
	got, err := newQueueConfig(cfg, "q", []QueueOption{WithLeaseDuration(0), WithBatchSize(0), WithRetryBackoff(0, 0)})
	if err != nil || got != def {
		t.Fatalf("zero options: %+v, %v; want the Config's %+v", got, err, def)
	}
	got, err = newQueueConfig(cfg, "q", []QueueOption{WithMaxAttempts(2), WithRetryBackoff(time.Second, 0),
		WithLeaseDuration(time.Minute), WithBatchSize(3), WithPoisonPolicy(PoisonBlock)})
	want := queueConfig{maxAttempts: 2, retryBase: time.Second, retryMax: time.Minute, lease: time.Minute,
		batchSize: 3, poison: PoisonBlock}
	if err != nil || got != want {
		t.Fatalf("options: %+v, %v; want %+v", got, err, want)
	}
	// MaxAttempts 0 turns giving up off for the queue, whatever the Config.
	if got, err := newQueueConfig(cfg, "q", []QueueOption{WithMaxAttempts(0)}); err != nil || got.maxAttempts != 0 {
		t.Fatalf("WithMaxAttempts(0): %+v, %v", got, err)
	}
}

// TestClaimGroups: queues are claimed in one group per lease duration;
// without per-queue leases that is a single group for all of them.
func TestClaimGroups(t *testing.T) {
	cfg, err := Config{MaxConcurrency: 2}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	o := &Outbox{cfg: cfg, queues: map[string]int{"a": 4, "b": 4, "c": 1}, queueConfigs: map[string]queueConfig{}}
	if gs := o.claimGroups([]string{"a", "b", "c"}, true); len(gs) != 1 || len(gs[0].queues) != 3 ||
		gs[0].lease != cfg.LeaseDuration || gs[0].limit != 5 {
		t.Fatalf("default options: %d groups (%+v), want one of a, b, c with the Config's lease, claiming 5", len(gs), gs[0])
	}
	qc := cfg.queueDefaults()
	qc.lease = 5 * time.Second
	o.queueConfigs["b"] = qc
	gs := o.claimGroups([]string{"a", "b", "c"}, true)
	if len(gs) != 2 || gs[0].lease != 5*time.Second || len(gs[0].queues) != 1 || gs[0].queues[0] != "b" ||
		len(gs[1].queues) != 2 || gs[0].limit != 2 || gs[1].limit != 3 {
		t.Fatalf("groups %+v %+v, want [b] with 5s claiming 2, then [a c] claiming 3", gs[0], gs[1])
	}
	if gs := o.claimGroups([]string{"a", "b"}, false); gs[0].limit != 1 || gs[1].limit != 1 {
		t.Fatal("a transactional pass claims one partition")
	}
}

func TestPoisonPolicyString(t *testing.T) {
	if PoisonSkip.String() != "skip" || PoisonBlock.String() != "block" || PoisonPolicy(9).String() != "PoisonPolicy(9)" {
		t.Fatal("PoisonPolicy.String")
	}
}
