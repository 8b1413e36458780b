package dialect

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// DBTX is the executor the dialect runs statements on. *sql.DB, *sql.Tx and
// *sql.Conn satisfy it.
type DBTX interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// ErrQueueNotFound is returned by LookupQueue for a queue that was never
// declared.
var ErrQueueNotFound = errors.New("dialect: queue not found")

// ErrWrongDatabase is returned by Checker.CheckDatabase when the database
// is not one the dialect speaks to.
var ErrWrongDatabase = errors.New("dialect: wrong database for this dialect")

// Checker is optionally implemented by a Dialect to verify that a database
// is of its kind. The core calls it before the first schema access.
type Checker interface {
	// CheckDatabase returns an error wrapping ErrWrongDatabase when q is
	// not a database this dialect supports.
	CheckDatabase(ctx context.Context, q DBTX) error
}

// ErrNoWakeups is returned at once by Waker.Listen when this dialect value
// is not set up to listen (for example PostgreSQL without a listener); the
// core then relies on polling alone.
var ErrNoWakeups = errors.New("dialect: not set up to listen for wake-ups")

// Waker is optionally implemented by a Dialect whose database can wake the
// workers of other processes: its InsertMessages arranges a wake-up that the
// database delivers when the inserting transaction commits (never for one
// that rolls back), and Listen receives them. The core runs one Listen per
// started Outbox, reconnecting with backoff when it fails; polling stays the
// safety net, so a lost wake-up only costs latency.
type Waker interface {
	// Listen listens on a dedicated connection (it must not hand a listening
	// connection back to db's pool) until ctx ends or the connection fails.
	// It calls p.Ready once listening: every wake-up committed after that
	// is reported. Then it calls p.Wake once per wake-up, with the queue
	// that was enqueued to. Ready and Wake are called one at a time and
	// before Listen returns. It returns ctx's
	// error once ctx ends, and otherwise the error that ended listening.
	Listen(ctx context.Context, db *sql.DB, p *ListenParams) error
}

// ListenParams are the arguments of Waker.Listen.
type ListenParams struct {
	// Ready is called once the listener receives wake-ups.
	Ready func()
	// Wake is called for each wake-up, with its queue's name. Wake-ups of
	// one transaction may be merged; order and count are not guaranteed.
	Wake func(queue string)
}

// Dialect is the pipeline contract: what the outbox core needs from a
// database to enqueue, sequence, claim, deliver, acknowledge and vacuum.
// See the package documentation for the invariants each method must keep.
//
// A dialect usually also implements [Schema] (for migrations.Up) and
// [Inspector] (for the outbox's inspection methods); the built-in ones
// implement all three.
type Dialect interface {
	// Name is a short lowercase name such as "postgres".
	Name() string
	// TxOptions are the options of every pipeline transaction (sequencer,
	// claim, ack). Nil means the database default.
	TxOptions() *sql.TxOptions
	// IsRetryable reports whether err is a transient conflict (serialization
	// failure, deadlock, lock wait timeout, SQLITE_BUSY) worth retrying.
	IsRetryable(err error) bool

	// DeclareQueue records a queue and, when its stored partition count
	// equals the requested one, creates its partition and cursor rows
	// idempotently.
	DeclareQueue(ctx context.Context, tx *sql.Tx, p *DeclareQueueParams) (*DeclareQueueResult, error)
	// LookupQueue returns a declared queue's partitions, or ErrQueueNotFound.
	LookupQueue(ctx context.Context, q DBTX, p *LookupQueueParams) (*LookupQueueResult, error)
	// InsertMessages inserts unsequenced messages in slice order (ids
	// increase in that order), chunking as the database requires. Each row's
	// partition is resolved inside the statement, by queue name and
	// partition number, in q's own database: a row whose partition does not
	// exist there is never written to another partition. All or nothing:
	// when a row's partition is missing it returns ErrQueueNotFound, and on
	// any error no row of the call remains in q (a call that needs several
	// statements runs them under a savepoint and rolls back to it).
	InsertMessages(ctx context.Context, q DBTX, p *InsertMessagesParams) (*InsertMessagesResult, error)
	// PendingPartitions lists partitions that have committed unsequenced
	// messages.
	PendingPartitions(ctx context.Context, q DBTX, p *PendingPartitionsParams) (*PendingPartitionsResult, error)
	// SequencePartition sequences up to Limit rows of one partition inside
	// tx. Locked is false when another transaction held the partition.
	SequencePartition(ctx context.Context, tx *sql.Tx, p *SequencePartitionParams) (*SequencePartitionResult, error)
	// ClaimLease claims up to Limit claimable partitions of Queues with a
	// lease (decoupled mode), committing before it returns. A blocked
	// partition (see UpdateCursorParams.Block) is never claimable.
	ClaimLease(ctx context.Context, db *sql.DB, p *ClaimLeaseParams) (*ClaimResult, error)
	// LockPartition locks, inside tx, the cursor row of a partition whose
	// lease Token holds (transactional mode), skipping a row another
	// transaction holds or that is blocked. It returns that partition, or
	// none.
	LockPartition(ctx context.Context, tx *sql.Tx, p *LockPartitionParams) (*ClaimResult, error)
	// ReadMessages reads sequenced messages with seq > AfterSeq in seq order.
	ReadMessages(ctx context.Context, q DBTX, p *ReadMessagesParams) (*ReadMessagesResult, error)
	// UpdateCursor moves a partition's cursor, attempts, backoff and
	// lease, fenced by Token when it is not empty.
	UpdateCursor(ctx context.Context, q DBTX, p *UpdateCursorParams) (*UpdateCursorResult, error)
	// InsertDeadLetters copies the given messages of a partition into the
	// dead-letter table.
	InsertDeadLetters(ctx context.Context, q DBTX, p *InsertDeadLettersParams) (*InsertDeadLettersResult, error)
	// ReleaseLeases drops the leases that Token holds on the given
	// partitions.
	ReleaseLeases(ctx context.Context, q DBTX, p *ReleaseLeasesParams) (*ReleaseLeasesResult, error)
	// Vacuum deletes up to Limit delivered messages.
	Vacuum(ctx context.Context, q DBTX, p *VacuumParams) (*VacuumResult, error)
}

