package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// headerBytes is the smallest payload: message id (8 bytes), partition (4)
// and the message's index within its partition (4).
const headerBytes = 16

// payload builds message id's payload: the header, then filler up to size.
func payload(id uint64, part, k uint32, size int) []byte {
	b := make([]byte, max(size, headerBytes))
	binary.BigEndian.PutUint64(b[0:], id)
	binary.BigEndian.PutUint32(b[8:], part)
	binary.BigEndian.PutUint32(b[12:], k)
	for i := headerBytes; i < len(b); i++ {
		b[i] = byte(id) + byte(i)
	}
	return b
}

func decodePayload(b []byte) (id uint64, part, k uint32, ok bool) {
	if len(b) < headerBytes {
		return 0, 0, 0, false
	}
	return binary.BigEndian.Uint64(b[0:]), binary.BigEndian.Uint32(b[8:]), binary.BigEndian.Uint32(b[12:]), true
}

// recorder checks deliveries as they happen: each message id exactly once,
// in its own partition, with seq = previous seq + 1 in that partition (and,
// when checkK is set, seq equal to the message's index in its partition,
// which holds when the backlog was enqueued in order by one producer).
type recorder struct {
	want        int64
	payloadSize int
	checkK      bool
	parts       []partRec
	seen        []atomic.Uint32
	startNS     []atomic.Int64 // handler start per id (latency runs only)
	total       atomic.Int64
	done        chan struct{}
	doneOnce    sync.Once

	errMu sync.Mutex
	errs  []string
	nerr  int
}

type partRec struct {
	mu   sync.Mutex
	last int64
	n    int64
}

func newRecorder(want, partitions, payloadSize int, checkK, latency bool) *recorder {
	r := &recorder{
		want:        int64(want),
		payloadSize: max(payloadSize, headerBytes),
		checkK:      checkK,
		parts:       make([]partRec, partitions),
		seen:        make([]atomic.Uint32, want),
		done:        make(chan struct{}),
	}
	if latency {
		r.startNS = make([]atomic.Int64, want)
	}
	if want == 0 {
		close(r.done)
	}
	return r
}

func (r *recorder) fail(format string, args ...any) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	r.nerr++
	if len(r.errs) < 10 {
		r.errs = append(r.errs, fmt.Sprintf(format, args...))
	}
}

// record notes one delivery of (partition, seq) with payload p, seen by a
// handler that started at startNS (unix nanoseconds).
func (r *recorder) record(partition int, seq int64, p []byte, startNS int64) {
	id, part, k, ok := decodePayload(p)
	switch {
	case !ok || len(p) != r.payloadSize:
		r.fail("partition %d seq %d: payload of %d bytes, want %d", partition, seq, len(p), r.payloadSize)
	case int(part) != partition:
		r.fail("message %d: delivered on partition %d, enqueued on %d", id, partition, part)
	case id >= uint64(len(r.seen)):
		r.fail("partition %d seq %d: unknown message id %d", partition, seq, id)
	default:
		if n := r.seen[id].Add(1); n > 1 {
			r.fail("message %d (partition %d seq %d) delivered %d times", id, partition, seq, n)
		}
		if r.startNS != nil {
			r.startNS[id].CompareAndSwap(0, startNS)
		}
	}
	if partition < 0 || partition >= len(r.parts) {
		r.fail("partition %d out of range", partition)
	} else {
		pr := &r.parts[partition]
		pr.mu.Lock()
		if seq != pr.last+1 {
			r.fail("partition %d: seq %d delivered after seq %d (want %d)", partition, seq, pr.last, pr.last+1)
		}
		pr.last = max(pr.last, seq)
		pr.n++
		pr.mu.Unlock()
		if r.checkK && ok && int64(k) != seq {
			r.fail("partition %d: message %d (index %d in its partition) got seq %d", partition, id, k, seq)
		}
	}
	if r.total.Add(1) == r.want {
		r.doneOnce.Do(func() { close(r.done) })
	}
}

// verify checks completeness: every partition got exactly 1..n, every id
// exactly once, and nothing went wrong on the way.
func (r *recorder) verify(perPartition []int64) error {
	var problems []string
	r.errMu.Lock()
	problems = append(problems, r.errs...)
	if r.nerr > len(r.errs) {
		problems = append(problems, fmt.Sprintf("… and %d more delivery errors", r.nerr-len(r.errs)))
	}
	r.errMu.Unlock()
	if got := r.total.Load(); got != r.want {
		problems = append(problems, fmt.Sprintf("%d deliveries, want %d", got, r.want))
	}
	for p := range r.parts {
		pr := &r.parts[p]
		pr.mu.Lock()
		if pr.n != perPartition[p] || pr.last != perPartition[p] {
			problems = append(problems, fmt.Sprintf("partition %d: %d deliveries up to seq %d, want exactly 1..%d", p, pr.n, pr.last, perPartition[p]))
		}
		pr.mu.Unlock()
	}
	missing, dup := 0, 0
	for i := range r.seen {
		switch n := r.seen[i].Load(); {
		case n == 0:
			missing++
		case n > 1:
			dup++
		}
	}
	if missing > 0 || dup > 0 {
		problems = append(problems, fmt.Sprintf("%d messages never delivered, %d delivered more than once", missing, dup))
	}
	if len(problems) == 0 {
		return nil
	}
	if len(problems) > 12 {
		problems = append(problems[:12], fmt.Sprintf("… %d more", len(problems)-12))
	}
	return errors.New(strings.Join(problems, "; "))
}

// perPartition is how many of ids 0..n-1 land on each partition (id % p).
func perPartition(n, p int) []int64 {
	out := make([]int64, p)
	for i := range p {
		out[i] = int64(n / p)
		if i < n%p {
			out[i]++
		}
	}
	return out
}

// Latency summarises commit-to-handler-start latencies, in milliseconds.
type Latency struct {
	Samples int     `json:"samples"`
	P50     float64 `json:"p50_ms"`
	P95     float64 `json:"p95_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
	Mean    float64 `json:"mean_ms"`
	// Negative counts handler starts seen before the producer got its
	// commit back (clamped to 0): the wake-up beat the return of InTx.
	Negative int `json:"negative,omitempty"`
}

func summarize(d []time.Duration) *Latency {
	l := &Latency{Samples: len(d)}
	if len(d) == 0 {
		return l
	}
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return math.Round(float64(x)/1e3) / 1e3 }
	q := func(f float64) float64 {
		i := int(math.Ceil(f*float64(len(d)))) - 1
		return ms(d[min(max(i, 0), len(d)-1)])
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	l.P50, l.P95, l.P99, l.Max = q(0.50), q(0.95), q(0.99), ms(d[len(d)-1])
	l.Mean = ms(sum / time.Duration(len(d)))
	return l
}

// commitToStart summarizes, per message id, the time from its producer's
// commit (commitNS) to its handler's start (startNS), both unix
// nanoseconds; ids missing either are left out, and a start before the
// commit returned counts as 0 and in Negative.
func commitToStart(commitNS, startNS []atomic.Int64) *Latency {
	var lat []time.Duration
	neg := 0
	for id := range min(len(commitNS), len(startNS)) {
		c, s := commitNS[id].Load(), startNS[id].Load()
		if c == 0 || s == 0 {
			continue
		}
		d := time.Duration(s - c)
		if d < 0 {
			neg++
			d = 0
		}
		lat = append(lat, d)
	}
	l := summarize(lat)
	l.Negative = neg
	return l
}
