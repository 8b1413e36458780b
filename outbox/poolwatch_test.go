package outbox

import (
	"database/sql"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// The pool watch warns once, naming SetMaxIdleConns, when the pool closed
// idle connections at one a second or more since the previous sample; a
// slower rate, the first sample (start-up) and later churn log nothing.
func TestPoolWatchWarnsOnceOnChurn(t *testing.T) {
	h := &logRecorder{}
	var closed int64
	w := &poolWatch{stats: func() sql.DBStats { return sql.DBStats{MaxIdleClosed: closed, MaxOpenConnections: 0} },
		log: slog.New(h), cfg: Config{MaxConcurrency: 4, Sequencers: 2}}
	at := time.Unix(1000, 0)
	step := func(newlyClosed int64) {
		closed += newlyClosed
		at = at.Add(10 * time.Second)
		w.sample(at)
	}
	closed = 500 // before the first sample: not counted
	w.sample(at)
	step(9) // 0.9/s
	if n := len(h.records); n != 0 {
		t.Fatalf("%d records for the first sample and 0.9 closes a second, want none", n)
	}
	step(10) // 1/s
	step(100)
	rs := h.records
	if len(rs) != 1 || rs[0].Level != slog.LevelWarn || !strings.Contains(rs[0].Message, "SetMaxIdleConns") {
		t.Fatalf("records %v, want one warning naming SetMaxIdleConns", rs)
	}
	if a := attrsOf(rs[0]); a["closed"] != int64(10) || a["outbox_needs"] != int64(8) {
		t.Errorf("warning attributes %v, want closed=10 and outbox_needs=8", a)
	}
}
