package outbox

import (
	"testing"
	"time"
)

// TestPoller: fast right after work, doubling while idle up to max, jitter
// within [d/2, d]; min >= max is a fixed interval.
func TestPoller(t *testing.T) {
	for _, tc := range []struct {
		name     string
		min, max time.Duration
		found    bool
		want     []time.Duration // the d of successive idle waits
	}{
		{"starts idle", 5 * time.Millisecond, 200 * time.Millisecond, false,
			[]time.Duration{200 * time.Millisecond, 200 * time.Millisecond}},
		{"fast after work", 5 * time.Millisecond, 200 * time.Millisecond, true,
			[]time.Duration{5, 10, 20, 40, 80, 160, 200, 200}},
		{"fixed", time.Second, time.Second, true,
			[]time.Duration{time.Second, time.Second}},
		{"min above max", time.Second, 100 * time.Millisecond, true,
			[]time.Duration{100 * time.Millisecond, 100 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []float64{0, 1} { // the two ends of the jitter
				p := newPoller(tc.min, tc.max)
				p.rnd = func() float64 { return r }
				if tc.found {
					p.found()
				}
				for i, d := range tc.want {
					if d < time.Millisecond {
						d *= time.Millisecond
					}
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
