package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/internal/stmtcache"
)

// Outbox enqueues messages inside application transactions and, once
// started, sequences and delivers them. It is safe for concurrent use.
type Outbox struct {
	db *sql.DB
	// q runs the pipeline's statements on db: through stmts (prepared
	// once, reused) when the dialect asks for it, else db itself.
	q     dialect.DBTX
	stmts *stmtcache.Cache
	// ownTxs are the transactions InTx began on db, so Enqueue knows it may
	// use stmts in them (a caller's own transaction may be another
	// *sql.DB's).
	ownTxs sync.Map // *sql.Tx → struct{}
	d      dialect.Dialect
	cfg    Config
	log    *slog.Logger
	tel    *telemetry

	queuesMu sync.RWMutex
	queues   map[string]int // partition counts, for validation only
	checked  bool           // the dialect's CheckDatabase passed

	caps    dialect.Capabilities
	seqWake *signal // producers committed
	// unseqAt: where the dialect may sequence rows as they are inserted
	// (Capabilities.SequencesOnInsert), a commit can make work for the
	// workers directly; the sequencer is woken only while inserts leave
	// rows to it (unseqAt: the last time one did, in UnixNano).
	unseqAt  atomic.Int64
	workWake *signal // the sequencer assigned seqs
	// roundSeqNo: the dialect ran a sequencer round in one call
	// (Capabilities.SequencePending) until it reported
	// dialect.ErrUnsupported.
	roundSeqNo atomic.Bool
	// coalesce: how long the sequencer and decoupled workers let work
	// gather under sustained load (see goLoop).
	coalesce time.Duration

	mu       sync.Mutex
	handlers map[string]Handler
	started  bool
	stopped  bool
	cancel   context.CancelFunc // soft stop: no new work
	// handlerCtx is the parent of every handler call; cancelHandlers (the
	// hard stop) ends it once Stop's context ends.
	handlerCtx     context.Context
	cancelHandlers context.CancelFunc
	done           chan struct{}
	wg             sync.WaitGroup

	// queueConfigs are the handled queues' options (see Handle), written
	// with handlers.
	queueConfigs map[string]queueConfig

	// delivering: DeliverAll runs (Start is refused meanwhile). Guarded
	// by mu.
	delivering bool
	// onEnqueued, set only by package outboxtest (see testhook.go), sees
	// each Enqueue and EnqueueBatch that wrote its messages.
	onEnqueued func(tx *sql.Tx, msgs []Message)
}

// New returns an Outbox over db, which must already hold the schema (see
// migrations.Up). It does not start any goroutine; see Start.
func New(db *sql.DB, d dialect.Dialect, cfg Config) (*Outbox, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: nil *sql.DB", ErrInvalidConfig)
	}
	if d == nil {
		return nil, fmt.Errorf("%w: nil dialect", ErrInvalidConfig)
	}
	if v := reflect.ValueOf(d); v.Kind() == reflect.Pointer && v.IsNil() {
		// A typed nil such as (*postgres.Dialect)(nil): its methods would
		// panic on first use.
		return nil, fmt.Errorf("%w: nil dialect (%T)", ErrInvalidConfig, d)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	tel, err := newTelemetry(&cfg)
	if err != nil {
		return nil, err
	}
	o := &Outbox{
		db:       db,
		d:        d,
		cfg:      cfg,
		log:      cfg.Logger,
		tel:      tel,
		queues:   make(map[string]int),
		seqWake:  newSignal(),
		workWake: newSignal(),
		handlers: make(map[string]Handler),

		queueConfigs: make(map[string]queueConfig),
	}
	o.caps = d.Capabilities()
	o.q = db
	if !cfg.NoCoalesce {
		o.coalesce = cfg.CoalesceDelay
	}
	if o.caps.PreparedStatements {
		o.stmts = stmtcache.New(db, 0)
		o.q = o.stmts
	}
	if err := tel.observeBacklog(o.queueBacklog); err != nil {
		return nil, err
	}
	return o, nil
}

