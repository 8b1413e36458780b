// Package postgres is the PostgreSQL dialect of the outbox (PostgreSQL 12+).
//
// It works with any database/sql driver for PostgreSQL (lib/pq, pgx's
// stdlib) and imports none: arrays are passed as text literals and cast in
// SQL (see textArray).
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/schema"
	"github.com/modkit-go/db/dialect/internal/stmt"
)

// Dialect is the PostgreSQL dialect. Build it with New.
//
// The zero value is usable and means New(): the default prefix "outbox_".
type Dialect struct {
	prefix string // set by options before init; read through Prefix
	once   sync.Once
	q      queries // built once, by init

	notify   notifier // InsertMessages's wake-ups (see wake.go)
	listener Listener // nil: Listen returns dialect.ErrNoWakeups
}

var (
	_ dialect.Dialect   = (*Dialect)(nil)
	_ dialect.Inspector = (*Dialect)(nil)
	_ dialect.Schema    = (*Dialect)(nil)
)

// Option configures a Dialect.
type Option func(*Dialect)

// WithPrefix sets the table-name prefix (default "outbox_"). It must match
// [dialect.ValidPrefix]; New panics otherwise, since a prefix is a
// constant of the program.
func WithPrefix(prefix string) Option { return func(d *Dialect) { d.prefix = prefix } }

// New returns the PostgreSQL dialect.
func New(opts ...Option) *Dialect {
	d := &Dialect{prefix: dialect.DefaultPrefix, notify: notifier{on: true, every: DefaultNotifyInterval}}
	for _, o := range opts {
		o(d)
	}
	if !dialect.ValidPrefix(d.prefix) {
		panic(fmt.Sprintf("postgres: invalid table prefix %q", d.prefix))
	}
	d.init()
	return d
}

// init applies the default prefix to a zero Dialect and builds the
// queries, once.
func (d *Dialect) init() {
	d.once.Do(func() {
		if d.prefix == "" {
			d.prefix = dialect.DefaultPrefix
		}
		d.q = buildQueries(d.prefix)
	})
}

// qs returns the queries, building them on first use.
func (d *Dialect) qs() *queries {
	d.init()
	return &d.q
}

// Name implements dialect.Dialect.
func (d *Dialect) Name() string { return "postgres" }

// Prefix implements dialect.Schema.
func (d *Dialect) Prefix() string {
	d.init()
	return d.prefix
}

// GooseDialect implements dialect.Schema.
func (d *Dialect) GooseDialect() string { return "postgres" }

// Migrations implements dialect.Schema.
func (d *Dialect) Migrations() fs.FS { return schema.FS(migrationFiles, "migrations", d.Prefix()) }

// migrationFiles is the schema with the default prefix.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// TxOptions implements dialect.Dialect: READ COMMITTED, PostgreSQL's default.
func (d *Dialect) TxOptions() *sql.TxOptions { return nil }

// IsRetryable implements dialect.Dialect: serialization failures (40001),
// deadlocks (40P01) and lock timeouts (55P03).
func (d *Dialect) IsRetryable(err error) bool {
	var s interface{ SQLState() string }
	if errors.As(err, &s) {
		switch s.SQLState() {
		case "40001", "40P01", "55P03":
			return true
		}
	}
	return false
}

type queries struct {
	insertQueue, selectQueue, insertPartitions, insertProcessors, lookup string
	pending, lockPartition, sequence                                     string
	claimLease, lockClaim, read, update, deadLetters, release            string
	lockCursor                                                           string
	vacuum, state, stats, insertOne                                      string
}

