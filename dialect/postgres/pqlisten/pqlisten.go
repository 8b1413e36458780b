// Package pqlisten receives the outbox's PostgreSQL wake-ups with
// github.com/lib/pq. lib/pq reads notifications only while a query runs on
// the connection, so an idle pooled connection of a *sql.DB never hands
// them over: the listener opens its own connection from a DSN, which must
// name the same database as the Outbox's *sql.DB:
//
//	db, _ := sql.Open("postgres", dsn)
//	d := postgres.New(postgres.WithListener(pqlisten.New(dsn)))
//	ob, _ := outbox.New(db, d, outbox.Config{})
//
// Set connect_timeout in the DSN to bound how long a reconnect may hang.
package pqlisten

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/lib/pq"

	"github.com/modkit-go/db/dialect/postgres"
)

// pingEvery is how often an idle listening connection is checked, so a
// connection that died silently is replaced.
const pingEvery = 30 * time.Second

// Listener is a postgres.Listener for lib/pq.
type Listener struct{ dsn string }

var _ postgres.Listener = (*Listener)(nil)

// New returns a Listener that connects with dsn.
func New(dsn string) *Listener { return &Listener{dsn: dsn} }

// errClosed reports a listening connection that lib/pq closed.
var errClosed = errors.New("pqlisten: connection closed")

// Listen implements postgres.Listener with a pq.ListenerConn (one
// connection, no reconnects of its own: the outbox reconnects).
func (l *Listener) Listen(ctx context.Context, _ *sql.DB, p *postgres.ListenParams) error {
	ch := make(chan *pq.Notification, 32)
	lc, err := pq.NewListenerConn(l.dsn, ch)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = lc.Close() })
	defer func() {
		stop()
		_ = lc.Close()
	}()
	if _, err := lc.ExecSimpleQuery(p.Query); err != nil {
		return err
	}
	p.Ready()
	tick := time.NewTicker(pingEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if err := lc.Ping(); err != nil {
				return err
			}
		case n, ok := <-ch:
			if !ok {
				return errors.Join(errClosed, lc.Err())
			}
			if n.Channel == p.Channel {
				p.Notify(n.Extra)
			}
		}
	}
}
