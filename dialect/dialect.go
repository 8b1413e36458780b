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

// ErrWrongDatabase is wrapped by CheckDatabase's error, and reported by
// the core for any statement error that ClassifyError finds to come from
// a database of another kind, when the database is not one the dialect
// speaks to.
var ErrWrongDatabase = errors.New("dialect: wrong database for this dialect")

// ErrNoWakeups is returned at once by Waker.Listen when this dialect value
// is not set up to listen (for example PostgreSQL without a listener); the
// core then relies on polling alone.
var ErrNoWakeups = errors.New("dialect: not set up to listen for wake-ups")

// ErrUnsupported is wrapped by the error of a method that cannot run on
// this database, for instance SequencePending where the database's schema
// predates it; the core then does the same work with the other methods
// (PendingPartitions and SequencePartitions). Such an error changes
// nothing.
var ErrUnsupported = errors.New("dialect: not supported by this database")

// Capabilities say what a backend's database does differently, as data:
// the core reads them once, when an Outbox is built, and the conformance
// suite selects the cases that apply from them. Each field's zero value is
// the conservative choice, so a new dialect may start from Capabilities{}.
type Capabilities struct {
	// PreparedStatements asks the core to run the statements it passes a
	// DBTX for (inserts through InTx, reads, acks, releases, claims,
	// sequencing, vacuum) as prepared statements, prepared once per
	// connection of its *sql.DB and reused, for a database that spends
	// much of a short statement's cost parsing and planning it. Statement
	// texts stay the dialect's own; only DML is prepared, and a text whose
	// preparation fails runs unprepared.
	PreparedStatements bool
	// SequencesOnInsert says InsertMessages may give rows their seq
	// itself, in the same statement, where the database orders commits as
	// their inserts (SQLite's single writer). Such rows are claimable as
	// soon as their transaction commits, so the core wakes the workers,
	// not only the sequencer, when a producer commits. The contract is
	// unchanged: seqs stay gap-free and in commit order within a
	// partition, so an insert may do so only when its partition has no
	// unsequenced row.
	SequencesOnInsert bool
	// SequencePending says SequencePending runs a whole sequencer round in
	// one round trip; without it the core never calls SequencePending and
	// runs each round as PendingPartitions, then SequencePartitions in a
	// transaction.
	SequencePending bool
	// SingleWriter says only one transaction writes at a time (SQLite):
	// row-lock skipping cannot be observed, so the conformance cases that
	// need two writers at once do not run, and cases that simulate
	// several processes share one pool.
	SingleWriter bool
}

// ErrorClass is what an error means to the core; see ClassifyError.
type ErrorClass int

// Error classes.
const (
	// ErrorOther is any error the core cannot act on: it is returned (or,
	// in the background loops, logged and retried with backoff).
	ErrorOther ErrorClass = iota
	// ErrorRetryable is a transient conflict (serialization failure,
	// deadlock, lock wait timeout, SQLITE_BUSY): the core retries the work
	// at once.
	ErrorRetryable
	// ErrorWrongDatabase is an error that a database of another kind
	// raised: the executor was not the dialect's kind of database (a
	// caller's transaction on another server, say). The core returns it
	// wrapping ErrWrongDatabase.
	ErrorWrongDatabase
)

// Schema is a dialect's tables: migrations.Up applies them. A Schema value
// must describe the same tables its Dialect uses (every Dialect is one).
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
	// CheckDatabase returns an error wrapping ErrWrongDatabase when q is
	// not a database of this kind, and any other failure wrapped with its
	// cause. migrations.Up and the outbox core call it before their first
	// schema access.
	CheckDatabase(ctx context.Context, q DBTX) error
}

// Pool is the outbox's database, for a method that runs outside any
// caller's transaction and may need one of its own: Q runs single
// statements (DB itself, or the core's view of it that prepares them once
// per connection; see Capabilities.PreparedStatements), and DB begins the
// method's own transaction where it needs several statements to commit
// together.
type Pool struct {
	DB *sql.DB
	Q  DBTX
}

