package sqlbase

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/modkit-go/db/dialect"
)

// Int64s runs query and scans its single int64 column.
func Int64s(ctx context.Context, q dialect.DBTX, query string, args ...any) ([]int64, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Chunk is one statement of an insert: it covers the first N rows given
// and inserts all of them or none (a row whose partition is missing makes
// it insert nothing).
type Chunk struct {
	N     int
	Query string
	Args  []any
	// Counted says Query returns the number of rows it inserted as the
	// first column of its one row (an INSERT inside a CTE, say; further
	// columns are ignored), instead of reporting it as rows affected.
	Counted bool
}

// insertSavepoint guards an insert that takes several statements.
const insertSavepoint = "outbox_insert"

// InsertAll inserts rows with the statements next builds, all or nothing
// in q: one statement when next covers every row at once (atomic by
// itself, the common case), otherwise under a savepoint that is rolled
// back when a statement fails or inserts fewer rows than it covers. A short
// statement is reported as dialect.ErrQueueNotFound. On a *sql.DB (no
// transaction; the core always passes one) chunks commit one by one.
func InsertAll(ctx context.Context, q dialect.DBTX, rows []dialect.InsertRow, next func([]dialect.InsertRow) Chunk) (*dialect.InsertMessagesResult, error) {
	c := next(rows)
	// On a pool every statement commits by itself: there is no
	// transaction to keep clean, and a savepoint would not survive to the
	// next statement's connection.
	if _, pool := q.(*sql.DB); c.N == len(rows) || pool {
		for done := 0; ; c = next(rows[done:]) {
			if err := execChunk(ctx, q, c); err != nil {
				return nil, err
			}
			if done += c.N; done == len(rows) {
				return &dialect.InsertMessagesResult{Inserted: len(rows)}, nil
			}
		}
	}
	if err := dialect.Savepoint(ctx, q, insertSavepoint, dialect.SavepointCreate); err != nil {
		return nil, err
	}
	for done := 0; ; c = next(rows[done:]) {
		if err := execChunk(ctx, q, c); err != nil {
			// The undo must run even when ctx has ended (that may be why
			// the chunk failed), or earlier chunks would stay in q.
			undo := context.WithoutCancel(ctx)
			rerr := dialect.Savepoint(undo, q, insertSavepoint, dialect.SavepointRollback)
			if rerr == nil {
				rerr = dialect.Savepoint(undo, q, insertSavepoint, dialect.SavepointRelease)
			}
			if rerr != nil {
				return nil, fmt.Errorf("%w (undoing the earlier chunks failed too: %v)", err, rerr)
			}
			return nil, err
		}
		if done += c.N; done == len(rows) {
			break
		}
	}
	if err := dialect.Savepoint(ctx, q, insertSavepoint, dialect.SavepointRelease); err != nil {
		return nil, err
	}
	return &dialect.InsertMessagesResult{Inserted: len(rows)}, nil
}

func execChunk(ctx context.Context, q dialect.DBTX, c Chunk) error {
	var n int64
	if c.Counted {
		var err error
		if n, err = firstInt(ctx, q, c.Query, c.Args); err != nil {
			return err
		}
	} else {
		res, err := q.ExecContext(ctx, c.Query, c.Args...)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
	}
	if int(n) != c.N {
		return fmt.Errorf("%w: %d of %d rows name a partition that does not exist", dialect.ErrQueueNotFound, int(c.N)-int(n), c.N)
	}
	return nil
}

// CheckDatabase runs probe, a one-value query that only the dialect's own
// kind of database answers as accept wants (a version string, say). It
// reports dialect.ErrWrongDatabase only on evidence: the answer is another
// product's, or the probe failed the way only a database of another kind
// fails it (see Foreign). Every other failure (a cancelled context, a
// closed pool, a server still starting up) is returned wrapped, so callers
// see its cause.
func CheckDatabase(ctx context.Context, q dialect.DBTX, probe string, accept func(answer string) bool) error {
	var v string
	err := q.QueryRowContext(ctx, probe).Scan(&v)
	switch {
	case err == nil && !accept(v):
		return fmt.Errorf("%w: %s answered %q", dialect.ErrWrongDatabase, probe, v)
	case err == nil:
		return nil
	case Foreign(err):
		return fmt.Errorf("%w: %s: %w", dialect.ErrWrongDatabase, probe, err)
	}
	return fmt.Errorf("%s: %w", probe, err)
}

// Foreign reports whether err is how a database of another kind rejects a
// probe naming a function it lacks: a syntax error or undefined function
// (SQLSTATE class 42 on PostgreSQL and through drivers that expose it;
// MySQL/MariaDB errors 1064 and 1305) or SQLite's "no such function". It
// reads errors through interfaces and messages, so no driver is imported.
func Foreign(err error) bool {
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		return strings.HasPrefix(st.SQLState(), "42")
	}
	var num interface{ Number() uint16 }
	if errors.As(err, &num) {
		return num.Number() == erParse || num.Number() == erNoSuchFunction
	}
	msg := err.Error()
	// go-sql-driver/mysql's *MySQLError has neither method; its message is
	// "Error <number> (<sqlstate>): …".
	for _, n := range []string{"Error 1064 (", "Error 1305 ("} {
		if strings.HasPrefix(msg, n) {
			return true
		}
	}
	// SQLite: "SQL logic error: no such function: version (1)".
	return strings.Contains(msg, "no such function: ")
}

