// Package sqlbase is what the built-in dialects share: the lazily built,
// prefix-aware Base that each dialect embeds, the statements that are the
// same on every database apart from placeholders and the clock (queue
// lookup, reading messages, dead letters, releasing leases, inspection),
// the lease-takeover policy, limits, all-or-nothing inserts and the
// database check.
//
// Each dialect supplies only what differs (a Spec): its placeholder style,
// its clock expression, and the text of the statements whose shape differs
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
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"

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

// Shared is a dialect's part of the shared statements.
type Shared struct {
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
	// partitions row aliased p (empty: p.last_seq). SQLite derives it
	// (see its lastSeq).
	LastSeq string
}

// Base holds a dialect's prefix and statements, built once on first use
// from the Spec S, and implements the methods that every built-in dialect
// runs alike. Its zero value means the default prefix.
type Base[S Spec[Q], Q any] struct {
	prefix string // set before first use (Configure); read through Prefix
	once   sync.Once
	sh     Shared
	st     statements
	own    Q
}

// statements are the shared statements, rebound for the dialect.
type statements struct {
	lookup, read, state, stats, deadLetters, release string
	listCols, listOrder                              string
}

// Configure sets the prefix (empty: the default) and builds the
// statements. name prefixes the panic for an invalid prefix, which is a
// constant of the program, so New panics rather than returning an error.
func Configure[S Spec[Q], Q any](b *Base[S, Q], name, prefix string) {
	if prefix == "" {
		prefix = dialect.DefaultPrefix
	}
	if !dialect.ValidPrefix(prefix) {
		panic(fmt.Sprintf("%s: invalid table prefix %q", name, prefix))
	}
	b.prefix = prefix
	b.init()
}

// Own returns the dialect's own statements, building them on first use.
func Own[S Spec[Q], Q any](b *Base[S, Q]) *Q {
	b.init()
	return &b.own
}

// Rebind turns a "?" statement into the dialect's placeholder style.
func Rebind[S Spec[Q], Q any](b *Base[S, Q], query string) string {
	b.init()
	return sqlx.Rebind(b.sh.Bind, query)
}

func (b *Base[S, Q]) init() {
	b.once.Do(func() {
		if b.prefix == "" {
			b.prefix = dialect.DefaultPrefix
		}
		var s S
		b.sh, b.own = s.Build(b.prefix)
		b.st = buildStatements(b.prefix, b.sh)
	})
}