// Dialect is the whole contract between the outbox core and a database:
// every method is required, and each pipeline step has one form, the
// batch form. What a database does differently is reported by
// Capabilities, never discovered by type assertion. See the package
// documentation for the invariants each method keeps; the conformance
// suite checks every one of them.
type Dialect interface {
	// Schema: the tables the methods below use.
	Schema

	// Name is a short lowercase name such as "postgres".
	Name() string
	// Capabilities reports what this database does differently. It must
	// return the same value for the life of the dialect value.
	Capabilities() Capabilities
	// TxOptions are the options of every pipeline transaction (sequencer,
	// claim, ack). Nil means the database default.
	TxOptions() *sql.TxOptions
	// ClassifyError says what err, returned by one of this dialect's
	// statements (or by the driver running it), means: the one place the
	// driver's errors are interpreted.
	ClassifyError(err error) ErrorClass

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
	// SequencePartitions sequences, inside the transaction tx, up to Limit
	// rows of each partition of PartitionIDs. A partition another
	// transaction holds is skipped (Locked false, nothing done); a locked
	// one gets seq = LastSeq+1, LastSeq+2, … on up to Limit of its
	// committed unsequenced rows in id order, read by a statement whose
	// snapshot is taken after its lock was granted (so it sees every row
	// the previous holder sequenced), and its counter moves by the number
	// assigned. tx is always a transaction (the core's view of it, which
	// may run prepared statements): never type-assert it.
	SequencePartitions(ctx context.Context, tx DBTX, p *SequencePartitionsParams) (*SequencePartitionsResult, error)
	// SequencePending runs a whole sequencer round in one round trip,
	// atomic by itself: it finds the partitions with committed unsequenced
	// rows and an id of at least FromPartitionID, at most MaxPartitions of
	// them in partition id order, and sequences each as
	// SequencePartitions does, up to Limit / (partitions found) rows (at
	// least one). The core calls it only when Capabilities.SequencePending
	// is set; otherwise it returns an error wrapping ErrUnsupported, as it
	// may also do where the database cannot run it (a schema that
	// predates it), and the core then uses PendingPartitions and
	// SequencePartitions for the life of the Outbox. q runs statements on
	// the outbox's database, never in a transaction.
	SequencePending(ctx context.Context, q DBTX, p *SequencePendingParams) (*SequencePartitionsResult, error)

	// ClaimLeases claims up to Limit claimable partitions of Queues with a
	// lease (decoupled mode), committing before it returns. A blocked
	// partition (see UpdateCursorParams.Block) is never claimable.
	ClaimLeases(ctx context.Context, pool Pool, p *ClaimLeaseParams) (*ClaimResult, error)
	// LockPartition locks, inside tx, the cursor row of a partition whose
	// lease Token holds (transactional mode), skipping a row another
	// transaction holds or that is blocked. It returns that partition, or
	// none.
	LockPartition(ctx context.Context, tx *sql.Tx, p *LockPartitionParams) (*ClaimResult, error)
	// ReadPartitions reads, for each read of Reads (partitions distinct),
	// up to Limit sequenced messages with seq > AfterSeq in seq order.
	ReadPartitions(ctx context.Context, q DBTX, p *ReadPartitionsParams) (*ReadPartitionsResult, error)
	// UpdateCursors writes cursor updates, each on a distinct partition:
	// a cursor's position, attempts, backoff and lease, fenced by its
	// Token when that is not empty (it changes its row only while the
	// token holds an unexpired lease by the database's clock). The result
	// reports, in the order of Updates, which entries changed their row;
	// an entry that is fenced off changes nothing and does not stop the
	// others. All the changes commit together or not at all.
	UpdateCursors(ctx context.Context, q DBTX, p *UpdateCursorsParams) (*UpdateCursorsResult, error)
	// InsertDeadLetters copies the given messages of a partition into the
	// dead-letter table.
	InsertDeadLetters(ctx context.Context, q DBTX, p *InsertDeadLettersParams) (*InsertDeadLettersResult, error)
	// ReleaseLeases drops the leases that Token holds on the given
	// partitions.
	ReleaseLeases(ctx context.Context, q DBTX, p *ReleaseLeasesParams) (*ReleaseLeasesResult, error)
	// Vacuum deletes up to Limit delivered messages.
	Vacuum(ctx context.Context, q DBTX, p *VacuumParams) (*VacuumResult, error)

	// LockCursor locks, inside tx, the cursor row of a queue's partition
	// and returns its state, for an operator's retry or skip of a blocked
	// partition. Unlike LockPartition it waits for a lock another
	// transaction holds (bounded by ctx), and it takes blocked rows too.
	// It returns ErrQueueNotFound when the partition does not exist.
	LockCursor(ctx context.Context, tx *sql.Tx, p *LockCursorParams) (*LockCursorResult, error)
	// QueueStatus reports every partition of p.Queue (of every queue when
	// empty; only p.Partition when set) and its dead letters by status, in
	// a number of statements that does not depend on the partition count.
	// It returns ErrQueueNotFound for a named queue (or partition) that
	// does not exist.
	QueueStatus(ctx context.Context, q DBTX, p *QueueStatusParams) (*QueueStatusResult, error)
	// Stats counts the rows of the outbox tables.
	Stats(ctx context.Context, q DBTX, p *StatsParams) (*StatsResult, error)

	// FindDeadLetters lists the dead letters p selects, newest first: by
	// failed_at descending, then id descending (a total order, so paging
	// with After never repeats nor skips a row, even among rows with equal
	// failed_at).
	FindDeadLetters(ctx context.Context, q DBTX, p *FindDeadLettersParams) (*FindDeadLettersResult, error)
	// CountDeadLetters counts the dead letters p selects (After and Limit
	// are ignored).
	CountDeadLetters(ctx context.Context, q DBTX, p *FindDeadLettersParams) (*CountDeadLettersResult, error)
	// TransitionDeadLetters moves the rows p.IDs names from p.From to p.To
	// in one guarded statement: a row changes only if its status is From
	// (and, when Deadline is set, it is held by that hold: its deadline
	// equals Deadline and has not passed). Setting To resolved or
	// discarded stamps completed_at; To pending (a return) also sets
	// last_error to Reason, adds one to attempts and clears the deadline.
	// When fewer rows changed than p.IDs names, the result says which
	// ids were missing and which were refused; the caller rolls back.
	// Rows are locked in id order where the database has row locks, so
	// overlapping calls do not deadlock.
	TransitionDeadLetters(ctx context.Context, q DBTX, p *TransitionDeadLettersParams) (*TransitionDeadLettersResult, error)
	// RequeueDeadLetters, on q inside a transaction, moves the pending
	// rows p.IDs names to resolved (as TransitionDeadLetters) and, only
	// when every one of them changed, returns them as rows to insert, in
	// (queue, partition, seq, id) order; the caller inserts them with
	// InsertMessages in the same transaction. When the marks fall short it
	// returns no rows and reports the shortfall; the caller rolls back.
	RequeueDeadLetters(ctx context.Context, q DBTX, p *RequeueDeadLettersParams) (*RequeueDeadLettersResult, error)
	// HoldDeadLetters, in a transaction of its own committed before it
	// returns, holds up to p.Limit dead letters for replay: those pending,
	// or reprocessing with a deadline that has passed, oldest id first,
	// skipping rows other transactions hold (SKIP LOCKED where the
	// database has it), and moves them to reprocessing with deadline
	// now()+p.For. Every row of one hold gets the same deadline, which
	// the result reports and which fences Resolve and Return: two holds
	// never hold one row at the same time.
	HoldDeadLetters(ctx context.Context, pool Pool, p *HoldDeadLettersParams) (*HoldDeadLettersResult, error)
	// CleanupDeadLetters deletes up to p.Limit resolved or discarded rows
	// completed at least p.OlderThan ago (database time), and no other
	// row. The caller repeats it until a call deletes fewer than Limit.
	CleanupDeadLetters(ctx context.Context, q DBTX, p *CleanupDeadLettersParams) (*CleanupDeadLettersResult, error)
}

