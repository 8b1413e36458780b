package conformance

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/mysql"
	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/internal/testdb"
)

// allCases makes every mutant run the whole contract, to see which other
// cases catch it: go test ./conformance -run TestMutants -v -args -mutants.all
var allCases = flag.Bool("mutants.all", false, "run every contract case against each mutant, not only the one that guards it")

// TestMutants runs the contract against deliberately broken wrappers of
// each built-in dialect: every mutant must fail the case that guards its
// invariant, which the unbroken dialect passes (RunDialect, from each
// dialect's package, runs every case against the unbroken dialect). A
// contract a broken dialect passes would prove nothing.
func TestMutants(t *testing.T) {
	backends := []struct {
		env string
		b   Backend
	}{
		{"", Backend{Name: "sqlite", Dialect: sqlite.New(), NewDatabase: testdb.SQLite}},
		{testdb.PostgresEnv, Backend{Name: "postgres", Dialect: postgres.New(), NewDatabase: testdb.Postgres}},
		{testdb.MySQLEnv, Backend{Name: "mysql", Dialect: mysql.New(), NewDatabase: testdb.MySQL}},
	}
	for _, be := range backends {
		t.Run(be.b.Name, func(t *testing.T) {
			if be.env != "" {
				testdb.DSN(t, be.env)
			}
			t.Parallel()
			b := be.b
			b.init(t)
			for _, m := range mutants {
				if m.needsConcurrentWriters && b.singleWriter() {
					t.Logf("%s: not run: it needs two writers at once, and a single-writer backend has no lock to skip", m.name)
					continue
				}
				t.Run(m.name, func(t *testing.T) {
					t.Parallel()
					cases := []string{m.caught}
					if *allCases {
						cases = nil
					}
					mb := b
					mb.Dialect = m.wrap(b.Dialect, b.BindType)
					var unbroken, broken []caseResult
					t.Run("unbroken", func(t *testing.T) { unbroken = runRecorded(t, &b, cases...) })
					t.Run("mutant", func(t *testing.T) { broken = runRecorded(t, &mb, cases...) })
					for _, r := range unbroken {
						if r.failed {
							t.Errorf("%s fails against the unbroken dialect: %s", r.name, strings.Join(r.msgs, "; "))
						}
					}
					var failed []string
					for _, r := range broken {
						if r.failed {
							failed = append(failed, r.name)
							t.Logf("%s fails: %s", r.name, firstLine(r.msgs))
						}
					}
					if !slices.Contains(failed, m.caught) {
						t.Errorf("mutant %q (%s) did not fail %s; failed: %v", m.name, m.what, m.caught, failed)
					}
				})
			}
		})
	}
}

func firstLine(msgs []string) string {
	if len(msgs) == 0 {
		return "(no message)"
	}
	return msgs[0]
}

// caseResult is what a contract case reported through a recorder.
type caseResult struct {
	name   string
	failed bool
	msgs   []string
}

// runRecorded runs the contract cases named (every case when none is)
// against b as parallel subtests of t, each reporting to a recorder
// instead of its subtest, and returns what each reported once all ended.
func runRecorded(t *testing.T, b *Backend, names ...string) []caseResult {
	t.Helper()
	var res []caseResult
	var mu sync.Mutex
	t.Run("cases", func(t *testing.T) {
		for _, c := range contractCases {
			if len(names) > 0 && !slices.Contains(names, c.name) || c.twoWriters != "" && b.singleWriter() {
				continue
			}
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				rec := &recordingT{TB: t}
				done := make(chan struct{})
				go func() {
					defer close(done)
					c.fn(rec, b)
				}()
				<-done
				rec.mu.Lock()
				r := caseResult{name: c.name, failed: rec.failed, msgs: rec.msgs}
				rec.mu.Unlock()
				mu.Lock()
				res = append(res, r)
				mu.Unlock()
			})
		}
	})
	if len(res) == 0 || (len(names) > 0 && len(res) != len(names)) {
		t.Fatalf("contract cases %v: %d ran", names, len(res))
	}
	return res
}

// recordingT records failures instead of reporting them. Fatal and Skip end
// the case's goroutine as they would a test's; everything else (Cleanup,
// TempDir, Context, Log) goes to the enclosing test.
type recordingT struct {
	testing.TB
	mu      sync.Mutex
	failed  bool
	skipped bool
	msgs    []string
}

func (r *recordingT) record(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
	r.msgs = append(r.msgs, msg)
}

func (r *recordingT) Helper()                   {}
func (r *recordingT) Fail()                     { r.record("Fail") }
func (r *recordingT) Error(args ...any)         { r.record(fmt.Sprint(args...)) }
func (r *recordingT) Errorf(f string, a ...any) { r.record(fmt.Sprintf(f, a...)) }
func (r *recordingT) FailNow()                  { r.record("FailNow"); runtime.Goexit() }
func (r *recordingT) Fatal(args ...any)         { r.record(fmt.Sprint(args...)); runtime.Goexit() }
func (r *recordingT) Fatalf(f string, a ...any) { r.record(fmt.Sprintf(f, a...)); runtime.Goexit() }
func (r *recordingT) SkipNow()                  { r.skip(); runtime.Goexit() }
func (r *recordingT) Skip(...any)               { r.skip(); runtime.Goexit() }
func (r *recordingT) Skipf(string, ...any)      { r.skip(); runtime.Goexit() }

