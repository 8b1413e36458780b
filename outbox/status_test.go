package outbox

import (
	"testing"
	"time"

	"github.com/modkit-go/db/dialect"
)

// TestPartitionStatus: a next attempt time is reported only for a pending
// retry (attempts > 0 and still ahead), a lease only while live, and the
// backlog counts unsequenced messages.
func TestPartitionStatus(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	later, earlier := now.Add(time.Minute), now.Add(-time.Minute)
	for _, c := range []struct {
		name    string
		in      dialect.PartitionStatus
		retry   bool
		leased  bool
		backlog int64
		age     time.Duration
	}{
		{"healthy, next ahead", dialect.PartitionStatus{NextAttemptAt: later}, false, false, 0, 0},
		{"retry pending", dialect.PartitionStatus{Attempts: 1, NextAttemptAt: later}, true, false, 0, 0},
		{"retry due", dialect.PartitionStatus{Attempts: 3, NextAttemptAt: earlier}, false, false, 0, 0},
		{"leased", dialect.PartitionStatus{LeaseToken: "t", LeaseUntil: later}, false, true, 0, 0},
		{"lease expired", dialect.PartitionStatus{LeaseToken: "t", LeaseUntil: earlier}, false, false, 0, 0},
		{"backlog", dialect.PartitionStatus{LastSeq: 7, ProcessedSeq: 4, Unsequenced: 2, OldestCreatedAt: earlier}, false, false, 5, time.Minute},
	} {
		s := partitionStatus(c.in, now)
		if !s.NextAttemptAt.IsZero() != c.retry || s.Leased != c.leased || (s.LeaseToken != "") != c.leased ||
			s.Backlog != c.backlog || s.Age != c.age {
			t.Errorf("%s: %+v", c.name, s)
		}
	}
}
