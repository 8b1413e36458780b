package outbox

import (
	"context"
	"database/sql"
	"slices"
	"sync"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/sqlite"
)

// backlogSequencer is a dialect whose SequencePartitions runs over an in-memory
// backlog (rows waiting per partition) that records the partitions of each
// SequencePartitions call.
type backlogSequencer struct {
	*sqlite.Dialect
	mu      sync.Mutex
	waiting map[int64]int
	calls   [][]int64
}

func (d *backlogSequencer) PendingPartitions(context.Context, dialect.DBTX, *dialect.PendingPartitionsParams) (*dialect.PendingPartitionsResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	res := &dialect.PendingPartitionsResult{}
	for id, n := range d.waiting {
		if n > 0 {
			res.PartitionIDs = append(res.PartitionIDs, id)
		}
	}
	slices.Sort(res.PartitionIDs)
	return res, nil
}

func (d *backlogSequencer) SequencePartitions(_ context.Context, _ dialect.DBTX, p *dialect.SequencePartitionsParams) (*dialect.SequencePartitionsResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, slices.Clone(p.PartitionIDs))
	res := &dialect.SequencePartitionsResult{}
	for _, id := range p.PartitionIDs {
		n := min(d.waiting[id], p.Limit)
		d.waiting[id] -= n
		res.Partitions = append(res.Partitions, dialect.SequencedPartition{PartitionID: id, Locked: true, Assigned: n})
	}
	return res, nil
}

// With a backlog (a transaction left partitions with more rows), a
// sequencer that takes several partitions per transaction leaves a share
// of them to the other sequencers and wakes them, so that they number
// theirs at the same time instead of skipping every partition it holds.
// Without a backlog a round is one transaction over every partition.
func TestSequencersShareABacklog(t *testing.T) {
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, c := range []struct {
		name       string
		sequencers int
		rows       int // per partition, 4 partitions, 40 rows per transaction
		want       [][]int64
		woken      bool
	}{
		{"no backlog", 2, 9, [][]int64{{1, 2, 3, 4}}, false},
		{"backlog, two sequencers", 2, 25, [][]int64{{1, 2, 3, 4}, {1, 2}, {3, 4}}, true},
		{"backlog, one sequencer", 1, 25, [][]int64{{1, 2, 3, 4}, {1, 2, 3, 4}, {1, 2, 3, 4}}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := &backlogSequencer{Dialect: sqlite.New(), waiting: map[int64]int{1: c.rows, 2: c.rows, 3: c.rows, 4: c.rows}}
			o, err := New(db, d, Config{Sequencers: c.sequencers, SequencerBatch: 40})
			if err != nil {
				t.Fatal(err)
			}
			woke := o.seq.wake.wait()
			n, _, err := o.seq.round(t.Context(), false)
			if err != nil || n != 4*c.rows {
				t.Fatalf("sequenceRound: %d rows, %v; want %d", n, err, 4*c.rows)
			}
			if !slices.EqualFunc(d.calls, c.want, slices.Equal) {
				t.Errorf("transactions took partitions %v, want %v", d.calls, c.want)
			}
			select {
			case <-woke:
				if !c.woken {
					t.Error("the other sequencers were woken")
				}
			default:
				if c.woken {
					t.Error("the other sequencers were not woken")
				}
			}
		})
	}
}
