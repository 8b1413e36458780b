package outbox

import (
	"errors"
	"runtime"
	"sync"
	"testing"
)

// TestCombinerGroupCommit: requests that arrive while a round runs go
// together in the next round, each gets its own result, the first leader
// runs only its own round, and a failed round fails exactly its requests.
func TestCombinerGroupCommit(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var rounds [][]int
	fail := false
	c := combiner[int, int]{run: func(reqs []int) ([]int, error) {
		mu.Lock()
		rounds = append(rounds, append([]int(nil), reqs...))
		first, f := len(rounds) == 1, fail
		mu.Unlock()
		if first {
			<-release
		}
		if f {
			return nil, errors.New("boom")
		}
		out := make([]int, len(reqs))
		for i, r := range reqs {
			out[i] = r * 10
		}
		return out, nil
	}}

	leader := make(chan int)
	go func() { r, _ := c.do(1); leader <- r }()
	waitFor := func(cond func() bool) {
		for !cond() {
			runtime.Gosched()
		}
	}
	waitFor(func() bool { mu.Lock(); defer mu.Unlock(); return len(rounds) == 1 })
	var wg sync.WaitGroup
	got := make([]int, 6)
	for i := 2; i <= 5; i++ {
		wg.Go(func() { got[i], _ = c.do(i) })
	}
	waitFor(func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.pending) == 4 })
	close(release)
	if r := <-leader; r != 10 {
		t.Fatalf("leader got %d, want 10", r)
	}
	wg.Wait()
	for i := 2; i <= 5; i++ {
		if got[i] != i*10 {
			t.Errorf("request %d got %d, want %d", i, got[i], i*10)
		}
	}
	if len(rounds) != 2 || len(rounds[1]) != 4 {
		t.Fatalf("rounds %v, want [[1] [four requests]]", rounds)
	}

	mu.Lock()
	fail = true
	mu.Unlock()
	if _, err := c.do(7); err == nil {
		t.Fatal("a failed round returned no error")
	}
	if c.running || len(c.pending) != 0 {
		t.Fatalf("combiner left running=%v with %d pending", c.running, len(c.pending))
	}
}
