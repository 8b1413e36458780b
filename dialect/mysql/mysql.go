// Package mysql is the MySQL and MariaDB dialect of the outbox (MySQL 8.0.16+,
// MariaDB 10.6+, InnoDB).
//
// It works with github.com/go-sql-driver/mysql, which it imports only to
// classify errors. The DSN does not need parseTime=true: DATETIME columns are
// scanned from either representation. interpolateParams=true is recommended:
// without it the driver prepares, executes and closes every statement that
// has arguments (three round trips instead of one).
//
// Quirks handled here, relative to the PostgreSQL dialect:
//   - no UPDATE … RETURNING: claims select, lock and update in their own
//     READ COMMITTED transaction;
//   - no FOR UPDATE OF: locking reads touch only the table they read;
//   - rowsAffected counts changed rows only: every guarded UPDATE bumps
//     version so that a matched row always counts;
//   - no LIMIT inside IN and no DELETE reading its own table in a subquery:
//     vacuum selects first, then deletes by primary key;
//   - single-table UPDATE evaluates SET assignments left to right, later ones
//     seeing earlier new values: assignments are ordered so that none reads a
//     column assigned before it.
package mysql

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

	"github.com/go-sql-driver/mysql"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/schema"
	"github.com/modkit-go/db/dialect/internal/stmt"
)

// Dialect is the MySQL/MariaDB dialect. Build it with New.
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
// [dialect.ValidPrefix]; New panics otherwise, since a prefix is a
// constant of the program.
func WithPrefix(prefix string) Option { return func(d *Dialect) { d.prefix = prefix } }

// New returns the MySQL/MariaDB dialect.
func New(opts ...Option) *Dialect {
	d := &Dialect{prefix: dialect.DefaultPrefix}
	for _, o := range opts {
		o(d)
	}
	if !dialect.ValidPrefix(d.prefix) {
		panic(fmt.Sprintf("mysql: invalid table prefix %q", d.prefix))
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
func (d *Dialect) Name() string { return "mysql" }

// Prefix implements dialect.Schema.
func (d *Dialect) Prefix() string {
	d.init()
	return d.prefix
}

// GooseDialect implements dialect.Schema.
func (d *Dialect) GooseDialect() string { return "mysql" }

// Migrations implements dialect.Schema.
func (d *Dialect) Migrations() fs.FS { return schema.FS(migrationFiles, "migrations", d.Prefix()) }

// migrationFiles is the schema with the default prefix.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// TxOptions implements dialect.Dialect: READ COMMITTED. InnoDB's default,
// REPEATABLE READ, takes gap locks on locking reads (which would block
// application inserts) and keeps one snapshot for the whole transaction;
// every query below relies on a fresh snapshot per statement instead.
func (d *Dialect) TxOptions() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelReadCommitted}
}

// MySQL/MariaDB error numbers that mean "try again".
const (
	erLockWaitTimeout = 1205 // ER_LOCK_WAIT_TIMEOUT
	erLockDeadlock    = 1213 // ER_LOCK_DEADLOCK
	erCheckRead       = 1020 // ER_CHECKREAD: record changed since last read (MariaDB snapshot isolation)
	erXARBDeadlock    = 1614 // ER_XA_RBDEADLOCK
)

// IsRetryable implements dialect.Dialect: deadlocks (1213), lock wait
// timeouts (1205), "record has changed since last read" (1020) and any
// error with SQLSTATE 40001 (serialization failure).
func (d *Dialect) IsRetryable(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case erLockWaitTimeout, erLockDeadlock, erCheckRead, erXARBDeadlock:
			return true
		}
		return string(me.SQLState[:]) == "40001"
	}
	// Other drivers (or wrappers) that expose the number as a method.
	var n interface{ Number() uint16 }
	if errors.As(err, &n) {
		switch n.Number() {
		case erLockWaitTimeout, erLockDeadlock, erCheckRead, erXARBDeadlock:
			return true
		}
	}
	return false
}

type queries struct {
	insertQueue, selectQueue, insertProcessors, lookup string
	pending, lockPartition, unsequenced, bumpLastSeq   string
	read, update, vacuumCandidates, vacuumPick, state  string
	stats, insertOne                                   string
}

