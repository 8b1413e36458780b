package outbox

import (
	"slices"
	"testing"
)

// Each goroutine sees each offer once; a round of more than maxFresh
// partitions offers none; the oldest offers make room for new ones.
func TestFreshOffers(t *testing.T) {
	var f fresh
	var a, b uint64
	f.offer([]int64{1, 2})
	if got := f.since(&a); !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("first look: %v", got)
	}
	if got := f.since(&a); len(got) != 0 {
		t.Fatalf("second look: %v, want nothing new", got)
	}
	big := make([]int64, maxFresh+1)
	f.offer(big)
	f.offer([]int64{3})
	if got := f.since(&a); !slices.Equal(got, []int64{3}) {
		t.Fatalf("after a large round and another: %v, want [3]", got)
	}
	for i := range maxFresh {
		f.offer([]int64{int64(10 + i)})
	}
	got := f.since(&b)
	if len(got) != maxFresh || got[0] != 10 || got[maxFresh-1] != int64(10+maxFresh-1) {
		t.Fatalf("a goroutine that never looked: %v, want the latest %d", got, maxFresh)
	}
}