// DeclareQueue creates queue with the given number of partitions, or checks
// that an existing queue has that many. It is idempotent and safe to call
// from several processes at once. A different count for an existing queue
// returns a *PartitionCountMismatchError and changes nothing.
func (o *Outbox) DeclareQueue(ctx context.Context, queue string, partitions int) error {
	if !ValidQueueName(queue) {
		return invalid(-1, "Queue", ErrInvalidQueueName, "%q", truncate(queue))
	}
	if partitions < 1 || partitions > MaxPartitions {
		return invalid(-1, "Partitions", ErrInvalidPartitionCount, "%d is not in 1..%d", partitions, MaxPartitions)
	}
	if err := o.checkDatabase(ctx, o.db); err != nil {
		return err
	}
	var n int
	err := o.withTx(ctx, func(tx *sql.Tx) error {
		res, err := o.d.DeclareQueue(ctx, tx, &dialect.DeclareQueueParams{Queue: queue, Partitions: partitions})
		if err != nil {
			return err
		}
		if res.Partitions != partitions {
			return &PartitionCountMismatchError{Queue: queue, Stored: res.Partitions, Requested: partitions}
		}
		n = len(res.PartitionIDs)
		return nil
	})
	if err != nil {
		var mm *PartitionCountMismatchError
		if errors.As(err, &mm) {
			return mm
		}
		if werr := o.wrongDatabase(err); werr != nil {
			return werr
		}
		return fmt.Errorf("outbox: declare queue %q: %w", queue, err)
	}
	o.queuesMu.Lock()
	o.queues[queue] = n
	o.queuesMu.Unlock()
	return nil
}

// partitionCount returns a queue's partition count, from the cache or the
// database (through q, so a done transaction reports ErrTxDone). It only
// validates partition numbers: inserts find their partition row by name in
// the transaction's own database.
func (o *Outbox) partitionCount(ctx context.Context, q dialect.DBTX, queue string) (int, error) {
	o.queuesMu.RLock()
	n, ok := o.queues[queue]
	o.queuesMu.RUnlock()
	if ok {
		return n, nil
	}
	if err := o.checkDatabase(ctx, q); err != nil {
		return 0, err
	}
	res, err := o.d.LookupQueue(ctx, q, &dialect.LookupQueueParams{Queue: queue})
	if err != nil {
		if werr := o.wrongDatabase(err); werr != nil {
			return 0, werr
		}
		return 0, err
	}
	// A queue's partition count never changes once declared: safe to cache.
	o.queuesMu.Lock()
	o.queues[queue] = len(res.PartitionIDs)
	o.queuesMu.Unlock()
	return len(res.PartitionIDs), nil
}

// pool is the outbox's database for a dialect method that runs outside
// any caller's transaction.
func (o *Outbox) pool() dialect.Pool { return dialect.Pool{DB: o.db, Q: o.q} }

// retryable reports an error the dialect classifies as a transient
// conflict: the work is tried again at once.
func (o *Outbox) retryable(err error) bool {
	return err != nil && o.d.ClassifyError(err) == dialect.ErrorRetryable
}

// wrongDatabase returns err wrapped as ErrWrongDialect (and
// dialect.ErrWrongDatabase) when the dialect classifies it as an error of
// another kind of database (a caller's transaction on another server,
// say), else nil. Every entry point that hands a dialect error back asks
// it, so the mismatch reads the same wherever it is found.
func (o *Outbox) wrongDatabase(err error) error {
	if err == nil || errors.Is(err, ErrWrongDialect) || o.d.ClassifyError(err) != dialect.ErrorWrongDatabase {
		return nil
	}
	return fmt.Errorf("%w (dialect %s): %w: %w", ErrWrongDialect, o.d.Name(), dialect.ErrWrongDatabase, err)
}

// wrongDatabaseOn is wrongDatabase, and for an error the dialect cannot
// place (one a driver raises before the database sees the statement, say)
// it asks CheckDatabase on the same executor: a statement that failed on
// a database of another kind reports ErrWrongDialect there too. Only on
// the error path, so it costs nothing otherwise.
func (o *Outbox) wrongDatabaseOn(ctx context.Context, q dialect.DBTX, err error) error {
	if err == nil || errors.Is(err, ErrWrongDialect) {
		return nil
	}
	if werr := o.wrongDatabase(err); werr != nil {
		return werr
	}
	if cerr := o.d.CheckDatabase(ctx, q); errors.Is(cerr, dialect.ErrWrongDatabase) {
		return fmt.Errorf("%w (dialect %s): %w: %w", ErrWrongDialect, o.d.Name(), cerr, err)
	}
	return nil
}

