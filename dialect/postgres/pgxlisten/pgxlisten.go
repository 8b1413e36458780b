// Package pgxlisten receives the outbox's PostgreSQL wake-ups with
// github.com/jackc/pgx/v5 over the *sql.DB the Outbox uses, which must be
// opened with pgx's stdlib driver ("pgx"):
//
//	db, _ := sql.Open("pgx", dsn)
//	d := postgres.New(postgres.WithListener(pgxlisten.New()))
//	ob, _ := outbox.New(db, d, outbox.Config{})
//
// The listener takes one connection of db's pool for as long as the Outbox
// runs, and closes it instead of returning it to the pool.
package pgxlisten

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/modkit-go/db/dialect/postgres"
)

// Listener is a postgres.Listener for pgx's stdlib driver.
type Listener struct{}

var _ postgres.Listener = (*Listener)(nil)

// New returns a Listener.
func New() *Listener { return &Listener{} }

// Listen implements postgres.Listener: it takes a connection from db,
// reaches its *pgx.Conn through (*sql.Conn).Raw and waits on
// WaitForNotification.
func (*Listener) Listen(ctx context.Context, db *sql.DB, p *postgres.ListenParams) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("pgxlisten: the *sql.DB's driver connection is %T, not pgx's stdlib", dc)
		}
		pc := sc.Conn()
		// From here on the connection listens: it must not go back to the
		// pool, so every return discards it (driver.ErrBadConn).
		if _, err := pc.Exec(ctx, p.Query); err != nil {
			return errors.Join(err, driver.ErrBadConn)
		}
		p.Ready()
		for {
			n, err := pc.WaitForNotification(ctx)
			if err != nil {
				return errors.Join(err, driver.ErrBadConn)
			}
			if n.Channel == p.Channel {
				p.Notify(n.Payload)
			}
		}
	})
}