// Waker is the one optional interface: implemented by a Dialect whose
// database can wake the workers of other processes (PostgreSQL's
// LISTEN/NOTIFY). It is optional because a database may have no such
// channel at all, and the core's answer to its absence is polling, which
// every backend runs anyway. Its InsertMessages arranges a wake-up that
// the database delivers when the inserting transaction commits (never for
// one that rolls back), and Listen receives them. The core runs one
// Listen per started Outbox, reconnecting with backoff when it fails;
// polling stays the safety net, so a lost wake-up only costs latency.
type Waker interface {
	// Listen listens on a dedicated connection (it must not hand a listening
	// connection back to db's pool) until ctx ends or the connection fails.
	// It calls p.Ready once listening: every wake-up committed after that
	// is reported. Then it calls p.Wake once per wake-up, with the queue
	// that was enqueued to. Ready and Wake are called one at a time and
	// before Listen returns. It returns ctx's
	// error once ctx ends, and otherwise the error that ended listening.
	// A dialect value not set up to listen returns ErrNoWakeups at once.
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
	// MessageID is the message's 16-byte id (stored in msg_id), Key its
	// key ("" stores NULL).
	MessageID []byte
	Key       string
}

// InsertMessagesParams are the arguments of InsertMessages.
type InsertMessagesParams struct {
	Rows []InsertRow
}

