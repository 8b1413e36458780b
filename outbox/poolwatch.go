package outbox

import (
	"context"
	"database/sql"
	"log/slog"
	"time"
)

// poolWatchEvery is how often a started Outbox reads its pool's statistics.
const poolWatchEvery = 10 * time.Second

// poolChurnPerSecond is the rate of idle connections closed by the pool
// (sql.DBStats.MaxIdleClosed) from which the Outbox warns. database/sql
// keeps 2 idle connections by default; a worker's sequencers, claims,
// reads and acks use more at once, so each pass opens connections and the
// pool closes them again. A cross-process worker at 20 msg/s on PostgreSQL
// closed 6 to 18 a second that way (each new connection a backend process,
// and its statements prepared anew), and its commit → handler p99 was 4 to
// 18 times that of a sized pool, which closed none (alternating runs of
// outbox-bench --dialect postgres --scenarios cross --e2e-duration 10s,
// with and without --default-pool; docs/performance.md). So one a second
// is already churn, not start-up.
const poolChurnPerSecond = 1

// poolWatch warns once, through the user's logger, when the pool closes
// idle connections at a high rate: the fix is the application's
// (SetMaxIdleConns), the cost is the outbox's latency.
type poolWatch struct {
	stats  func() sql.DBStats
	log    *slog.Logger
	cfg    Config
	last   int64     // MaxIdleClosed at the previous sample
	at     time.Time // time of the previous sample; zero before the first
	warned bool
}

// pass samples the pool; it never reports work or fails (see goLoop).
func (w *poolWatch) pass(context.Context) (bool, error) {
	w.sample(time.Now())
	return false, nil
}

func (w *poolWatch) sample(now time.Time) {
	st := w.stats()
	closed, since := st.MaxIdleClosed-w.last, now.Sub(w.at)
	first := w.at.IsZero()
	w.last, w.at = st.MaxIdleClosed, now
	if first || w.warned || since <= 0 {
		return
	}
	if float64(closed)/since.Seconds() < poolChurnPerSecond {
		return
	}
	w.warned = true
	need := w.cfg.MaxConcurrency + w.cfg.Sequencers + 2
	w.log.Warn("outbox: the connection pool keeps closing idle connections and opening new ones, which slows delivery; "+
		"call db.SetMaxIdleConns with the same value as db.SetMaxOpenConns, at least MaxConcurrency+Sequencers+2 beyond the application's own use",
		"closed", closed, "over", since.Round(time.Second), "max_open", st.MaxOpenConnections, "outbox_needs", need)
}