// errDBClosedText is the text of database/sql's unexported error for a
// closed *sql.DB.
const errDBClosedText = "sql: database is closed"

// checkDatabase runs the dialect's CheckDatabase once successfully. Only a
// real mismatch (dialect.ErrWrongDatabase) becomes ErrWrongDialect; any
// other failure wraps its cause (context.Canceled, a driver error, …), and
// a closed *sql.DB also matches sql.ErrConnDone.
func (o *Outbox) checkDatabase(ctx context.Context, q dialect.DBTX) error {
	o.queuesMu.RLock()
	done := o.checked
	o.queuesMu.RUnlock()
	if done {
		return nil
	}
	if err := o.d.CheckDatabase(ctx, q); err != nil {
		if errors.Is(err, sql.ErrTxDone) {
			return ErrTxDone
		}
		if errors.Is(err, dialect.ErrWrongDatabase) {
			return fmt.Errorf("%w (dialect %s): %w", ErrWrongDialect, o.d.Name(), err)
		}
		if strings.Contains(err.Error(), errDBClosedText) {
			// database/sql's error for a closed pool is unexported; make
			// it errors.Is-able as "no connection".
			return fmt.Errorf("outbox: check database: %w: %w", sql.ErrConnDone, err)
		}
		return fmt.Errorf("outbox: check database: %w", err)
	}
	o.queuesMu.Lock()
	o.checked = true
	o.queuesMu.Unlock()
	return nil
}

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
			o.unseqAt.Store(time.Now().UnixNano())
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
		o.seqWake.broadcast()
		return
	}
	o.workWake.broadcast()
	if time.Since(time.Unix(0, o.unseqAt.Load())) < unseqWakeWindow {
		o.seqWake.broadcast()
	}
}

// unseqWakeWindow: how long after an insert left rows unsequenced (with a
// Capabilities.SequencesOnInsert) Notify still wakes the sequencer. A transaction
// that commits later than this after its insert is found by the
// sequencer's poll instead.
const unseqWakeWindow = 10 * time.Second

// Handle registers h for queue. Call it before Start; one handler per queue.
// opts set the queue's own MaxAttempts, backoff, lease, batch size and
// poison policy (see QueueOption); without them the Config's apply. An
// option out of range returns an error wrapping ErrInvalidConfig that
// names the field and the queue, and registers nothing.
func (o *Outbox) Handle(queue string, h Handler, opts ...QueueOption) error {
	if !ValidQueueName(queue) {
		return invalid(-1, "Queue", ErrInvalidQueueName, "%q", truncate(queue))
	}
	if handlerIsNil(h) {
		return fmt.Errorf("%w: nil handler for queue %q", ErrInvalidHandler, queue)
	}
	qc, err := newQueueConfig(o.cfg, queue, opts)
	if err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.started {
		return ErrAlreadyStarted
	}
	if _, ok := o.handlers[queue]; ok {
		return fmt.Errorf("%w: queue %q already has a handler", ErrInvalidHandler, queue)
	}
	o.handlers[queue] = h
	o.queueConfigs[queue] = qc
	return nil
}

// in returns the executor for the pipeline's statements in tx, a
// transaction on o.db.
func (o *Outbox) in(tx *sql.Tx) dialect.DBTX {
	if o.stmts == nil {
		return tx
	}
	return o.stmts.Tx(tx)
}

// withTx runs fn in a pipeline transaction (the dialect's TxOptions).
func (o *Outbox) withTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := o.db.BeginTx(ctx, o.d.TxOptions())
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// signal is a broadcast wake-up: every waiter holding the channel from
// before a broadcast is woken.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }

func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

func (s *signal) broadcast() {
	s.mu.Lock()
	close(s.ch)
	s.ch = make(chan struct{})
	s.mu.Unlock()
}