// Family names the kind of database whose driver returned err:
// "postgres" for an error with a SQLSTATE method (lib/pq, pgx),
// "mysql" for a MySQL/MariaDB server error (go-sql-driver/mysql's
// "Error <number> (<sqlstate>): …", or an error with a Number method),
// "sqlite" for an error with a result-code method (modernc.org/sqlite),
// and "" for any other error (a cancelled context, a closed pool, a
// network failure), which says nothing about the database's kind. It reads
// errors through interfaces and messages, so no driver is imported.
func Family(err error) string {
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		return "postgres"
	}
	var num interface{ Number() uint16 }
	if errors.As(err, &num) {
		return "mysql"
	}
	var code interface{ Code() int }
	if errors.As(err, &code) {
		return "sqlite"
	}
	if mysqlMessage.MatchString(err.Error()) {
		return "mysql"
	}
	return ""
}

// mysqlMessage is the message of go-sql-driver/mysql's *MySQLError, which
// has no method to recognize it by.
var mysqlMessage = regexp.MustCompile(`^Error [0-9]+ \([0-9A-Z]{5}\): `)

// MySQL/MariaDB error numbers of a probe another database's SQL fails.
const (
	erParse          = 1064 // ER_PARSE_ERROR
	erNoSuchFunction = 1305 // ER_SP_DOES_NOT_EXIST: FUNCTION x does not exist
)

// NullString is s as an argument, NULL when empty.
func NullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// NullBytes is b as a text argument, NULL when nil.
func NullBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

// NullBlob is b as a binary argument, NULL when empty.
func NullBlob(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// firstInt runs query and returns the first column of its first row,
// ignoring any other column.
func firstInt(ctx context.Context, q dialect.DBTX, query string, args []any) (int64, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, err
	}
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return 0, err
		}
		return 0, sql.ErrNoRows
	}
	var n int64
	dest := make([]any, len(cols))
	dest[0] = &n
	for i := 1; i < len(dest); i++ {
		dest[i] = new(any)
	}
	if err := rows.Scan(dest...); err != nil {
		return 0, err
	}
	return n, rows.Close()
}

// Placeholders returns "?, ?, …" with n placeholders, for the IN lists of
// statements built per call on the databases whose placeholder is "?".
func Placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// LockPartition runs query, a SKIP LOCKED read of one partition's last_seq
// by id, inside tx. locked is false when no row came back: another
// sequencer holds the partition (or it does not exist).
func LockPartition(ctx context.Context, tx *sql.Tx, query string, id int64) (last int64, locked bool, err error) {
	err = tx.QueryRowContext(ctx, query, id).Scan(&last)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return last, err == nil, err
}

// Sequenced is a dialect.SequencePartitionsResult being filled in: one
// entry per requested partition, in request order.
type Sequenced struct {
	Result *dialect.SequencePartitionsResult
	at     map[int64]int
}

// NewSequenced starts the result for ids, every partition not Locked.
func NewSequenced(ids []int64) *Sequenced {
	s := &Sequenced{
		Result: &dialect.SequencePartitionsResult{Partitions: make([]dialect.SequencedPartition, len(ids))},
		at:     make(map[int64]int, len(ids)),
	}
	for i, id := range ids {
		s.Result.Partitions[i].PartitionID = id
		s.at[id] = i
	}
	return s
}

// Get returns partition id's entry, or nil if it was not requested.
func (s *Sequenced) Get(id int64) *dialect.SequencedPartition {
	i, ok := s.at[id]
	if !ok {
		return nil
	}
	return &s.Result.Partitions[i]
}

// Lock runs query in tx, a SKIP LOCKED read of (id, last_seq) for the
// requested partitions, marks each row's partition Locked with its
// counter, and returns the locked ids in row order.
func (s *Sequenced) Lock(ctx context.Context, tx dialect.DBTX, query string, args ...any) ([]int64, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var locked []int64
	for rows.Next() {
		var id, last int64
		if err := rows.Scan(&id, &last); err != nil {
			return nil, err
		}
		if r := s.Get(id); r != nil {
			r.Locked, r.LastSeq = true, last
			locked = append(locked, id)
		}
	}
	return locked, rows.Err()
}
