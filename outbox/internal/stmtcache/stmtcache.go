// Package stmtcache prepares the statements a dialect runs once per
// *sql.DB and reuses them, on the pool and inside transactions, so the
// database parses (and, where it keeps plans, plans) each statement text
// once per connection instead of on every call.
//
// A Cache is a dialect.DBTX over its *sql.DB; Tx returns one over a
// transaction of that same *sql.DB. Statements that are not plain DML
// (SAVEPOINT, say), and statements whose preparation fails, run as before.
// A text is prepared the second time it is seen, so one-off texts cost
// nothing. Inside a transaction a statement not yet prepared runs
// unprepared, and is prepared on the pool in the background: preparing on
// the pool from a transaction could wait forever for a connection the
// transaction holds (one connection, as with SQLite).
package stmtcache

import (
	"container/list"
	"context"
	"database/sql"
	"strings"
	"sync"
	"time"
)

// DefaultSize bounds the statements a Cache keeps: dialects build a few
// texts per list length (IN lists, UNION ALL of several reads), so the set
// is finite but not tiny; the least recently used beyond it are closed.
const DefaultSize = 256

// prepareTimeout bounds a background preparation waiting for a connection.
const prepareTimeout = 5 * time.Second

// Cache holds prepared statements of one *sql.DB. Its zero value is not
// usable; see New. It is safe for concurrent use.
type Cache struct {
	runner // on the pool
	db     *sql.DB
	max    int

	mu      sync.Mutex
	entries map[string]*list.Element // of *entry
	lru     list.List                // front: most recently used
}

type entry struct {
	query string
	stmt  *sql.Stmt // nil while preparing, or when the text cannot be prepared
	state state
	retry time.Time // unpreparable: when to try preparing again
}

// retryAfter: a text whose preparation failed runs unprepared this long
// before it is tried again. The failure may be the statement's (a kind
// the database cannot prepare) or the connection's (an outage), which
// must not leave a hot statement unprepared for good.
const retryAfter = time.Minute

type state int

const (
	seen      state = iota // once: texts that never come back are never prepared
	preparing              // one caller is preparing it
	ready
	unpreparable
)

// New returns a Cache over db keeping at most size statements (DefaultSize
// when size < 1).
func New(db *sql.DB, size int) *Cache {
	if size < 1 {
		size = DefaultSize
	}
	c := &Cache{db: db, max: size, entries: make(map[string]*list.Element)}
	c.runner = runner{stmt: c.poolStmt, plain: db}
	return c
}

// cacheable: only DML is prepared; utility statements (SAVEPOINT, SET,
// LOCK) run as given.
func cacheable(query string) bool {
	q := strings.TrimLeft(query, " \t\r\n(")
	if len(q) < 6 {
		return false
	}
	switch strings.ToUpper(q[:6]) {
	case "SELECT", "INSERT", "UPDATE", "DELETE", "REPLAC":
		return true
	}
	return len(q) >= 4 && strings.EqualFold(q[:4], "WITH")
}

