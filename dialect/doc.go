// Package dialect is the seam between the outbox core and a SQL database.
//
// The core ([github.com/modkit-go/db/outbox]) contains no SQL text and imports
// no driver. Everything database-specific lives behind [Dialect]: statement
// text, placeholders, locking clauses (FOR UPDATE SKIP LOCKED), workarounds
// for missing features (MariaDB has no UPDATE … RETURNING), quoting, error
// classification and the embedded schema.
//
// # Contract for implementers
//
// Every method takes a context, an executor ([DBTX], a [*sql.Tx] where the
// core owns the transaction, or a [*sql.DB] where the dialect may need its own
// transaction) and a params struct, and returns a result struct. New fields may
// be added to params and results without breaking implementations.
//
// An implementation must keep these invariants, which the conformance suite
// ([github.com/modkit-go/db/conformance]) checks against a real database:
//
//   - SequencePartition assigns seq = last_seq+1, last_seq+2, … to committed,
//     unsequenced rows of one partition in id order, under a lock that excludes
//     every other sequencer of that partition, and never blocks on rows of
//     transactions that have not committed. A partition locked by another
//     sequencer is skipped and reported as such.
//   - ClaimLease hands each claimable partition (last_seq > processed_seq, no
//     live lease, next_attempt_at <= now) to at most one caller, stamping the
//     caller's fresh token and a lease that ends at database time now()+Lease.
//     Taking over a lease that was never released counts as a failed attempt.
//     A blocked partition (blocked_at set) is never claimable, and
//     LockPartition does not lock it.
//   - UpdateCursor with Block sets blocked_at = now(); without it, it clears
//     blocked_at.
//   - LockPartition locks the processor row of a partition the caller leased
//     for the rest of the caller's transaction, skipping a row another
//     transaction holds. Claims skip rows so locked, so a transactional
//     handler keeps its partition for as long as its transaction lives.
//   - UpdateCursor with a non-empty token changes the row only if that
//     token still holds an unexpired lease; it reports whether it did.
//   - Database time (now() in SQL) decides leases, backoff and timestamps.
//   - Vacuum deletes only rows with seq <= processed_seq of their partition.
//
// Optional interfaces add mechanisms the core uses when present: [Checker]
// (refuse a database of another kind), [Operator] (lock a cursor row for
// an operator's retry or skip of a blocked partition) and [Waker] (wake the workers of
// other processes when an enqueue commits, never when it rolls back; the
// conformance suite's Wake cases check it).
package dialect
