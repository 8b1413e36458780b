// Package postgres is the PostgreSQL dialect of the outbox (PostgreSQL 12+).
//
// It works with any database/sql driver for PostgreSQL (lib/pq, pgx's
// stdlib) and imports none: the claim's queue list is passed as a text
// literal and cast in SQL (see textArray); other lists are expanded by the
// shared base.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jmoiron/sqlx"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/sqlbase"
)

// Dialect is the PostgreSQL dialect, built with New; its zero value means
// New(), with the default prefix "outbox_" and wake-ups on.
type Dialect struct {
	base // the shared methods, and the statements built from spec

	notify   notifier // InsertMessages's wake-ups (see wake.go)
	listener Listener // nil: Listen returns dialect.ErrNoWakeups

	unprepared bool // WithPreparedStatements(false)
}

var (
	_ dialect.Dialect = (*Dialect)(nil)
	_ dialect.Waker   = (*Dialect)(nil)
)

// Option configures a Dialect: WithPrefix, WithPreparedStatements, and
// the wake-up options (WithNotify, WithNotifyInterval, WithListener).
type Option = sqlbase.Option[Dialect]

// New returns the PostgreSQL dialect.
func New(opts ...Option) *Dialect { return sqlbase.New(opts) }

// WithPrefix sets the table-name prefix (default "outbox_"); New panics
// for one that dialect.ValidPrefix refuses.
func WithPrefix(prefix string) Option { return sqlbase.WithPrefix[Dialect](prefix) }

// WithPreparedStatements says whether the outbox may run its statements as
// prepared statements, prepared once per connection and reused (default
// true; see dialect.Capabilities.PreparedStatements). With lib/pq, which otherwise
// parses and plans every statement anew, this is about a quarter more
// throughput with producers and workers running at once. Turn it off behind a pooler that cannot keep a
// connection's prepared statements across transactions (PgBouncer in
// transaction mode before 1.21, or without max_prepared_statements).
func WithPreparedStatements(on bool) Option { return func(d *Dialect) { d.unprepared = !on } }

// Capabilities implements dialect.Dialect: prepared statements unless
// WithPreparedStatements(false), and a sequencer round in one statement
// (SequencePending).
func (d *Dialect) Capabilities() dialect.Capabilities {
	return dialect.Capabilities{PreparedStatements: !d.unprepared, SequencePending: true}
}

// base is the shared base, built from spec.
type base = sqlbase.Base[spec, queries]

// migrationFiles is the schema with the default prefix (spec.Build hands
// it to the base, which serves it as Migrations).
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// retryable: serialization failures (40001), deadlocks (40P01) and lock
// timeouts (55P03).
func retryable(err error) bool {
	var s interface{ SQLState() string }
	if errors.As(err, &s) {
		switch s.SQLState() {
		case "40001", "40P01", "55P03":
			return true
		}
	}
	return false
}

// queries are the statements only PostgreSQL runs this way.
type queries struct {
	claimLease, claimLeaseIn, lockClaim, update, insertOne, lockCursor string
	lockPartitions, pickMany, numberMany                               string
	updateMany, sequencePending                                        string
}

// claimLeaseSQL is the lease claim, its candidates narrowed by filter.
func claimLeaseSQL(filter string) string {
	return `WITH c AS (
				SELECT pr.partition_id FROM {p}processors pr JOIN {p}partitions p ON p.id = pr.partition_id
				WHERE pr.queue = ANY($1::text[])` + filter + ` AND p.last_seq > pr.processed_seq
				  AND (pr.lease_until IS NULL OR pr.lease_until < now())
				  AND pr.next_attempt_at <= now() AND pr.blocked_at IS NULL
				ORDER BY pr.next_attempt_at LIMIT $2
				FOR UPDATE OF pr SKIP LOCKED
			)
			UPDATE {p}processors pr SET lease_token = $3,
				lease_until = now() + $4::bigint * interval '1 microsecond',
				attempts = ` + sqlbase.TakeoverAttempts("pr") + `,
				version = pr.version + 1
			FROM c, {p}partitions p
			WHERE pr.partition_id = c.partition_id AND p.id = pr.partition_id
			RETURNING pr.partition_id, pr.queue, p.partition_num, pr.processed_seq, p.last_seq, pr.attempts`
}