func buildQueries(p string) queries {
	r := strings.NewReplacer("{p}", p)
	return queries{
		// ON DUPLICATE KEY UPDATE rather than INSERT IGNORE: IGNORE would also
		// turn real errors (CHECK violations, truncation) into warnings.
		insertQueue: r.Replace(`INSERT INTO {p}queues (name, partitions) VALUES (?, ?)
			ON DUPLICATE KEY UPDATE name = name`),
		selectQueue: r.Replace(`SELECT partitions FROM {p}queues WHERE name = ?`),
		// Only processor rows that are missing: in the common case (a
		// redeclaration at startup) this inserts nothing and takes no lock,
		// where a plain INSERT IGNORE would take a shared lock on every
		// existing processors row and wait for, or block, their claimers.
		// INSERT … SELECT at READ COMMITTED reads partitions and processors
		// as consistent (non-locking) reads. IGNORE covers the race with a
		// concurrent declarer; every value comes from a valid partitions row.
		insertProcessors: r.Replace(`INSERT IGNORE INTO {p}processors (partition_id, queue)
			SELECT p.id, p.queue FROM {p}partitions p
			WHERE p.queue = ? AND NOT EXISTS (SELECT 1 FROM {p}processors pr WHERE pr.partition_id = p.id)`),
		lookup: r.Replace(`SELECT p.id FROM {p}queues q JOIN {p}partitions p ON p.queue = q.name
			WHERE q.name = ? ORDER BY p.partition_num`),
		// Driven by the (seq, partition_id) index: the NULL keys come first
		// and are grouped by partition. A consistent read: rows of uncommitted
		// producers are invisible and never waited on.
		pending: r.Replace(`SELECT DISTINCT partition_id FROM {p}messages WHERE seq IS NULL LIMIT ?`),
		// The partition row lock excludes every other sequencer of this
		// partition. Nothing else locks partitions rows (claims lock only
		// processors rows; other reads of partitions are consistent reads),
		// so SKIP LOCKED skips only a partition another sequencer is on.
		// Primary-key lookup: a record lock, no gap lock.
		lockPartition: r.Replace(`SELECT last_seq FROM {p}partitions WHERE id = ? FOR UPDATE SKIP LOCKED`),
		// A plain consistent read, taken after the lock is held: at READ
		// COMMITTED each statement gets a fresh snapshot, so it sees every
		// row the previous lock holder sequenced and committed. It takes no
		// locks, so it never waits for an uncommitted producer insert (a
		// locking read or an UPDATE … ORDER BY id LIMIT would scan the index
		// with locks and could). Uncommitted rows are invisible here and get
		// the next seqs after they commit.
		unsequenced: r.Replace(`SELECT id FROM {p}messages
			WHERE partition_id = ? AND seq IS NULL ORDER BY id LIMIT ?`),
		// Under the partition lock, so last_seq cannot have moved.
		bumpLastSeq: r.Replace(`UPDATE {p}partitions SET last_seq = ? WHERE id = ?`),
		read: r.Replace(`SELECT id, seq, payload, payload_type, headers, created_at FROM {p}messages
			WHERE partition_id = ? AND seq > ? ORDER BY seq LIMIT ?`),
		// Fenced: with a token, the row changes only while that token holds
		// an unexpired lease, by the database's clock. The WHERE clause sees
		// the old values. SET assignments run left to right and later ones
		// see earlier new values; none of these reads a column assigned
		// before it (lease_token reads only itself, lease_until reads no
		// column). version always changes, so a matched row always counts in
		// rowsAffected even when every other value is unchanged.
		update: r.Replace(`UPDATE {p}processors SET processed_seq = ?, attempts = ?, last_error = ?,
				next_attempt_at = NOW(6) + INTERVAL ? MICROSECOND,
				lease_token = CASE WHEN ? > 0 THEN lease_token ELSE NULL END,
				lease_until = CASE WHEN ? > 0 THEN NOW(6) + INTERVAL ? MICROSECOND ELSE NULL END,
				blocked_at = CASE WHEN ? THEN NOW(6) ELSE NULL END,
				version = version + 1
			WHERE partition_id = ? AND (? = '' OR (lease_token = ? AND lease_until > NOW(6)))`),
		// Partitions that have delivered rows left: one probe of the
		// (partition_id, seq) index per processor row, stopping after ? hits.
		vacuumCandidates: r.Replace(`SELECT pr.partition_id, pr.processed_seq FROM {p}processors pr
			WHERE EXISTS (SELECT 1 FROM {p}messages m
				WHERE m.partition_id = pr.partition_id AND m.seq <= pr.processed_seq)
			LIMIT ?`),
		// Consistent read of delivered rows, oldest first. Rows with
		// seq <= processed_seq are never written again by anyone, so deleting
		// them afterwards by primary key is safe even outside a transaction.
		vacuumPick: r.Replace(`SELECT id FROM {p}messages WHERE partition_id = ? AND seq <= ?
			ORDER BY seq LIMIT ?`),
		state: r.Replace(`SELECT p.id, p.last_seq, pr.processed_seq, pr.attempts, COALESCE(pr.last_error, ''),
				pr.next_attempt_at, COALESCE(pr.lease_token, ''), pr.lease_until, pr.blocked_at, NOW(6)
			FROM {p}partitions p JOIN {p}processors pr ON pr.partition_id = p.id
			WHERE p.queue = ? AND p.partition_num = ?`),
		// See InsertMessages for why FORCE INDEX.
		insertOne: r.Replace(`INSERT INTO {p}messages (partition_id, payload, payload_type, headers)
			SELECT p.id, ?, ?, ? FROM {p}partitions p FORCE INDEX ({p}partitions_queue_num)
			WHERE p.queue = ? AND p.partition_num = ?`),
		stats: r.Replace(`SELECT (SELECT COUNT(*) FROM {p}queues), (SELECT COUNT(*) FROM {p}partitions),
				(SELECT COUNT(*) FROM {p}messages), (SELECT COUNT(*) FROM {p}messages WHERE seq IS NULL),
				(SELECT COUNT(*) FROM {p}dead_letters)`),
	}
}