// Inspector is optionally implemented by a Dialect to report state for
// operators: the outbox's PartitionState, ListDeadLetters and Stats call
// it, and return an error wrapping outbox.ErrNotSupported when the dialect
// lacks it. Nothing in the pipeline depends on it.
type Inspector interface {
	// PartitionState reports one partition's sequencer and cursor state,
	// or ErrQueueNotFound.
	PartitionState(ctx context.Context, q DBTX, p *PartitionStateParams) (*PartitionStateResult, error)
	// ListDeadLetters lists dead letters, newest first.
	ListDeadLetters(ctx context.Context, q DBTX, p *ListDeadLettersParams) (*ListDeadLettersResult, error)
	// Stats counts rows in the outbox tables.
	Stats(ctx context.Context, q DBTX, p *StatsParams) (*StatsResult, error)
}

// Schema is implemented by a dialect that owns its schema; migrations.Up
// applies it. A Schema value must describe the same tables its Dialect
// uses (the built-in dialects are one value implementing both).
type Schema interface {
	// Prefix is the table-name prefix the schema was built with (see
	// ValidPrefix).
	Prefix() string
	// GooseDialect names the goose dialect used to record applied
	// migrations (for example "postgres", "mysql", "sqlite3").
	GooseDialect() string
	// Migrations returns the schema as goose SQL files, already rewritten
	// for Prefix.
	Migrations() fs.FS
}

// DefaultPrefix is the table-name prefix of the built-in dialects' zero
// values and of the schema files as stored.
const DefaultPrefix = "outbox_"

