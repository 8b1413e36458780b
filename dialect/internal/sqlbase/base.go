// Package sqlbase is what the built-in dialects share: the lazily built,
// prefix-aware Base that each dialect embeds, the statements that are the
// same on every database apart from placeholders, the clock and lock
// clauses (queue lookup, reading messages, dead letters, releasing leases,
// the dead-letter store, status), the lease-takeover policy, limits,
// all-or-nothing inserts, error classification and the database check.
//
// Each dialect supplies only what differs (a Spec): its settings (Shared:
// placeholder style, clock, lock clauses, error rules, the probe of its
// database check) and the text of the statements whose shape differs
// (pending partitions, vacuum, queue declaration). Methods a database needs
// to do differently (MySQL's vacuum and declaration, say) are defined on the
// dialect and shadow the promoted ones.
//
// sqlx is used where it removes hand-written code: Rebind turns the shared
// "?" statements into PostgreSQL's $n once, at build time, and In expands
// the IN lists of releases and dead letters. Rows are scanned with plain
// database/sql: the hot path (ReadMessages) scans six columns per message,
// where sqlx's reflection-based StructScan would only add cost, and the
// other reads are one row or rare.
package sqlbase

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/schema"
)

// Spec is what a dialect tells the base. Its zero value must be usable:
// the base builds from it on first use, so that a dialect's zero value
// works.
type Spec[Q any] interface {
	// Build returns, for a valid prefix, the shared statements' dialect
	// parts and the dialect's own statements.
	Build(prefix string) (Shared, Q)
}

// Shared is what a dialect tells the base about its database: the
// settings every shared statement and method is built from.
type Shared struct {
	// Name is the dialect's name (dialect.Dialect.Name).
	Name string
	// Family is the kind of database whose driver errors the dialect
	// speaks ("postgres", "mysql", "sqlite"; see Family); an error of
	// another family is dialect.ErrorWrongDatabase.
	Family string
	// Retryable reports a transient conflict worth retrying.
	Retryable func(err error) bool
	// Probe is a one-value query that only the dialect's kind of database
	// answers as Accept wants (a version string); see CheckDatabase.
	Probe  string
	Accept func(answer string) bool
	// TxOptions are the options of the pipeline's transactions (nil: the
	// database default).
	TxOptions *sql.TxOptions
	// Capabilities are the dialect's (dialect.Dialect.Capabilities), where
	// they do not depend on its options.
	Capabilities dialect.Capabilities
	// Goose is the goose dialect name (dialect.Schema.GooseDialect).
	Goose string
	// Migrations are the dialect's embedded goose files, in a folder
	// "migrations", with the default prefix; the base serves them
	// rewritten for the dialect's prefix.
	Migrations fs.FS
	// Bind is the placeholder style: sqlx.QUESTION or sqlx.DOLLAR. The
	// base writes its statements with "?" and rebinds them once.
	Bind int
	// Now is the database clock in SQL, in the unit the dialect stores
	// times in (now(), NOW(6), SQLite's microseconds).
	Now string
	// Pending lists partition ids with unsequenced messages; one argument,
	// the limit.
	Pending string
	// Vacuum deletes up to one argument's number of delivered messages.
	// Empty when the dialect defines its own Vacuum.
	Vacuum string
	// InsertQueue (name, partitions), SelectQueue (name), InsertPartitions
	// (queue, count) and InsertCursors (queue) are DeclareQueue's
	// statements, each idempotent. Empty when the dialect defines its own
	// DeclareQueue.
	InsertQueue, SelectQueue, InsertPartitions, InsertCursors string
	// ParenBranches makes ReadPartitions write each UNION ALL branch as a
	// parenthesized SELECT rather than a derived table. SQLite accepts
	// only the derived table; MariaDB materializes each derived table that
	// has a BLOB column as an on-disk temporary table (a file created and
	// deleted per partition read), and runs parenthesized branches
	// without one.
	ParenBranches bool
	// LastSeq is partition p's counter as an SQL expression over the
	// partitions row aliased p, written with {p} (empty: p.last_seq).
	// SQLite derives it (see its lastSeq).
	LastSeq string
	// NowPlus is the clock plus one bound number of microseconds (it
	// holds one "?").
	NowPlus string
	// ForUpdate and SkipLocked end a locking SELECT (" FOR UPDATE",
	// " FOR UPDATE SKIP LOCKED"); empty where the database has no row
	// locks (SQLite: the guarded write that follows decides).
	ForUpdate, SkipLocked string
	// HoldHint follows the table name in the dead-letter hold's locking
	// read (an index hint), so that it locks only the rows it returns.
	HoldHint string
	// TimeArg binds a time (nil: the time.Time itself).
	TimeArg func(time.Time) any
}