// placeholders returns "?, ?, …" with n placeholders.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// DeclareQueue implements dialect.Dialect.
func (d *Dialect) DeclareQueue(ctx context.Context, tx *sql.Tx, p *dialect.DeclareQueueParams) (*dialect.DeclareQueueResult, error) {
	// The upsert takes the queue row's lock first, so concurrent declarers
	// of one queue run one after the other and the reads below (fresh
	// snapshots at READ COMMITTED, or a snapshot begun after the lock at
	// REPEATABLE READ) see what the previous one committed.
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
	ids, err := stmt.Int64s(ctx, tx, d.qs().lookup, p.Queue)
	if err != nil {
		return nil, err
	}
	if len(ids) != n {
		// Missing rows: a first declaration. A complete queue (the common
		// redeclaration at startup) skips this: IGNORE's duplicate-key check
		// takes a shared lock on each existing partitions row, which would
		// make the sequencer skip it until this transaction ends. IGNORE
		// only skips duplicates here: every value is valid.
		var b strings.Builder
		b.WriteString("INSERT IGNORE INTO ")
		b.WriteString(d.Prefix())
		b.WriteString("partitions (queue, partition_num) VALUES ")
		args := make([]any, 0, 2*n)
		for i := range n {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(?, ?)")
			args = append(args, p.Queue, i)
		}
		if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
			return nil, err
		}
		if ids, err = stmt.Int64s(ctx, tx, d.qs().lookup, p.Queue); err != nil {
			return nil, err
		}
	}
	if _, err := tx.ExecContext(ctx, d.qs().insertProcessors, p.Queue); err != nil {
		return nil, err
	}
	return &dialect.DeclareQueueResult{Partitions: n, PartitionIDs: ids}, nil
}

// LookupQueue implements dialect.Dialect.
func (d *Dialect) LookupQueue(ctx context.Context, q dialect.DBTX, p *dialect.LookupQueueParams) (*dialect.LookupQueueResult, error) {
	return stmt.LookupQueue(ctx, q, d.qs().lookup, p.Queue)
}

// Chunking of multi-row INSERTs: at most maxInsertRows rows (5 placeholders
// each, far below the 65535 of a prepared statement) and about
// maxInsertBytes of payload and headers, so that a statement stays well
// under the default max_allowed_packet (16 MiB on MariaDB, 64 MiB on MySQL
// 8) even when interpolateParams escapes binary data.
const (
	maxInsertRows  = 1000
	maxInsertBytes = 4 << 20
)

// InsertMessages implements dialect.Dialect. Partition rows are found by
// (queue, partition_num) in q's own database.
//
// One row (the common Enqueue) takes one INSERT … SELECT. The application's
// transaction is often REPEATABLE READ, where the SELECT part is a locking
// read (shared locks); FORCE INDEX keeps it an eq_ref lookup on the
// covering UNIQUE (queue, partition_num) index, which locks only that
// secondary-index record, never the clustered partitions row whose
// last_seq the sequencer updates under its own lock: producers neither
// wait for nor hold up the sequencer.
//
// Several rows first read their partition ids with a plain SELECT (a
// consistent read: no locks), fail with ErrQueueNotFound before writing
// when one is missing, then run simple multi-row INSERT … VALUES (an
// INSERT … SELECT of many rows would hold InnoDB's table-level AUTO-INC
// lock for the whole statement under innodb_autoinc_lock_mode=1, MariaDB's
// default, serializing concurrent producers). For a simple INSERT InnoDB
// hands out auto-increment ids in VALUES order, in every
// innodb_autoinc_lock_mode; later chunks of the same call get larger ids.
func (d *Dialect) InsertMessages(ctx context.Context, q dialect.DBTX, p *dialect.InsertMessagesParams) (*dialect.InsertMessagesResult, error) {
	if len(p.Rows) == 1 {
		r := p.Rows[0]
		return stmt.InsertAll(ctx, q, p.Rows, func([]dialect.InsertRow) stmt.Chunk {
			return stmt.Chunk{N: 1, Query: d.qs().insertOne, Args: []any{nonNil(r.Payload), r.PayloadType, stmt.NullBytes(r.Headers), r.Queue, r.Partition}}
		})
	}
	ids, err := d.partitionIDs(ctx, q, p.Rows)
	if err != nil {
		return nil, err
	}
	return stmt.InsertAll(ctx, q, p.Rows, func(rows []dialect.InsertRow) stmt.Chunk {
		n, size := 0, 0
		for n < len(rows) && n < maxInsertRows {
			sz := len(rows[n].Payload) + len(rows[n].Headers) + len(rows[n].PayloadType)
			if n > 0 && size+sz > maxInsertBytes {
				break
			}
			size += sz
			n++
		}
		var b strings.Builder
		b.Grow(80 + 16*n)
		b.WriteString("INSERT INTO ")
		b.WriteString(d.Prefix())
		b.WriteString("messages (partition_id, payload, payload_type, headers) VALUES ")
		args := make([]any, 0, 4*n)
		for i, r := range rows[:n] {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(?, ?, ?, ?)")
			args = append(args, ids[partitionKey{r.Queue, r.Partition}], nonNil(r.Payload), r.PayloadType, stmt.NullBytes(r.Headers))
		}
		return stmt.Chunk{N: n, Query: b.String(), Args: args}
	})
}

