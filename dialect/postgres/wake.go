package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modkit-go/db/dialect"
)

// Wake-ups across processes (dialect.Waker).
//
// InsertMessages sends pg_notify(channel, queue) inside the producer's
// transaction, in the same statement as the insert: PostgreSQL delivers it
// when that transaction commits and drops it when it rolls back, and merges
// identical (channel, payload) pairs of one transaction, so a transaction
// costs one notification per queue however many statements it runs.
// Workers LISTEN on the channel through a Listener (a small driver-specific
// package: pgxlisten, pqlisten).
//
// The channel is the table prefix followed by "wake": two outboxes with
// different prefixes in one database do not wake each other, and a prefix
// ([a-z][a-z0-9_]{0,31}) keeps it a valid identifier well under the
// 63-byte limit. Outboxes in different schemas with the same prefix share
// the channel: they wake each other needlessly, which costs a poll each.

// DefaultNotifyInterval is the default of WithNotifyInterval.
const DefaultNotifyInterval = 10 * time.Millisecond

// WithNotify sets whether InsertMessages sends wake-ups to listening
// workers (default true). Turn it off when no process listens (see
// WithListener): PostgreSQL serialises the commits of notifying
// transactions on a database-wide lock, so every notification costs commit
// throughput (docs/configuration.md, Wake-ups across processes, has
// the figures).
func WithNotify(on bool) Option { return func(d *Dialect) { d.notify.off = !on } }

// WithNotifyInterval limits the wake-ups this dialect value sends to one
// per queue per interval (default DefaultNotifyInterval; 0 sends one per
// insert statement). A transaction that enqueues within the interval of
// another's wake-up relies on that wake-up: the woken workers keep polling
// every few milliseconds while they find work (River limits its insert
// notifications the same way). If that other transaction rolls back or
// commits late, the message waits for a poll instead.
func WithNotifyInterval(every time.Duration) Option {
	return func(d *Dialect) { d.notify.every = cmp.Or(max(every, -1), -1) }
}

// WithListener makes the dialect's Listen (dialect.Waker) receive
// wake-ups through l, so that a started Outbox delivers messages committed
// by other processes at once instead of at its next poll. l is
// driver-specific: pgxlisten.New() for github.com/jackc/pgx/v5/stdlib,
// pqlisten.New(dsn) for github.com/lib/pq.
func WithListener(l Listener) Option { return func(d *Dialect) { d.listener = l } }

// Listener listens for PostgreSQL notifications on a connection of its own
// (see dialect.Waker for the contract it keeps).
type Listener interface {
	// Listen runs p.Query (LISTEN) on a dedicated connection, calls
	// p.Ready, then p.Notify with the payload of each notification on
	// p.Channel, until ctx ends (it returns ctx's error) or the connection
	// fails (it returns why). The connection never goes back to db's pool
	// while it listens.
	Listen(ctx context.Context, db *sql.DB, p *ListenParams) error
}

// ListenParams are the arguments of Listener.Listen.
type ListenParams struct {
	Channel string       // the channel's name, as notifications report it
	Query   string       // the LISTEN statement for Channel
	Ready   func()       // called once listening
	Notify  func(string) // called with each notification's payload
}

// Channel is the notification channel of this dialect's prefix.
func (d *Dialect) Channel() string { return d.Prefix() + "wake" }

// Listen implements dialect.Waker through the dialect's Listener; without
// one it returns dialect.ErrNoWakeups.
func (d *Dialect) Listen(ctx context.Context, db *sql.DB, p *dialect.ListenParams) error {
	if d.listener == nil {
		return dialect.ErrNoWakeups
	}
	ch := d.Channel()
	err := d.listener.Listen(ctx, db, &ListenParams{
		Channel: ch,
		Query:   `LISTEN "` + ch + `"`,
		Ready:   p.Ready,
		Notify:  p.Wake,
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("postgres: listen on %s: %w", ch, err)
}

// notifyTail closes the insert as a data-modifying CTE named ins and
// returns the rest of the statement: a SELECT of the inserted row count and
// one pg_notify per queue, binding the queue names after args. The channel
// is a validated prefix plus "wake".
func (d *Dialect) notifyTail(args *[]any, queues []string) string {
	var b strings.Builder
	b.WriteString(" RETURNING 1) SELECT (SELECT count(*) FROM ins)")
	for _, q := range queues {
		*args = append(*args, q)
		fmt.Fprintf(&b, ", pg_notify('%s', $%d)", d.Channel(), len(*args))
	}
	return b.String()
}

// notifier decides which queues an insert wakes: each distinct queue of the
// rows whose last wake-up from this process is older than every.
type notifier struct {
	off   bool
	every time.Duration // 0: DefaultNotifyInterval; -1: every insert
	last  sync.Map      // queue -> *atomic.Int64, unix nanoseconds of its last wake-up
}

func (n *notifier) due(rows []dialect.InsertRow) []string {
	if n.off {
		return nil
	}
	every := cmp.Or(n.every, DefaultNotifyInterval)
	var queues []string
	now := time.Now().UnixNano()
	for _, r := range rows {
		if slices.Contains(queues, r.Queue) {
			continue
		}
		if every < 0 {
			queues = append(queues, r.Queue)
			continue
		}
		v, _ := n.last.LoadOrStore(r.Queue, new(atomic.Int64))
		last := v.(*atomic.Int64)
		prev := last.Load()
		if now-prev >= int64(every) && last.CompareAndSwap(prev, now) {
			queues = append(queues, r.Queue)
		}
	}
	return queues
}