// spec tells the shared base how PostgreSQL differs.
type spec struct{}

// Build implements sqlbase.Spec.
func (spec) Build(p string) (sqlbase.Shared, queries) {
	r := strings.NewReplacer("{p}", p)
	sh := sqlbase.Shared{
		Name:   "postgres",
		Family: "postgres",
		// READ COMMITTED, PostgreSQL's default: nil TxOptions.
		Retryable: retryable,
		Probe:     "SELECT version()",
		Accept:    func(v string) bool { return strings.Contains(v, "PostgreSQL") },
		NowPlus:   "now() + CAST(? AS BIGINT) * INTERVAL '1 microsecond'",
		ForUpdate: " FOR UPDATE", SkipLocked: " FOR UPDATE SKIP LOCKED",
		Goose:       "postgres",
		Migrations:  migrationFiles,
		Bind:        sqlx.DOLLAR,
		Now:         "now()",
		InsertQueue: r.Replace(`INSERT INTO {p}queues (name, partitions) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`),
		SelectQueue: r.Replace(`SELECT partitions FROM {p}queues WHERE name = $1`),
		InsertPartitions: r.Replace(`INSERT INTO {p}partitions (queue, partition_num)
			SELECT $1::text, g FROM generate_series(0, $2::int - 1) g ON CONFLICT (queue, partition_num) DO NOTHING`),
		InsertCursors: r.Replace(`INSERT INTO {p}processors (partition_id, queue)
			SELECT id, queue FROM {p}partitions WHERE queue = $1 ON CONFLICT (partition_id) DO NOTHING`),
		// A loose index scan over the partial index (partition_id, id) WHERE
		// seq IS NULL: one probe per partition with a backlog, where
		// SELECT DISTINCT would read the whole backlog.
		Pending: r.Replace(`WITH RECURSIVE t AS (
				(SELECT partition_id FROM {p}messages WHERE seq IS NULL ORDER BY partition_id LIMIT 1)
				UNION ALL
				SELECT (SELECT m.partition_id FROM {p}messages m
					WHERE m.seq IS NULL AND m.partition_id > t.partition_id ORDER BY m.partition_id LIMIT 1)
				FROM t WHERE t.partition_id IS NOT NULL
			)
			SELECT partition_id FROM t WHERE partition_id IS NOT NULL LIMIT $1`),
		// Bounded: at most $1 rows per call, each already behind its
		// partition's cursor.
		//
		// SKIP LOCKED: rows an ack is deleting right now are its business;
		// the vacuum never waits on them, so the two cannot deadlock.
		Vacuum: r.Replace(`DELETE FROM {p}messages WHERE id IN (
				SELECT m.id FROM {p}processors pr JOIN {p}messages m
				  ON m.partition_id = pr.partition_id AND m.seq <= pr.processed_seq
				LIMIT $1 FOR UPDATE OF m SKIP LOCKED)`),
	}
	return sh, queries{
		// SequencePartitions: first the lock of every partition of the
		// list: NO KEY UPDATE excludes other sequencers of a partition
		// without conflicting with anything producers do, and SKIP LOCKED
		// leaves a busy partition to its holder. Rows of uncommitted
		// producers are invisible to the later statements' snapshots and
		// are never waited on; they get the next seqs once they commit.
		//
		// Then, in later statements (whose snapshots, taken after the
		// locks, see the previous holders' work), the pick of every locked
		// partition's rows and their numbering with the counters. Three
		// statements rather than one so that each is prepared once and
		// runs its generic plan (Capabilities.PreparedStatements): as a single
		// statement the planner's generic choice for the join of the pick
		// with the update was a sequential scan with a hash join, so every
		// call was planned anew, and planning cost more than running it.
		// The LATERAL keeps each partition's pick an index-only range scan
		// of at most $2 rows ("partition_id BETWEEN l.id AND l.id" rather
		// than "=": with an equality the planner walks the primary key in id
		// order and filters, which slows down as sequenced rows pile up in
		// front; a range takes the partial index (partition_id, id) WHERE
		// seq IS NULL, index-only); the numbering is a nested loop over the
		// primary key.
		lockPartitions: r.Replace(`SELECT id, last_seq FROM {p}partitions WHERE id = ANY($1::bigint[]) FOR NO KEY UPDATE SKIP LOCKED`),
		pickMany: r.Replace(`SELECT l.id, m.id FROM unnest($1::bigint[]) AS l (id) CROSS JOIN LATERAL (
				SELECT id FROM {p}messages WHERE partition_id BETWEEN l.id AND l.id AND seq IS NULL
				ORDER BY partition_id, id LIMIT $2) m`),
		numberMany: r.Replace(`WITH u AS (
				UPDATE {p}messages m SET seq = v.seq FROM unnest($1::bigint[], $2::bigint[]) AS v (id, seq)
				WHERE m.id = v.id AND m.seq IS NULL RETURNING 1
			)
			UPDATE {p}partitions p SET last_seq = v.last_seq FROM unnest($3::bigint[], $4::bigint[]) AS v (id, last_seq)
			WHERE p.id = v.id RETURNING (SELECT count(*) FROM u)`),
		// One statement: pick claimable partitions, skipping rows other
		// claimers hold, and stamp the lease (attempts: see
		// sqlbase.TakeoverAttempts).
		claimLease:   r.Replace(claimLeaseSQL("")),
		claimLeaseIn: r.Replace(claimLeaseSQL(" AND pr.partition_id = ANY($5::bigint[])")),
		// The row lock, held until the handler's transaction ends, makes
		// claimers skip the partition however long the handler runs.
		lockClaim: r.Replace(`SELECT pr.partition_id, pr.queue, p.partition_num, pr.processed_seq, p.last_seq, pr.attempts
			FROM {p}processors pr JOIN {p}partitions p ON p.id = pr.partition_id
			WHERE pr.partition_id = $1 AND pr.lease_token = $2 AND pr.blocked_at IS NULL
			FOR UPDATE OF pr SKIP LOCKED`),
		// An operator's action waits for the row (a transactional handler
		// holding it finishes first); only the cursor row is locked.
		lockCursor: r.Replace(`SELECT pr.partition_id, pr.processed_seq, p.last_seq, pr.attempts,
				coalesce(pr.last_error, ''), pr.blocked_at IS NOT NULL
			FROM {p}processors pr JOIN {p}partitions p ON p.id = pr.partition_id
			WHERE p.queue = $1 AND p.partition_num = $2
			FOR UPDATE OF pr`),
		// Fenced: with a token, the row changes only while that token holds
		// an unexpired lease, by the database's clock.
		//
		// The delivered rows go in the same statement, only if the update
		// happened: no separate vacuum pass over them, and no delete by a
		// worker that lost its lease.
		update: r.Replace(`WITH upd AS (
				UPDATE {p}processors SET processed_seq = $3, attempts = $4, last_error = $5,
					next_attempt_at = now() + $6::bigint * interval '1 microsecond',
					lease_token = CASE WHEN $7::bigint > 0 THEN lease_token ELSE NULL END,
					lease_until = CASE WHEN $7::bigint > 0 THEN now() + $7::bigint * interval '1 microsecond' ELSE NULL END,
					blocked_at = CASE WHEN $9::bool THEN now() ELSE NULL END,
					version = version + 1
				WHERE partition_id = $1 AND ($2::text = '' OR (lease_token = $2 AND lease_until > now()))
				RETURNING partition_id
			), del AS (
				DELETE FROM {p}messages WHERE partition_id = $1 AND seq > $10 AND seq <= $8 AND EXISTS (SELECT 1 FROM upd)
			)
			SELECT count(*) FROM upd`),
		// update for several partitions, one row of arrays each: the same
		// assignments and fence, the same delete for the rows the update
		// matched, and the partitions it matched.
		updateMany: r.Replace(`WITH v AS (
				SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::int[], $5::text[],
					$6::bigint[], $7::bigint[], $8::bool[], $9::bigint[], $10::bigint[])
					AS v (pid, token, seq, attempts, err, retry, renew, block, del_through, del_after)
			), upd AS (
				UPDATE {p}processors pr SET processed_seq = v.seq, attempts = v.attempts, last_error = NULLIF(v.err, ''),
					next_attempt_at = now() + v.retry * interval '1 microsecond',
					lease_token = CASE WHEN v.renew > 0 THEN pr.lease_token ELSE NULL END,
					lease_until = CASE WHEN v.renew > 0 THEN now() + v.renew * interval '1 microsecond' ELSE NULL END,
					blocked_at = CASE WHEN v.block THEN now() ELSE NULL END,
					version = pr.version + 1
				FROM v
				WHERE pr.partition_id = v.pid AND (v.token = '' OR (pr.lease_token = v.token AND pr.lease_until > now()))
				RETURNING pr.partition_id
			), del AS (
				DELETE FROM {p}messages m USING v JOIN upd ON upd.partition_id = v.pid
				WHERE m.partition_id = v.pid AND m.seq > v.del_after AND m.seq <= v.del_through
			)
			SELECT partition_id FROM upd`),
		// The function of migration 00003 (see there).
		sequencePending: r.Replace(`SELECT pending, held, held_seq, owners FROM {p}sequence_pending($1::bigint, $2::int, $3::int)`),
		insertOne: r.Replace(`INSERT INTO {p}messages (partition_id, payload, payload_type, headers, msg_id, msg_key)
			SELECT p.id, $3::bytea, $4::text, $5::text, $6::bytea, $7::text FROM {p}partitions p WHERE p.queue = $1 AND p.partition_num = $2`),
	}
}

