package console

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/modkit-go/db/outbox"
)

// QueueJSON is a queue's status as JSON (outboxctl status --json and
// {prefix}/api/status): durations in milliseconds, times in RFC 3339.
type QueueJSON struct {
	Queue       string           `json:"queue"`
	Backlog     int64            `json:"backlog"`
	Unsequenced int64            `json:"unsequenced"`
	OldestAgeMS int64            `json:"oldest_age_ms"`
	Retrying    int              `json:"retrying"`
	Leased      int              `json:"leased"`
	Blocked     int              `json:"blocked"`
	DeadLetters map[string]int64 `json:"dead_letters"`
	Partitions  []PartitionJSON  `json:"partitions"`
	Now         time.Time        `json:"now"`
}

// PartitionJSON is a partition's status as JSON, within QueueJSON.
type PartitionJSON struct {
	Partition     int        `json:"partition"`
	LastSeq       int64      `json:"last_seq"`
	ProcessedSeq  int64      `json:"processed_seq"`
	Unsequenced   int64      `json:"unsequenced"`
	Backlog       int64      `json:"backlog"`
	OldestAgeMS   int64      `json:"oldest_age_ms"`
	Attempts      int        `json:"attempts"`
	LastError     string     `json:"last_error,omitempty"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	Leased        bool       `json:"leased"`
	LeaseUntil    *time.Time `json:"lease_until,omitempty"`
	Blocked       bool       `json:"blocked"`
	BlockedAt     *time.Time `json:"blocked_at,omitempty"`
}

// StatusJSON converts queues' status to their JSON form.
func StatusJSON(qs []outbox.QueueStatus) []QueueJSON {
	out := make([]QueueJSON, 0, len(qs))
	for _, q := range qs {
		jq := QueueJSON{
			Queue: q.Queue, Backlog: q.Backlog, Unsequenced: q.Unsequenced, OldestAgeMS: q.Age.Milliseconds(),
			Retrying: q.Retrying, Leased: q.Leased, Blocked: q.Blocked, DeadLetters: q.DeadLetters, Now: q.Now,
			Partitions: make([]PartitionJSON, 0, len(q.Partitions)),
		}
		for _, p := range q.Partitions {
			jq.Partitions = append(jq.Partitions, PartitionJSON{
				Partition: p.Partition, LastSeq: p.LastSeq, ProcessedSeq: p.ProcessedSeq, Unsequenced: p.Unsequenced,
				Backlog: p.Backlog, OldestAgeMS: p.Age.Milliseconds(), Attempts: p.Attempts, LastError: p.LastError,
				NextAttemptAt: timeOrNil(p.NextAttemptAt), Leased: p.Leased, LeaseUntil: timeOrNil(p.LeaseUntil),
				Blocked: p.Blocked, BlockedAt: timeOrNil(p.BlockedAt),
			})
		}
		out = append(out, jq)
	}
	return out
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// historyJSON is one queue's chart data ({prefix}/api/history).
type historyJSON struct {
	Queue   string       `json:"queue"`
	Samples []sampleJSON `json:"samples"`
}

type sampleJSON struct {
	At      time.Time `json:"at"`
	Backlog int64     `json:"backlog"`
	Rate    float64   `json:"delivered_per_sec"`
}

// ActionJSON is the answer to an action through the API: what was done and
// to how many dead letters or partitions.
type ActionJSON struct {
	Action    string `json:"action"`
	Count     int    `json:"count"`
	Queue     string `json:"queue,omitempty"`
	Partition *int   `json:"partition,omitempty"`
}

// writeJSON writes v indented, as outboxctl does.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
