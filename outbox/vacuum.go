package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/modkit-go/db/dialect"
)

func (o *Outbox) vacuumPass(ctx context.Context) (bool, error) {
	total := 0
	defer func() {
		if total > 0 {
			o.log.Debug("outbox: vacuum", "deleted", total)
		}
	}()
	for {
		res, err := o.d.Vacuum(ctx, o.q, &dialect.VacuumParams{Limit: o.cfg.VacuumBatch})
		if err != nil {
			// Not busy: the loop backs off, whatever this pass deleted.
			return false, fmt.Errorf("vacuum: %w", err)
		}
		total += res.Deleted
		if res.Deleted < o.cfg.VacuumBatch || ctx.Err() != nil {
			return total > 0, nil
		}
	}
}

// vacuumTrailWait is the vacuum's wait after a pass that deleted rows:
// a tenth of VacuumInterval, and at least 10 ms (the interval's own
// minimum), so that while messages are being delivered they are deleted
// a tenth of a second after their ack by default, not a second. On SQLite
// a second's rows (10k+ under full load) have left the page cache by then,
// and their delete reads them back while holding the only connection (go
// run ./cmd/outbox-bench --dialect sqlite --scenarios concurrent
// --messages 50000: 13.3k msg/s against 11.8k when the vacuum waits a whole
// interval, worst commit -> handler 32-53 ms against 57-74 ms). An idle
// outbox still polls every VacuumInterval.
func vacuumTrailWait(interval time.Duration) time.Duration {
	return min(interval, max(interval/10, 10*time.Millisecond))
}

// VacuumAll deletes every delivered message and returns how many it
// deleted. The background vacuum does the same in bounded steps.
func (o *Outbox) VacuumAll(ctx context.Context) (int, error) {
	total := 0
	for {
		res, err := o.d.Vacuum(ctx, o.q, &dialect.VacuumParams{Limit: o.cfg.VacuumBatch})
		if err != nil {
			return total, fmt.Errorf("outbox: vacuum: %w", err)
		}
		total += res.Deleted
		if res.Deleted < o.cfg.VacuumBatch {
			return total, nil
		}
	}
}
