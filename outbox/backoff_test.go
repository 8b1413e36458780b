package outbox

import (
	"testing"
	"time"
)

func TestBackoffGrowsWithinBoundsAndCaps(t *testing.T) {
	base, cap := time.Second, 60*time.Second
	for _, r := range []float64{0, 0.5, 0.999} {
		prev := time.Duration(0)
		for n := 1; n <= 12; n++ {
			d := backoff(n, base, cap, func() float64 { return r })
			full := min(base<<(n-1), cap)
			if d < full/2 || d > full {
				t.Fatalf("attempt %d (rnd %v): %v outside [%v, %v]", n, r, d, full/2, full)
			}
			if d < prev && full < cap {
				t.Fatalf("attempt %d: %v shrank from %v", n, d, prev)
			}
			prev = d
		}
	}
	// The lowest draw of attempt n+1 is never below the highest of n.
	for n := 1; n < 6; n++ {
		hi := backoff(n, base, cap, func() float64 { return 1 })
		lo := backoff(n+1, base, cap, func() float64 { return 0 })
		if lo < hi {
			t.Fatalf("attempt %d max %v > attempt %d min %v", n, hi, n+1, lo)
		}
	}
}

func FuzzBackoff(f *testing.F) {
	f.Add(3, int64(time.Second), int64(time.Minute), 0.3)
	f.Fuzz(func(t *testing.T, n int, base, max int64, r float64) {
		if base <= 0 || max < base || r < 0 || r >= 1 || n > 1000 {
			return
		}
		d := backoff(n, time.Duration(base), time.Duration(max), func() float64 { return r })
		if d < 0 || d > time.Duration(max) {
			t.Fatalf("backoff(%d, %d, %d) = %v", n, base, max, d)
		}
	})
}
