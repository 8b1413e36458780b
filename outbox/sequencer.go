package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/modkit-go/db/dialect"
)

// sequencer numbers committed messages: per partition, under the
// partition's lock, it gives their unsequenced rows seq = last_seq+1, … in
// id order (see dialect.Dialect.SequencePartitions). It runs as
// Config.Sequencers loops (see Start); the Outbox holds a handle to it.
type sequencer struct {
	o    *Outbox
	wake *signal // producers committed
	// unseqAt: where the dialect may sequence rows as they are inserted
	// (Capabilities.SequencesOnInsert), a commit can make work for the
	// workers directly; the sequencer is woken only while inserts leave
	// rows to it (unseqAt: the last time one did, in UnixNano).
	unseqAt atomic.Int64
	// roundNo: the dialect ran a sequencer round in one call
	// (Capabilities.SequencePending) until it reported
	// dialect.ErrUnsupported.
	roundNo atomic.Bool
}

// SequenceAll sequences every committed message that has no seq yet, and
// returns how many it sequenced. Tests and tools use it to run the
// sequencer to completion without Start.
func (o *Outbox) SequenceAll(ctx context.Context) (int, error) {
	total := 0
	for {
		n, skipped, err := o.seq.round(ctx, false)
		total += n
		if err != nil {
			return total, err
		}
		if n == 0 && skipped == 0 {
			return total, nil
		}
		if n == 0 {
			// Another sequencer holds a partition; give it a moment.
			select {
			case <-ctx.Done():
				return total, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
}

func (s *sequencer) pass(ctx context.Context) (bool, error) {
	n, skipped, err := s.round(ctx, true)
	if err == nil && n == 0 && skipped > 0 {
		// The round left partitions: another sequencer held them, or a
		// retryable error (a busy single writer, a deadlock) stopped it.
		// The wake-up that brought this pass is spent and the next poll
		// may be PollInterval away, so look again shortly, as SequenceAll
		// does.
		time.AfterFunc(retryLeftDelay, s.wake.broadcast)
	}
	return n > 0, err
}

// retryLeftDelay: how soon a sequencer pass that left partitions looks
// again.
const retryLeftDelay = 5 * time.Millisecond

// round sequences the partitions that have committed unsequenced
// rows. Under load many partitions have a few rows each, so one transaction
// takes them all, up to SequencerBatch rows in total: one commit instead of
// one per partition. SequencePartitions locks each partition (skipping
// one another sequencer holds, so sequencers never wait on each other and
// cannot deadlock however many partition locks one holds) and only then
// picks rows, in a later statement that sees the previous holder's work.
func (s *sequencer) round(ctx context.Context, shuffle bool) (assigned, skipped int, err error) {
	o := s.o
	if o.caps.SequencePending && !s.roundNo.Load() {
		assigned, skipped, err = s.roundInOneCall(ctx)
		if !errors.Is(err, dialect.ErrUnsupported) {
			return assigned, skipped, err
		}
		if !s.roundNo.Swap(true) {
			o.log.Warn("outbox: sequencing a partition at a time: the database cannot run a round in one call; apply the migrations", "error", err)
		}
	}
	pend, err := o.d.PendingPartitions(ctx, o.q, &dialect.PendingPartitionsParams{Limit: 1024})
	if err != nil {
		return 0, 0, fmt.Errorf("pending partitions: %w", err)
	}
	ids := pend.PartitionIDs
	if shuffle {
		// Several sequencers spread over partitions instead of queueing on
		// the same locks.
		rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	}
	// share: once a transaction of this round left partitions with more
	// rows (a backlog), the most partitions a transaction takes, so that
	// the other sequencers (woken then) number theirs at the same time
	// instead of skipping every partition this one holds; 0 before.
	// Only where a transaction takes several partitions at once.
	share := 0
	shares := o.cfg.Sequencers > 1
	var numbered []int64 // the partitions a transaction gave seqs to
	for len(ids) > 0 {
		var n, skip int
		var full []int64 // partitions that may have more rows
		var next int     // ids[:next] were tried in this transaction
		err := o.withTx(ctx, func(tx *sql.Tx) error {
			n, skip, full, next = 0, 0, nil, 0
			// A fixed number of statements for all of them; the budget
			// is shared evenly, and a partition that used its share
			// goes round again.
			next = min(len(ids), o.cfg.SequencerBatch)
			if share > 0 {
				next = min(next, share)
			}
			limit := o.cfg.SequencerBatch / next
			res, err := o.d.SequencePartitions(ctx, o.in(tx), &dialect.SequencePartitionsParams{PartitionIDs: ids[:next], Limit: limit})
			if err != nil {
				return fmt.Errorf("sequence partitions: %w", err)
			}
			n, skip, numbered = tally(res.Partitions)
			for _, r := range res.Partitions {
				if r.Locked && r.Assigned == limit {
					full = append(full, r.PartitionID)
				}
			}
			return nil
		})
		if err != nil {
			if o.retryable(err) {
				return assigned, skipped + len(ids), nil
			}
			return assigned, skipped, err
		}
		assigned += n
		skipped += skip
		o.tel.sequencedRows(ctx, n)
		s.numbered(numbered, n)
		if len(full) > 0 && share == 0 && shares {
			share = (len(ids) + o.cfg.Sequencers - 1) / o.cfg.Sequencers
			s.wake.broadcast()
		}
		// Partitions with more rows go round again after the rest.
		ids = append(ids[next:], full...)
	}
	return assigned, skipped, nil
}

// tally sums what a sequencing call did: the rows it numbered, the
// partitions it skipped (another sequencer held them) and the partitions it
// numbered rows of.
func tally(ps []dialect.SequencedPartition) (n, skipped int, numbered []int64) {
	for _, r := range ps {
		switch {
		case !r.Locked:
			skipped++
		case r.Assigned > 0:
			n += r.Assigned
			numbered = append(numbered, r.PartitionID)
		}
	}
	return n, skipped, numbered
}

// numbered tells the workers that a transaction gave n rows seqs in the
// partitions ids: it offers the partitions for a claim by id (see fresh)
// and wakes the workers.
func (s *sequencer) numbered(ids []int64, n int) {
	if n == 0 {
		return
	}
	s.o.fresh.offer(ids)
	s.o.workWake.broadcast()
}

// roundInOneCall is round through dialect.Dialect.SequencePending: a
// call finds and sequences up to SequencerBatch pending partitions in one
// round trip. Calls go on from the last partition found while a call found
// as many as it may (more may wait beyond), and round again while a
// partition used its whole share (it may have more rows).
func (s *sequencer) roundInOneCall(ctx context.Context) (assigned, skipped int, err error) {
	o := s.o
	maxParts := min(1024, o.cfg.SequencerBatch)
	var from int64
	full := false // a partition used its share since from was last 0
	for {
		res, err := o.d.SequencePending(ctx, o.q, &dialect.SequencePendingParams{
			FromPartitionID: from, MaxPartitions: maxParts, Limit: o.cfg.SequencerBatch})
		if err != nil {
			if o.retryable(err) {
				return assigned, skipped + 1, nil
			}
			return assigned, skipped, fmt.Errorf("sequence pending: %w", err)
		}
		found := len(res.Partitions)
		share := max(o.cfg.SequencerBatch/max(found, 1), 1)
		n, skip, numbered := tally(res.Partitions)
		skipped += skip
		for _, r := range res.Partitions {
			full = full || r.Locked && r.Assigned >= share
		}
		assigned += n
		o.tel.sequencedRows(ctx, n)
		s.numbered(numbered, n)
		switch {
		case found == maxParts:
			from = res.Partitions[found-1].PartitionID + 1
		case full:
			from, full = 0, false
		default:
			return assigned, skipped, nil
		}
	}
}