func buildQueries(p string) queries {
	r := strings.NewReplacer("{p}", p)
	return queries{
		insertQueue: r.Replace(`INSERT INTO {p}queues (name, partitions) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`),
		selectQueue: r.Replace(`SELECT partitions FROM {p}queues WHERE name = $1`),
		insertPartitions: r.Replace(`INSERT INTO {p}partitions (queue, partition_num)
			SELECT $1::text, g FROM generate_series(0, $2::int - 1) g ON CONFLICT (queue, partition_num) DO NOTHING`),
		insertProcessors: r.Replace(`INSERT INTO {p}processors (partition_id, queue)
			SELECT id, queue FROM {p}partitions WHERE queue = $1 ON CONFLICT (partition_id) DO NOTHING`),
		lookup: r.Replace(`SELECT p.id FROM {p}queues q JOIN {p}partitions p ON p.queue = q.name
			WHERE q.name = $1 ORDER BY p.partition_num`),
		// A loose index scan over the partial index (partition_id, id) WHERE
		// seq IS NULL: one probe per partition with a backlog, where
		// SELECT DISTINCT would read the whole backlog.
		pending: r.Replace(`WITH RECURSIVE t AS (
				(SELECT partition_id FROM {p}messages WHERE seq IS NULL ORDER BY partition_id LIMIT 1)
				UNION ALL
				SELECT (SELECT m.partition_id FROM {p}messages m
					WHERE m.seq IS NULL AND m.partition_id > t.partition_id ORDER BY m.partition_id LIMIT 1)
				FROM t WHERE t.partition_id IS NOT NULL
			)
			SELECT partition_id FROM t WHERE partition_id IS NOT NULL LIMIT $1`),
		// NO KEY UPDATE: excludes other sequencers of this partition without
		// conflicting with anything producers do. SKIP LOCKED: a busy
		// partition is someone else's job right now.
		lockPartition: r.Replace(`SELECT last_seq FROM {p}partitions WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED`),
		// Runs after the lock is held, so its snapshot sees every row the
		// previous holder sequenced. Rows of uncommitted producers are
		// invisible to the snapshot and are never waited on; they get the
		// next seqs once they commit.
		//
		// "partition_id BETWEEN $1 AND $1" rather than "=": with an equality
		// the planner walks the primary key in id order and filters, which
		// slows down as sequenced rows pile up in front; a range cannot use
		// the primary key's order, so it takes the partial index
		// (partition_id, id) WHERE seq IS NULL, index-only.
		sequence: r.Replace(`WITH todo AS (
				SELECT id, row_number() OVER (ORDER BY partition_id, id) AS rn
				FROM {p}messages WHERE partition_id BETWEEN $1 AND $1 AND seq IS NULL
				ORDER BY partition_id, id LIMIT $3
			), upd AS (
				UPDATE {p}messages m SET seq = $2 + todo.rn FROM todo WHERE m.id = todo.id RETURNING 1
			)
			UPDATE {p}partitions SET last_seq = last_seq + (SELECT count(*) FROM upd)
			WHERE id = $1 RETURNING last_seq`),
		// One statement: pick claimable partitions, skipping rows other
		// claimers hold, and stamp the lease. A lease that was never released
		// (its owner crashed or overran) counts as a failed attempt.
		claimLease: r.Replace(`WITH c AS (
				SELECT pr.partition_id FROM {p}processors pr JOIN {p}partitions p ON p.id = pr.partition_id
				WHERE pr.queue = ANY($1::text[]) AND p.last_seq > pr.processed_seq
				  AND (pr.lease_until IS NULL OR pr.lease_until < now())
				  AND pr.next_attempt_at <= now() AND pr.blocked_at IS NULL
				ORDER BY pr.next_attempt_at LIMIT $2
				FOR UPDATE OF pr SKIP LOCKED
			)
			UPDATE {p}processors pr SET lease_token = $3,
				lease_until = now() + $4::bigint * interval '1 microsecond',
				attempts = pr.attempts + CASE WHEN pr.lease_token IS NULL THEN 0 ELSE 1 END,
				version = pr.version + 1
			FROM c, {p}partitions p
			WHERE pr.partition_id = c.partition_id AND p.id = pr.partition_id
			RETURNING pr.partition_id, pr.queue, p.partition_num, pr.processed_seq, p.last_seq, pr.attempts`),
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
		read: r.Replace(`SELECT id, seq, payload, payload_type, headers, created_at FROM {p}messages
			WHERE partition_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`),
		// Fenced: with a token, the row changes only while that token holds
		// an unexpired lease, by the database's clock.
		//
		// The delivered rows go in the same statement, only if the update
		// happened: no separate vacuum pass over them, and no delete by a
		// processor that lost its lease.
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
				DELETE FROM {p}messages WHERE partition_id = $1 AND seq <= $8 AND EXISTS (SELECT 1 FROM upd)
			)
			SELECT count(*) FROM upd`),
		deadLetters: r.Replace(`INSERT INTO {p}dead_letters
				(queue, partition_num, seq, payload, payload_type, headers, created_at, attempts, last_error)
			SELECT p.queue, p.partition_num, m.seq, m.payload, m.payload_type, m.headers, m.created_at, $3, $4
			FROM {p}messages m JOIN {p}partitions p ON p.id = m.partition_id
			WHERE m.partition_id = $1 AND m.seq = ANY($2::bigint[]) ORDER BY m.seq`),
		release: r.Replace(`UPDATE {p}processors SET lease_token = NULL, lease_until = NULL, version = version + 1
			WHERE partition_id = ANY($1::bigint[]) AND lease_token = $2`),
		// Bounded: at most $1 rows per call, each already behind its
		// partition's cursor.
		//
		// SKIP LOCKED: rows an ack is deleting right now are its business;
		// the vacuum never waits on them, so the two cannot deadlock.
		vacuum: r.Replace(`DELETE FROM {p}messages WHERE id IN (
				SELECT m.id FROM {p}processors pr JOIN {p}messages m
				  ON m.partition_id = pr.partition_id AND m.seq <= pr.processed_seq
				LIMIT $1 FOR UPDATE OF m SKIP LOCKED)`),
		state: r.Replace(`SELECT p.id, p.last_seq, pr.processed_seq, pr.attempts, coalesce(pr.last_error, ''),
				pr.next_attempt_at, coalesce(pr.lease_token, ''), pr.lease_until, pr.blocked_at, now()
			FROM {p}partitions p JOIN {p}processors pr ON pr.partition_id = p.id
			WHERE p.queue = $1 AND p.partition_num = $2`),
		insertOne: r.Replace(`INSERT INTO {p}messages (partition_id, payload, payload_type, headers)
			SELECT p.id, $3::bytea, $4::text, $5::text FROM {p}partitions p WHERE p.queue = $1 AND p.partition_num = $2`),
		stats: r.Replace(`SELECT (SELECT count(*) FROM {p}queues), (SELECT count(*) FROM {p}partitions),
				(SELECT count(*) FROM {p}messages), (SELECT count(*) FROM {p}messages WHERE seq IS NULL),
				(SELECT count(*) FROM {p}dead_letters)`),
	}
}

// Arrays go to the server as text literals ('{1,2}', '{"a","b"}') that the
// statement casts (::bigint[], ::text[]). Every driver sends a string
// parameter as text, so this needs no driver's array type (lib/pq's
// pq.Array is a driver.Valuer that pgx's stdlib treats differently).

// int64Array formats vs as a PostgreSQL array literal.
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

// textArray formats vs as a PostgreSQL array literal, every element
// double-quoted with '"' and '\' escaped.
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

// DeclareQueue implements dialect.Dialect.
func (d *Dialect) DeclareQueue(ctx context.Context, tx *sql.Tx, p *dialect.DeclareQueueParams) (*dialect.DeclareQueueResult, error) {
	if _, err := tx.ExecContext(ctx, d.qs().insertQueue, p.Queue, p.Partitions); err != nil {
		return nil, err
	}
	var n int
	if err := tx.QueryRowContext(ctx, d.qs().selectQueue, p.Queue).Scan(&n); err != nil {
		return nil, err
	}
	if n != p.Partitions {
		return &dialect.DeclareQueueResult{Partitions: n}, nil
	}
	if _, err := tx.ExecContext(ctx, d.qs().insertPartitions, p.Queue, p.Partitions); err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, d.qs().insertProcessors, p.Queue); err != nil {
		return nil, err
	}
	lr, err := d.LookupQueue(ctx, tx, &dialect.LookupQueueParams{Queue: p.Queue})
	if err != nil {
		return nil, err
	}
	return &dialect.DeclareQueueResult{Partitions: n, PartitionIDs: lr.PartitionIDs}, nil
}

// LookupQueue implements dialect.Dialect.
func (d *Dialect) LookupQueue(ctx context.Context, q dialect.DBTX, p *dialect.LookupQueueParams) (*dialect.LookupQueueResult, error) {
	return stmt.LookupQueue(ctx, q, d.qs().lookup, p.Queue)
}

// maxInsertRows keeps a multi-row INSERT under PostgreSQL's 65535 bind
// parameters (5 per row).
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
		return stmt.InsertAll(ctx, q, p.Rows, func(rows []dialect.InsertRow) stmt.Chunk {
			args := []any{r.Queue, r.Partition, r.Payload, r.PayloadType, stmt.NullBytes(r.Headers)}
			if notify := d.notify.due(rows); len(notify) > 0 {
				// See the multi-row case below.
				return stmt.Chunk{N: 1, Query: "WITH ins AS (" + d.qs().insertOne + d.notifyTail(&args, notify), Args: args, Counted: true}
			}
			return stmt.Chunk{N: 1, Query: d.qs().insertOne, Args: args}
		})
	}
	return stmt.InsertAll(ctx, q, p.Rows, func(rows []dialect.InsertRow) stmt.Chunk {
		n := min(len(rows), maxInsertRows)
		var b strings.Builder
		notify := d.notify.due(rows[:n])
		b.WriteString("WITH v (ord, queue, partition_num, payload, payload_type, headers) AS (VALUES ")
		args := make([]any, 0, 5*n+len(notify))
		for i, r := range rows[:n] {
			if i > 0 {
				b.WriteString(", ")
			}
			k := 5 * i
			fmt.Fprintf(&b, "(%d, $%d::text, $%d::int, $%d::bytea, $%d::text, $%d::text)", i, k+1, k+2, k+3, k+4, k+5)
			args = append(args, r.Queue, r.Partition, r.Payload, r.PayloadType, stmt.NullBytes(r.Headers))
		}
		fmt.Fprintf(&b, `), r AS (SELECT p.id, v.ord, v.payload, v.payload_type, v.headers
				FROM v JOIN %[1]spartitions p ON p.queue = v.queue AND p.partition_num = v.partition_num)
			INSERT INTO %[1]smessages (partition_id, payload, payload_type, headers)
			SELECT id, payload, payload_type, headers FROM r WHERE (SELECT count(*) FROM r) = %[2]d ORDER BY ord`, d.Prefix(), n)
		if len(notify) == 0 {
			return stmt.Chunk{N: n, Query: b.String(), Args: args}
		}
		// The insert becomes a data-modifying CTE (it runs whether or not
		// the outer SELECT reads it); the SELECT reports its row count and
		// sends the wake-ups.
		return stmt.Chunk{N: n, Query: "WITH ins AS (" + b.String() + d.notifyTail(&args, notify), Args: args, Counted: true}
	})
}

// PendingPartitions implements dialect.Dialect.
func (d *Dialect) PendingPartitions(ctx context.Context, q dialect.DBTX, p *dialect.PendingPartitionsParams) (*dialect.PendingPartitionsResult, error) {
	ids, err := stmt.Int64s(ctx, q, d.qs().pending, p.Limit)
	if err != nil {
		return nil, err
	}
	return &dialect.PendingPartitionsResult{PartitionIDs: ids}, nil
}

// SequencePartition implements dialect.Dialect.
func (d *Dialect) SequencePartition(ctx context.Context, tx *sql.Tx, p *dialect.SequencePartitionParams) (*dialect.SequencePartitionResult, error) {
	var last int64
	err := tx.QueryRowContext(ctx, d.qs().lockPartition, p.PartitionID).Scan(&last)
	if errors.Is(err, sql.ErrNoRows) {
		return &dialect.SequencePartitionResult{}, nil
	}
	if err != nil {
		return nil, err
	}
	var after int64
	if err := tx.QueryRowContext(ctx, d.qs().sequence, p.PartitionID, last, p.Limit).Scan(&after); err != nil {
		return nil, err
	}
	return &dialect.SequencePartitionResult{Locked: true, Assigned: int(after - last), LastSeq: after}, nil
}

// ClaimLease implements dialect.Dialect in a single autocommit statement.
func (d *Dialect) ClaimLease(ctx context.Context, db *sql.DB, p *dialect.ClaimLeaseParams) (*dialect.ClaimResult, error) {
	return scanClaims(db.QueryContext(ctx, d.qs().claimLease, textArray(p.Queues), p.Limit, p.Token, p.Lease.Microseconds()))
}

// LockPartition implements dialect.Dialect.
func (d *Dialect) LockPartition(ctx context.Context, tx *sql.Tx, p *dialect.LockPartitionParams) (*dialect.ClaimResult, error) {
	return scanClaims(tx.QueryContext(ctx, d.qs().lockClaim, p.PartitionID, p.Token))
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

// ReadMessages implements dialect.Dialect.
func (d *Dialect) ReadMessages(ctx context.Context, q dialect.DBTX, p *dialect.ReadMessagesParams) (*dialect.ReadMessagesResult, error) {
	rows, err := q.QueryContext(ctx, d.qs().read, p.PartitionID, p.AfterSeq, p.Limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	res := &dialect.ReadMessagesResult{Messages: make([]dialect.Message, 0, p.Limit)}
	for rows.Next() {
		var m dialect.Message
		var h sql.NullString
		if err := rows.Scan(&m.ID, &m.Seq, &m.Payload, &m.PayloadType, &h, &m.CreatedAt); err != nil {
			return nil, err
		}
		if h.Valid {
			m.Headers = []byte(h.String)
		}
		res.Messages = append(res.Messages, m)
	}
	return res, rows.Err()
}

// UpdateCursor implements dialect.Dialect.
func (d *Dialect) UpdateCursor(ctx context.Context, q dialect.DBTX, p *dialect.UpdateCursorParams) (*dialect.UpdateCursorResult, error) {
	var n int
	err := q.QueryRowContext(ctx, d.qs().update, p.PartitionID, p.Token, p.ProcessedSeq, p.Attempts,
		stmt.NullString(p.LastError), p.RetryAfter.Microseconds(), p.Renew.Microseconds(), p.DeleteThrough, p.Block).Scan(&n)
	if err != nil {
		return nil, err
	}
	return &dialect.UpdateCursorResult{Updated: n == 1}, nil
}

// InsertDeadLetters implements dialect.Dialect.
func (d *Dialect) InsertDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.InsertDeadLettersParams) (*dialect.InsertDeadLettersResult, error) {
	res, err := q.ExecContext(ctx, d.qs().deadLetters, p.PartitionID, int64Array(p.Seqs), p.Attempts, stmt.NullString(p.Reason))
	if err != nil {
		return nil, err
	}
	n, err := res.RowsAffected()
	return &dialect.InsertDeadLettersResult{Inserted: int(n)}, err
}

// ReleaseLeases implements dialect.Dialect.
func (d *Dialect) ReleaseLeases(ctx context.Context, q dialect.DBTX, p *dialect.ReleaseLeasesParams) (*dialect.ReleaseLeasesResult, error) {
	res, err := q.ExecContext(ctx, d.qs().release, int64Array(p.PartitionIDs), p.Token)
	if err != nil {
		return nil, err
	}
	n, err := res.RowsAffected()
	return &dialect.ReleaseLeasesResult{Released: int(n)}, err
}

// Vacuum implements dialect.Dialect.
func (d *Dialect) Vacuum(ctx context.Context, q dialect.DBTX, p *dialect.VacuumParams) (*dialect.VacuumResult, error) {
	res, err := q.ExecContext(ctx, d.qs().vacuum, p.Limit)
	if err != nil {
		return nil, err
	}
	n, err := res.RowsAffected()
	return &dialect.VacuumResult{Deleted: int(n)}, err
}

// PartitionState implements dialect.Inspector.
func (d *Dialect) PartitionState(ctx context.Context, q dialect.DBTX, p *dialect.PartitionStateParams) (*dialect.PartitionStateResult, error) {
	var r dialect.PartitionStateResult
	var until, blocked sql.NullTime
	err := q.QueryRowContext(ctx, d.qs().state, p.Queue, p.Partition).Scan(&r.PartitionID, &r.LastSeq, &r.ProcessedSeq,
		&r.Attempts, &r.LastError, &r.NextAttemptAt, &r.LeaseToken, &until, &blocked, &r.Now)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, dialect.ErrQueueNotFound
	}
	if err != nil {
		return nil, err
	}
	r.LeaseUntil, r.BlockedAt = until.Time, blocked.Time
	return &r, nil
}

// ListDeadLetters implements dialect.Inspector.
func (d *Dialect) ListDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.ListDeadLettersParams) (*dialect.ListDeadLettersResult, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, queue, partition_num, seq, payload, payload_type, headers, created_at,
			failed_at, attempts, coalesce(last_error, ''), status
		FROM `+d.Prefix()+`dead_letters
		WHERE ($1::text = '' OR queue = $1) AND ($2::text = '' OR status = $2)
		ORDER BY failed_at DESC, id DESC LIMIT $3`, p.Queue, p.Status, p.Limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	res := &dialect.ListDeadLettersResult{}
	for rows.Next() {
		var dl dialect.DeadLetter
		var h sql.NullString
		if err := rows.Scan(&dl.ID, &dl.Queue, &dl.Partition, &dl.Seq, &dl.Payload, &dl.PayloadType, &h,
			&dl.CreatedAt, &dl.FailedAt, &dl.Attempts, &dl.LastError, &dl.Status); err != nil {
			return nil, err
		}
		if h.Valid {
			dl.Headers = []byte(h.String)
		}
		res.DeadLetters = append(res.DeadLetters, dl)
	}
	return res, rows.Err()
}

