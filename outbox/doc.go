// Package outbox is a transactional outbox for database/sql: an application
// enqueues messages inside its own transaction, and background workers
// deliver each committed message to a handler, in order within its
// partition, with retries, exponential backoff, dead letters and garbage
// collection. PostgreSQL, MySQL/MariaDB and SQLite are supported through
// [github.com/modkit-go/db/dialect].
//
// # Setup
//
// Apply the schema with [github.com/modkit-go/db/migrations.Up], build an
// Outbox with New over your *sql.DB and a dialect, declare each queue with
// its partition count (DeclareQueue), register a Handler per queue (Handle)
// and Start. Stop shuts down gracefully.
//
// # Guarantees
//
//   - Atomic enqueue: Enqueue and EnqueueBatch write through the caller's
//     *sql.Tx. A message exists if and only if that transaction commits.
//   - Per-partition FIFO: a queue has a fixed number of partitions
//     (1..1024). Messages of one partition are delivered in the order they
//     became visible (commit order); messages of one transaction keep their
//     call order. Partitions are independent: a stuck partition never
//     blocks another.
//   - Gap-free sequence: a sequencer assigns each committed message its
//     partition's next Seq (1, 2, 3…) under a per-partition lock, so a
//     transaction that commits late never makes a reader skip it. A
//     consumer de-duplicates with "Seq <= last seen".
//   - No loss: a committed message is delivered or dead-lettered
//     eventually, whatever crashes, lease expiries or restarts happen.
//   - Bad input changes nothing: invalid input returns a typed error
//     (errors.Is with the Err… sentinels, errors.As with *ValidationError)
//     before any row is written; one bad message fails a whole batch.
//     Limits: payload Config.MaxPayloadBytes (at most MaxPayloadLimit),
//     headers MaxHeaders entries and MaxHeaderBytes encoded. A batch that
//     fails in the database (or names a partition the transaction's own
//     database lacks) leaves none of its rows in the transaction.
//   - Right database: a message goes to the named partition of the
//     database the given *sql.Tx belongs to, found by queue name and
//     partition number in the insert itself, or fails with
//     ErrUnknownQueue; never to a row of another database's numbering.
//
// # Delivery modes
//
// Decoupled handlers (Batch, PerMessage) run outside any transaction. A
// worker claims a partition with a time-limited lease stamped with a
// fresh token, reads a batch, calls the handler, then acknowledges only if
// its token still holds an unexpired lease (fencing): a worker that lost
// its lease writes nothing, not even dead letters. The handler's context is
// cancelled on shutdown and at 80% of the lease. Delivery is at-least-once:
// make handlers idempotent, for example with the Seq check above.
//
// Under load the pipeline batches its own bookkeeping, not the guarantees:
// the sequencer assigns seqs to many partitions in one transaction; one
// claim statement leases several partitions (each lease is the pair of
// partition and token); and acknowledgements that several workers write
// at the same moment share one transaction, each still fenced by its own
// lease, so one that lost its lease changes nothing while the others
// commit.
//
// Transactional handlers (TxBatch, TxPerMessage) receive the *sql.Tx that
// locks the partition's cursor row and acknowledges the batch. Their writes commit
// if and only if the messages they belong to are acknowledged: effects are
// exactly-once. TxPerMessage wraps each message in a savepoint; TxBatch
// wraps the call in one. The partition is claimed with a lease as in
// decoupled mode, then its row is locked by the handler's transaction;
// claimers skip a locked row, so the handler keeps the partition however
// long it runs, and its context is cancelled only by Stop (or by
// Config.HandlerTimeout). A crash rolls the transaction back and leaves the
// lease, whose expiry hands the partition over and counts the crash as an
// attempt (so MaxAttempts also stops a message that kills its process).
//
// Config.HandlerTimeout, when set, bounds each handler call in both modes:
// the handler's context ends after it. In transactional mode a call that
// outlives it is rolled back at once (its transaction's context is
// cancelled, so database/sql frees the connection and the row lock) and
// counts as a failed attempt with backoff, even while the handler, if it
// ignores its context, still runs; its worker waits for it, so at most
// MaxConcurrency calls ever run.
//
// Every kind of handler may be wrapped in middleware (Wrap): a Middleware
// sees each call's messages, the transaction in transactional mode and the
// handler's result, and the Result it returns is the one applied. A type
// that embeds a Handler is a Handler too and delivers through the embedded
// one. A handler around nothing is refused by Handle.
//
// # Handler results
//
// A handler returns Success(), Retry(reason) or Reject(reason). The
// error-returning forms (BatchE, PerMessageE, TxBatchE, TxPerMessageE)
// map nil to Success, an error marked with Permanent (found with
// errors.As) to Reject and any other error to Retry, with the error's text
// as the reason (FromError). A batch
// handler may add WithProcessed(n): the first n messages are finished and
// acknowledged, and the result applies to the rest. PerMessage and
// TxPerMessage do this for you: they stop at the first Retry, and a Reject
// dead-letters that one message and goes on with the next. Their count
// belongs to the call, never to shared state.
//
//	result       cursor                          attempts        other effects
//	-----------  ------------------------------  --------------  ------------------------------------------
//	Success      past the batch                  reset to 0      last error cleared
//	Retry        past the finished prefix only   +1 (1 if a      rest redelivered after backoff
//	                                             prefix was      base·2^(attempts-1), capped, jittered;
//	                                             finished)       next attempt time stored on the partition
//	                                                             row, so it survives restarts
//	Reject       past the batch                  reset to 0      unfinished messages copied (payload inline,
//	                                                             reason, attempts, times, status "pending")
//	                                                             to the dead-letter table
//	MaxAttempts  past the head message           reset to 0      a head that failed MaxAttempts times is
//	                                                             dead-lettered by the library
//	MaxAttempts  stays before the head           kept            PoisonBlock: the partition is blocked at
//	 (block)                                                     its head until RetryPartition or
//	                                                             SkipPartition; nothing is dead-lettered
//	panic        as Retry                        as Retry        the panic value is the reason
//	Goexit       as Retry                        as Retry        a handler that calls runtime.Goexit ends
//	                                                             its call, not its worker
//
// Reasons (and panic values) are stored sanitized: invalid UTF-8 and NUL
// bytes become U+FFFD, and a reason longer than MaxReasonBytes (4 KiB) is
// cut on a character boundary and ends with "… [truncated]". A delivery
// whose result cannot be recorded all the same (the ack or dead-letter
// write fails) counts as a failed attempt with backoff, recorded on its
// own with a generic reason; if even that fails, its lease is left to
// expire and the takeover counts the attempt. So no handler result, reason
// or failed write keeps a message out of both delivery and, with
// MaxAttempts, the dead-letter table. A Result reports what the handler
// did; any other outcome (an unknown handler kind, say) is retried, never
// acknowledged.
//
// # Per-queue options and poison policies
//
// Handle takes QueueOptions that set a queue's own MaxAttempts, retry
// backoff, lease duration, batch size and poison policy; the rest come
// from Config, and each value has its Config field's range. The poison
// policy says what happens once a head has failed MaxAttempts times:
// PoisonSkip (the default) dead-letters it and the partition goes on;
// PoisonBlock dead-letters nothing and stops the partition at its head, so
// no later message of the partition overtakes it. A blocked partition is
// logged at warn level once (queue, partition, seq, attempts, reason),
// reported by PartitionStatus (Blocked, BlockedAt, Attempts, LastError),
// skipped by every claim, and resumed by an operator: RetryPartition gives
// the head MaxAttempts fresh tries, SkipPartition moves it to the
// dead-letter table and delivers the rest in order. The other partitions
// of the queue are never held up. A handler's own Reject dead-letters
// under either policy.
//
// In transactional mode the same rows apply, and Retry and Reject also undo
// the handler's writes for the messages concerned (the savepoint is rolled
// back). When a TxBatch call reports a finished prefix with a Retry or
// Reject, its savepoint is rolled back and the handler is called again on
// the prefix alone, in the same transaction; the writes that commit are
// always those of a call whose messages are all acknowledged. If those
// calls disagree about the rest (Retry, then Reject), the rest is retried.
// A delivery whose transaction breaks down (a failed savepoint or commit)
// is rolled back and counted as a failed attempt, with backoff.
//
// A Retry caused by shutdown (the handler's context cancelled by Stop) does
// not count as an attempt. A crash or an expired lease does: the next
// owner sees Attempts increased by one.
//
// # Wake-ups
//
// Workers poll (Config.PollInterval, 200ms by default) as a safety net. For
// low latency, enqueue through InTx, which commits and then wakes the
// sequencer and workers in this process, or call Notify after your own
// Commit. A partition whose lease expired is taken over within the lease
// plus one poll interval.
//
// Polling is adaptive: a worker that just found work polls again after a
// few milliseconds and grows the wait by half after each empty poll, up to
// PollInterval, so a producer in another process is seen quickly while
// traffic flows and an idle Outbox costs one poll per PollInterval per
// worker. When the dialect implements [dialect.Waker] (PostgreSQL with a
// listener), a started Outbox also keeps one listening connection that
// wakes its workers when any process commits an enqueue; it reconnects
// with backoff after failures, and polling covers the gap.
//
// # Lifecycle
//
// Start launches the sequencer, MaxConcurrency worker goroutines (each
// calls one handler at a time, so at most that many handler calls run at
// once; a goroutine may lease a few partitions together and work them one
// after another, handing back unworked those whose lease is a tenth gone,
// so every handler starts with at least 70% of the lease) and the vacuum, which deletes delivered rows in bounded batches
// a tenth of VacuumInterval (at least 10 ms) after it last found some, or every
// VacuumInterval when it found none (PostgreSQL's acks, and MariaDB's
// decoupled ones, also delete their own batch). Stop stops claiming, lets in-flight handlers finish
// until its context ends (then cancels theirs), writes their
// acknowledgements, releases the leases it holds, and returns once every
// goroutine has exited. A restarted process resumes at the stored cursor.
// Each of the library's statements is bounded by LeaseDuration, and once
// Stop's context has ended by Config.ShutdownTimeout. The goroutines carry
// the pprof label outbox=sequencer, worker, vacuum or pool (handler calls
// run in goroutines of their own, under their worker's labels), on top of
// the labels of Start's context. The pool goroutine reads the connection
// pool's statistics every 10s and logs one warning, naming
// SetMaxIdleConns, if the pool keeps closing idle connections (at least
// one a second): connections opened and closed on every pass slow
// delivery down.
//
// While the database fails (an outage, a restart), each worker retries
// with exponential backoff and jitter: from its interval, doubling per
// failed pass, capped at 5s (or at the interval, if longer); a wake-up
// (InTx, Notify) retries at once.
//
// # Dead letters
//
// A rejected message is copied to the dead-letter table with status
// "pending". Operators list them newest first with filters and page
// tokens (DeadLetterPage, CountDeadLetters) and move them through this
// lifecycle; every step is one statement guarded by the status it leaves,
// so of two operators acting on one row exactly one succeeds, and the
// other gets ErrStatusConflict with nothing changed:
//
//	pending ──RequeueDeadLetters──► resolved    new messages in their partition, same transaction
//	pending ──DiscardDeadLetters──► discarded
//	pending ──HoldDeadLetters─────► reprocessing (until a deadline; holdable again after it)
//	reprocessing ──ResolveDeadLetter──► resolved
//	reprocessing ──ReturnDeadLetter───► pending (attempts+1, new reason)
//	resolved, discarded ──CleanupDeadLetters──► deleted, in bounded batches
//
// Requeue and discard take a list of ids and change all of them or none.
// Requeued messages get new ids and seqs after whatever their partition
// holds, in their original (partition, seq) order, and are marked resolved
// in the same transaction. The replay calls are for tools that process
// dead letters themselves: a hold keeps its rows until its deadline
// (database time), its token fences Resolve and Return, and concurrent
// holds never share a row.
//
// # Status
//
// QueueStatus (one queue) and Status (every queue) report, per partition,
// the sequenced and processed seqs, the backlog including messages not yet
// sequenced, the age of the next message to deliver, attempts, the last
// error, the time of a pending retry (zero when none is pending), the
// lease token and its end while a lease is live, and whether the partition
// is blocked; and, per queue, totals and the dead letters by status. Each
// call takes a fixed number of statements (two on the built-in dialects),
// whatever the partition count.
//
// # Glossary
//
// One word per thing, here and in the dialect package:
//
//   - queue, partition: a queue has a fixed number of partitions; order
//     holds within a partition.
//   - seq: a message's number in its partition, given by the sequencer
//     (gap-free, commit order).
//   - partition row: the partition's counter (last_seq, the highest seq
//     given).
//   - cursor row: the partition's delivery state: the cursor
//     (processed_seq, everything up to it is delivered), the head's attempts
//     and last error, the backoff, the lease and the block. Its table keeps
//     the name "processors": renaming it would need a migration and an
//     upgrade path for older binaries still running against the same
//     database, for no change in behaviour.
//   - lease: a worker's time-limited, token-fenced right to a partition;
//     a claim takes leases.
//   - hold: a replay tool's time-limited right to dead letters
//     (HoldDeadLetters), fenced by its token; never called a lease or a
//     claim.
//   - page token: the opaque position DeadLetterPage returns as Next and
//     takes as DeadLetterFilter.After; never called a cursor.
//   - worker, sequencer, vacuum: the Outbox's loops (claim → read →
//     handle → ack; numbering; deleting delivered rows).
//   - status, stats: QueueStatus and Status answer "how are my queues
//     doing" for operators, PartitionStatus the same for one partition
//     (one type, PartitionStatus, for both); Stats counts table rows, for
//     monitoring and tests.
//
// # Logging
//
// The outbox logs through Config.Logger (a *slog.Logger) and is silent by
// default. It never writes to stdout. A failing worker logs its first
// failure as a warning and its recovery at info level; the retries in
// between are logged at debug level. A handler's Retry is logged at debug
// level, at warn level once the partition's head has failed 3 times in a row
// (a blocked partition); dead letters at warn level once committed. These
// lines carry queue, partition, seq, reason and attempts, and each kind is
// bounded to 10 lines a second (the next line says how many were dropped).
//
// # Metrics and traces
//
// Config.MeterProvider and Config.TracerProvider take any OpenTelemetry
// implementation; the package imports the API only, and nil (the default)
// records nothing. Enqueue writes the trace context of its ctx into the
// message's headers (Config.Propagator, W3C Trace Context by default) when
// ctx carries a span; each handler call runs in a span linked to the
// producers' spans, and the handler's context carries it. docs/observability.md
// lists the instruments, their units and attributes.
package outbox
