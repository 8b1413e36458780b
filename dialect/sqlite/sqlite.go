// Package sqlite is the SQLite dialect of the outbox (SQLite 3.42+; tested
// with the pure-Go driver modernc.org/sqlite).
//
// SQLite has one writer and no row locks. This dialect relies on that: every
// decide-then-write step (sequencing, claiming) starts with a write, so the
// transaction holds the write lock before it reads what it decides on. Open
// the database with _txlock=immediate (BEGIN IMMEDIATE), a busy timeout and
// WAL, and run the outbox in one process; db.SetMaxOpenConns(1) is the
// simplest safe setting.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/sqlbase"
)

// Dialect is the SQLite dialect (New, or the zero value: the default
// prefix). Beside its SQL text (spec) it differs from the shared base in
// what one writer allows: sequencing on insert, a claim and acks as single
// conditional UPDATEs, and a vacuum by seq ranges (vacuum.go).
type Dialect struct{ base }

// WithPrefix sets the table-name prefix (default "outbox_"); New panics
// for one that dialect.ValidPrefix refuses.
func WithPrefix(prefix string) Option { return sqlbase.WithPrefix[Dialect](prefix) }

// Option configures a Dialect: WithPrefix.
type Option = sqlbase.Option[Dialect]

var _ dialect.Dialect = (*Dialect)(nil)

// New returns the SQLite dialect.
func New(opts ...Option) *Dialect { return sqlbase.New(opts) }

// base is the shared base, built from spec.
type base = sqlbase.Base[spec, queries]

// migrationFiles is the schema with the default prefix (spec.Build hands
// it to the base, which serves it as Migrations).
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// retryable: SQLITE_BUSY and SQLITE_LOCKED, with any extended code.
func retryable(err error) bool {
	var c interface{ Code() int }
	if errors.As(err, &c) {
		switch c.Code() & 0xff {
		case 5, 6:
			return true
		}
	}
	return false
}

// isNotNull reports a NOT NULL constraint failure
// (SQLITE_CONSTRAINT_NOTNULL).
func isNotNull(err error) bool {
	var c interface{ Code() int }
	return errors.As(err, &c) && c.Code() == 1299
}

// now is SQLite's clock in microseconds since the epoch.
const now = "CAST(unixepoch('subsec') * 1000000 AS INTEGER)"

// lastSeq is partition p's counter: the greater of the last_seq column and
// the highest seq among p's messages (one probe of the (partition_id, seq)
// index). A single-row insert takes its seq from it without writing the
// partitions row, which would be a third page in every producer's commit
// (migrations/00004_seq_floor.sql); the column catches up when the
// sequencer numbers rows and, by the floor trigger, when a partition's
// highest seq is deleted, so the counter never goes back.
const lastSeq = `max(p.last_seq, ifnull((SELECT max(m.seq) FROM {p}messages m WHERE m.partition_id = p.id AND m.seq IS NOT NULL), 0))`

// queries are the statements only SQLite runs this way.
type queries struct {
	sequence, bump, claimLease, lockClaim, claimInfo, update string
	lockCursor, insertOne, updateMany, vacuumFrom            string
	partitionExists                                          string
}

// claimable selects partitions with sequenced, unprocessed messages, no live
// lease, no pending backoff and no block. The first %s is the queue-list
// placeholder group, the second an optional partition-id filter.
const claimable = `SELECT pr.partition_id FROM {p}processors pr JOIN {p}partitions p ON p.id = pr.partition_id
	WHERE pr.queue IN (%s)%s AND ` + lastSeq + ` > pr.processed_seq
	  AND (pr.lease_until IS NULL OR pr.lease_until < {now}) AND pr.next_attempt_at <= {now}
	  AND pr.blocked_at IS NULL
	ORDER BY pr.next_attempt_at LIMIT ?`

// spec tells the shared base how SQLite differs.
type spec struct{}

