// Package mysql is the MySQL and MariaDB dialect of the outbox (MySQL 8.0.16+,
// MariaDB 10.6+, InnoDB).
//
// It works with github.com/go-sql-driver/mysql, which it imports only to
// classify errors. The DSN does not need parseTime=true: DATETIME columns are
// scanned from either representation. interpolateParams=true is recommended:
// without it the driver prepares, executes and closes every statement that
// has arguments (three round trips instead of one).
//
// # Consistent reads
//
// Every pipeline transaction runs at READ COMMITTED (TxOptions), and the
// statements here rely on what InnoDB does at that level: each statement
// reads a fresh snapshot of committed data, and a plain SELECT (or the
// SELECT part of INSERT … SELECT) is a consistent read, which takes no
// locks and never waits for one. So a consistent read sees everything
// committed before it started, never waits for an uncommitted producer's
// insert (whose rows it does not see; they are handled once committed),
// and never locks a partitions row (which would make the sequencer skip
// the partition) or a gap (which would block application inserts). Where
// a decision must hold until commit, the statement locks the exact rows by
// primary key instead (FOR UPDATE SKIP LOCKED, or an UPDATE by id), which
// takes record locks only. Comments below say "consistent read" and mean
// this.
//
// # Quirks
//
// Relative to the PostgreSQL dialect:
//   - no UPDATE … RETURNING: claims select, lock and update in their own
//     READ COMMITTED transaction (claim.go);
//   - no FOR UPDATE OF: locking reads touch only the table they read;
//   - rowsAffected counts changed rows only: every guarded UPDATE bumps
//     version so that a matched row always counts;
//   - no LIMIT inside IN and no DELETE reading its own table in a subquery:
//     vacuum selects first, then deletes by primary key (vacuum.go);
//   - single-table UPDATE evaluates SET assignments left to right, later ones
//     seeing earlier new values: assignments are ordered so that none reads a
//     column assigned before it.
package mysql

import (
	"database/sql"
	"embed"
	"strings"

	"github.com/jmoiron/sqlx"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/sqlbase"
)

// Dialect is the MySQL/MariaDB dialect. Its zero value means New(). What
// it adds to the shared base is its SQL text (spec), the claim and the
// acks without RETURNING (claim.go, cursor.go), the sequencer's JSON_TABLE
// numbering (sequence.go), the vacuum by primary key (vacuum.go) and its
// error numbers (errors.go).
type Dialect struct{ base }

// New returns the MySQL/MariaDB dialect; Option configures it.
func New(opts ...Option) *Dialect { return sqlbase.New(opts) }

var _ dialect.Dialect = (*Dialect)(nil)

// Option configures a Dialect: WithPrefix.
type Option = sqlbase.Option[Dialect]

// WithPrefix sets the table-name prefix (default "outbox_"); New panics
// for one that dialect.ValidPrefix refuses.
func WithPrefix(prefix string) Option { return sqlbase.WithPrefix[Dialect](prefix) }

// base is the shared base, built from spec.
type base = sqlbase.Base[spec, queries]

// migrationFiles is the schema with the default prefix (spec.Build hands
// it to the base, which serves it as Migrations).
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// queries are the statements only MySQL/MariaDB runs this way.
type queries struct {
	insertQueue, selectQueue, insertCursors         string
	lockPartition, unsequenced, number              string
	update, vacuumCandidates, vacuumPick, insertOne string
}

// spec tells the shared base how MySQL/MariaDB differs.
type spec struct{}