// ValidPrefix reports whether prefix is usable as a table-name prefix:
// 1–32 lowercase letters, digits and underscores, starting with a letter.
// Such a prefix needs no quoting in any of the built-in databases.
func ValidPrefix(prefix string) bool {
	if prefix == "" || len(prefix) > 32 {
		return false
	}
	for i, c := range prefix {
		switch {
		case c >= 'a' && c <= 'z', c == '_' && i > 0, c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// DeclareQueueParams are the arguments of DeclareQueue.
type DeclareQueueParams struct {
	Queue      string
	Partitions int
}

// DeclareQueueResult is what DeclareQueue found or made.
type DeclareQueueResult struct {
	// Partitions is the stored partition count. When it differs from the
	// requested count nothing else was written.
	Partitions int
	// PartitionIDs are the partition row ids by partition index, set only
	// when Partitions equals the requested count.
	PartitionIDs []int64
}

// LookupQueueParams are the arguments of LookupQueue.
type LookupQueueParams struct {
	Queue string
}

// LookupQueueResult describes a declared queue.
type LookupQueueResult struct {
	PartitionIDs []int64 // by partition index
}

// InsertRow is one message to insert. Queue and Partition name its
// partition; the dialect looks the partition row up in the statement itself
// (never from a cache), so a transaction of another database writes into
// that database's own partition or not at all.
type InsertRow struct {
	Queue       string
	Partition   int
	Payload     []byte
	PayloadType string
	Headers     []byte // JSON object, nil for none
}

// InsertMessagesParams are the arguments of InsertMessages.
type InsertMessagesParams struct {
	Rows []InsertRow
}

// InsertMessagesResult reports an insert.
type InsertMessagesResult struct {
	Inserted int
	// Sequenced counts the rows the insert gave their seq itself (a
	// dialect.InsertSequencer); the others wait for the sequencer.
	Sequenced int
}

// PendingPartitionsParams are the arguments of PendingPartitions.
type PendingPartitionsParams struct {
	Limit int
}

// PendingPartitionsResult lists partitions with unsequenced messages.
type PendingPartitionsResult struct {
	PartitionIDs []int64
}

// SequencePartitionParams are the arguments of SequencePartition.
type SequencePartitionParams struct {
	PartitionID int64
	Limit       int
}

// SequencePartitionResult reports one sequencing step.
type SequencePartitionResult struct {
	Locked   bool  // false: another sequencer held the partition; nothing done
	Assigned int   // rows given a seq
	LastSeq  int64 // the partition's counter afterwards
}

// ClaimLeaseParams are the arguments of ClaimLease.
type ClaimLeaseParams struct {
	Queues []string
	Limit  int
	Token  string        // fresh for this acquisition
	Lease  time.Duration // lease_until = now() + Lease
}

// LockPartitionParams are the arguments of LockPartition.
type LockPartitionParams struct {
	PartitionID int64
	Token       string // the lease ClaimLease stamped
}

// ClaimedPartition is a partition handed to a worker.
type ClaimedPartition struct {
	PartitionID  int64
	Queue        string
	Partition    int
	ProcessedSeq int64
	LastSeq      int64
	// Attempts is the failed-attempt count of the partition's head after
	// the claim (a takeover of an unreleased lease has added one).
	Attempts int
}

// ClaimResult lists claimed partitions.
type ClaimResult struct {
	Partitions []ClaimedPartition
}

// ReadMessagesParams are the arguments of ReadMessages.
type ReadMessagesParams struct {
	PartitionID int64
	AfterSeq    int64
	Limit       int
}

// Message is a stored, sequenced message.
type Message struct {
	ID          int64
	Seq         int64
	Payload     []byte
	PayloadType string
	Headers     []byte
	CreatedAt   time.Time
}

// ReadMessagesResult holds messages in seq order.
type ReadMessagesResult struct {
	Messages []Message
}

// UpdateCursorParams are the arguments of UpdateCursor.
type UpdateCursorParams struct {
	PartitionID int64
	// Token fences the update: when not empty the row changes only while
	// this token holds an unexpired lease. Empty means the caller holds the
	// row lock (transactional mode).
	Token        string
	ProcessedSeq int64
	Attempts     int
	LastError    string // stored as NULL when empty
	// RetryAfter sets next_attempt_at = now() + RetryAfter.
	RetryAfter time.Duration
	// Renew > 0 keeps the lease until now() + Renew; 0 releases it.
	Renew time.Duration
	// DeleteThrough > 0 invites the dialect to delete the partition's
	// messages with seq <= DeleteThrough in the same statement, and only if
	// the update happened. A dialect may ignore it: Vacuum deletes them
	// later either way.
	DeleteThrough int64
	// DeleteAfter is a lower bound for that delete: rows with seq <=
	// DeleteAfter were deleted before (by the ack that moved the cursor
	// there) or are left to Vacuum, so the delete need not look at them.
	// Without it the delete walks the partition's index from its start,
	// over every entry earlier acks left dead.
	DeleteAfter int64
	// DeleteIDs, when not empty, are the ids of the rows that delete
	// covers (seq in (DeleteAfter, DeleteThrough]), as the worker read
	// them: a dialect may delete by primary key, which locks no
	// neighbouring index entry. Empty: the worker does not know them.
	DeleteIDs []int64
	// Block sets blocked_at = now(): the partition stops at its head until
	// an operator unblocks it (ClaimLease and LockPartition skip blocked
	// rows). Without it the update clears blocked_at. Attempts, LastError
	// and the lease (Renew 0 releases it) are written as for any update.
	Block bool
}

// UpdateCursorResult reports whether the fenced update happened.
type UpdateCursorResult struct {
	Updated bool
}

// InsertDeadLettersParams are the arguments of InsertDeadLetters.
type InsertDeadLettersParams struct {
	PartitionID int64
	Seqs        []int64
	Reason      string
	Attempts    int
}

// InsertDeadLettersResult reports dead letters written.
type InsertDeadLettersResult struct {
	Inserted int
}

// ReleaseLeasesParams are the arguments of ReleaseLeases.
type ReleaseLeasesParams struct {
	PartitionIDs []int64
	Token        string
}

// ReleaseLeasesResult reports released leases.
type ReleaseLeasesResult struct {
	Released int
}

// SavepointOp says what Savepoint does.
type SavepointOp int

// Savepoint operations.
const (
	SavepointCreate SavepointOp = iota
	SavepointRollback
	SavepointRelease
)

// ErrInvalidSavepoint is returned by Savepoint for a name that is not 1–63
// characters of [a-z0-9_] or for an unknown SavepointOp; nothing is run.
var ErrInvalidSavepoint = errors.New("dialect: invalid savepoint")

// Savepoint runs SAVEPOINT name, ROLLBACK TO SAVEPOINT name or RELEASE
// SAVEPOINT name on q, which must be inside a transaction (a *sql.Tx, or a
// *sql.Conn that began one). PostgreSQL, MySQL/MariaDB and SQLite spell
// these alike, so it is a function, not a Dialect method. Because the name
// is part of the statement text, it is checked against [a-z0-9_]{1,63}.
func Savepoint(ctx context.Context, q DBTX, name string, op SavepointOp) error {
	if !validSavepoint(name) {
		return fmt.Errorf("%w: name %q", ErrInvalidSavepoint, name)
	}
	var query string
	switch op {
	case SavepointCreate:
		query = "SAVEPOINT " + name
	case SavepointRollback:
		query = "ROLLBACK TO SAVEPOINT " + name
	case SavepointRelease:
		query = "RELEASE SAVEPOINT " + name
	default:
		return fmt.Errorf("%w: op %d", ErrInvalidSavepoint, op)
	}
	_, err := q.ExecContext(ctx, query)
	return err
}

func validSavepoint(name string) bool {
	if name == "" || len(name) > 63 {
		return false
	}
	for _, c := range name {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// VacuumParams are the arguments of Vacuum.
type VacuumParams struct {
	Limit int
}

// VacuumResult reports deleted rows.
type VacuumResult struct {
	Deleted int
}

// PartitionStateParams are the arguments of PartitionState.
type PartitionStateParams struct {
	Queue     string
	Partition int
}

// PartitionStateResult is a partition's state: its row and its cursor row. Times are database times.
type PartitionStateResult struct {
	PartitionID   int64
	LastSeq       int64
	ProcessedSeq  int64
	Attempts      int
	LastError     string
	NextAttemptAt time.Time
	LeaseToken    string
	LeaseUntil    time.Time // zero when no lease
	BlockedAt     time.Time // zero when not blocked
	Now           time.Time // the database's clock when read
}

// ListDeadLettersParams are the arguments of ListDeadLetters.
type ListDeadLettersParams struct {
	Queue  string // empty: all queues
	Status string // empty: any status
	Limit  int
}

// DeadLetter is a stored dead letter.
type DeadLetter struct {
	ID          int64
	Queue       string
	Partition   int
	Seq         int64
	Payload     []byte
	PayloadType string
	Headers     []byte
	CreatedAt   time.Time
	FailedAt    time.Time
	Attempts    int
	LastError   string
	Status      string
	// Deadline is a reprocessing row's claim deadline, CompletedAt when a
	// row became resolved or discarded; zero when NULL. Only Operator
	// methods read them.
	Deadline, CompletedAt time.Time
}

// ListDeadLettersResult holds dead letters, newest first.
type ListDeadLettersResult struct {
	DeadLetters []DeadLetter
}

// StatsParams are the arguments of Stats.
type StatsParams struct{}

// StatsResult counts rows of the outbox tables.
type StatsResult struct {
	Queues      int64
	Partitions  int64
	Messages    int64
	Unsequenced int64
	DeadLetters int64
}