// lookup returns the ready statement for query, or nil. A text is
// prepared the second time it is seen, so texts that come once (a batch
// insert of an unusual size, say) cost no preparation and no eviction of
// hot ones; when it is time, lookup returns the entry to prepare, and
// exactly one caller gets it.
func (c *Cache) lookup(query string) (stmt *sql.Stmt, prep *entry) {
	if !cacheable(query) {
		return nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[query]; ok {
		c.lru.MoveToFront(el)
		e := el.Value.(*entry)
		switch {
		case e.state == ready:
			return e.stmt, nil
		case e.state == seen, e.state == unpreparable && time.Now().After(e.retry):
			e.state = preparing
			return nil, e
		}
		return nil, nil
	}
	c.entries[query] = c.lru.PushFront(&entry{query: query, state: seen})
	for c.lru.Len() > c.max {
		el := c.lru.Back()
		e := el.Value.(*entry)
		c.lru.Remove(el)
		delete(c.entries, e.query)
		closeLater(e.stmt)
	}
	return nil, nil
}

// closeDelay: how long an evicted statement stays open, so that a call
// that took it from the cache just before the eviction still finds it
// open (a call that has started holds it open by itself).
const closeDelay = time.Second

// closeLater closes s (if any) after closeDelay, in the background.
// Stmt.Close waits for the calls running on s, and one of them may be
// waiting for a connection that the caller's transaction holds (one
// connection, as with SQLite): closing inline, under the cache's lock,
// would deadlock. database/sql closes the driver's statements once those
// calls and their rows are done.
func closeLater(s *sql.Stmt) {
	if s != nil {
		time.AfterFunc(closeDelay, func() { _ = s.Close() })
	}
}

// prepare prepares e's text on the pool and records the result in e, if e
// is still the cache's entry for it (not evicted, the cache not closed).
func (c *Cache) prepare(ctx context.Context, e *entry) *sql.Stmt {
	stmt, err := c.db.PrepareContext(ctx, e.query)
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[e.query]
	if !ok || el.Value.(*entry) != e {
		closeLater(stmt)
		return nil
	}
	switch {
	case err == nil:
		e.stmt, e.state = stmt, ready
	case ctx.Err() != nil:
		// Not the statement's fault: try again on a later call.
		e.state = seen
	default:
		e.state, e.retry = unpreparable, time.Now().Add(retryAfter)
	}
	return stmt
}

func (c *Cache) prepareLater(e *entry) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), prepareTimeout)
		defer cancel()
		c.prepare(ctx, e)
	}()
}

// poolStmt returns the statement for query on the pool, preparing it now
// when it is time (see lookup).
func (c *Cache) poolStmt(ctx context.Context, query string) *sql.Stmt {
	s, prep := c.lookup(query)
	if prep != nil {
		s = c.prepare(ctx, prep)
	}
	return s
}

// runner runs statements through stmt's prepared statement when there is
// one, else on plain.
type runner struct {
	stmt  func(ctx context.Context, query string) *sql.Stmt
	plain interface {
		ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
		QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	}
}

// ExecContext runs query, prepared once it can be.
func (r runner) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if s := r.stmt(ctx, query); s != nil {
		return s.ExecContext(ctx, args...)
	}
	return r.plain.ExecContext(ctx, query, args...)
}

// QueryContext runs query, prepared once it can be.
func (r runner) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s := r.stmt(ctx, query); s != nil {
		return s.QueryContext(ctx, args...)
	}
	return r.plain.QueryContext(ctx, query, args...)
}

// QueryRowContext runs query, prepared once it can be.
func (r runner) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if s := r.stmt(ctx, query); s != nil {
		return s.QueryRowContext(ctx, args...)
	}
	return r.plain.QueryRowContext(ctx, query, args...)
}

// Close closes every cached statement. The Cache stays usable: later calls
// prepare their statements again.
func (c *Cache) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for el := c.lru.Front(); el != nil; el = el.Next() {
		closeLater(el.Value.(*entry).stmt)
	}
	c.lru.Init()
	clear(c.entries)
}

// Tx runs statements in tx, which must belong to the Cache's *sql.DB.
type Tx struct {
	runner
}

// Tx returns the Cache's view of tx, a transaction of its *sql.DB.
func (c *Cache) Tx(tx *sql.Tx) *Tx {
	return &Tx{runner{stmt: func(ctx context.Context, query string) *sql.Stmt { return c.txStmt(ctx, tx, query) }, plain: tx}}
}

// txStmt returns query's statement bound to tx, or nil: a text seen for
// the first time is prepared on the pool in the background.
func (c *Cache) txStmt(ctx context.Context, tx *sql.Tx, query string) *sql.Stmt {
	s, prep := c.lookup(query)
	if prep != nil {
		c.prepareLater(prep)
	}
	if s == nil {
		return nil
	}
	// Reuses the statement already prepared on the transaction's
	// connection, or prepares it there (the transaction's own connection:
	// no wait on the pool).
	return tx.StmtContext(ctx, s)
}