// Build implements sqlbase.Spec.
func (spec) Build(p string) (sqlbase.Shared, queries) {
	r := strings.NewReplacer("{p}", p, "{now}", now)
	sh := sqlbase.Shared{
		Name: "sqlite", Family: "sqlite", Retryable: retryable,
		Probe:  "SELECT sqlite_version()",
		Accept: func(v string) bool { return v != "" },
		Capabilities: dialect.Capabilities{
			// SQLite compiles every statement it is handed, and for the
			// outbox's short statements (the insert with its trigger,
			// above all) that compilation costs about as much as running
			// them.
			PreparedStatements: true,
			// A single-row insert usually takes its seq itself (see
			// insertOne).
			SequencesOnInsert: true,
			SingleWriter:      true,
		},
		// Times are microseconds; there are no row locks: every status
		// change is a guarded UPDATE, which the single writer makes atomic.
		NowPlus:     "(" + now + " + ?)",
		TimeArg:     func(t time.Time) any { return t.UnixMicro() },
		LastSeq:     lastSeq,
		Goose:       "sqlite3",
		Migrations:  migrationFiles,
		Bind:        sqlx.QUESTION,
		Now:         now,
		InsertQueue: r.Replace(`INSERT INTO {p}queues (name, partitions) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING`),
		SelectQueue: r.Replace(`SELECT partitions FROM {p}queues WHERE name = ?1`),
		InsertPartitions: r.Replace(`WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n + 1 < ?2)
			INSERT INTO {p}partitions (queue, partition_num) SELECT ?1, n FROM g WHERE true
			ON CONFLICT (queue, partition_num) DO NOTHING`),
		InsertCursors: r.Replace(`INSERT INTO {p}processors (partition_id, queue)
			SELECT id, queue FROM {p}partitions WHERE queue = ?1 ON CONFLICT (partition_id) DO NOTHING`),
		// A loose index scan over the partial index (partition_id, id) WHERE
		// seq IS NULL: one probe per partition with a backlog.
		Pending: r.Replace(`WITH RECURSIVE t(pid) AS (
				SELECT (SELECT partition_id FROM {p}messages WHERE seq IS NULL ORDER BY partition_id LIMIT 1)
				UNION ALL
				SELECT (SELECT m.partition_id FROM {p}messages m
					WHERE m.seq IS NULL AND m.partition_id > t.pid ORDER BY m.partition_id LIMIT 1)
				FROM t WHERE t.pid IS NOT NULL
			)
			SELECT pid FROM t WHERE pid IS NOT NULL LIMIT ?1`),
		// Vacuum is this package's own (vacuum.go).
	}
	return sh, queries{
		// A write first: the transaction holds SQLite's write lock before
		// it reads the counter and the unsequenced rows, so no other
		// sequencer can interleave.
		sequence: r.Replace(`UPDATE {p}messages SET seq = t.s FROM (
				SELECT id, (SELECT ` + lastSeq + ` FROM {p}partitions p WHERE p.id = ?1) + row_number() OVER (ORDER BY id) AS s
				FROM {p}messages WHERE partition_id = ?1 AND seq IS NULL ORDER BY id LIMIT ?2
			) AS t WHERE {p}messages.id = t.id`),
		// The column catches up with the rows just numbered (and with
		// those inserted with their seq before them).
		bump: r.Replace(`UPDATE {p}partitions SET last_seq = max(last_seq,
				ifnull((SELECT max(m.seq) FROM {p}messages m WHERE m.partition_id = ?1 AND m.seq IS NOT NULL), 0))
			WHERE id = ?1 RETURNING last_seq`),
		claimLease: r.Replace(`UPDATE {p}processors SET lease_token = ?, lease_until = {now} + ?,
				attempts = ` + sqlbase.TakeoverAttempts("") + `, version = version + 1
			WHERE partition_id IN (` + claimable + `)
			RETURNING ` + claimColumns),
		// Transactional mode: a write takes SQLite's write lock, which
		// stands for the partition's row lock until the handler's
		// transaction ends.
		lockClaim: r.Replace(`UPDATE {p}processors SET version = version + 1
			WHERE partition_id = ?1 AND lease_token = ?2 AND blocked_at IS NULL
			RETURNING ` + claimColumns),
		// An operator's action: a write first, so the transaction holds
		// the write lock (standing for the row lock) before it decides.
		lockCursor: r.Replace(`UPDATE {p}processors SET version = version + 1
			WHERE partition_id = (SELECT id FROM {p}partitions WHERE queue = ?1 AND partition_num = ?2)
			RETURNING partition_id, processed_seq, attempts, coalesce(last_error, ''), blocked_at IS NOT NULL`),
		// The common Enqueue, one row: it takes the partition's next seq
		// itself (see migrations/00004_seq_floor.sql), writing only the
		// message, unless the floor trigger is missing (a database not yet
		// migrated: a delete could then lower the counter) or the
		// partition has unsequenced rows, which commit order puts first:
		// then seq stays NULL for the sequencer. The write lock, taken as
		// the statement starts, keeps the counter and the unsequenced rows
		// still until the transaction ends.
		// VALUES with subqueries rather than INSERT … SELECT FROM
		// partitions: a SELECT that reads the table it inserts into (the
		// seq subqueries) is first copied into a temporary table, which
		// cost 6 µs of a 70 µs producer transaction. No partition: the
		// partition_id is NULL and the NOT NULL constraint refuses the row.
		insertOne: r.Replace(`INSERT INTO {p}messages (partition_id, seq, payload, payload_type, headers, msg_id, msg_key) VALUES (
			(SELECT id FROM {p}partitions WHERE queue = ?1 AND partition_num = ?2),
			(SELECT CASE WHEN EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = '{p}messages_seq_floor')
					AND NOT EXISTS (SELECT 1 FROM {p}messages m WHERE m.partition_id = p.id AND m.seq IS NULL)
				THEN ` + lastSeq + ` + 1 END
			FROM {p}partitions p WHERE p.queue = ?1 AND p.partition_num = ?2),
			?3, ?4, ?5, ?6, ?7)
			RETURNING seq IS NOT NULL`),
		partitionExists: r.Replace(`SELECT 1 FROM {p}partitions WHERE queue = ?1 AND partition_num = ?2`),
		claimInfo:       r.Replace(`SELECT p.partition_num, ` + lastSeq + ` FROM {p}partitions p WHERE p.id = ?1`),
		// Each cursor with its partition's lowest seq still stored (one
		// probe of the (partition_id, seq) index).
		vacuumFrom: r.Replace(`SELECT pr.partition_id, pr.processed_seq,
				(SELECT min(m.seq) FROM {p}messages m WHERE m.partition_id = pr.partition_id AND m.seq IS NOT NULL)
			FROM {p}processors pr WHERE pr.processed_seq > 0 ORDER BY pr.partition_id`),
		// Fenced by token and lease expiry on SQLite's clock. SET
		// expressions all see the row's old values.
		update: r.Replace(`UPDATE {p}processors SET processed_seq = ?3, attempts = ?4, last_error = ?5,
				next_attempt_at = {now} + ?6,
				lease_token = CASE WHEN ?7 > 0 THEN lease_token ELSE NULL END,
				lease_until = CASE WHEN ?7 > 0 THEN {now} + ?7 ELSE NULL END,
				blocked_at = CASE WHEN ?8 THEN {now} ELSE NULL END,
				version = version + 1
			WHERE partition_id = ?1 AND (?2 = '' OR (lease_token = ?2 AND lease_until > {now}))`),
		// update for the entries of UpdateCursors (cursorEntries):
		// the same assignments and fence, and the partitions it changed.
		updateMany: r.Replace(`UPDATE {p}processors SET processed_seq = v.seq, attempts = v.attempts, last_error = NULLIF(v.err, ''),
				next_attempt_at = {now} + v.retry,
				lease_token = CASE WHEN v.renew > 0 THEN lease_token ELSE NULL END,
				lease_until = CASE WHEN v.renew > 0 THEN {now} + v.renew ELSE NULL END,
				blocked_at = CASE WHEN v.blk <> 0 THEN {now} ELSE NULL END,
				version = version + 1
			FROM (SELECT value ->> 0 AS pid, value ->> 1 AS token, value ->> 2 AS seq, value ->> 3 AS attempts,
					value ->> 4 AS err, value ->> 5 AS retry, value ->> 6 AS renew, value ->> 7 AS blk
				FROM json_each(?1)) AS v
			WHERE partition_id = v.pid AND (v.token = '' OR (lease_token = v.token AND lease_until > {now}))
			RETURNING partition_id`),
	}
}

