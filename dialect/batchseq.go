package dialect

import (
	"context"
	"database/sql"
	"errors"
)

// PartitionsSequencer is optionally implemented by a Dialect that can
// sequence several partitions in a fixed number of statements, whatever
// their count. Under load the sequencer finds many partitions with a few
// rows each; sequencing them one SequencePartition at a time costs round
// trips per partition, and round trips are what a busy database server
// spends its CPU on. The core uses SequencePartitions when it is there and
// SequencePartition otherwise; both must give the same result.
//
// The contract is SequencePartition's, for each partition of the call:
// a partition another transaction holds is skipped (Locked false, nothing
// done); a locked one gets seq = LastSeq+1, LastSeq+2, … on up to Limit of
// its committed unsequenced rows in id order, read by a statement whose
// snapshot is taken after its lock was granted (so it sees every row the
// previous holder sequenced), and its counter moves by the number assigned.
//
// tx is always a transaction (the core's view of it, which may run
// prepared statements; see StatementPreparer): never type-assert it.
type PartitionsSequencer interface {
	SequencePartitions(ctx context.Context, tx DBTX, p *SequencePartitionsParams) (*SequencePartitionsResult, error)
}

// SequencePartitionsParams are the arguments of SequencePartitions.
type SequencePartitionsParams struct {
	PartitionIDs []int64 // distinct
	Limit        int     // most rows per partition
}

// SequencePartitionsResult has one entry per requested partition, in the
// order of PartitionIDs.
type SequencePartitionsResult struct {
	Partitions []SequencedPartition
}

// SequencedPartition is one partition's part of a SequencePartitions call.
type SequencedPartition struct {
	PartitionID int64
	SequencePartitionResult
}

// PendingSequencer is optionally implemented by a Dialect that can run a
// whole sequencer round in one round trip, atomic by itself (its own
// transaction, like a single autocommit statement): find the partitions
// with committed unsequenced rows, as PendingPartitions does, and sequence
// them, as SequencePartitions does for those partitions. A round done in
// separate statements costs a pending read, a transaction's begin and
// commit, and the sequencing statements; under load that is most of the
// pipeline's round trips. The core uses SequencePending when it is there,
// and falls back to PendingPartitions and SequencePartition(s) for the
// life of the Outbox when it returns an error wrapping ErrUnsupported
// (a database whose schema predates it, say).
//
// The contract is SequencePartitions's for the partitions found: those
// with an id of at least FromPartitionID, at most MaxPartitions of them, in
// partition id order, each sequenced up to
// Limit / (partitions found) rows (at least one), a partition another
// transaction holds reported with Locked false and left alone at once.
// q runs statements on the outbox's database, never in a transaction
// (the core's view of it, which may run prepared statements; see
// StatementPreparer).
type PendingSequencer interface {
	SequencePending(ctx context.Context, q DBTX, p *SequencePendingParams) (*SequencePartitionsResult, error)
}

// SequencePendingParams are the arguments of SequencePending.
type SequencePendingParams struct {
	FromPartitionID int64 // the lowest partition id considered
	MaxPartitions   int   // most partitions found and tried
	Limit           int   // most rows in total, shared evenly by the partitions found
}

// ErrUnsupported is wrapped by the error of an optional method that cannot
// run on this database, for instance because its schema predates the
// method (see PendingSequencer); the core then does the same work with the
// required methods. Such an error changes nothing.
var ErrUnsupported = errors.New("dialect: not supported by this database")

// PartitionsReader is optionally implemented by a Dialect that can read
// the next messages of several partitions in one statement. A worker that
// claimed several partitions reads their first batches with it; without it
// the worker reads each partition with ReadMessages.
//
// Each read is ReadMessages's: up to Limit messages with seq > AfterSeq,
// in seq order.
type PartitionsReader interface {
	ReadPartitions(ctx context.Context, q DBTX, p *ReadPartitionsParams) (*ReadPartitionsResult, error)
}

// ReadPartitionsParams are the arguments of ReadPartitions: one
// ReadMessages per partition, partitions distinct.
type ReadPartitionsParams struct {
	Reads []ReadMessagesParams
}

// ReadPartitionsResult has the messages of each read, in the order of
// Reads, each in seq order.
type ReadPartitionsResult struct {
	Messages [][]Message
}

// InsertSequencer is optionally implemented by a Dialect whose
// InsertMessages may give rows their seq itself, in the same statement
// (moving the partition's counter there, or, as SQLite does, with a
// counter derived from the partition's highest seq), where the database
// orders commits as their inserts (SQLite's single writer). Such rows are claimable as soon
// as their transaction commits, so the core wakes the workers, not only
// the sequencer, when a producer commits. The contract is unchanged: seqs
// stay gap-free and in commit order within a partition, so an insert may
// do so only when its partition has no unsequenced row.
type InsertSequencer interface {
	SequencesOnInsert() bool
}

// StatementPreparer is optionally implemented by a Dialect whose database
// spends much of a short statement's cost parsing (and planning) it. When
// PrepareStatements reports true, the core runs the statements it passes a
// DBTX for (inserts through InTx, reads, acks, releases, pending
// partitions, SequencePartitions, a StatementClaimer's claim, vacuum) as
// prepared statements, prepared once per connection
// of its *sql.DB and reused; statement texts stay the dialect's own. Only
// DML is prepared (not SAVEPOINT and the like), and a text whose
// preparation fails runs unprepared.
type StatementPreparer interface {
	PrepareStatements() bool
}

// StatementClaimer is optionally implemented by a Dialect whose ClaimLease
// is a single statement, atomic by itself (no transaction of its own). The
// core then runs it through ClaimLeaseOn on the executor it uses for its
// other statements, so that where the dialect asks for prepared statements
// (StatementPreparer) the claim is prepared once too. ClaimLeaseOn has
// ClaimLease's contract; q is a pool, never a transaction.
type StatementClaimer interface {
	ClaimLeaseOn(ctx context.Context, q DBTX, p *ClaimLeaseParams) (*ClaimResult, error)
}

// CursorsUpdater is optionally implemented by a Dialect that can write
// several fenced cursor updates in one round trip. Under load the workers'
// acks meet in rounds of several partitions; written one UpdateCursor at a
// time in a transaction they cost a statement each plus the transaction's
// own. The core uses UpdateCursors for a round of two or more acks when it
// is there.
//
// Each entry is UpdateCursor's, with a Token (fenced) and on a distinct
// partition: it changes its row only while its token holds an unexpired
// lease by the database's clock, and the result reports, in the order of
// ps, which entries did. An entry that is fenced off changes nothing and
// does not stop the others. All the changes commit together or not at all.
//
// db is the outbox's database, for a dialect that needs a transaction of
// its own; q runs statements on db (the core's view of it, which may run
// prepared statements; see StatementPreparer).
type CursorsUpdater interface {
	UpdateCursors(ctx context.Context, db *sql.DB, q DBTX, ps []*UpdateCursorParams) ([]bool, error)
}