// nonNil binds an empty payload for nil: the column is NOT NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

type partitionKey struct {
	queue string
	num   int
}

// partitionIDs reads the partition ids rows name, one consistent read per
// queue, or returns ErrQueueNotFound when one does not exist in q.
func (d *Dialect) partitionIDs(ctx context.Context, q dialect.DBTX, rows []dialect.InsertRow) (map[partitionKey]int64, error) {
	nums := map[string]map[int]bool{}
	for _, r := range rows {
		if nums[r.Queue] == nil {
			nums[r.Queue] = map[int]bool{}
		}
		nums[r.Queue][r.Partition] = true
	}
	ids := make(map[partitionKey]int64)
	for queue, set := range nums {
		args := make([]any, 0, 1+len(set))
		args = append(args, queue)
		for n := range set {
			args = append(args, n)
		}
		rs, err := q.QueryContext(ctx, `SELECT partition_num, id FROM `+d.Prefix()+`partitions
			WHERE queue = ? AND partition_num IN (`+placeholders(len(set))+`)`, args...)
		if err != nil {
			return nil, err
		}
		for rs.Next() {
			var n int
			var id int64
			if err := rs.Scan(&n, &id); err != nil {
				rs.Close()
				return nil, err
			}
			ids[partitionKey{queue, n}] = id
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			return nil, err
		}
	}
	for _, r := range rows {
		if _, ok := ids[partitionKey{r.Queue, r.Partition}]; !ok {
			return nil, fmt.Errorf("%w: %s partition %d", dialect.ErrQueueNotFound, r.Queue, r.Partition)
		}
	}
	return ids, nil
}

// PendingPartitions implements dialect.Dialect.
func (d *Dialect) PendingPartitions(ctx context.Context, q dialect.DBTX, p *dialect.PendingPartitionsParams) (*dialect.PendingPartitionsResult, error) {
	ids, err := stmt.Int64s(ctx, q, d.qs().pending, p.Limit)
	if err != nil {
		return nil, err
	}
	return &dialect.PendingPartitionsResult{PartitionIDs: ids}, nil
}

// SequencePartition implements dialect.Dialect. tx must be READ COMMITTED
// (TxOptions): the pick below needs a snapshot taken after the lock.
func (d *Dialect) SequencePartition(ctx context.Context, tx *sql.Tx, p *dialect.SequencePartitionParams) (*dialect.SequencePartitionResult, error) {
	var last int64
	err := tx.QueryRowContext(ctx, d.qs().lockPartition, p.PartitionID).Scan(&last)
	if errors.Is(err, sql.ErrNoRows) {
		// Locked by another sequencer (or no such partition).
		return &dialect.SequencePartitionResult{}, nil
	}
	if err != nil {
		return nil, err
	}
	ids, err := stmt.Int64s(ctx, tx, d.qs().unsequenced, p.PartitionID, p.Limit)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return &dialect.SequencePartitionResult{Locked: true, LastSeq: last}, nil
	}
	// Assign last+1, last+2, … in id order, by primary key only: the rows
	// are committed and, while we hold the partition lock, nobody else
	// writes unsequenced rows of this partition (producers never update
	// their rows, vacuum deletes only sequenced ones), so these record locks
	// are never contended. The secondary indexes on seq are not unique, so
	// no duplicate check locks a neighbouring (possibly uncommitted) entry.
	var b strings.Builder
	b.Grow(64 + 24*len(ids))
	b.WriteString("UPDATE ")
	b.WriteString(d.Prefix())
	b.WriteString("messages SET seq = CASE id")
	args := make([]any, 0, 3*len(ids))
	for i, id := range ids {
		b.WriteString(" WHEN ? THEN ?")
		args = append(args, id, last+int64(i)+1)
	}
	b.WriteString(" END WHERE id IN (")
	b.WriteString(placeholders(len(ids)))
	b.WriteString(")")
	for _, id := range ids {
		args = append(args, id)
	}
	res, err := tx.ExecContext(ctx, b.String(), args...)
	if err != nil {
		return nil, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, err
	} else if n != int64(len(ids)) {
		// Cannot happen while the invariants above hold; refuse to leave a
		// gap in the sequence if it does.
		return nil, fmt.Errorf("mysql: sequencer updated %d of %d rows of partition %d", n, len(ids), p.PartitionID)
	}
	after := last + int64(len(ids))
	if _, err := tx.ExecContext(ctx, d.qs().bumpLastSeq, after, p.PartitionID); err != nil {
		return nil, err
	}
	return &dialect.SequencePartitionResult{Locked: true, Assigned: len(ids), LastSeq: after}, nil
}