// maxInsertRows keeps a multi-row INSERT well under SQLite's bound
// parameter limit (32766; older builds 999 = 142 rows of 7).
const maxInsertRows = 140

// InsertMessages implements dialect.Dialect. The partition row is found by
// (queue, partition_num) in the statement itself, in q's own database. The
// count guard makes each statement all or nothing: when a row has no
// partition, none is inserted. Rows are inserted in ORDER BY ord order, so
// rowids follow the slice.
func (d *Dialect) InsertMessages(ctx context.Context, q dialect.DBTX, p *dialect.InsertMessagesParams) (*dialect.InsertMessagesResult, error) {
	if len(p.Rows) == 1 {
		r := p.Rows[0]
		payload := r.Payload
		if payload == nil {
			payload = []byte{}
		}
		// One statement, atomic by itself: a failure leaves nothing and
		// the application's transaction goes on. Without a partition its
		// partition_id is NULL and the NOT NULL constraint refuses the row
		// (payload and payload_type are never nil); a NOT NULL failure
		// may also come from the application's own trigger, so the
		// partition is looked up before the error is called a missing
		// one. (No row back would take a RAISE(IGNORE) trigger.)
		var sequenced bool
		err := q.QueryRowContext(ctx, d.Own().insertOne, r.Queue, r.Partition, payload, r.PayloadType, sqlbase.NullBytes(r.Headers),
			sqlbase.NullBlob(r.MessageID), sqlbase.NullString(r.Key)).Scan(&sequenced)
		if isNotNull(err) {
			var one int
			switch lerr := q.QueryRowContext(ctx, d.Own().partitionExists, r.Queue, r.Partition).Scan(&one); {
			case errors.Is(lerr, sql.ErrNoRows):
				err = lerr // no partition
			case lerr != nil:
				err = errors.Join(err, lerr)
			}
		}
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil, fmt.Errorf("%w: 1 of 1 rows name a partition that does not exist", dialect.ErrQueueNotFound)
		case err != nil:
			return nil, err
		case sequenced:
			return &dialect.InsertMessagesResult{Inserted: 1, Sequenced: 1}, nil
		}
		return &dialect.InsertMessagesResult{Inserted: 1}, nil
	}
	return sqlbase.InsertAll(ctx, q, p.Rows, func(rows []dialect.InsertRow) sqlbase.Chunk {
		n := min(len(rows), maxInsertRows)
		var b strings.Builder
		b.WriteString("WITH v (ord, queue, partition_num, payload, payload_type, headers, msg_id, msg_key) AS (VALUES ")
		args := make([]any, 0, 7*n)
		for i, r := range rows[:n] {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "(%d, ?, ?, ?, ?, ?, ?, ?)", i)
			payload := r.Payload
			if payload == nil {
				payload = []byte{}
			}
			args = append(args, r.Queue, r.Partition, payload, r.PayloadType, sqlbase.NullBytes(r.Headers), sqlbase.NullBlob(r.MessageID), sqlbase.NullString(r.Key))
		}
		fmt.Fprintf(&b, `), r AS (SELECT p.id, v.ord, v.payload, v.payload_type, v.headers, v.msg_id, v.msg_key
				FROM v JOIN %[1]spartitions p ON p.queue = v.queue AND p.partition_num = v.partition_num)
			INSERT INTO %[1]smessages (partition_id, payload, payload_type, headers, msg_id, msg_key)
			SELECT id, payload, payload_type, headers, msg_id, msg_key FROM r WHERE (SELECT count(*) FROM r) = %[2]d ORDER BY ord`, d.Prefix(), n)
		return sqlbase.Chunk{N: n, Query: b.String(), Args: args}
	})
}

