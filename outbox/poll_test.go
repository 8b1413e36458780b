package outbox

import (
	"testing"
	"time"
)

// TestPoller: fast right after work, growing by half while idle up to max, jitter
// within [d/2, d]; min >= max is a fixed interval.
func TestPoller(t *testing.T) {
	for _, tc := range []struct {
		name     string
		min, max time.Duration
		found    bool
		want     []time.Duration // the d of successive idle waits
	}{
		{"starts idle", 5 * time.Millisecond, 200 * time.Millisecond, false, ms(200, 200)},
		{"fast after work", 8 * time.Millisecond, 200 * time.Millisecond, true,
			ms(8, 12, 18, 27, 40.5, 60.75, 91.125, 136.6875, 200, 200)},
		{"fixed", time.Second, time.Second, true, ms(1000, 1000)},
		{"min above max", time.Second, 100 * time.Millisecond, true, ms(100, 100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []float64{0, 1} { // the two ends of the jitter
				p := newPoller(tc.min, tc.max)
				p.rnd = func() float64 { return r }
				if tc.found {
					p.found()
				}
				for i, d := range tc.want {
					want := d / 2
					if r == 1 {
						want = d
					}
					if got := p.idle(); got != want {
						t.Fatalf("rnd %v, wait %d: %v, want %v", r, i, got, want)
					}
				}
			}
		})
	}
}

func ms(v ...float64) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x * float64(time.Millisecond))
	}
	return out
}