// Base holds a dialect's prefix and statements, built once on first use
// from the Spec S, and implements the methods that every built-in dialect
// runs alike. Its zero value means the default prefix.
type Base[S Spec[Q], Q any] struct {
	prefix string // set before first use (Configure); read through Prefix
	once   sync.Once
	sh     Shared
	st     statements
	rep    *strings.Replacer // {p}, {now}, {nowPlus}, {lastSeq}
	own    Q
}

// statements are the shared statements, rebound for the dialect.
type statements struct {
	lookup, read, stats, deadLetters, release string
}

// SetPrefix sets the table prefix (empty: the default) before first use
// (see WithPrefix). An invalid prefix is a constant of the program, so it
// panics rather than returning an error.
func (b *Base[S, Q]) SetPrefix(prefix string) {
	if prefix == "" {
		prefix = dialect.DefaultPrefix
	}
	if !dialect.ValidPrefix(prefix) {
		var s S
		sh, _ := s.Build(dialect.DefaultPrefix)
		panic(fmt.Sprintf("%s: invalid table prefix %q", sh.Name, prefix))
	}
	b.prefix = prefix
}

// Option configures a dialect D: each backend's Option.
type Option[D any] func(*D)

// New returns a zero dialect value with opts applied: each backend's New
// (a dialect's zero value is usable, so New adds nothing else).
func New[D any](opts []Option[D]) *D {
	d := new(D)
	for _, o := range opts {
		o(d)
	}
	return d
}

// WithPrefix is each backend's WithPrefix: the table-name prefix (default
// dialect.DefaultPrefix), which must match dialect.ValidPrefix (the
// dialect panics otherwise, since a prefix is a constant of the program).
func WithPrefix[D any, P interface {
	*D
	SetPrefix(string)
}](prefix string) Option[D] {
	return func(d *D) { P(d).SetPrefix(prefix) }
}

// Own returns the dialect's own statements (its Spec's), building them on
// first use.
func (b *Base[S, Q]) Own() *Q {
	b.init()
	return &b.own
}

// Rebind turns a "?" statement into the dialect's placeholder style.
func Rebind[S Spec[Q], Q any](b *Base[S, Q], query string) string {
	b.init()
	return b.rebind(query)
}

func (b *Base[S, Q]) rebind(query string) string { return sqlx.Rebind(b.sh.Bind, query) }

func (b *Base[S, Q]) init() {
	b.once.Do(func() {
		if b.prefix == "" {
			b.prefix = dialect.DefaultPrefix
		}
		var s S
		b.sh, b.own = s.Build(b.prefix)
		b.st = buildStatements(b.prefix, b.sh)
		lastSeq := strings.ReplaceAll(cmp.Or(b.sh.LastSeq, "p.last_seq"), "{p}", b.prefix)
		b.rep = strings.NewReplacer("{p}", b.prefix, "{now}", b.sh.Now, "{nowPlus}", b.sh.NowPlus, "{lastSeq}", lastSeq)
	})
}

