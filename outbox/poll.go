package outbox

import "time"

// fastPoll is how soon an idle worker polls again right after a pass that
// found work. It buys latency where no wake-up crosses processes (MariaDB,
// SQLite, PostgreSQL without a listener): a producer in another process is
// usually seen within a few polls while traffic flows.
const fastPoll = 5 * time.Millisecond

// coalesceUnderLoad is Config.CoalesceDelay's default: how long the
// sequencer and the decoupled workers wait before their next pass when
// their last two passes both found work: work
// arrives faster than passes run, so letting it gather makes every
// statement and commit of the next pass serve more messages. At a low rate
// a pass that finds work is followed by one that finds none, so nothing
// waits. 8 ms is where throughput stops rising while p99 latency keeps
// growing: go run ./cmd/outbox-bench --scenarios concurrent
// --coalesce-delay D (PostgreSQL, 2 cores) gives 0.75-0.83x of the raw
// INSERT+COMMIT rate at 5 ms (p99 24-26 ms), 0.84-0.89x at 8 ms (p99
// 33-35 ms), 0.81-0.86x at 10 ms (p99 39-42 ms), 0.83-0.91x at 12 ms (p99
// 45-49 ms); SQLite 0.30-0.34x at 5 ms, 0.39-0.41x at 8 ms. A rate of 200
// msg/s does not wait (p50 1.2-1.4 ms, p99 3.1 ms either way).
const coalesceUnderLoad = 8 * time.Millisecond

// poller decides how long an idle worker waits before polling again: fast
// (min) right after a pass found work, then 1.5 times as long after each
// pass that found none, up to max (Config.PollInterval). So a worker that
// idles costs one poll per max, and one that has just worked polls every
// few milliseconds until it has been idle for about 3·max. (Growth by 1.5
// rather than 2: at 20 msg/s from another process, a simulation of two
// sequencers gives a median detection delay of 10 ms instead of 15 ms, for
// one more poll per gap between messages.)
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
// [d/2, d] so that loops do not poll in step, and grows d for the next.
func (p *poller) idle() time.Duration {
	d := p.cur
	p.cur = min(p.cur+p.cur/2, p.max)
	half := d / 2
	return half + time.Duration(p.rnd()*float64(d-half))
}