// candidate is a claimable partition as seen by a consistent read.
type candidate struct {
	queue     string
	partition int
	lastSeq   int64
}

// lockedProcessor is a processors row locked by the claim.
type lockedProcessor struct {
	id           int64
	processedSeq int64
	attempts     int
	leased       bool // lease_token was not NULL
}

// candidateFactor: the consistent read over-fetches so that concurrent
// claimers, which all see the same head of the list, still find rows that
// nobody has locked yet.
const candidateFactor = 4

// claimCandidates is step 1 of a claim: the partitions of queues that look
// claimable, best first. It runs outside the claim's transaction (at READ
// COMMITTED each statement reads a fresh snapshot anyway), so that an idle
// poll costs this one statement and no transaction.
func (d *Dialect) claimCandidates(ctx context.Context, q dialect.DBTX, queues []string, limit int) ([]int64, map[int64]candidate, error) {
	if len(queues) == 0 || limit <= 0 {
		return nil, nil, nil
	}
	// Step 1, a plain consistent read (no locks): which partitions look
	// claimable, best first. It joins partitions only to read last_seq;
	// locking partitions rows here would make the sequencer skip them.
	args := make([]any, 0, len(queues)+1)
	for _, q := range queues {
		args = append(args, q)
	}
	args = append(args, limit*candidateFactor)
	rows, err := q.QueryContext(ctx, `SELECT pr.partition_id, pr.queue, p.partition_num, p.last_seq
		FROM `+d.Prefix()+`processors pr JOIN `+d.Prefix()+`partitions p ON p.id = pr.partition_id
		WHERE pr.queue IN (`+placeholders(len(queues))+`) AND p.last_seq > pr.processed_seq
		  AND (pr.lease_until IS NULL OR pr.lease_until < NOW(6))
		  AND pr.next_attempt_at <= NOW(6) AND pr.blocked_at IS NULL
		ORDER BY pr.next_attempt_at, pr.partition_id LIMIT ?`, args...)
	if err != nil {
		return nil, nil, err
	}
	cands := make(map[int64]candidate)
	var order []int64
	for rows.Next() {
		var id int64
		var c candidate
		if err := rows.Scan(&id, &c.queue, &c.partition, &c.lastSeq); err != nil {
			rows.Close()
			return nil, nil, err
		}
		cands[id] = c
		order = append(order, id)
	}
	rows.Close()
	return order, cands, rows.Err()
}

// lockClaimable locks, in tx, the processors rows of up to limit of the
// candidates in order. It returns the locked rows in claim order.
func (d *Dialect) lockClaimable(ctx context.Context, tx *sql.Tx, order []int64, cands map[int64]candidate, limit int) ([]lockedProcessor, error) {
	// Step 2: lock only processors rows (MariaDB has no FOR UPDATE OF), by
	// primary key, skipping rows other claimers hold, in batches of as many
	// candidates as are still wanted, so that no row beyond the wanted
	// number stays locked until the claim commits (an ORDER BY … LIMIT
	// here would sort after locking every matching row). A locking read sees the latest committed version, so
	// the conditions are re-checked on current values; at READ COMMITTED a
	// row that no longer matches is unlocked at once. last_seq only grows,
	// so step 1's value is a lower bound of the current one: a row whose
	// cursor has reached it since (another claimer delivered in between) is
	// left alone, since it may have nothing to deliver.
	var locked []lockedProcessor
	for len(order) > 0 && len(locked) < limit {
		batch := order[:min(limit-len(locked), len(order))]
		order = order[len(batch):]
		var b strings.Builder
		args := make([]any, 0, 3*len(batch))
		b.WriteString(`SELECT partition_id, processed_seq, attempts, lease_token IS NOT NULL
			FROM ` + d.Prefix() + `processors
			WHERE partition_id IN (` + placeholders(len(batch)) + `)
			  AND (lease_until IS NULL OR lease_until < NOW(6))
			  AND next_attempt_at <= NOW(6) AND blocked_at IS NULL
			  AND processed_seq < CASE partition_id`)
		for _, id := range batch {
			args = append(args, id)
		}
		for _, id := range batch {
			b.WriteString(" WHEN ? THEN ?")
			args = append(args, id, cands[id].lastSeq)
		}
		b.WriteString(" END FOR UPDATE SKIP LOCKED")
		got, err := scanLocked(tx.QueryContext(ctx, b.String(), args...))
		if err != nil {
			return nil, err
		}
		// Keep step 1's order (the rows come back in primary-key order).
		for _, id := range batch {
			if l, ok := got[id]; ok {
				locked = append(locked, l)
			}
		}
	}
	return locked, nil
}