// SequencePartitions implements dialect.Dialect, two statements per
// partition: number its rows, then move its counter. SQLite's single
// writer is the partition lock, so it never reports Locked = false.
func (d *Dialect) SequencePartitions(ctx context.Context, tx dialect.DBTX, p *dialect.SequencePartitionsParams) (*dialect.SequencePartitionsResult, error) {
	res := &dialect.SequencePartitionsResult{Partitions: make([]dialect.SequencedPartition, 0, len(p.PartitionIDs))}
	if p.Limit <= 0 {
		return res, nil
	}
	for _, pid := range p.PartitionIDs {
		n, err := sqlbase.Exec(ctx, tx, d.Own().sequence, pid, p.Limit)
		if err != nil {
			return nil, err
		}
		var last int64
		if err := tx.QueryRowContext(ctx, d.Own().bump, pid, n).Scan(&last); err != nil {
			return nil, err
		}
		res.Partitions = append(res.Partitions, dialect.SequencedPartition{PartitionID: pid, Locked: true, Assigned: n, LastSeq: last})
	}
	return res, nil
}

func queueArgs(queues []string) []any {
	args := make([]any, len(queues))
	for i, q := range queues {
		args[i] = q
	}
	return args
}

// claimColumns: a claimed row's ClaimedPartition, the partition's number
// and counter read by subqueries in the same statement.
const claimColumns = `partition_id, queue, processed_seq, attempts,
				(SELECT partition_num FROM {p}partitions WHERE id = {p}processors.partition_id),
				(SELECT ` + lastSeq + ` FROM {p}partitions p WHERE p.id = {p}processors.partition_id)`