// Stats implements dialect.Inspector.
func (d *Dialect) Stats(ctx context.Context, q dialect.DBTX, _ *dialect.StatsParams) (*dialect.StatsResult, error) {
	var s dialect.StatsResult
	err := q.QueryRowContext(ctx, d.qs().stats).Scan(&s.Queues, &s.Partitions, &s.Messages, &s.Unsequenced, &s.DeadLetters)
	if err != nil {
		return nil, err
	}
	return &s, nil
}

var _ dialect.Checker = (*Dialect)(nil)

// CheckDatabase implements dialect.Checker: q must be PostgreSQL.
func (d *Dialect) CheckDatabase(ctx context.Context, q dialect.DBTX) error {
	return stmt.CheckDatabase(ctx, q, "SELECT version()", func(v string) bool { return strings.Contains(v, "PostgreSQL") })
}

var _ dialect.Operator = (*Dialect)(nil)

// LockCursor implements dialect.Operator.
func (d *Dialect) LockCursor(ctx context.Context, tx *sql.Tx, p *dialect.LockCursorParams) (*dialect.LockCursorResult, error) {
	var r dialect.LockCursorResult
	err := tx.QueryRowContext(ctx, d.qs().lockCursor, p.Queue, p.Partition).Scan(&r.PartitionID, &r.ProcessedSeq,
		&r.LastSeq, &r.Attempts, &r.LastError, &r.Blocked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, dialect.ErrQueueNotFound
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}