func buildStatements(p string, sh Shared) statements {
	lastSeq := cmp.Or(sh.LastSeq, "p.last_seq")
	r := strings.NewReplacer("{p}", p, "{now}", sh.Now, "{lastSeq}", strings.ReplaceAll(lastSeq, "{p}", p))
	bind := func(q string) string { return sqlx.Rebind(sh.Bind, r.Replace(q)) }
	return statements{
		lookup: bind(`SELECT p.id FROM {p}queues q JOIN {p}partitions p ON p.queue = q.name
			WHERE q.name = ? ORDER BY p.partition_num`),
		read: bind(`SELECT id, seq, payload, payload_type, headers, created_at, msg_id, msg_key FROM {p}messages
			WHERE partition_id = ? AND seq > ? ORDER BY seq LIMIT ?`),
		stats: bind(`SELECT (SELECT COUNT(*) FROM {p}queues), (SELECT COUNT(*) FROM {p}partitions),
				(SELECT COUNT(*) FROM {p}messages), (SELECT COUNT(*) FROM {p}messages WHERE seq IS NULL),
				(SELECT COUNT(*) FROM {p}dead_letters)`),
		// Rebound after sqlx.In has expanded the IN list. The SELECT part is
		// a plain read: on MySQL at READ COMMITTED a consistent read that
		// locks neither the messages rows nor the partitions row (which
		// would make the sequencer skip the partition).
		deadLetters: r.Replace(`INSERT INTO {p}dead_letters
				(queue, partition_num, seq, payload, payload_type, headers, created_at, msg_id, msg_key, attempts, last_error)
			SELECT p.queue, p.partition_num, m.seq, m.payload, m.payload_type, m.headers, m.created_at, m.msg_id, m.msg_key, ?, ?
			FROM {p}messages m JOIN {p}partitions p ON p.id = m.partition_id
			WHERE m.partition_id = ? AND m.seq IN (?) ORDER BY m.seq`),
		// version makes every match a changed row (MySQL's rowsAffected).
		release: r.Replace(`UPDATE {p}processors SET lease_token = NULL, lease_until = NULL, version = version + 1
			WHERE partition_id IN (?) AND lease_token = ?`),
	}
}

// Prefix implements dialect.Schema.
func (b *Base[S, Q]) Prefix() string {
	b.init()
	return b.prefix
}

// GooseDialect implements dialect.Schema.
func (b *Base[S, Q]) GooseDialect() string {
	b.init()
	return b.sh.Goose
}

// Migrations implements dialect.Schema: the dialect's files with the
// table prefix rewritten.
func (b *Base[S, Q]) Migrations() fs.FS {
	b.init()
	return schema.FS(b.sh.Migrations, "migrations", b.prefix)
}

// LookupQueue implements dialect.Dialect.
func (b *Base[S, Q]) LookupQueue(ctx context.Context, q dialect.DBTX, p *dialect.LookupQueueParams) (*dialect.LookupQueueResult, error) {
	b.init()
	ids, err := Int64s(ctx, q, b.st.lookup, p.Queue)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, dialect.ErrQueueNotFound
	}
	return &dialect.LookupQueueResult{PartitionIDs: ids}, nil
}

// DeclareQueue implements dialect.Dialect with the Spec's four
// idempotent statements: record the queue, read its stored count, and
// only when it matches create the partition and cursor rows.
func (b *Base[S, Q]) DeclareQueue(ctx context.Context, tx *sql.Tx, p *dialect.DeclareQueueParams) (*dialect.DeclareQueueResult, error) {
	b.init()
	if _, err := tx.ExecContext(ctx, b.sh.InsertQueue, p.Queue, p.Partitions); err != nil {
		return nil, err
	}
	var n int
	if err := tx.QueryRowContext(ctx, b.sh.SelectQueue, p.Queue).Scan(&n); err != nil {
		return nil, err
	}
	if n != p.Partitions {
		return &dialect.DeclareQueueResult{Partitions: n}, nil
	}
	if _, err := tx.ExecContext(ctx, b.sh.InsertPartitions, p.Queue, p.Partitions); err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, b.sh.InsertCursors, p.Queue); err != nil {
		return nil, err
	}
	lr, err := b.LookupQueue(ctx, tx, &dialect.LookupQueueParams{Queue: p.Queue})
	if err != nil {
		return nil, err
	}
	return &dialect.DeclareQueueResult{Partitions: n, PartitionIDs: lr.PartitionIDs}, nil
}

// PendingPartitions implements dialect.Dialect.
func (b *Base[S, Q]) PendingPartitions(ctx context.Context, q dialect.DBTX, p *dialect.PendingPartitionsParams) (*dialect.PendingPartitionsResult, error) {
	if p.Limit <= 0 {
		return &dialect.PendingPartitionsResult{}, nil
	}
	b.init()
	ids, err := Int64s(ctx, q, b.sh.Pending, p.Limit)
	if err != nil {
		return nil, err
	}
	return &dialect.PendingPartitionsResult{PartitionIDs: ids}, nil
}