func buildStatements(p string, sh Shared) statements {
	lastSeq := cmp.Or(sh.LastSeq, "p.last_seq")
	r := strings.NewReplacer("{p}", p, "{now}", sh.Now, "{lastSeq}", strings.ReplaceAll(lastSeq, "{p}", p))
	bind := func(q string) string { return sqlx.Rebind(sh.Bind, r.Replace(q)) }
	return statements{
		lookup: bind(`SELECT p.id FROM {p}queues q JOIN {p}partitions p ON p.queue = q.name
			WHERE q.name = ? ORDER BY p.partition_num`),
		read: bind(`SELECT id, seq, payload, payload_type, headers, created_at FROM {p}messages
			WHERE partition_id = ? AND seq > ? ORDER BY seq LIMIT ?`),
		state: bind(`SELECT p.id, {lastSeq}, pr.processed_seq, pr.attempts, COALESCE(pr.last_error, ''),
				pr.next_attempt_at, COALESCE(pr.lease_token, ''), pr.lease_until, pr.blocked_at, {now}
			FROM {p}partitions p JOIN {p}processors pr ON pr.partition_id = p.id
			WHERE p.queue = ? AND p.partition_num = ?`),
		stats: bind(`SELECT (SELECT COUNT(*) FROM {p}queues), (SELECT COUNT(*) FROM {p}partitions),
				(SELECT COUNT(*) FROM {p}messages), (SELECT COUNT(*) FROM {p}messages WHERE seq IS NULL),
				(SELECT COUNT(*) FROM {p}dead_letters)`),
		// Rebound after sqlx.In has expanded the IN list. The SELECT part is
		// a plain read: on MySQL at READ COMMITTED a consistent read that
		// locks neither the messages rows nor the partitions row (which
		// would make the sequencer skip the partition).
		deadLetters: r.Replace(`INSERT INTO {p}dead_letters
				(queue, partition_num, seq, payload, payload_type, headers, created_at, attempts, last_error)
			SELECT p.queue, p.partition_num, m.seq, m.payload, m.payload_type, m.headers, m.created_at, ?, ?
			FROM {p}messages m JOIN {p}partitions p ON p.id = m.partition_id
			WHERE m.partition_id = ? AND m.seq IN (?) ORDER BY m.seq`),
		// version makes every match a changed row (MySQL's rowsAffected).
		release: r.Replace(`UPDATE {p}processors SET lease_token = NULL, lease_until = NULL, version = version + 1
			WHERE partition_id IN (?) AND lease_token = ?`),
		listCols: r.Replace(`SELECT id, queue, partition_num, seq, payload, payload_type, headers, created_at,
				failed_at, attempts, COALESCE(last_error, ''), status
			FROM {p}dead_letters`),
		listOrder: " ORDER BY failed_at DESC, id DESC LIMIT ?",
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

// ReadMessages implements dialect.Dialect.
func (b *Base[S, Q]) ReadMessages(ctx context.Context, q dialect.DBTX, p *dialect.ReadMessagesParams) (*dialect.ReadMessagesResult, error) {
	if p.Limit <= 0 {
		return &dialect.ReadMessagesResult{}, nil
	}
	b.init()
	rows, err := q.QueryContext(ctx, b.st.read, p.PartitionID, p.AfterSeq, p.Limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	res := &dialect.ReadMessagesResult{Messages: make([]dialect.Message, 0, Capacity(p.Limit))}
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, err
		}
		res.Messages = append(res.Messages, m)
	}
	return res, rows.Err()
}

// scanMessage scans id, seq, payload, payload_type, headers, created_at,
// after the leading columns lead.
func scanMessage(rows *sql.Rows, lead ...any) (dialect.Message, error) {
	var m dialect.Message
	var h sql.NullString
	if err := rows.Scan(append(lead, &m.ID, &m.Seq, &m.Payload, &m.PayloadType, &h, (*Time)(&m.CreatedAt))...); err != nil {
		return m, err
	}
	m.Payload = NonNil(m.Payload)
	if h.Valid {
		m.Headers = []byte(h.String)
	}
	return m, nil
}

// ReadPartitions implements dialect.PartitionsReader: ReadMessages's
// statement once per partition, joined with UNION ALL (each branch a
// derived table or, with Shared.ParenBranches, a parenthesized SELECT, so
// that it keeps its own ORDER BY and LIMIT), tagged with the read's index.
func (b *Base[S, Q]) ReadPartitions(ctx context.Context, q dialect.DBTX, p *dialect.ReadPartitionsParams) (*dialect.ReadPartitionsResult, error) {
	b.init()
	res := &dialect.ReadPartitionsResult{Messages: make([][]dialect.Message, len(p.Reads))}
	var sb strings.Builder
	args := make([]any, 0, 3*len(p.Reads))
	for i, r := range p.Reads {
		if r.Limit <= 0 {
			continue
		}
		if len(args) > 0 {
			sb.WriteString(" UNION ALL ")
		}
		branch := fmt.Sprintf("SELECT %d AS k, id, seq, payload, payload_type, headers, created_at FROM %smessages "+
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

// PartitionState implements dialect.Inspector.
func (b *Base[S, Q]) PartitionState(ctx context.Context, q dialect.DBTX, p *dialect.PartitionStateParams) (*dialect.PartitionStateResult, error) {
	b.init()
	var r dialect.PartitionStateResult
	err := q.QueryRowContext(ctx, b.st.state, p.Queue, p.Partition).Scan(&r.PartitionID, &r.LastSeq, &r.ProcessedSeq,
		&r.Attempts, &r.LastError, (*Time)(&r.NextAttemptAt), &r.LeaseToken, (*Time)(&r.LeaseUntil), (*Time)(&r.BlockedAt), (*Time)(&r.Now))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, dialect.ErrQueueNotFound
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// ListDeadLetters implements dialect.Inspector.
func (b *Base[S, Q]) ListDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.ListDeadLettersParams) (*dialect.ListDeadLettersResult, error) {
	if p.Limit <= 0 {
		return &dialect.ListDeadLettersResult{}, nil
	}
	b.init()
	// Only the conditions asked for, so that each combination is a plain
	// statement the planner can match to the (status, failed_at) index.
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
	query := b.st.listCols
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	rows, err := q.QueryContext(ctx, sqlx.Rebind(b.sh.Bind, query+b.st.listOrder), append(args, p.Limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	res := &dialect.ListDeadLettersResult{}
	for rows.Next() {
		var dl dialect.DeadLetter
		var h sql.NullString
		if err := rows.Scan(&dl.ID, &dl.Queue, &dl.Partition, &dl.Seq, &dl.Payload, &dl.PayloadType, &h,
			(*Time)(&dl.CreatedAt), (*Time)(&dl.FailedAt), &dl.Attempts, &dl.LastError, &dl.Status); err != nil {
			return nil, err
		}
		dl.Payload = NonNil(dl.Payload)
		if h.Valid {
			dl.Headers = []byte(h.String)
		}
		res.DeadLetters = append(res.DeadLetters, dl)
	}
	return res, rows.Err()
}

// Stats implements dialect.Inspector.
func (b *Base[S, Q]) Stats(ctx context.Context, q dialect.DBTX, _ *dialect.StatsParams) (*dialect.StatsResult, error) {
	b.init()
	var s dialect.StatsResult
	err := q.QueryRowContext(ctx, b.st.stats).Scan(&s.Queues, &s.Partitions, &s.Messages, &s.Unsequenced, &s.DeadLetters)
	if err != nil {
		return nil, err
	}
	return &s, nil
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
