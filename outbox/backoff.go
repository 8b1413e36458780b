package outbox

import (
	"math/rand/v2"
	"time"
)

// backoff returns the delay before the next try after the attempts-th
// failure: base·2^(attempts-1) capped at max, with equal jitter, so the
// delay lies in [d/2, d] and never shrinks from one attempt to the next
// (d/2 of attempt n+1 is d of attempt n until the cap).
func backoff(attempts int, base, max time.Duration, rnd func() float64) time.Duration {
	if attempts < 1 {
		attempts = 1
	}
	d := base
	for i := 1; i < attempts && d < max; i++ {
		d *= 2
	}
	if d > max || d <= 0 {
		d = max
	}
	half := d / 2
	return half + time.Duration(rnd()*float64(d-half))
}

func jitter() float64 { return rand.Float64() }