func (r *recordingT) skip() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.skipped = true
}

func (r *recordingT) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

func (r *recordingT) Skipped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.skipped
}

// mutant is a dialect broken in one method.
type mutant struct {
	name, what string
	// caught is the contract case that must fail.
	caught string
	// needsConcurrentWriters: the breakage only shows with two writing
	// transactions at once.
	needsConcurrentWriters bool
	wrap                   func(d dialect.Dialect, bind int) dialect.Dialect
}

var mutants = []mutant{
	{
		name: "ClaimIgnoresLeases", what: "claims as if every live lease had expired", caught: "ClaimExclusive",
		wrap: func(d dialect.Dialect, bind int) dialect.Dialect { return &claimIgnoresLeases{mutate(d, bind)} },
	},
	{
		name: "ClaimIgnoresIDs", what: "claims from the whole queue when asked for some partitions by id", caught: "ClaimByID",
		wrap: func(d dialect.Dialect, bind int) dialect.Dialect { return &claimIgnoresIDs{mutate(d, bind)} },
	},
	{
		name: "UpdateIgnoresToken", what: "updates the cursor whoever holds the lease", caught: "UpdateFenced",
		wrap: func(d dialect.Dialect, bind int) dialect.Dialect { return &updateIgnoresToken{mutate(d, bind)} },
	},
	{
		name: "VacuumPastCursor", what: "deletes through processed_seq+1", caught: "VacuumBehindCursor",
		wrap: func(d dialect.Dialect, bind int) dialect.Dialect { return &vacuumPastCursor{mutate(d, bind)} },
	},
	{
		name: "SequenceWithoutLock", what: "reads last_seq without locking the partition", caught: "SequenceConcurrent",
		needsConcurrentWriters: true,
		wrap: func(d dialect.Dialect, bind int) dialect.Dialect {
			return &sequenceWithoutLock{mutated: mutate(d, bind)}
		},
	},
	{
		name: "TakeoverNotCounted", what: "treats an expired lease like a released one", caught: "TakeoverCountsOneAttempt",
		wrap: func(d dialect.Dialect, bind int) dialect.Dialect { return &takeoverNotCounted{mutate(d, bind)} },
	},
}

// mutated embeds the real dialect; each mutant overrides one method, with
// SQL of its own where it needs some ("?" placeholders, rebound).
type mutated struct {
	dialect.Dialect
	bind int
}

func mutate(d dialect.Dialect, bind int) mutated {
	return mutated{Dialect: d, bind: bind}
}

func (m mutated) q(query string) string {
	return sqlx.Rebind(m.bind, strings.ReplaceAll(query, "{p}", m.Prefix()))
}

