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
	"io/fs"
	"strings"
	"sync"
	"time"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/schema"
	"github.com/modkit-go/db/dialect/internal/stmt"
)

// Dialect is the SQLite dialect. Build it with New.
//
// The zero value is usable and means New(): the default prefix "outbox_".
type Dialect struct {
	prefix string // set by options before init; read through Prefix
	once   sync.Once
	q      queries // built once, by init
}

var (
	_ dialect.Dialect   = (*Dialect)(nil)
	_ dialect.Inspector = (*Dialect)(nil)
	_ dialect.Schema    = (*Dialect)(nil)
)

// Option configures a Dialect.
type Option func(*Dialect)

// WithPrefix sets the table-name prefix (default "outbox_"). It must match
// [dialect.ValidPrefix]; New panics otherwise.
func WithPrefix(prefix string) Option { return func(d *Dialect) { d.prefix = prefix } }

// New returns the SQLite dialect.
func New(opts ...Option) *Dialect {
	d := &Dialect{prefix: dialect.DefaultPrefix}
	for _, o := range opts {
		o(d)
	}
	if !dialect.ValidPrefix(d.prefix) {
		panic(fmt.Sprintf("sqlite: invalid table prefix %q", d.prefix))
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
func (d *Dialect) Name() string { return "sqlite" }

// Prefix implements dialect.Schema.
func (d *Dialect) Prefix() string {
	d.init()
	return d.prefix
}

// GooseDialect implements dialect.Schema.
func (d *Dialect) GooseDialect() string { return "sqlite3" }

// Migrations implements dialect.Schema.
func (d *Dialect) Migrations() fs.FS { return schema.FS(migrationFiles, "migrations", d.Prefix()) }

// migrationFiles is the schema with the default prefix.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// TxOptions implements dialect.Dialect.
func (d *Dialect) TxOptions() *sql.TxOptions { return nil }

// IsRetryable implements dialect.Dialect: SQLITE_BUSY and SQLITE_LOCKED,
// with any extended code.
func (d *Dialect) IsRetryable(err error) bool {
	var c interface{ Code() int }
	if errors.As(err, &c) {
		switch c.Code() & 0xff {
		case 5, 6:
			return true
		}
	}
	return false
}

// now is SQLite's clock in microseconds since the epoch.
const now = "CAST(unixepoch('subsec') * 1000000 AS INTEGER)"

type queries struct {
	insertQueue, selectQueue, insertPartitions, insertProcessors, lookup string
	pending, sequence, bump, claimLease, lockClaim, claimInfo, read      string
	update, deadLetters, release, vacuum, state, stats, list             string
	lockCursor                                                           string
}

// claimable selects partitions with sequenced, unprocessed messages, no live
// lease and no pending backoff. %s is the queue-list placeholder group.
const claimable = `SELECT pr.partition_id FROM {p}processors pr JOIN {p}partitions p ON p.id = pr.partition_id
	WHERE pr.queue IN (%s) AND p.last_seq > pr.processed_seq
	  AND (pr.lease_until IS NULL OR pr.lease_until < {now}) AND pr.next_attempt_at <= {now}
	  AND pr.blocked_at IS NULL
	ORDER BY pr.next_attempt_at LIMIT ?`

func buildQueries(p string) queries {
	r := strings.NewReplacer("{p}", p, "{now}", now)
	return queries{
		insertQueue: r.Replace(`INSERT INTO {p}queues (name, partitions) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING`),
		selectQueue: r.Replace(`SELECT partitions FROM {p}queues WHERE name = ?1`),
		insertPartitions: r.Replace(`WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n + 1 < ?2)
			INSERT INTO {p}partitions (queue, partition_num) SELECT ?1, n FROM g WHERE true
			ON CONFLICT (queue, partition_num) DO NOTHING`),
		insertProcessors: r.Replace(`INSERT INTO {p}processors (partition_id, queue)
			SELECT id, queue FROM {p}partitions WHERE queue = ?1 ON CONFLICT (partition_id) DO NOTHING`),
		lookup: r.Replace(`SELECT id FROM {p}partitions WHERE queue = ?1 ORDER BY partition_num`),
		// A loose index scan over the partial index (partition_id, id) WHERE
		// seq IS NULL: one probe per partition with a backlog.
		pending: r.Replace(`WITH RECURSIVE t(pid) AS (
				SELECT (SELECT partition_id FROM {p}messages WHERE seq IS NULL ORDER BY partition_id LIMIT 1)
				UNION ALL
				SELECT (SELECT m.partition_id FROM {p}messages m
					WHERE m.seq IS NULL AND m.partition_id > t.pid ORDER BY m.partition_id LIMIT 1)
				FROM t WHERE t.pid IS NOT NULL
			)
			SELECT pid FROM t WHERE pid IS NOT NULL LIMIT ?1`),
		// A write first: the transaction holds SQLite's write lock before
		// it reads last_seq and the unsequenced rows, so no other sequencer
		// can interleave.
		sequence: r.Replace(`UPDATE {p}messages SET seq = t.s FROM (
				SELECT id, (SELECT last_seq FROM {p}partitions WHERE id = ?1) + row_number() OVER (ORDER BY id) AS s
				FROM {p}messages WHERE partition_id = ?1 AND seq IS NULL ORDER BY id LIMIT ?2
			) AS t WHERE {p}messages.id = t.id`),
		bump: r.Replace(`UPDATE {p}partitions SET last_seq = last_seq + ?2 WHERE id = ?1 RETURNING last_seq`),
		claimLease: r.Replace(`UPDATE {p}processors SET lease_token = ?, lease_until = {now} + ?,
				attempts = attempts + (lease_token IS NOT NULL), version = version + 1
			WHERE partition_id IN (` + claimable + `)
			RETURNING partition_id, queue, processed_seq, attempts`),
		// Transactional mode: a write takes SQLite's write lock, which
		// stands for the partition's row lock until the handler's
		// transaction ends.
		lockClaim: r.Replace(`UPDATE {p}processors SET version = version + 1
			WHERE partition_id = ?1 AND lease_token = ?2 AND blocked_at IS NULL
			RETURNING partition_id, queue, processed_seq, attempts`),
		// An operator's action: a write first, so the transaction holds
		// the write lock (standing for the row lock) before it decides.
		lockCursor: r.Replace(`UPDATE {p}processors SET version = version + 1
			WHERE partition_id = (SELECT id FROM {p}partitions WHERE queue = ?1 AND partition_num = ?2)
			RETURNING partition_id, processed_seq, attempts, coalesce(last_error, ''), blocked_at IS NOT NULL`),
		claimInfo: r.Replace(`SELECT partition_num, last_seq FROM {p}partitions WHERE id = ?1`),
		read: r.Replace(`SELECT id, seq, payload, payload_type, headers, created_at FROM {p}messages
			WHERE partition_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3`),
		// Fenced by token and lease expiry on SQLite's clock. SET
		// expressions all see the row's old values.
		update: r.Replace(`UPDATE {p}processors SET processed_seq = ?3, attempts = ?4, last_error = ?5,
				next_attempt_at = {now} + ?6,
				lease_token = CASE WHEN ?7 > 0 THEN lease_token ELSE NULL END,
				lease_until = CASE WHEN ?7 > 0 THEN {now} + ?7 ELSE NULL END,
				blocked_at = CASE WHEN ?8 THEN {now} ELSE NULL END,
				version = version + 1
			WHERE partition_id = ?1 AND (?2 = '' OR (lease_token = ?2 AND lease_until > {now}))`),
		deadLetters: r.Replace(`INSERT INTO {p}dead_letters
				(queue, partition_num, seq, payload, payload_type, headers, created_at, attempts, last_error)
			SELECT p.queue, p.partition_num, m.seq, m.payload, m.payload_type, m.headers, m.created_at, ?, ?
			FROM {p}messages m JOIN {p}partitions p ON p.id = m.partition_id
			WHERE m.partition_id = ? AND m.seq IN (%s) ORDER BY m.seq`),
		release: r.Replace(`UPDATE {p}processors SET lease_token = NULL, lease_until = NULL, version = version + 1
			WHERE lease_token = ? AND partition_id IN (%s)`),
		// CROSS JOIN fixes the join order (SQLite never reorders it):
		// processors outside, then a range probe of (partition_id, seq) per
		// partition. The planner otherwise scans every sequenced message,
		// the undelivered backlog included, on each call.
		vacuum: r.Replace(`DELETE FROM {p}messages WHERE id IN (
				SELECT m.id FROM {p}processors pr CROSS JOIN {p}messages m
				  ON m.partition_id = pr.partition_id AND m.seq <= pr.processed_seq
				LIMIT ?1)`),
		state: r.Replace(`SELECT p.id, p.last_seq, pr.processed_seq, pr.attempts, coalesce(pr.last_error, ''),
				pr.next_attempt_at, coalesce(pr.lease_token, ''), pr.lease_until, pr.blocked_at, {now}
			FROM {p}partitions p JOIN {p}processors pr ON pr.partition_id = p.id
			WHERE p.queue = ?1 AND p.partition_num = ?2`),
		stats: r.Replace(`SELECT (SELECT count(*) FROM {p}queues), (SELECT count(*) FROM {p}partitions),
				(SELECT count(*) FROM {p}messages), (SELECT count(*) FROM {p}messages WHERE seq IS NULL),
				(SELECT count(*) FROM {p}dead_letters)`),
		list: r.Replace(`SELECT id, queue, partition_num, seq, payload, payload_type, headers, created_at,
				failed_at, attempts, coalesce(last_error, ''), status
			FROM {p}dead_letters WHERE (?1 = '' OR queue = ?1) AND (?2 = '' OR status = ?2)
			ORDER BY failed_at DESC, id DESC LIMIT ?3`),
	}
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
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

// maxInsertRows keeps a multi-row INSERT well under SQLite's bound
// parameter limit (32766; older builds 999 = 199 rows of 5).
const maxInsertRows = 190

// InsertMessages implements dialect.Dialect. The partition row is found by
// (queue, partition_num) in the statement itself, in q's own database. The
// count guard makes each statement all or nothing: when a row has no
// partition, none is inserted. Rows are inserted in ORDER BY ord order, so
// rowids follow the slice.
func (d *Dialect) InsertMessages(ctx context.Context, q dialect.DBTX, p *dialect.InsertMessagesParams) (*dialect.InsertMessagesResult, error) {
	return stmt.InsertAll(ctx, q, p.Rows, func(rows []dialect.InsertRow) stmt.Chunk {
		n := min(len(rows), maxInsertRows)
		var b strings.Builder
		b.WriteString("WITH v (ord, queue, partition_num, payload, payload_type, headers) AS (VALUES ")
		args := make([]any, 0, 5*n)
		for i, r := range rows[:n] {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "(%d, ?, ?, ?, ?, ?)", i)
			payload := r.Payload
			if payload == nil {
				payload = []byte{}
			}
			args = append(args, r.Queue, r.Partition, payload, r.PayloadType, stmt.NullBytes(r.Headers))
		}
		fmt.Fprintf(&b, `), r AS (SELECT p.id, v.ord, v.payload, v.payload_type, v.headers
				FROM v JOIN %[1]spartitions p ON p.queue = v.queue AND p.partition_num = v.partition_num)
			INSERT INTO %[1]smessages (partition_id, payload, payload_type, headers)
			SELECT id, payload, payload_type, headers FROM r WHERE (SELECT count(*) FROM r) = %[2]d ORDER BY ord`, d.Prefix(), n)
		return stmt.Chunk{N: n, Query: b.String(), Args: args}
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

// SequencePartition implements dialect.Dialect. SQLite's single writer is
// the partition lock, so it never reports Locked = false.
func (d *Dialect) SequencePartition(ctx context.Context, tx *sql.Tx, p *dialect.SequencePartitionParams) (*dialect.SequencePartitionResult, error) {
	res, err := tx.ExecContext(ctx, d.qs().sequence, p.PartitionID, p.Limit)
	if err != nil {
		return nil, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return nil, err
	}
	var last int64
	if err := tx.QueryRowContext(ctx, d.qs().bump, p.PartitionID, n).Scan(&last); err != nil {
		return nil, err
	}
	return &dialect.SequencePartitionResult{Locked: true, Assigned: int(n), LastSeq: last}, nil
}

func queueArgs(queues []string) []any {
	args := make([]any, len(queues))
	for i, q := range queues {
		args[i] = q
	}
	return args
}

// ClaimLease implements dialect.Dialect: one conditional UPDATE stamps the
// lease (the write lock makes the pick and the stamp atomic), then the
// partition details are read in the same transaction.
func (d *Dialect) ClaimLease(ctx context.Context, db *sql.DB, p *dialect.ClaimLeaseParams) (*dialect.ClaimResult, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	args := append([]any{p.Token, p.Lease.Microseconds()}, queueArgs(p.Queues)...)
	args = append(args, p.Limit)
	res, err := d.claim(ctx, tx, fmt.Sprintf(d.qs().claimLease, placeholders(len(p.Queues))), args)
	if err != nil {
		return nil, err
	}
	return res, tx.Commit()
}

// LockPartition implements dialect.Dialect.
func (d *Dialect) LockPartition(ctx context.Context, tx *sql.Tx, p *dialect.LockPartitionParams) (*dialect.ClaimResult, error) {
	return d.claim(ctx, tx, d.qs().lockClaim, []any{p.PartitionID, p.Token})
}

func (d *Dialect) claim(ctx context.Context, tx *sql.Tx, query string, args []any) (*dialect.ClaimResult, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	res := &dialect.ClaimResult{}
	for rows.Next() {
		var c dialect.ClaimedPartition
		if err := rows.Scan(&c.PartitionID, &c.Queue, &c.ProcessedSeq, &c.Attempts); err != nil {
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
	for i := range res.Partitions {
		c := &res.Partitions[i]
		if err := tx.QueryRowContext(ctx, d.qs().claimInfo, c.PartitionID).Scan(&c.Partition, &c.LastSeq); err != nil {
			return nil, err
		}
	}
	return res, nil
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
		var created int64
		if err := rows.Scan(&m.ID, &m.Seq, &m.Payload, &m.PayloadType, &h, &created); err != nil {
			return nil, err
		}
		if h.Valid {
			m.Headers = []byte(h.String)
		}
		m.CreatedAt = micros(created)
		res.Messages = append(res.Messages, m)
	}
	return res, rows.Err()
}

// UpdateCursor implements dialect.Dialect.
func (d *Dialect) UpdateCursor(ctx context.Context, q dialect.DBTX, p *dialect.UpdateCursorParams) (*dialect.UpdateCursorResult, error) {
	res, err := q.ExecContext(ctx, d.qs().update, p.PartitionID, p.Token, p.ProcessedSeq, p.Attempts,
		stmt.NullString(p.LastError), p.RetryAfter.Microseconds(), p.Renew.Microseconds(), p.Block)
	if err != nil {
		return nil, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return nil, err
	}
	return &dialect.UpdateCursorResult{Updated: n == 1}, nil
}

// InsertDeadLetters implements dialect.Dialect.
func (d *Dialect) InsertDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.InsertDeadLettersParams) (*dialect.InsertDeadLettersResult, error) {
	args := []any{p.Attempts, stmt.NullString(p.Reason), p.PartitionID}
	for _, s := range p.Seqs {
		args = append(args, s)
	}
	res, err := q.ExecContext(ctx, fmt.Sprintf(d.qs().deadLetters, placeholders(len(p.Seqs))), args...)
	if err != nil {
		return nil, err
	}
	n, err := res.RowsAffected()
	return &dialect.InsertDeadLettersResult{Inserted: int(n)}, err
}

// ReleaseLeases implements dialect.Dialect.
func (d *Dialect) ReleaseLeases(ctx context.Context, q dialect.DBTX, p *dialect.ReleaseLeasesParams) (*dialect.ReleaseLeasesResult, error) {
	if len(p.PartitionIDs) == 0 {
		return &dialect.ReleaseLeasesResult{}, nil
	}
	args := []any{p.Token}
	for _, id := range p.PartitionIDs {
		args = append(args, id)
	}
	res, err := q.ExecContext(ctx, fmt.Sprintf(d.qs().release, placeholders(len(p.PartitionIDs))), args...)
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
	var next, nowUS int64
	var until, blocked sql.NullInt64
	err := q.QueryRowContext(ctx, d.qs().state, p.Queue, p.Partition).Scan(&r.PartitionID, &r.LastSeq, &r.ProcessedSeq,
		&r.Attempts, &r.LastError, &next, &r.LeaseToken, &until, &blocked, &nowUS)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, dialect.ErrQueueNotFound
	}
	if err != nil {
		return nil, err
	}
	r.NextAttemptAt, r.Now = micros(next), micros(nowUS)
	if until.Valid {
		r.LeaseUntil = micros(until.Int64)
	}
	if blocked.Valid {
		r.BlockedAt = micros(blocked.Int64)
	}
	return &r, nil
}

// ListDeadLetters implements dialect.Inspector.
func (d *Dialect) ListDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.ListDeadLettersParams) (*dialect.ListDeadLettersResult, error) {
	rows, err := q.QueryContext(ctx, d.qs().list, p.Queue, p.Status, p.Limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	res := &dialect.ListDeadLettersResult{}
	for rows.Next() {
		var dl dialect.DeadLetter
		var h sql.NullString
		var created, failed int64
		if err := rows.Scan(&dl.ID, &dl.Queue, &dl.Partition, &dl.Seq, &dl.Payload, &dl.PayloadType, &h,
			&created, &failed, &dl.Attempts, &dl.LastError, &dl.Status); err != nil {
			return nil, err
		}
		if h.Valid {
			dl.Headers = []byte(h.String)
		}
		dl.CreatedAt, dl.FailedAt = micros(created), micros(failed)
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

func micros(us int64) time.Time { return time.UnixMicro(us).UTC() }

var _ dialect.Checker = (*Dialect)(nil)

// CheckDatabase implements dialect.Checker: q must be SQLite.
func (d *Dialect) CheckDatabase(ctx context.Context, q dialect.DBTX) error {
	return stmt.CheckDatabase(ctx, q, "SELECT sqlite_version()", func(v string) bool { return v != "" })
}

var _ dialect.Operator = (*Dialect)(nil)

// LockCursor implements dialect.Operator.
func (d *Dialect) LockCursor(ctx context.Context, tx *sql.Tx, p *dialect.LockCursorParams) (*dialect.LockCursorResult, error) {
	var r dialect.LockCursorResult
	err := tx.QueryRowContext(ctx, d.qs().lockCursor, p.Queue, p.Partition).Scan(&r.PartitionID, &r.ProcessedSeq,
		&r.Attempts, &r.LastError, &r.Blocked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, dialect.ErrQueueNotFound
	}
	if err != nil {
		return nil, err
	}
	var partition int
	if err := tx.QueryRowContext(ctx, d.qs().claimInfo, r.PartitionID).Scan(&partition, &r.LastSeq); err != nil {
		return nil, err
	}
	return &r, nil
}
