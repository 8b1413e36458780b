package outbox

import "time"

// fastPoll is how soon an idle worker polls again right after a pass that
// found work. It buys latency where no wake-up crosses processes (MariaDB,
// SQLite, PostgreSQL without a listener): a producer in another process is
// usually seen within a few polls while traffic flows.
const fastPoll = 5 * time.Millisecond

// poller decides how long an idle worker waits before polling again: fast
// (min) right after a pass found work, then twice as long after each
// pass that found none, up to max (Config.PollInterval). So a worker that
// idles costs one poll per max, and one that has just worked polls every
// few milliseconds until it has been idle for about 2·max.
type poller struct {
	min, max time.Duration
	cur      time.Duration
	rnd      func() float64
}

// newPoller returns a poller between min and max that starts idle (at max).
// min >= max gives the fixed interval max.
func newPoller(min, max time.Duration) *poller {
	return &poller{min: min, max: max, cur: max, rnd: jitter}
}

// found records that a pass found work: the next waits start at min.
func (p *poller) found() { p.cur = min(p.min, p.max) }

// idle returns the wait after a pass that found nothing, drawn from
// [d/2, d] so that loops do not poll in step, and doubles d for the next.
func (p *poller) idle() time.Duration {
	d := p.cur
	p.cur = min(2*p.cur, p.max)
	half := d / 2
	return half + time.Duration(p.rnd()*float64(d-half))
}