// readOne is ReadPartitions's statement for a single read: the worker's
// reads after a partition's first batch, and the transactional mode's.
func (b *Base[S, Q]) readOne(ctx context.Context, q dialect.DBTX, p dialect.PartitionRead) ([]dialect.Message, error) {
	rows, err := q.QueryContext(ctx, b.st.read, p.PartitionID, p.AfterSeq, p.Limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ms := make([]dialect.Message, 0, Capacity(p.Limit))
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	return ms, rows.Err()
}

// scanMessage scans id, seq, payload, payload_type, headers, created_at,
// msg_id, msg_key after the leading columns lead.
func scanMessage(rows *sql.Rows, lead ...any) (dialect.Message, error) {
	var m dialect.Message
	var h, key sql.NullString
	if err := rows.Scan(append(lead, &m.ID, &m.Seq, &m.Payload, &m.PayloadType, &h, (*Time)(&m.CreatedAt), &m.MessageID, &key)...); err != nil {
		return m, err
	}
	m.Key = key.String
	m.Payload = NonNil(m.Payload)
	if h.Valid {
		m.Headers = []byte(h.String)
	}
	return m, nil
}

// ReadPartitions implements dialect.Dialect: a single read is one plain
// statement (readOne); several are readOne's statement once per partition,
// joined with UNION ALL (each branch a derived table or, with
// Shared.ParenBranches, a parenthesized SELECT, so that it keeps its own
// ORDER BY and LIMIT), tagged with the read's index.
func (b *Base[S, Q]) ReadPartitions(ctx context.Context, q dialect.DBTX, p *dialect.ReadPartitionsParams) (*dialect.ReadPartitionsResult, error) {
	b.init()
	res := &dialect.ReadPartitionsResult{Messages: make([][]dialect.Message, len(p.Reads))}
	if len(p.Reads) == 1 {
		if p.Reads[0].Limit <= 0 {
			return res, nil
		}
		ms, err := b.readOne(ctx, q, p.Reads[0])
		if err != nil {
			return nil, err
		}
		res.Messages[0] = ms
		return res, nil
	}
	var sb strings.Builder
	args := make([]any, 0, 3*len(p.Reads))
	for i, r := range p.Reads {
		if r.Limit <= 0 {
			continue
		}
		if len(args) > 0 {
			sb.WriteString(" UNION ALL ")
		}
		branch := fmt.Sprintf("SELECT %d AS k, id, seq, payload, payload_type, headers, created_at, msg_id, msg_key FROM %smessages "+
			"WHERE partition_id = ? AND seq > ? ORDER BY seq LIMIT ?", i, b.prefix)
		if b.sh.ParenBranches {
			sb.WriteString("(" + branch + ")")
		} else {
			fmt.Fprintf(&sb, "SELECT * FROM (%s) t%d", branch, i)
		}
		args = append(args, r.PartitionID, r.AfterSeq, r.Limit)
		res.Messages[i] = make([]dialect.Message, 0, Capacity(r.Limit))
	}
	if len(args) == 0 {
		return res, nil
	}
	rows, err := q.QueryContext(ctx, sqlx.Rebind(b.sh.Bind, sb.String()), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var k int
		m, err := scanMessage(rows, &k)
		if err != nil {
			return nil, err
		}
		if k < 0 || k >= len(res.Messages) {
			return nil, fmt.Errorf("read partitions: row of read %d", k)
		}
		res.Messages[k] = append(res.Messages[k], m)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// UNION ALL promises no order across or within branches.
	for _, ms := range res.Messages {
		slices.SortFunc(ms, func(a, b dialect.Message) int { return cmp.Compare(a.Seq, b.Seq) })
	}
	return res, nil
}

// InsertDeadLetters implements dialect.Dialect.
func (b *Base[S, Q]) InsertDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.InsertDeadLettersParams) (*dialect.InsertDeadLettersResult, error) {
	if len(p.Seqs) == 0 {
		return &dialect.InsertDeadLettersResult{}, nil
	}
	b.init()
	n, err := b.execIn(ctx, q, b.st.deadLetters, p.Attempts, NullString(p.Reason), p.PartitionID, p.Seqs)
	return &dialect.InsertDeadLettersResult{Inserted: n}, err
}

// ReleaseLeases implements dialect.Dialect.
func (b *Base[S, Q]) ReleaseLeases(ctx context.Context, q dialect.DBTX, p *dialect.ReleaseLeasesParams) (*dialect.ReleaseLeasesResult, error) {
	if len(p.PartitionIDs) == 0 {
		return &dialect.ReleaseLeasesResult{}, nil
	}
	b.init()
	n, err := b.execIn(ctx, q, b.st.release, p.PartitionIDs, p.Token)
	return &dialect.ReleaseLeasesResult{Released: n}, err
}

// execIn expands the slice arguments of query into IN lists, rebinds it
// and reports the rows it affected.
func (b *Base[S, Q]) execIn(ctx context.Context, q dialect.DBTX, query string, args ...any) (int, error) {
	query, args, err := sqlx.In(query, args...)
	if err != nil {
		return 0, err
	}
	return Exec(ctx, q, sqlx.Rebind(b.sh.Bind, query), args...)
}

// Vacuum implements dialect.Dialect with the Spec's one bounded DELETE.
func (b *Base[S, Q]) Vacuum(ctx context.Context, q dialect.DBTX, p *dialect.VacuumParams) (*dialect.VacuumResult, error) {
	if p.Limit <= 0 {
		return &dialect.VacuumResult{}, nil
	}
	b.init()
	n, err := Exec(ctx, q, b.sh.Vacuum, p.Limit)
	return &dialect.VacuumResult{Deleted: n}, err
}

// Stats implements dialect.Dialect.
func (b *Base[S, Q]) Stats(ctx context.Context, q dialect.DBTX, _ *dialect.StatsParams) (*dialect.StatsResult, error) {
	b.init()
	var s dialect.StatsResult
	err := q.QueryRowContext(ctx, b.st.stats).Scan(&s.Queues, &s.Partitions, &s.Messages, &s.Unsequenced, &s.DeadLetters)
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// Name implements dialect.Dialect.
func (b *Base[S, Q]) Name() string {
	b.init()
	return b.sh.Name
}

// Capabilities implements dialect.Dialect with Shared.Capabilities.
func (b *Base[S, Q]) Capabilities() dialect.Capabilities {
	b.init()
	return b.sh.Capabilities
}

// SequencePending implements dialect.Dialect for a database without a
// one-statement sequencer round (Capabilities.SequencePending false): it
// reports dialect.ErrUnsupported and changes nothing.
func (b *Base[S, Q]) SequencePending(context.Context, dialect.DBTX, *dialect.SequencePendingParams) (*dialect.SequencePartitionsResult, error) {
	return nil, fmt.Errorf("%s: sequencer round in one call: %w", b.Name(), dialect.ErrUnsupported)
}

// TxOptions implements dialect.Dialect.
func (b *Base[S, Q]) TxOptions() *sql.TxOptions {
	b.init()
	return b.sh.TxOptions
}

// ClassifyError implements dialect.Dialect: Shared.Retryable's errors are
// retryable, and an error of another database's driver (see Family) is
// the wrong database.
func (b *Base[S, Q]) ClassifyError(err error) dialect.ErrorClass {
	b.init()
	switch {
	case err == nil:
		return dialect.ErrorOther
	case b.sh.Retryable != nil && b.sh.Retryable(err):
		return dialect.ErrorRetryable
	}
	if f := Family(err); f != "" && f != b.sh.Family {
		return dialect.ErrorWrongDatabase
	}
	return dialect.ErrorOther
}

// CheckDatabase implements dialect.Dialect with Shared.Probe.
func (b *Base[S, Q]) CheckDatabase(ctx context.Context, q dialect.DBTX) error {
	b.init()
	return CheckDatabase(ctx, q, b.sh.Probe, b.sh.Accept)
}

// Exec runs query and reports the rows it affected.
func Exec(ctx context.Context, q dialect.DBTX, query string, args ...any) (int, error) {
	res, err := q.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// NonNil is b, or an empty payload for nil: payloads are NOT NULL, and
// some drivers scan an empty BLOB as nil.
func NonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
