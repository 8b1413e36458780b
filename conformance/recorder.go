package conformance

import (
	"slices"
	"sync"
	"testing"

	"github.com/modkit-go/db/outbox"
)

// recorder keeps every delivery a handler saw, in call order: a test waits
// until a number of them arrived, then reads them back per partition or
// checks that each was delivered exactly once, in order. Its zero value is
// ready to use; handlers call add from any goroutine.
type recorder struct {
	mu    sync.Mutex
	got   []outbox.Delivery
	times map[deliveryKey]int
	waits []recorderWait
}

// deliveryKey names one message: a redelivery has the same key.
type deliveryKey struct {
	queue     string
	partition int
	seq       int64
}

type recorderWait struct {
	n  int
	ch chan struct{}
}

// add records ds and returns how many times the last of them has now been
// delivered (1 the first time).
func (r *recorder) add(ds ...outbox.Delivery) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.times == nil {
		r.times = map[deliveryKey]int{}
	}
	n := 0
	for _, d := range ds {
		k := deliveryKey{d.Queue, d.Partition, d.Seq}
		r.times[k]++
		n = r.times[k]
	}
	r.got = append(r.got, ds...)
	kept := r.waits[:0]
	for _, w := range r.waits {
		if len(r.got) >= w.n {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	r.waits = kept
	return n
}

// reached is closed once n deliveries were added.
func (r *recorder) reached(n int) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := make(chan struct{})
	if len(r.got) >= n {
		close(ch)
	} else {
		r.waits = append(r.waits, recorderWait{n, ch})
	}
	return ch
}

// count is the number of deliveries so far.
func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// deliveries returns every delivery so far, in call order.
func (r *recorder) deliveries() []outbox.Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// payloads lists the payloads delivered for partition (every partition
// when partition < 0), in delivery order.
func (r *recorder) payloads(partition int) []string {
	var out []string
	for _, d := range r.deliveries() {
		if partition < 0 || d.Partition == partition {
			out = append(out, string(d.Payload))
		}
	}
	return out
}

// seqs lists the seqs delivered for partition, in delivery order.
func (r *recorder) seqs(partition int) []int64 {
	var out []int64
	for _, d := range r.deliveries() {
		if d.Partition == partition {
			out = append(out, d.Seq)
		}
	}
	return out
}

// timesBySeq counts the deliveries of each seq of partition.
func (r *recorder) timesBySeq(partition int) map[int64]int {
	out := map[int64]int{}
	for _, d := range r.deliveries() {
		if d.Partition == partition {
			out[d.Seq]++
		}
	}
	return out
}

// checkExactlyOnce asserts each partition's seqs were delivered as exactly
// 1..n, in order, and each payload once.
func (r *recorder) checkExactlyOnce(t *testing.T) {
	t.Helper()
	type part struct {
		queue     string
		partition int
	}
	seqs := map[part][]int64{}
	bodies := map[string]int{}
	for _, d := range r.deliveries() {
		k := part{d.Queue, d.Partition}
		seqs[k] = append(seqs[k], d.Seq)
		bodies[string(d.Payload)]++
	}
	for k, s := range seqs {
		for i, v := range s {
			if v != int64(i+1) {
				t.Fatalf("partition %s/%d: delivery %d has seq %d, want %d (seqs %v…)", k.queue, k.partition, i, v, i+1, s[:min(len(s), 20)])
			}
		}
	}
	for b, n := range bodies {
		if n != 1 {
			t.Fatalf("payload %q delivered %d times", b, n)
		}
	}
}

func seqRange(from, to int64) []int64 {
	var out []int64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}
