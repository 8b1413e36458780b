package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/outbox/internal/stmtcache"
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

	caps     dialect.Capabilities
	seq      *sequencer
	workWake *signal // workers: the sequencer assigned seqs, or a producer committed
	fresh    fresh   // partitions the sequencer has just numbered, for the workers
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
		workWake: newSignal(),
		handlers: make(map[string]Handler),

		queueConfigs: make(map[string]queueConfig),
	}
	o.caps = d.Capabilities()
	o.seq = &sequencer{o: o, wake: newSignal()}
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
