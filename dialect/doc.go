// Package dialect is the seam between the outbox core and a SQL database.
//
// The core ([github.com/modkit-go/db/outbox]) contains no SQL text and imports
// no driver. Everything database-specific lives behind one required
// interface, [Dialect], which embeds [Schema] (the tables that
// [github.com/modkit-go/db/migrations.Up] applies). Each pipeline step has one
// form, the batch form: SequencePartitions, ReadPartitions, UpdateCursors
// and ClaimLeases take any number of partitions, and a backend may run a
// single-partition call as a simpler statement. The operations (dead
// letters, status, an operator's retry or skip of a blocked partition) are
// part of the same contract.
//
// What a database does differently is data, reported by
// [Dialect.Capabilities]: prepared statements, sequencing on insert, a
// sequencer round in one call, a single writer. The core reads them once;
// the conformance suite selects its cases by them. Errors are classified in
// one place, [Dialect.ClassifyError]: retryable conflicts, and errors of a
// database of another kind ([ErrWrongDatabase] for every entry point).
//
// [Waker] is the one optional interface: push wake-ups across processes
// (PostgreSQL's LISTEN/NOTIFY). It is optional because a database may have
// no such channel; the core's answer to its absence is polling, which runs
// on every backend anyway. [DBTX] is the executor every method runs on,
// and [Savepoint] is a plain function: SAVEPOINT, ROLLBACK TO SAVEPOINT and
// RELEASE SAVEPOINT are spelt alike by every supported database.
//
// # Terms
//
// The glossary of the outbox package applies. A queue has a fixed number
// of partitions. Each partition has a row in the partitions table
// (last_seq, the sequencer's counter) and a cursor row in the processors
// table: processed_seq (the cursor: everything up to it is delivered),
// attempts and last_error of the partition's head, the backoff
// (next_attempt_at), the lease (lease_token, lease_until) and the block
// (blocked_at, schema version 2). The table keeps its historical name
// (a rename needs a migration and an upgrade path for running older
// binaries). A lease is a worker's right to a partition (ClaimLeases); a
// hold is a replay tool's right to dead letters (HoldDeadLetters).
//
// # Contract for implementers
//
// Every method takes a context, an executor ([DBTX]; a [*sql.Tx] where the
// core owns the transaction; a [Pool] where the dialect may need a
// transaction of its own) and a params struct, and returns a result struct. New fields may
// be added to params and results without breaking implementations. A Limit of
// 0 or less means "nothing": return an empty result without a query.
// Database time (now() in SQL) decides leases, backoff and timestamps, never
// the application's clock.
//
// Each method owns these invariants, which the conformance suite
// ([github.com/modkit-go/db/conformance]) checks against a real database:
//
//   - DeclareQueue: idempotent under concurrent declarers; when the stored
//     partition count differs from the requested one it writes nothing else.
//   - InsertMessages: all or nothing within q; ids increase in slice order; a
//     row's partition is resolved in the statement, in q's own database, and
//     a missing one is ErrQueueNotFound. Rows are unsequenced (seq NULL).
//   - SequencePartitions (and SequencePending, with its capability):
//     assigns seq = last_seq+1, last_seq+2, … to committed, unsequenced rows
//     of each partition in id order, under a lock that excludes every other
//     sequencer of that partition, and never blocks on rows of transactions
//     that have not committed. A partition locked by another sequencer is
//     skipped and reported (Locked false).
//   - ClaimLeases: hands each claimable partition (last_seq > processed_seq,
//     no live lease, next_attempt_at <= now) to at most one caller, stamping
//     the caller's fresh token and a lease that ends at database time
//     now()+Lease. Taking over a lease that was never released counts as one
//     failed attempt (attempts + 1); claiming a released one adds nothing.
//     A blocked partition (blocked_at set, see CursorUpdate's Block) is
//     never claimable. With PartitionIDs the candidates are those
//     partitions only, read by id (the workers' claim of what the sequencer
//     just numbered).
//   - LockPartition: locks the cursor row of a partition the caller leased
//     and that is not blocked,
//     for the rest of the caller's transaction, skipping a row another
//     transaction holds. Claims skip rows so locked, so a transactional
//     handler keeps its partition for as long as its transaction lives.
//   - ReadPartitions: for each read, sequenced rows with seq > AfterSeq, in
//     seq order, at most Limit.
//   - UpdateCursors: each entry with a non-empty token changes its cursor
//     row only if that token still holds an unexpired lease, and reports
//     whether it did; with an empty token the caller holds the row lock.
//     All entries commit together. Renew 0 releases
//     the lease. DeleteThrough may delete delivered rows in the same
//     statement, only if the update happened. Block sets blocked_at = now();
//     without it the update clears blocked_at.
//   - InsertDeadLetters: copies exactly the named seqs of the partition, with
//     their payload, into the dead-letter table; in the caller's transaction,
//     so a lost lease (the core rolls back) leaves none behind.
//   - ReleaseLeases: clears only leases the given token holds.
//   - Vacuum: deletes only rows with seq <= processed_seq of their
//     partition, at most Limit, and never blocks producers.
//   - The dead-letter methods: every status change is one guarded statement
//     (UPDATE … WHERE status = …), so of two operators acting on one row
//     exactly one changes it; database time decides deadlines.
//
// A new dialect proves itself with conformance.Run and
// conformance.RunDialect, which run every case its Capabilities select
// (docs/writing-a-dialect.md in the repository walks through one); the
// built-in ones share their common statements and behaviour in an internal
// base and keep only their SQL text and what truly differs in their own
// packages.
package dialect
