package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/modkit-go/db/dialect"
)

// Enqueue adds msg to the outbox inside tx: it exists if and only if tx
// commits. Messages enqueued in one transaction keep their call order
// within a partition.
//
// Enqueue validates before it writes; on error nothing was written. Errors
// wrap ErrNilTx, ErrTxDone, ErrInvalidQueueName, ErrUnknownQueue,
// ErrPartitionOutOfRange, ErrPayloadTooLarge, ErrInvalidPayloadType or
// ErrInvalidHeaders (as a *ValidationError where a field is at fault).
//
// Enqueue does not wake the workers (the transaction is not committed yet);
// use InTx, or call Notify after Commit, for low latency. Polling delivers
// the message otherwise.
//
// When ctx carries a span, Config.Propagator adds its trace context (W3C
// traceparent and tracestate by default) to the stored headers; msg itself
// is not changed. See Config.Propagator.
func (o *Outbox) Enqueue(ctx context.Context, tx *sql.Tx, msg Message) error {
	return o.enqueue(ctx, tx, []Message{msg}, -1)
}

// EnqueueBatch adds msgs inside tx in order, with multi-row inserts. One
// invalid message fails the whole call before anything is written; its
// *ValidationError carries its index. A failure in the database part way
// through (or a partition that tx's database lacks: ErrUnknownQueue) is
// undone (the dialect uses a savepoint when it needs several statements),
// so tx holds all of msgs or none of them. Like Enqueue, it adds the trace
// context of ctx to every message's stored headers.
func (o *Outbox) EnqueueBatch(ctx context.Context, tx *sql.Tx, msgs []Message) error {
	if len(msgs) == 0 {
		return ErrEmptyBatch
	}
	return o.enqueue(ctx, tx, msgs, 0)
}

// enqueue validates every message, then inserts them all. base is the index
// reported for msgs[0] (-1 for a single Enqueue).
func (o *Outbox) enqueue(ctx context.Context, tx *sql.Tx, msgs []Message, base int) error {
	if tx == nil {
		return ErrNilTx
	}
	idx := func(i int) int {
		if base < 0 {
			return -1
		}
		return base + i
	}
	rows := make([]dialect.InsertRow, len(msgs))
	ids := messageIDs(len(msgs))
	fields := o.tel.traceFields(ctx)
	for i := range msgs {
		m := &msgs[i]
		h, err := validateMessage(idx(i), m, o.cfg.MaxPayloadBytes)
		if err != nil {
			return err
		}
		if fields != nil {
			// Tracing never fails an enqueue: headers that the trace
			// context would push past the limits go without it.
			if th, err := encodeHeaders(withTraceFields(fields, m.Headers)); err == nil {
				h = th
			}
		}
		n, err := o.partitionCount(ctx, tx, m.Queue)
		if err != nil {
			return o.enqueueErr(idx(i), m.Queue, err)
		}
		part := m.Partition
		if part == PartitionByKey {
			part = PartitionFor(m.Key, n)
		}
		if part >= n {
			return invalid(idx(i), "Partition", ErrPartitionOutOfRange, "%d, queue %q has %d partitions", m.Partition, m.Queue, n)
		}
		rows[i] = dialect.InsertRow{Queue: m.Queue, Partition: part, Payload: m.Payload, PayloadType: m.PayloadType, Headers: h,
			MessageID: ids[i][:], Key: m.Key}
		if m.Payload == nil {
			rows[i].Payload = []byte{}
		}
	}
	if err := o.insert(ctx, tx, rows, base); err != nil {
		return err
	}
	o.tel.enqueuedRows(ctx, rows)
	if o.onEnqueued != nil {
		o.onEnqueued(tx, msgs)
	}
	return nil
}

// insert writes rows in tx. The dialect writes all of them or none (see
// dialect.Dialect.InsertMessages), so a caller that commits after an error
// commits none of the batch.
func (o *Outbox) insert(ctx context.Context, tx *sql.Tx, rows []dialect.InsertRow, base int) error {
	var q dialect.DBTX = tx
	if _, own := o.ownTxs.Load(tx); own {
		q = o.in(tx)
	}
	res, err := o.d.InsertMessages(ctx, q, &dialect.InsertMessagesParams{Rows: rows})
	if err == nil && res.Inserted != len(rows) {
		err = fmt.Errorf("%w: %d of %d rows inserted", dialect.ErrQueueNotFound, res.Inserted, len(rows))
	}
	if err == nil && o.caps.SequencesOnInsert {
		o.tel.sequencedRows(ctx, res.Sequenced)
		if res.Sequenced < res.Inserted {
			o.seq.unseqAt.Store(time.Now().UnixNano())
		}
	}
	if errors.Is(err, dialect.ErrQueueNotFound) {
		return invalid(base, "Queue", ErrUnknownQueue, "a message names a partition that does not exist in the transaction's database (%v)", err)
	}
	if werr := o.wrongDatabaseOn(ctx, q, err); werr != nil {
		return werr
	}
	return insertErr(err)
}

// insertErr wraps an insert failure; nil stays nil.
func insertErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrTxDone):
		return ErrTxDone
	}
	return fmt.Errorf("outbox: enqueue: %w", err)
}

func (o *Outbox) enqueueErr(i int, queue string, err error) error {
	switch {
	case errors.Is(err, dialect.ErrQueueNotFound):
		return invalid(i, "Queue", ErrUnknownQueue, "%q was never declared", truncate(queue))
	case errors.Is(err, sql.ErrTxDone):
		return ErrTxDone
	case errors.Is(err, ErrWrongDialect):
		return err
	}
	return fmt.Errorf("outbox: enqueue: look up queue %q: %w", queue, err)
}

// InTx runs fn in a new transaction on the outbox's database, commits it
// and then wakes the workers, so messages fn enqueued are delivered without
// waiting for a poll. If fn returns an error or panics, the transaction is
// rolled back and the error returned.
func (o *Outbox) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("outbox: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if o.stmts != nil {
		o.ownTxs.Store(tx, struct{}{})
		defer o.ownTxs.Delete(tx)
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("outbox: commit: %w", err)
	}
	o.Notify()
	return nil
}

// Notify wakes the sequencer (and through it the workers). Call it after
// committing a transaction that enqueued messages. Calling it before the
// commit is harmless but does not replace a call after it.
func (o *Outbox) Notify() {
	if !o.caps.SequencesOnInsert {
		o.seq.wake.broadcast()
		return
	}
	o.workWake.broadcast()
	if time.Since(time.Unix(0, o.seq.unseqAt.Load())) < unseqWakeWindow {
		o.seq.wake.broadcast()
	}
}

// unseqWakeWindow: how long after an insert left rows unsequenced (with a
// Capabilities.SequencesOnInsert) Notify still wakes the sequencer. A transaction
// that commits later than this after its insert is found by the
// sequencer's poll instead.
const unseqWakeWindow = 10 * time.Second