// InsertMessagesResult reports an insert.
type InsertMessagesResult struct {
	Inserted int
	// Sequenced counts the rows the insert gave their seq itself (see
	// Capabilities.SequencesOnInsert); the others wait for the sequencer.
	Sequenced int
}

// ClaimLeaseParams are the arguments of ClaimLeases.
type ClaimLeaseParams struct {
	Queues []string
	Limit  int
	Token  string        // fresh for this acquisition
	Lease  time.Duration // lease_until = now() + Lease
	// PartitionIDs, when not empty, narrows the candidates to these
	// partitions (of Queues; the other conditions unchanged): the core's
	// claim of the few partitions its sequencer has just numbered, which
	// must not cost a read of every cursor row of Queues.
	PartitionIDs []int64
}

// LockPartitionParams are the arguments of LockPartition.
type LockPartitionParams struct {
	PartitionID int64
	Token       string // the lease ClaimLeases stamped
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

// PartitionRead is one read of ReadPartitions.
type PartitionRead struct {
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
	// MessageID and Key as inserted (nil and "" for a row without).
	MessageID []byte
	Key       string
}

// UpdateCursorsParams are the arguments of UpdateCursors.
type UpdateCursorsParams struct {
	// Updates are the cursor updates, each on a distinct partition.
	Updates []*CursorUpdate
	// DB, when not nil, says q is the outbox's database outside any
	// transaction, and the updates commit before UpdateCursors returns; a
	// dialect that needs several statements to write them together begins
	// its own transaction on DB. Nil: q is a transaction the caller holds
	// (and commits).
	DB *sql.DB
}

// UpdateCursorsResult reports, in the order of Updates, which entries
// changed their row.
type UpdateCursorsResult struct {
	Updated []bool
}

// CursorUpdate is one entry of UpdateCursors.
type CursorUpdate struct {
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
	// an operator unblocks it (ClaimLeases and LockPartition skip blocked
	// rows). Without it the update clears blocked_at. Attempts, LastError
	// and the lease (Renew 0 releases it) are written as for any update.
	Block bool
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
	// MessageID and Key are the message's (nil and "" when it had none).
	MessageID []byte
	Key       string
	// Deadline is a reprocessing row's hold deadline, CompletedAt when a
	// row became resolved or discarded; zero when NULL. Only the dead-letter
	// methods read them.
	Deadline, CompletedAt time.Time
}

// FindDeadLettersResult holds dead letters, newest first.
type FindDeadLettersResult struct {
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