// ids runs a query of one int64 column.
func (m mutated) ids(ctx context.Context, q dialect.DBTX, query string, args ...any) ([]int64, error) {
	rows, err := q.QueryContext(ctx, m.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

type claimIgnoresLeases struct{ mutated }

func (m *claimIgnoresLeases) ClaimLeases(ctx context.Context, pool dialect.Pool, p *dialect.ClaimLeaseParams) (*dialect.ClaimResult, error) {
	if _, err := pool.DB.ExecContext(ctx, m.q(`UPDATE {p}processors SET lease_until = NULL WHERE lease_token IS NOT NULL`)); err != nil {
		return nil, err
	}
	return m.Dialect.ClaimLeases(ctx, pool, p)
}

type claimIgnoresIDs struct{ mutated }

func (m *claimIgnoresIDs) ClaimLeases(ctx context.Context, pool dialect.Pool, p *dialect.ClaimLeaseParams) (*dialect.ClaimResult, error) {
	all := *p
	all.PartitionIDs = nil
	return m.Dialect.ClaimLeases(ctx, pool, &all)
}

type updateIgnoresToken struct{ mutated }

func (m *updateIgnoresToken) UpdateCursors(ctx context.Context, q dialect.DBTX, p *dialect.UpdateCursorsParams) (*dialect.UpdateCursorsResult, error) {
	unfenced := *p
	unfenced.Updates = make([]*dialect.CursorUpdate, len(p.Updates))
	for i, u := range p.Updates {
		v := *u
		v.Token = ""
		unfenced.Updates[i] = &v
	}
	return m.Dialect.UpdateCursors(ctx, q, &unfenced)
}

type vacuumPastCursor struct{ mutated }

func (m *vacuumPastCursor) Vacuum(ctx context.Context, q dialect.DBTX, p *dialect.VacuumParams) (*dialect.VacuumResult, error) {
	ids, err := m.ids(ctx, q, `SELECT m.id FROM {p}messages m JOIN {p}processors pr ON pr.partition_id = m.partition_id
		WHERE m.seq <= pr.processed_seq + 1 ORDER BY m.id LIMIT ?`, p.Limit)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if _, err := q.ExecContext(ctx, m.q(`DELETE FROM {p}messages WHERE id = ?`), id); err != nil {
			return nil, err
		}
	}
	return &dialect.VacuumResult{Deleted: len(ids)}, nil
}

// sequenceWithoutLock reads the counter and the unsequenced rows without
// locking the partition row, then adds what it assigned to the counter. A
// rendezvous holds a caller briefly after its read until another caller
// has read too: the race the partition lock exists to exclude, made
// certain instead of likely.
type sequenceWithoutLock struct {
	mutated
	meet rendezvous
}

func (m *sequenceWithoutLock) SequencePartitions(ctx context.Context, tx dialect.DBTX, p *dialect.SequencePartitionsParams) (*dialect.SequencePartitionsResult, error) {
	res := &dialect.SequencePartitionsResult{}
	for _, pid := range p.PartitionIDs {
		r, err := m.sequenceOne(ctx, tx, pid, p.Limit)
		if err != nil {
			return nil, err
		}
		res.Partitions = append(res.Partitions, *r)
	}
	return res, nil
}

func (m *sequenceWithoutLock) sequenceOne(ctx context.Context, tx dialect.DBTX, pid int64, limit int) (*dialect.SequencedPartition, error) {
	p := struct {
		PartitionID int64
		Limit       int
	}{pid, limit}
	var last int64
	if err := tx.QueryRowContext(ctx, m.q(`SELECT last_seq FROM {p}partitions WHERE id = ?`), p.PartitionID).Scan(&last); err != nil {
		return nil, err
	}
	m.meet.meet(ctx, 250*time.Millisecond)
	ids, err := m.ids(ctx, tx, `SELECT id FROM {p}messages WHERE partition_id = ? AND seq IS NULL ORDER BY id LIMIT ?`, p.PartitionID, p.Limit)
	if err != nil {
		return nil, err
	}
	for i, id := range ids {
		if _, err := tx.ExecContext(ctx, m.q(`UPDATE {p}messages SET seq = ? WHERE id = ?`), last+int64(i)+1, id); err != nil {
			return nil, err
		}
	}
	if _, err := tx.ExecContext(ctx, m.q(`UPDATE {p}partitions SET last_seq = last_seq + ? WHERE id = ?`), len(ids), p.PartitionID); err != nil {
		return nil, err
	}
	if err := tx.QueryRowContext(ctx, m.q(`SELECT last_seq FROM {p}partitions WHERE id = ?`), p.PartitionID).Scan(&last); err != nil {
		return nil, err
	}
	return &dialect.SequencedPartition{PartitionID: pid, Locked: true, Assigned: len(ids), LastSeq: last}, nil
}

// rendezvous lets a caller wait a little for the next one.
type rendezvous struct {
	mu      sync.Mutex
	waiting chan struct{}
}

// meet releases a caller that is waiting, or else waits up to d (or until
// ctx ends) for the next caller.
func (r *rendezvous) meet(ctx context.Context, d time.Duration) {
	r.mu.Lock()
	if r.waiting != nil {
		close(r.waiting)
		r.waiting = nil
		r.mu.Unlock()
		return
	}
	ch := make(chan struct{})
	r.waiting = ch
	r.mu.Unlock()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ch:
		return
	case <-timer.C:
	case <-ctx.Done():
	}
	r.mu.Lock()
	if r.waiting == ch {
		r.waiting = nil
	}
	r.mu.Unlock()
}

// takeoverNotCounted clears the token of every expired lease of the queues
// before the real claim (by the database's clock, as QueueStatus reads
// it), so the claim sees a released partition where it should see a
// takeover.
type takeoverNotCounted struct{ mutated }

func (m *takeoverNotCounted) ClaimLeases(ctx context.Context, pool dialect.Pool, p *dialect.ClaimLeaseParams) (*dialect.ClaimResult, error) {
	db := pool.DB
	for _, queue := range p.Queues {
		lq, err := m.Dialect.LookupQueue(ctx, db, &dialect.LookupQueueParams{Queue: queue})
		if err != nil {
			continue // not declared: nothing to clear
		}
		for i := range lq.PartitionIDs {
			s, err := statusOf(ctx, m.Dialect, db, queue, i)
			if err != nil {
				return nil, err
			}
			if s.LeaseToken != "" && s.LeaseUntil.Before(s.Now) {
				if _, err := db.ExecContext(ctx, m.q(`UPDATE {p}processors SET lease_token = NULL, lease_until = NULL
					WHERE partition_id = ? AND lease_token = ?`), s.PartitionID, s.LeaseToken); err != nil {
					return nil, err
				}
			}
		}
	}
	return m.Dialect.ClaimLeases(ctx, pool, p)
}