// textArray formats vs as a PostgreSQL array literal ('{"a","b"}') for the
// claim's ::text[] cast, every element double-quoted with '"' and '\'
// escaped. Every driver sends a string parameter as text, so this needs no
// driver's array type (lib/pq's pq.Array is a driver.Valuer that pgx's
// stdlib treats differently).
func textArray(vs []string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, v := range vs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for _, c := range []byte(v) {
			if c == '"' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// maxInsertRows keeps a multi-row INSERT under PostgreSQL's 65535 bind
// parameters (7 per row).
const maxInsertRows = 1000

// InsertMessages implements dialect.Dialect. The partition row is found by
// (queue, partition_num) in the statement itself, in q's own database,
// through the UNIQUE (queue, partition_num) index. The count guard makes
// each statement all or nothing: when a row has no partition, none is
// inserted. ORDER BY ord hands out ids from the sequence in slice order.
func (d *Dialect) InsertMessages(ctx context.Context, q dialect.DBTX, p *dialect.InsertMessagesParams) (*dialect.InsertMessagesResult, error) {
	if len(p.Rows) == 1 {
		// The common Enqueue: a plain INSERT … SELECT, cheaper to plan.
		r := p.Rows[0]
		return sqlbase.InsertAll(ctx, q, p.Rows, func(rows []dialect.InsertRow) sqlbase.Chunk {
			args := []any{r.Queue, r.Partition, r.Payload, r.PayloadType, sqlbase.NullBytes(r.Headers), sqlbase.NullBlob(r.MessageID), sqlbase.NullString(r.Key)}
			if notify := d.notify.due(rows); len(notify) > 0 {
				// See the multi-row case below.
				return sqlbase.Chunk{N: 1, Query: "WITH ins AS (" + d.Own().insertOne + d.notifyTail(&args, notify), Args: args, Counted: true}
			}
			return sqlbase.Chunk{N: 1, Query: d.Own().insertOne, Args: args}
		})
	}
	return sqlbase.InsertAll(ctx, q, p.Rows, func(rows []dialect.InsertRow) sqlbase.Chunk {
		n := min(len(rows), maxInsertRows)
		var b strings.Builder
		notify := d.notify.due(rows[:n])
		b.WriteString("WITH v (ord, queue, partition_num, payload, payload_type, headers, msg_id, msg_key) AS (VALUES ")
		args := make([]any, 0, 7*n+len(notify))
		for i, r := range rows[:n] {
			if i > 0 {
				b.WriteString(", ")
			}
			k := 7 * i
			fmt.Fprintf(&b, "(%d, $%d::text, $%d::int, $%d::bytea, $%d::text, $%d::text, $%d::bytea, $%d::text)", i, k+1, k+2, k+3, k+4, k+5, k+6, k+7)
			args = append(args, r.Queue, r.Partition, r.Payload, r.PayloadType, sqlbase.NullBytes(r.Headers), sqlbase.NullBlob(r.MessageID), sqlbase.NullString(r.Key))
		}
		fmt.Fprintf(&b, `), r AS (SELECT p.id, v.ord, v.payload, v.payload_type, v.headers, v.msg_id, v.msg_key
				FROM v JOIN %[1]spartitions p ON p.queue = v.queue AND p.partition_num = v.partition_num)
			INSERT INTO %[1]smessages (partition_id, payload, payload_type, headers, msg_id, msg_key)
			SELECT id, payload, payload_type, headers, msg_id, msg_key FROM r WHERE (SELECT count(*) FROM r) = %[2]d ORDER BY ord`, d.Prefix(), n)
		if len(notify) == 0 {
			return sqlbase.Chunk{N: n, Query: b.String(), Args: args}
		}
		// The insert becomes a data-modifying CTE (it runs whether or not
		// the outer SELECT reads it); the SELECT reports its row count and
		// sends the wake-ups.
		return sqlbase.Chunk{N: n, Query: "WITH ins AS (" + b.String() + d.notifyTail(&args, notify), Args: args, Counted: true}
	})
}

// SequencePartitions implements dialect.Dialect in three
// statements, whatever the number of partitions: lock, pick, number.
func (d *Dialect) SequencePartitions(ctx context.Context, tx dialect.DBTX, p *dialect.SequencePartitionsParams) (*dialect.SequencePartitionsResult, error) {
	s := sqlbase.NewSequenced(p.PartitionIDs)
	if len(p.PartitionIDs) == 0 || p.Limit <= 0 {
		return s.Result, nil
	}
	// Generic plans for this transaction's statements (see pickMany):
	// custom ones would be chosen, and cost more to plan than to run.
	// Unprepared, each statement is planned anyway, so custom plans it is.
	if !d.unprepared {
		if _, err := tx.ExecContext(ctx, "SET LOCAL plan_cache_mode = force_generic_plan"); err != nil {
			return nil, err
		}
	}
	locked, err := s.Lock(ctx, tx, d.Own().lockPartitions, int64Array(p.PartitionIDs))
	if err != nil || len(locked) == 0 {
		return s.Result, err
	}
	picked := make(map[int64][]int64, len(locked))
	rows, err := tx.QueryContext(ctx, d.Own().pickMany, int64Array(locked), p.Limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	total := 0
	for rows.Next() {
		var pid, id int64
		if err := rows.Scan(&pid, &id); err != nil {
			return nil, err
		}
		picked[pid] = append(picked[pid], id)
		total++
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if total == 0 {
		return s.Result, nil
	}
	ids, seqs := make([]int64, 0, total), make([]int64, 0, total)
	var pids, lasts []int64
	for _, pid := range locked {
		r, ms := s.Get(pid), picked[pid]
		if len(ms) == 0 {
			continue
		}
		slices.Sort(ms) // id order, whatever order the rows came in
		for i, id := range ms {
			ids = append(ids, id)
			seqs = append(seqs, r.LastSeq+int64(i)+1)
		}
		pids = append(pids, pid)
		lasts = append(lasts, r.LastSeq+int64(len(ms)))
	}
	var numbered int64
	n := 0
	nrows, err := tx.QueryContext(ctx, d.Own().numberMany, int64Array(ids), int64Array(seqs), int64Array(pids), int64Array(lasts))
	if err != nil {
		return nil, err
	}
	defer nrows.Close()
	for nrows.Next() {
		if err := nrows.Scan(&numbered); err != nil {
			return nil, err
		}
		n++
	}
	if err := nrows.Err(); err != nil {
		return nil, err
	}
	if n != len(pids) || numbered != int64(len(ids)) {
		// Only a lock holder numbers rows, so this cannot happen; if it
		// did, the caller's transaction must not commit the counters.
		return nil, fmt.Errorf("postgres: sequencing numbered %d rows of %d and %d counters of %d", numbered, len(ids), n, len(pids))
	}
	for i, pid := range pids {
		r := s.Get(pid)
		r.Assigned, r.LastSeq = int(lasts[i]-r.LastSeq), lasts[i]
	}
	return s.Result, nil
}

// SequencePending implements dialect.Dialect with the function of
// migration 00003, one autocommit statement; it runs SequencePartitions's
// statements, in the same order, in one round trip. A database without the
// function (its migrations not applied yet) gets an error wrapping
// dialect.ErrUnsupported.
func (d *Dialect) SequencePending(ctx context.Context, q dialect.DBTX, p *dialect.SequencePendingParams) (*dialect.SequencePartitionsResult, error) {
	res := &dialect.SequencePartitionsResult{}
	if p.MaxPartitions <= 0 || p.Limit <= 0 {
		return res, nil
	}
	var cols [4]string
	err := q.QueryRowContext(ctx, d.Own().sequencePending, p.FromPartitionID, p.MaxPartitions, p.Limit).Scan(&cols[0], &cols[1], &cols[2], &cols[3])
	if err != nil {
		var s interface{ SQLState() string }
		if errors.As(err, &s) && s.SQLState() == "42883" { // undefined_function
			return nil, fmt.Errorf("postgres: %ssequence_pending: %w (migration 00003 not applied: %v)", d.Prefix(), dialect.ErrUnsupported, err)
		}
		return nil, err
	}
	var arrs [4][]int64
	for i, c := range cols {
		if arrs[i], err = parseInt64Array(c); err != nil {
			return nil, fmt.Errorf("postgres: %ssequence_pending: %w", d.Prefix(), err)
		}
	}
	pending, held, heldSeq, owners := arrs[0], arrs[1], arrs[2], arrs[3]
	if len(held) != len(heldSeq) {
		return nil, fmt.Errorf("postgres: %ssequence_pending: %d partitions held, %d counters", d.Prefix(), len(held), len(heldSeq))
	}
	// All four arrays are in partition id order.
	res.Partitions = make([]dialect.SequencedPartition, len(pending))
	h, o := 0, 0
	for i, pid := range pending {
		r := dialect.SequencedPartition{PartitionID: pid}
		if h < len(held) && held[h] == pid {
			r.Locked, r.LastSeq = true, heldSeq[h]
			for ; o < len(owners) && owners[o] == pid; o++ {
				r.Assigned++
			}
			r.LastSeq += int64(r.Assigned)
			h++
		}
		res.Partitions[i] = r
	}
	if h != len(held) || o != len(owners) {
		return nil, fmt.Errorf("postgres: %ssequence_pending: result out of order: %v %v %v", d.Prefix(), pending, held, owners)
	}
	return res, nil
}

// parseInt64Array parses a PostgreSQL bigint[] in text form ("{1,2,3}").
func parseInt64Array(s string) ([]int64, error) {
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return nil, fmt.Errorf("not a bigint[]: %q", s)
	}
	s = s[1 : len(s)-1]
	if s == "" {
		return nil, nil
	}
	out := make([]int64, 0, strings.Count(s, ",")+1)
	for f := range strings.SplitSeq(s, ",") {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("not a bigint[]: %w", err)
		}
		out = append(out, v)
	}
	return out, nil
}

// int64Array formats vs as a PostgreSQL array literal for a ::bigint[]
// cast (see textArray for why a literal).
func int64Array(vs []int64) string {
	b := make([]byte, 0, 2+8*len(vs))
	b = append(b, '{')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, v, 10)
	}
	return string(append(b, '}'))
}