// Build implements sqlbase.Spec. DeclareQueue and Vacuum are this
// package's own, so their shared statements stay empty.
func (spec) Build(p string) (sqlbase.Shared, queries) {
	r := strings.NewReplacer("{p}", p)
	sh := sqlbase.Shared{
		Name: "mysql", Family: "mysql", Retryable: retryable,
		Probe: "SELECT VERSION()",
		Accept: func(v string) bool {
			return !strings.Contains(v, "PostgreSQL") && !strings.Contains(v, "CockroachDB")
		},
		// READ COMMITTED (see Consistent reads in the package
		// documentation). InnoDB's default, REPEATABLE READ, takes gap
		// locks on locking reads and keeps one snapshot for the whole
		// transaction.
		TxOptions: &sql.TxOptions{Isolation: sql.LevelReadCommitted},
		// Times given by the application (a dead-letter listing's
		// failed-at bounds) are compared with values NOW(6) wrote: the
		// session's time zone must be the DSN's loc (UTC unless set) for
		// them to mean the same instant. Times the base read itself
		// (paging cursors, hold deadlines) round-trip exactly either way.
		NowPlus:   "NOW(6) + INTERVAL ? MICROSECOND",
		ForUpdate: " FOR UPDATE", SkipLocked: " FOR UPDATE SKIP LOCKED",
		// The replay hold reads in primary-key order: through the
		// (status, …) indexes InnoDB would lock every holdable row before
		// the sort and LIMIT, and keep them locked, so a concurrent holder
		// would skip rows nobody took and come back empty-handed. In id
		// order it locks, and keeps, only the rows it returns.
		HoldHint:   " FORCE INDEX (PRIMARY)",
		Goose:      "mysql",
		Migrations: migrationFiles,
		Bind:       sqlx.QUESTION,
		Now:        "NOW(6)",
		// Driven by the (seq, partition_id) index: the NULL keys come first
		// and are grouped by partition. A consistent read.
		Pending:       r.Replace(`SELECT DISTINCT partition_id FROM {p}messages WHERE seq IS NULL LIMIT ?`),
		ParenBranches: true,
	}
	return sh, queries{
		// ON DUPLICATE KEY UPDATE rather than INSERT IGNORE: IGNORE would also
		// turn real errors (CHECK violations, truncation) into warnings.
		insertQueue: r.Replace(`INSERT INTO {p}queues (name, partitions) VALUES (?, ?)
			ON DUPLICATE KEY UPDATE name = name`),
		selectQueue: r.Replace(`SELECT partitions FROM {p}queues WHERE name = ?`),
		// Only cursor rows that are missing: in the common case (a
		// redeclaration at startup) this inserts nothing and takes no lock,
		// where a plain INSERT IGNORE would take a shared lock on every
		// existing cursor row and wait for, or block, their claimers.
		// INSERT … SELECT reads partitions and processors as consistent
		// reads. IGNORE covers the race with a
		// concurrent declarer; every value comes from a valid partitions row.
		insertCursors: r.Replace(`INSERT IGNORE INTO {p}processors (partition_id, queue)
			SELECT p.id, p.queue FROM {p}partitions p
			WHERE p.queue = ? AND NOT EXISTS (SELECT 1 FROM {p}processors pr WHERE pr.partition_id = p.id)`),
		// The partition row lock excludes every other sequencer of this
		// partition. Nothing else locks partitions rows (claims lock only
		// cursor rows; other reads of partitions are consistent reads),
		// so SKIP LOCKED skips only a partition another sequencer is on.
		// Primary-key lookup: a record lock, no gap lock.
		lockPartition: r.Replace(`SELECT last_seq FROM {p}partitions WHERE id = ? FOR UPDATE SKIP LOCKED`),
		// A consistent read, taken after the lock is held, so it sees every
		// row the previous lock holder sequenced and committed, and never
		// waits for an uncommitted producer insert (a locking read or an
		// UPDATE … ORDER BY id LIMIT would scan the index with locks and
		// could).
		unsequenced: r.Replace(`SELECT id FROM {p}messages
			WHERE partition_id = ? AND seq IS NULL ORDER BY id LIMIT ?`),
		// See Dialect.number. STRAIGHT_JOIN and FORCE INDEX: the entries
		// drive, and each message row and each partitions row is reached
		// by its primary key (eq_ref), so only those rows are locked. Any
		// other plan (another join order, or a scan with a join buffer,
		// which the optimizer picks for a small table) reads the table with
		// locks and waits for uncommitted producers' and sequencers' rows.
		// A partitions row joins once per numbered message, all with the
		// same last_seq; a multi-table UPDATE changes each row once. The
		// counters are under this transaction's partition locks, so they
		// cannot have moved.
		number: r.Replace(`UPDATE JSON_TABLE(?, '$[*]' COLUMNS (
				id BIGINT PATH '$[0]', seq BIGINT PATH '$[1]', pid BIGINT PATH '$[2]', last BIGINT PATH '$[3]')) v
			STRAIGHT_JOIN {p}messages m FORCE INDEX (PRIMARY) ON m.id = v.id
			STRAIGHT_JOIN {p}partitions p FORCE INDEX (PRIMARY) ON p.id = v.pid
			SET m.seq = v.seq, p.last_seq = v.last`),
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
		// Cursors that may have delivered rows behind them; see Vacuum.
		vacuumCandidates: r.Replace(`SELECT partition_id, processed_seq FROM {p}processors WHERE processed_seq > 0`),
		// A consistent read of delivered rows, oldest first. Rows with
		// seq <= processed_seq are never written again by anyone, so deleting
		// them afterwards by primary key is safe even outside a transaction.
		vacuumPick: r.Replace(`SELECT id FROM {p}messages WHERE partition_id = ? AND seq <= ?
			ORDER BY seq LIMIT ?`),
		// See InsertMessages for why FORCE INDEX.
		insertOne: r.Replace(`INSERT INTO {p}messages (partition_id, payload, payload_type, headers, msg_id, msg_key)
			SELECT p.id, ?, ?, ?, ?, ? FROM {p}partitions p FORCE INDEX ({p}partitions_queue_num)
			WHERE p.queue = ? AND p.partition_num = ?`),
	}
}
