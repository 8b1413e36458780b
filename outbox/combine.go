package outbox

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/modkit-go/db/dialect"
)

// combiner merges concurrent requests into one database round, so that
// under load many workers' claims (or acks) cost one commit, and when idle a
// lone request runs at once. It is group commit: the first request of an
// idle combiner leads and runs; requests arriving while a round is in
// flight queue up, and when the round ends the first of them leads the
// next round with all of them. A leader runs exactly one round, so nobody
// waits for more than the round in flight plus its own.
type combiner[Req, Res any] struct {
	run func(reqs []Req) ([]Res, error) // len(res) == len(reqs) when err == nil

	mu      sync.Mutex
	running bool
	pending []*combined[Req, Res]
}

type combined[Req, Res any] struct {
	req  Req
	res  Res
	err  error
	lead bool // woken to lead the next round, not with a result
	done chan struct{}
}

// do runs req in a round and returns its result. Once a request is queued it
// is seen through: a claim made for a waiter that had given up would strand
// its lease until expiry, so run must bound itself (bookkeeping contexts).
func (c *combiner[Req, Res]) do(req Req) (Res, error) {
	me := &combined[Req, Res]{req: req, done: make(chan struct{})}
	c.mu.Lock()
	c.pending = append(c.pending, me)
	if c.running {
		c.mu.Unlock()
		<-me.done
		if !me.lead {
			return me.res, me.err
		}
		c.mu.Lock()
	}
	c.running = true
	round := c.pending
	c.pending = nil
	c.mu.Unlock()

	reqs := make([]Req, len(round))
	for i, x := range round {
		reqs[i] = x.req
	}
	res, err := c.run(reqs)
	for i, x := range round {
		x.err = err
		if err == nil {
			x.res = res[i]
		}
		if x != me {
			close(x.done)
		}
	}

	c.mu.Lock()
	if len(c.pending) > 0 {
		next := c.pending[0]
		next.lead = true
		close(next.done)
	} else {
		c.running = false
	}
	c.mu.Unlock()
	return me.res, me.err
}

// claimReq asks for up to limit partitions of queues; the requests of one
// round are served by one claim statement.
type claimReq struct {
	queues []string
	limit  int
	lease  time.Duration
	ids    []int64 // only these partitions (a claim by id; never combined)
}

type claimRes struct {
	claimed []dialect.ClaimedPartition
	token   string
}

// claimRound claims, in one statement and commit, up to the sum of the
// requests' limits, and shares the partitions out in request order. Every
// request of a round names the same queues and lease (one combiner per
// claimGroup). The
// partitions share the round's token: a lease is the pair (partition,
// token), fresh for each acquisition of a partition.
func (o *Outbox) claimRound(reqs []claimReq) ([]claimRes, error) {
	token := newToken()
	limit := 0
	for _, r := range reqs {
		limit += r.limit
	}
	// Not cancelled by a stop mid-statement: a claim that committed on the
	// server but looked failed here would strand its leases until expiry.
	stmtCtx, cancel := o.bookkeeping(context.Background())
	defer cancel()
	cp := &dialect.ClaimLeaseParams{Queues: reqs[0].queues, Limit: limit, Token: token, Lease: reqs[0].lease, PartitionIDs: reqs[0].ids}
	res, err := o.d.ClaimLeases(stmtCtx, o.pool(), cp)
	if err != nil {
		return nil, err
	}
	out := make([]claimRes, len(reqs))
	got := res.Partitions
	for i, r := range reqs {
		n := min(r.limit, len(got))
		out[i] = claimRes{claimed: got[:n:n], token: token}
		got = got[n:]
	}
	if len(got) > 0 {
		// More than Limit would be a dialect bug; hand them back.
		ids := make([]int64, len(got))
		for i, c := range got {
			ids[i] = c.PartitionID
		}
		_, _ = o.d.ReleaseLeases(stmtCtx, o.q, &dialect.ReleaseLeasesParams{PartitionIDs: ids, Token: token})
	}
	return out, nil
}

// ackRound writes decoupled acks (fenced cursor-row updates without
// dead letters) in one UpdateCursors call. Each update is fenced by its
// own token and reports for itself: one whose lease is gone matches no
// row, changes nothing and does not stop the others from committing. Rows
// are updated in partition order, so two rounds never wait on each other
// in a cycle.
func (o *Outbox) ackRound(reqs []*dialect.CursorUpdate) ([]bool, error) {
	stmtCtx, cancel := o.bookkeeping(context.Background())
	defer cancel()
	order := make([]int, len(reqs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return int(max(min(reqs[a].PartitionID-reqs[b].PartitionID, 1), -1))
	})
	sorted := make([]*dialect.CursorUpdate, len(reqs))
	for k, i := range order {
		sorted[k] = reqs[i]
	}
	res, err := o.d.UpdateCursors(stmtCtx, o.q, &dialect.UpdateCursorsParams{Updates: sorted, DB: o.db})
	if err != nil {
		return nil, err
	}
	if len(res.Updated) != len(sorted) {
		return nil, fmt.Errorf("outbox: UpdateCursors reported %d results for %d acks", len(res.Updated), len(sorted))
	}
	out := make([]bool, len(reqs))
	for k, i := range order {
		out[i] = res.Updated[k]
	}
	return out, nil
}

// claimGroup is a set of handled queues claimed together: one claim
// statement (combined across goroutines) serves them, with one lease.
type claimGroup struct {
	queues []string
	lease  time.Duration
	limit  int // partitions one pass claims
	// byID: the group has so many partitions that its claim is slow
	// enough for a claim by id of what the sequencer just numbered to
	// pay (see fresh); below that the extra statement only costs.
	byID   bool
	claims combiner[claimReq, claimRes]
}

// byIDFrom is the partition count from which a claim group claims the
// sequencer's offers by id first: below it the group's claim reads few
// cursor rows, and an extra claim per pass (not combined across
// goroutines) lowers throughput under load.
const byIDFrom = 256

// claimGroups splits queues (sorted) by lease duration, shortest lease
// first. With no per-queue LeaseDuration that is one group, so claims stay
// as combined as without per-queue options.
//
// A decoupled pass claims limit partitions: enough for the goroutines
// together to cover every partition of the group in one pass each when
// all have work (so that under load a partition waits for one pass, not
// partitions/MaxConcurrency passes), 1 for a lone partition, at most
// maxClaim. A transactional pass claims one.
func (o *Outbox) claimGroups(queues []string, decoupled bool) []*claimGroup {
	var groups []*claimGroup
	byLease := map[time.Duration]*claimGroup{}
	o.queuesMu.RLock()
	defer o.queuesMu.RUnlock()
	parts := map[*claimGroup]int{}
	for _, q := range queues {
		lease := o.queueConfigOf(q).lease
		g := byLease[lease]
		if g == nil {
			g = &claimGroup{lease: lease, limit: 1}
			g.claims.run = o.claimRound
			byLease[lease] = g
			groups = append(groups, g)
		}
		g.queues = append(g.queues, q)
		parts[g] += o.queues[q] // cached by Start
	}
	conc := o.cfg.MaxConcurrency
	for _, g := range groups {
		if decoupled {
			g.limit = min(max(1, (parts[g]+conc-1)/conc), maxClaim)
		}
		g.byID = parts[g] >= byIDFrom
	}
	slices.SortFunc(groups, func(a, b *claimGroup) int { return int(max(min(a.lease-b.lease, 1), -1)) })
	return groups
}
