// Package operator holds what outboxctl and the console both do for an
// operator, so that the shell and the web page describe a partition, read
// a time and act on a filter the same way.
package operator

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/modkit-go/db/outbox"
)

// Idle reports a partition with nothing to show: no backlog, no failure,
// no lease, no block.
func Idle(p outbox.PartitionStatus) bool {
	return p.Backlog == 0 && p.Attempts == 0 && !p.Leased && !p.Blocked
}

// State is a partition's condition in a word or two, with durations
// formatted by since.
func State(p outbox.PartitionStatus, now time.Time, since func(time.Duration) string) string {
	switch {
	case p.Blocked:
		return "blocked " + since(now.Sub(p.BlockedAt))
	case p.Leased:
		return "leased " + since(p.LeaseUntil.Sub(now)) + " left"
	case !p.NextAttemptAt.IsZero():
		return "retrying"
	case p.Backlog > 0:
		return "pending"
	}
	return "idle"
}

// When parses an RFC 3339 time or a duration before now (such as 24h);
// "" is the zero time.
func When(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration such as 24h", s)
	}
	return now.Add(-d), nil
}

// Batch is how many dead letters one requeue or discard transaction takes
// when an action selects them by filter.
const Batch = 500

// ActOnMatching applies act (RequeueDeadLetters or DiscardDeadLetters) to
// every dead letter f selects (f.Limit and f.After are ignored), oldest
// first, in transactions of Batch: ids grow with failure time, so
// requeued messages keep their partition's order across batches as they
// do within one. On an error it returns what the batches before it
// changed.
func ActOnMatching(ctx context.Context, ob *outbox.Outbox, f outbox.DeadLetterFilter,
	act func(context.Context, []int64) (int, error)) (int, error) {
	f.Limit, f.After = outbox.MaxDeadLetterLimit, ""
	var ids []int64
	for {
		page, err := ob.DeadLetterPage(ctx, f)
		if err != nil {
			return 0, err
		}
		for _, d := range page.DeadLetters {
			ids = append(ids, d.ID)
		}
		if page.Next == "" {
			break
		}
		f.After = page.Next
	}
	slices.Sort(ids)
	total := 0
	for batch := range slices.Chunk(ids, Batch) {
		n, err := act(ctx, batch)
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}