// ClaimLeases implements dialect.Dialect in a single autocommit
// statement, on pool.Q.
func (d *Dialect) ClaimLeases(ctx context.Context, pool dialect.Pool, p *dialect.ClaimLeaseParams) (*dialect.ClaimResult, error) {
	if p.Limit <= 0 || len(p.Queues) == 0 {
		return &dialect.ClaimResult{}, nil
	}
	if len(p.PartitionIDs) > 0 {
		return scanClaims(pool.Q.QueryContext(ctx, d.Own().claimLeaseIn, textArray(p.Queues), p.Limit, p.Token, p.Lease.Microseconds(), int64Array(p.PartitionIDs)))
	}
	return scanClaims(pool.Q.QueryContext(ctx, d.Own().claimLease, textArray(p.Queues), p.Limit, p.Token, p.Lease.Microseconds()))
}

// LockPartition implements dialect.Dialect.
func (d *Dialect) LockPartition(ctx context.Context, tx *sql.Tx, p *dialect.LockPartitionParams) (*dialect.ClaimResult, error) {
	return scanClaims(tx.QueryContext(ctx, d.Own().lockClaim, p.PartitionID, p.Token))
}

func scanClaims(rows *sql.Rows, err error) (*dialect.ClaimResult, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	res := &dialect.ClaimResult{}
	for rows.Next() {
		var c dialect.ClaimedPartition
		if err := rows.Scan(&c.PartitionID, &c.Queue, &c.Partition, &c.ProcessedSeq, &c.LastSeq, &c.Attempts); err != nil {
			return nil, err
		}
		res.Partitions = append(res.Partitions, c)
	}
	return res, rows.Err()
}