func scanLocked(rows *sql.Rows, err error) (map[int64]lockedProcessor, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	got := make(map[int64]lockedProcessor)
	for rows.Next() {
		var l lockedProcessor
		if err := rows.Scan(&l.id, &l.processedSeq, &l.attempts, &l.leased); err != nil {
			return nil, err
		}
		got[l.id] = l
	}
	return got, rows.Err()
}

// ClaimLease implements dialect.Dialect. MySQL has no UPDATE … RETURNING,
// so the claim runs in its own READ COMMITTED transaction: consistent read,
// lock with SKIP LOCKED, stamp the lease, commit. No statement in it waits
// for a lock (SKIP LOCKED never waits; the UPDATE touches rows already
// locked), so it cannot deadlock.
func (d *Dialect) ClaimLease(ctx context.Context, db *sql.DB, p *dialect.ClaimLeaseParams) (res *dialect.ClaimResult, err error) {
	order, cands, err := d.claimCandidates(ctx, db, p.Queues, p.Limit)
	if err != nil {
		return nil, err
	}
	if len(order) == 0 {
		return &dialect.ClaimResult{}, nil
	}
	tx, err := db.BeginTx(ctx, d.TxOptions())
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	locked, err := d.lockClaimable(ctx, tx, order, cands, p.Limit)
	if err != nil {
		return nil, err
	}
	res = &dialect.ClaimResult{}
	if len(locked) > 0 {
		args := make([]any, 0, 2+len(locked))
		args = append(args, p.Token, p.Lease.Microseconds())
		for _, l := range locked {
			args = append(args, l.id)
		}
		// The rows are locked by this transaction, so the values read in
		// step 2 are current. attempts is assigned before lease_token
		// because SET runs left to right and later assignments see earlier
		// new values: it must read the old token. A lease that was never
		// released (its owner crashed or overran) counts as a failed
		// attempt.
		if _, err := tx.ExecContext(ctx, `UPDATE `+d.Prefix()+`processors
			SET attempts = attempts + (lease_token IS NOT NULL),
				lease_token = ?,
				lease_until = NOW(6) + INTERVAL ? MICROSECOND,
				version = version + 1
			WHERE partition_id IN (`+placeholders(len(locked))+`)`, args...); err != nil {
			return nil, err
		}
		for _, l := range locked {
			c := cands[l.id]
			att := l.attempts
			if l.leased {
				att++
			}
			res.Partitions = append(res.Partitions, dialect.ClaimedPartition{
				PartitionID: l.id, Queue: c.queue, Partition: c.partition,
				ProcessedSeq: l.processedSeq, LastSeq: c.lastSeq, Attempts: att,
			})
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return res, nil
}

// LockPartition implements dialect.Dialect. tx is the core's READ COMMITTED
// transaction; the processors row stays locked until it ends, and claimers
// skip it meanwhile. Only the processors row is locked: the partitions row
// is read without a lock (last_seq only grows), so the sequencer is never
// held up by a running handler.
func (d *Dialect) LockPartition(ctx context.Context, tx *sql.Tx, p *dialect.LockPartitionParams) (*dialect.ClaimResult, error) {
	var c dialect.ClaimedPartition
	err := tx.QueryRowContext(ctx, `SELECT partition_id, queue, processed_seq, attempts FROM `+d.Prefix()+`processors
		WHERE partition_id = ? AND lease_token = ? AND blocked_at IS NULL FOR UPDATE SKIP LOCKED`, p.PartitionID, p.Token).
		Scan(&c.PartitionID, &c.Queue, &c.ProcessedSeq, &c.Attempts)
	if errors.Is(err, sql.ErrNoRows) {
		return &dialect.ClaimResult{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := tx.QueryRowContext(ctx, `SELECT partition_num, last_seq FROM `+d.Prefix()+`partitions WHERE id = ?`,
		p.PartitionID).Scan(&c.Partition, &c.LastSeq); err != nil {
		return nil, err
	}
	return &dialect.ClaimResult{Partitions: []dialect.ClaimedPartition{c}}, nil
}

// ReadMessages implements dialect.Dialect.
func (d *Dialect) ReadMessages(ctx context.Context, q dialect.DBTX, p *dialect.ReadMessagesParams) (*dialect.ReadMessagesResult, error) {
	rows, err := q.QueryContext(ctx, d.qs().read, p.PartitionID, p.AfterSeq, p.Limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	res := &dialect.ReadMessagesResult{Messages: make([]dialect.Message, 0, min(max(p.Limit, 0), 1024))}
	for rows.Next() {
		var m dialect.Message
		var h sql.NullString
		var created dbTime
		if err := rows.Scan(&m.ID, &m.Seq, &m.Payload, &m.PayloadType, &h, &created); err != nil {
			return nil, err
		}
		if m.Payload == nil {
			m.Payload = []byte{}
		}
		if h.Valid {
			m.Headers = []byte(h.String)
		}
		m.CreatedAt = created.Time
		res.Messages = append(res.Messages, m)
	}
	return res, rows.Err()
}

// UpdateCursor implements dialect.Dialect.
func (d *Dialect) UpdateCursor(ctx context.Context, q dialect.DBTX, p *dialect.UpdateCursorParams) (*dialect.UpdateCursorResult, error) {
	renew := p.Renew.Microseconds()
	res, err := q.ExecContext(ctx, d.qs().update, p.ProcessedSeq, p.Attempts, stmt.NullString(p.LastError),
		p.RetryAfter.Microseconds(), renew, renew, renew, p.Block,
		p.PartitionID, p.Token, p.Token)
	if err != nil {
		return nil, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return nil, err
	}
	// version = version + 1 makes a matched row always a changed row.
	return &dialect.UpdateCursorResult{Updated: n == 1}, nil
}

// InsertDeadLetters implements dialect.Dialect. At READ COMMITTED the
// SELECT part is a consistent read: it locks neither the messages rows nor
// the partitions row (which would make the sequencer skip the partition).
func (d *Dialect) InsertDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.InsertDeadLettersParams) (*dialect.InsertDeadLettersResult, error) {
	if len(p.Seqs) == 0 {
		return &dialect.InsertDeadLettersResult{}, nil
	}
	args := make([]any, 0, 3+len(p.Seqs))
	args = append(args, p.Attempts, stmt.NullString(p.Reason), p.PartitionID)
	for _, s := range p.Seqs {
		args = append(args, s)
	}
	res, err := q.ExecContext(ctx, `INSERT INTO `+d.Prefix()+`dead_letters
			(queue, partition_num, seq, payload, payload_type, headers, created_at, attempts, last_error)
		SELECT p.queue, p.partition_num, m.seq, m.payload, m.payload_type, m.headers, m.created_at, ?, ?
		FROM `+d.Prefix()+`messages m JOIN `+d.Prefix()+`partitions p ON p.id = m.partition_id
		WHERE m.partition_id = ? AND m.seq IN (`+placeholders(len(p.Seqs))+`) ORDER BY m.seq`, args...)
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
	args := make([]any, 0, len(p.PartitionIDs)+1)
	for _, id := range p.PartitionIDs {
		args = append(args, id)
	}
	args = append(args, p.Token)
	// WHERE sees the old lease_token; version makes every match count.
	res, err := q.ExecContext(ctx, `UPDATE `+d.Prefix()+`processors
		SET lease_token = NULL, lease_until = NULL, version = version + 1
		WHERE partition_id IN (`+placeholders(len(p.PartitionIDs))+`) AND lease_token = ?`, args...)
	if err != nil {
		return nil, err
	}
	n, err := res.RowsAffected()
	return &dialect.ReleaseLeasesResult{Released: int(n)}, err
}

// Vacuum implements dialect.Dialect. MySQL rejects a DELETE that reads its
// own table in a subquery and LIMIT inside IN, so it works per partition:
// find partitions with delivered rows, pick up to the remaining budget of
// their delivered rows with a consistent read, delete those by primary key.
// Deleting by primary key locks exactly the rows deleted (delivered rows
// nobody writes), never a neighbouring index entry, so vacuum neither waits
// for nor blocks producers or the sequencer.
func (d *Dialect) Vacuum(ctx context.Context, q dialect.DBTX, p *dialect.VacuumParams) (*dialect.VacuumResult, error) {
	if p.Limit <= 0 {
		return &dialect.VacuumResult{}, nil
	}
	type cursor struct{ id, processed int64 }
	rows, err := q.QueryContext(ctx, d.qs().vacuumCandidates, p.Limit)
	if err != nil {
		return nil, err
	}
	var parts []cursor
	for rows.Next() {
		var c cursor
		if err := rows.Scan(&c.id, &c.processed); err != nil {
			rows.Close()
			return nil, err
		}
		parts = append(parts, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	deleted := 0
	for _, c := range parts {
		left := p.Limit - deleted
		if left <= 0 {
			break
		}
		ids, err := stmt.Int64s(ctx, q, d.qs().vacuumPick, c.id, c.processed, left)
		if err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			continue
		}
		args := make([]any, 0, len(ids))
		for _, id := range ids {
			args = append(args, id)
		}
		// Primary key only: with a partition_id/seq condition added, the
		// optimizer may pick the (partition_id, seq) index, and a locking
		// range scan on it locks the entry after the range, which can be
		// an uncommitted producer's row of the next partition.
		res, err := q.ExecContext(ctx, `DELETE FROM `+d.Prefix()+`messages
			WHERE id IN (`+placeholders(len(ids))+`)`, args...)
		if err != nil {
			return nil, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, err
		}
		deleted += int(n)
	}
	return &dialect.VacuumResult{Deleted: deleted}, nil
}

// PartitionState implements dialect.Inspector.
func (d *Dialect) PartitionState(ctx context.Context, q dialect.DBTX, p *dialect.PartitionStateParams) (*dialect.PartitionStateResult, error) {
	var r dialect.PartitionStateResult
	var next, until, blocked, now dbTime
	err := q.QueryRowContext(ctx, d.qs().state, p.Queue, p.Partition).Scan(&r.PartitionID, &r.LastSeq, &r.ProcessedSeq,
		&r.Attempts, &r.LastError, &next, &r.LeaseToken, &until, &blocked, &now)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, dialect.ErrQueueNotFound
	}
	if err != nil {
		return nil, err
	}
	r.NextAttemptAt, r.LeaseUntil, r.BlockedAt, r.Now = next.Time, until.Time, blocked.Time, now.Time
	return &r, nil
}

// ListDeadLetters implements dialect.Inspector.
func (d *Dialect) ListDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.ListDeadLettersParams) (*dialect.ListDeadLettersResult, error) {
	var where []string
	var args []any
	if p.Queue != "" {
		where = append(where, "queue = ?")
		args = append(args, p.Queue)
	}
	if p.Status != "" {
		where = append(where, "status = ?")
		args = append(args, p.Status)
	}
	query := `SELECT id, queue, partition_num, seq, payload, payload_type, headers, created_at,
			failed_at, attempts, COALESCE(last_error, ''), status
		FROM ` + d.Prefix() + `dead_letters`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY failed_at DESC, id DESC LIMIT ?"
	args = append(args, p.Limit)
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	res := &dialect.ListDeadLettersResult{}
	for rows.Next() {
		var dl dialect.DeadLetter
		var h sql.NullString
		var created, failed dbTime
		if err := rows.Scan(&dl.ID, &dl.Queue, &dl.Partition, &dl.Seq, &dl.Payload, &dl.PayloadType, &h,
			&created, &failed, &dl.Attempts, &dl.LastError, &dl.Status); err != nil {
			return nil, err
		}
		if dl.Payload == nil {
			dl.Payload = []byte{}
		}
		if h.Valid {
			dl.Headers = []byte(h.String)
		}
		dl.CreatedAt, dl.FailedAt = created.Time, failed.Time
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

// dbTime scans a DATETIME column whatever the DSN's parseTime says: as a
// time.Time (parseTime=true) or as text "2006-01-02 15:04:05.999999"
// (parseTime=false), read as UTC. NULL and the zero date leave Time zero.
type dbTime struct{ Time time.Time }

const dbTimeLayout = "2006-01-02 15:04:05.999999999"

func (t *dbTime) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		t.Time = time.Time{}
		return nil
	case time.Time:
		t.Time = x
		return nil
	case []byte:
		return t.parse(string(x))
	case string:
		return t.parse(x)
	default:
		return fmt.Errorf("mysql: cannot scan %T into a time", v)
	}
}

func (t *dbTime) parse(s string) error {
	if s == "" || strings.HasPrefix(s, "0000-00-00") {
		t.Time = time.Time{}
		return nil
	}
	layout := dbTimeLayout
	if len(s) == len("2006-01-02") {
		layout = "2006-01-02"
	}
	v, err := time.ParseInLocation(layout, s, time.UTC)
	if err != nil {
		return fmt.Errorf("mysql: parse time %q: %w", s, err)
	}
	t.Time = v
	return nil
}

var _ dialect.Checker = (*Dialect)(nil)

// CheckDatabase implements dialect.Checker: q must be MySQL or MariaDB.
func (d *Dialect) CheckDatabase(ctx context.Context, q dialect.DBTX) error {
	return stmt.CheckDatabase(ctx, q, "SELECT VERSION()", func(v string) bool {
		return !strings.Contains(v, "PostgreSQL") && !strings.Contains(v, "CockroachDB")
	})
}

var _ dialect.Operator = (*Dialect)(nil)

// LockCursor implements dialect.Operator. The partitions row is read
// without a lock (as in LockPartition: the sequencer is never held up);
// the processors row is locked by primary key, a record lock, waiting for
// a transactional handler that holds it.
func (d *Dialect) LockCursor(ctx context.Context, tx *sql.Tx, p *dialect.LockCursorParams) (*dialect.LockCursorResult, error) {
	var r dialect.LockCursorResult
	err := tx.QueryRowContext(ctx, `SELECT id, last_seq FROM `+d.Prefix()+`partitions WHERE queue = ? AND partition_num = ?`,
		p.Queue, p.Partition).Scan(&r.PartitionID, &r.LastSeq)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, dialect.ErrQueueNotFound
	}
	if err != nil {
		return nil, err
	}
	err = tx.QueryRowContext(ctx, `SELECT processed_seq, attempts, COALESCE(last_error, ''), blocked_at IS NOT NULL
		FROM `+d.Prefix()+`processors WHERE partition_id = ? FOR UPDATE`, r.PartitionID).
		Scan(&r.ProcessedSeq, &r.Attempts, &r.LastError, &r.Blocked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, dialect.ErrQueueNotFound
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}