// ClaimLeases implements dialect.Dialect: one conditional UPDATE, on pool.Q,
// stamps the lease and returns the claimed partitions. A writing statement
// takes the write lock as it starts (waiting under busy_timeout), which
// makes the pick and the stamp atomic, and commits when its rows have been
// read.
func (d *Dialect) ClaimLeases(ctx context.Context, pool dialect.Pool, p *dialect.ClaimLeaseParams) (*dialect.ClaimResult, error) {
	if p.Limit <= 0 || len(p.Queues) == 0 {
		return &dialect.ClaimResult{}, nil
	}
	args := append([]any{p.Token, p.Lease.Microseconds()}, queueArgs(p.Queues)...)
	only := ""
	if len(p.PartitionIDs) > 0 {
		only = " AND pr.partition_id IN (" + sqlbase.Placeholders(len(p.PartitionIDs)) + ")"
		for _, id := range p.PartitionIDs {
			args = append(args, id)
		}
	}
	args = append(args, p.Limit)
	return d.claim(ctx, pool.Q, fmt.Sprintf(d.Own().claimLease, sqlbase.Placeholders(len(p.Queues)), only), args)
}

// LockPartition implements dialect.Dialect.
func (d *Dialect) LockPartition(ctx context.Context, tx *sql.Tx, p *dialect.LockPartitionParams) (*dialect.ClaimResult, error) {
	return d.claim(ctx, tx, d.Own().lockClaim, []any{p.PartitionID, p.Token})
}

func (d *Dialect) claim(ctx context.Context, q dialect.DBTX, query string, args []any) (*dialect.ClaimResult, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	res := &dialect.ClaimResult{}
	for rows.Next() {
		var c dialect.ClaimedPartition
		if err := rows.Scan(&c.PartitionID, &c.Queue, &c.ProcessedSeq, &c.Attempts, &c.Partition, &c.LastSeq); err != nil {
			_ = rows.Close()
			return nil, err
		}
		res.Partitions = append(res.Partitions, c)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return res, nil
}

// UpdateCursors implements dialect.Dialect in one statement: update for a
// single entry, else updateMany over the entries as JSON.
func (d *Dialect) UpdateCursors(ctx context.Context, q dialect.DBTX, up *dialect.UpdateCursorsParams) (*dialect.UpdateCursorsResult, error) {
	ps := up.Updates
	if len(ps) == 1 {
		p := ps[0]
		n, err := sqlbase.Exec(ctx, q, d.Own().update, p.PartitionID, p.Token, p.ProcessedSeq, p.Attempts,
			sqlbase.NullString(p.LastError), p.RetryAfter.Microseconds(), p.Renew.Microseconds(), p.Block)
		if err != nil {
			return nil, err
		}
		return &dialect.UpdateCursorsResult{Updated: []bool{n == 1}}, nil
	}
	js, err := cursorEntries(ps)
	if err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, d.Own().updateMany, js)
	updated, err := sqlbase.MatchedCursors(rows, err, ps)
	if err != nil {
		return nil, err
	}
	return &dialect.UpdateCursorsResult{Updated: updated}, nil
}

// LockCursor implements dialect.Dialect.
func (d *Dialect) LockCursor(ctx context.Context, tx *sql.Tx, p *dialect.LockCursorParams) (*dialect.LockCursorResult, error) {
	var r dialect.LockCursorResult
	err := tx.QueryRowContext(ctx, d.Own().lockCursor, p.Queue, p.Partition).Scan(&r.PartitionID, &r.ProcessedSeq,
		&r.Attempts, &r.LastError, &r.Blocked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, dialect.ErrQueueNotFound
	}
	if err != nil {
		return nil, err
	}
	var partition int
	if err := tx.QueryRowContext(ctx, d.Own().claimInfo, r.PartitionID).Scan(&partition, &r.LastSeq); err != nil {
		return nil, err
	}
	return &r, nil
}