// UpdateCursors implements dialect.Dialect in one statement, atomic by
// itself: update for a single entry (the common ack when idle), else
// updateMany.
func (d *Dialect) UpdateCursors(ctx context.Context, q dialect.DBTX, up *dialect.UpdateCursorsParams) (*dialect.UpdateCursorsResult, error) {
	ps := up.Updates
	if len(ps) == 1 {
		p := ps[0]
		var n int
		err := q.QueryRowContext(ctx, d.Own().update, p.PartitionID, p.Token, p.ProcessedSeq, p.Attempts,
			sqlbase.NullString(p.LastError), p.RetryAfter.Microseconds(), p.Renew.Microseconds(), p.DeleteThrough, p.Block, p.DeleteAfter).Scan(&n)
		if err != nil {
			return nil, err
		}
		return &dialect.UpdateCursorsResult{Updated: []bool{n == 1}}, nil
	}
	if err := sqlbase.DistinctCursors(ps); err != nil {
		return nil, err
	}
	n := len(ps)
	pids, seqs, retries, renews := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	dels, afters, attempts := make([]int64, n), make([]int64, n), make([]int64, n)
	tokens, errs := make([]string, n), make([]string, n)
	blocks := make([]byte, 0, 2+2*n)
	blocks = append(blocks, '{')
	for i, p := range ps {
		pids[i], tokens[i], seqs[i], attempts[i], errs[i] = p.PartitionID, p.Token, p.ProcessedSeq, int64(p.Attempts), p.LastError
		retries[i], renews[i], dels[i], afters[i] = p.RetryAfter.Microseconds(), p.Renew.Microseconds(), p.DeleteThrough, p.DeleteAfter
		if i > 0 {
			blocks = append(blocks, ',')
		}
		blocks = append(blocks, "ft"[b2i(p.Block)])
	}
	blocks = append(blocks, '}')
	rows, err := q.QueryContext(ctx, d.Own().updateMany, int64Array(pids), textArray(tokens), int64Array(seqs), int64Array(attempts),
		textArray(errs), int64Array(retries), int64Array(renews), string(blocks), int64Array(dels), int64Array(afters))
	updated, err := sqlbase.MatchedCursors(rows, err, ps)
	if err != nil {
		return nil, err
	}
	return &dialect.UpdateCursorsResult{Updated: updated}, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// LockCursor implements dialect.Dialect.
func (d *Dialect) LockCursor(ctx context.Context, tx *sql.Tx, p *dialect.LockCursorParams) (*dialect.LockCursorResult, error) {
	var r dialect.LockCursorResult
	err := tx.QueryRowContext(ctx, d.Own().lockCursor, p.Queue, p.Partition).Scan(&r.PartitionID, &r.ProcessedSeq,
		&r.LastSeq, &r.Attempts, &r.LastError, &r.Blocked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, dialect.ErrQueueNotFound
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}
