package operator

import (
	"testing"
	"time"

	"github.com/modkit-go/db/outbox"
)

func TestWhen(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Time
		bad  bool
	}{
		{"", time.Time{}, false},
		{"24h", now.Add(-24 * time.Hour), false},
		{"1m30s", now.Add(-90 * time.Second), false},
		{"2026-01-01T00:00:00Z", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{"-1h", time.Time{}, true},
		{"yesterday", time.Time{}, true},
	} {
		got, err := When(c.in, now)
		if (err != nil) != c.bad || !got.Equal(c.want) {
			t.Errorf("When(%q) = %v, %v; want %v (error %v)", c.in, got, err, c.want, c.bad)
		}
	}
}

func TestState(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	since := func(d time.Duration) string { return d.String() }
	for _, c := range []struct {
		p    outbox.PartitionStatus
		want string
	}{
		{outbox.PartitionStatus{}, "idle"},
		{outbox.PartitionStatus{Backlog: 3}, "pending"},
		{outbox.PartitionStatus{Backlog: 3, Attempts: 1, NextAttemptAt: now.Add(time.Second)}, "retrying"},
		{outbox.PartitionStatus{Backlog: 3, Leased: true, LeaseUntil: now.Add(2 * time.Second)}, "leased 2s left"},
		{outbox.PartitionStatus{Backlog: 3, Leased: true, Blocked: true, BlockedAt: now.Add(-time.Minute)}, "blocked 1m0s"},
	} {
		if got := State(c.p, now, since); got != c.want {
			t.Errorf("State(%+v) = %q, want %q", c.p, got, c.want)
		}
		if Idle(c.p) != (c.want == "idle") {
			t.Errorf("Idle(%+v) = %v", c.p, Idle(c.p))
		}
	}
}
