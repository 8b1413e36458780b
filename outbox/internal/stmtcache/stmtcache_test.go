package stmtcache

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// counting wraps SQLite's driver and counts the statements it prepares, by
// text, so a test can tell a reused statement from a re-prepared one.
type counting struct {
	driver.Driver
	mu       sync.Mutex
	prepares map[string]int
}

func (c *counting) Open(name string) (driver.Conn, error) {
	conn, err := c.Driver.Open(name)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, c: c}, nil
}

func (c *counting) count(query string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.prepares[query]
}

type countingConn struct {
	driver.Conn
	c *counting
}

func (cc *countingConn) Prepare(query string) (driver.Stmt, error) {
	return cc.PrepareContext(context.Background(), query)
}

func (cc *countingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	cc.c.mu.Lock()
	cc.c.prepares[query]++
	cc.c.mu.Unlock()
	return cc.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, query)
}

func (cc *countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return cc.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
}

type connector struct {
	d   *counting
	dsn string
}

func (c connector) Connect(context.Context) (driver.Conn, error) { return c.d.Open(c.dsn) }
func (c connector) Driver() driver.Driver                        { return c.d }

// open returns a one-connection SQLite database (the case where preparing
// from inside a transaction would deadlock) and its prepare counter.
func open(t *testing.T) (*sql.DB, *counting) {
	t.Helper()
	probe, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	d := &counting{Driver: probe.Driver(), prepares: map[string]int{}}
	_ = probe.Close()
	dsn := "file:" + filepath.Join(t.TempDir(), "c.db") + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)"
	db := sql.OpenDB(connector{d: d, dsn: dsn})
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		t.Fatal(err)
	}
	return db, d
}

func TestPoolStatementsArePreparedOnce(t *testing.T) {
	db, d := open(t)
	c := New(db, 0)
	ctx := context.Background()
	const ins = "INSERT INTO t (v) VALUES (?)"
	const sel = "SELECT count(*) FROM t WHERE v = ?"
	for i := range 10 {
		if _, err := c.ExecContext(ctx, ins, "x"); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := c.QueryRowContext(ctx, sel, "x").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != i+1 {
			t.Fatalf("count = %d, want %d", n, i+1)
		}
		rows, err := c.QueryContext(ctx, sel, "x")
		if err != nil {
			t.Fatal(err)
		}
		_ = rows.Close()
	}
	// The first call runs unprepared (through the driver's Prepare, as
	// database/sql does for this wrapper), the second prepares the text
	// for the cache, and every later call reuses it.
	if got := d.count(ins); got != 2 {
		t.Errorf("insert prepared %d times, want 2", got)
	}
	if got := d.count(sel); got != 2 {
		t.Errorf("select prepared %d times, want 2", got)
	}
}

// On a one-connection pool a transaction holds the only connection: a
// statement met first inside it must run at once (unprepared) and be
// prepared once the connection is free, not wait for it.
func TestTxDoesNotWaitForThePool(t *testing.T) {
	db, d := open(t)
	c := New(db, 0)
	const ins = "INSERT INTO t (v) VALUES (?)"
	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Tx(tx).ExecContext(ctx, ins, fmt.Sprint(i)); err != nil {
			t.Fatalf("exec %d in tx: %v", i, err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		cancel()
		if i == 1 {
			waitReady(t, c, ins)
		}
	}
	// The first two calls run unprepared (database/sql prepares a
	// statement it runs with arguments), the second also starts the
	// background preparation; reused ever after.
	if got := d.count(ins); got != 3 {
		t.Errorf("insert prepared %d times over 5 transactions, want 3", got)
	}
	var n int
	if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 5 {
		t.Fatalf("rows = %d (%v), want 5", n, err)
	}
}

func waitReady(t *testing.T, c *Cache, query string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		el, ok := c.entries[query]
		st := seen
		if ok {
			st = el.Value.(*entry).state
		}
		c.mu.Unlock()
		if st == ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q not prepared in the background (state %v)", query, st)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestUtilityStatementsAndFailuresRunUnprepared(t *testing.T) {
	db, d := open(t)
	c := New(db, 0)
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	q := c.Tx(tx)
	for range 3 {
		if _, err := q.ExecContext(ctx, "SAVEPOINT s"); err != nil {
			t.Fatal(err)
		}
		if _, err := q.ExecContext(ctx, "RELEASE SAVEPOINT s"); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.entries); n != 0 {
		t.Errorf("%d utility statements cached, want 0", n)
	}
	_ = tx.Rollback()

	const bad = "SELECT nope FROM t"
	for range 3 {
		if _, err := c.QueryContext(ctx, bad); err == nil {
			t.Fatal("a bad statement succeeded")
		}
	}
	// Run as given, prepared once by the cache on its second sighting
	// (failed, remembered), then run as given.
	if got := d.count(bad); got > 4 {
		t.Errorf("bad statement prepared %d times for 3 calls", got)
	}
	// After retryAfter the cache tries again (a failure may have been an
	// outage): once the table has the column, the text is prepared.
	if _, err := db.Exec("ALTER TABLE t ADD COLUMN nope TEXT"); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.entries[bad].Value.(*entry).retry = time.Now().Add(-time.Second)
	c.mu.Unlock()
	if rows, err := c.QueryContext(ctx, bad); err != nil {
		t.Fatalf("after the retry time: %v", err)
	} else {
		_ = rows.Close()
	}
	c.mu.Lock()
	st := c.entries[bad].Value.(*entry).state
	c.mu.Unlock()
	if st != ready {
		t.Errorf("state after a successful retry: %v, want ready", st)
	}
}

func TestEvictionBoundsTheCache(t *testing.T) {
	db, _ := open(t)
	c := New(db, 4)
	ctx := context.Background()
	for i := range 20 {
		var v int
		if err := c.QueryRowContext(ctx, fmt.Sprintf("SELECT %d", i)).Scan(&v); err != nil || v != i {
			t.Fatalf("SELECT %d = %d, %v", i, v, err)
		}
	}
	if n := c.lru.Len(); n != 4 {
		t.Fatalf("cache holds %d statements, want 4", n)
	}
	// Closing keeps the cache usable.
	c.Close()
	var v int
	if err := c.QueryRowContext(ctx, "SELECT 7").Scan(&v); err != nil || v != 7 {
		t.Fatalf("after Close: %d, %v", v, err)
	}
}

// Many goroutines sharing the cache on a pool and in transactions, while
// statements are evicted under them.
func TestConcurrentUse(t *testing.T) {
	db, _ := open(t)
	c := New(db, 2)
	var wg sync.WaitGroup
	var failed atomic.Value
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for i := range 50 {
				q := fmt.Sprintf("SELECT %d", (g+i)%5)
				if g%2 == 0 {
					var v int
					if err := c.QueryRowContext(ctx, q).Scan(&v); err != nil {
						failed.Store(err)
						return
					}
					continue
				}
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					failed.Store(err)
					return
				}
				var v int
				err = c.Tx(tx).QueryRowContext(ctx, q).Scan(&v)
				_ = tx.Rollback()
				if err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
}

// A text seen once is not prepared for the cache: a batch insert of an
// unusual size costs no preparation and evicts nothing.
func TestOnceSeenTextsAreNotPrepared(t *testing.T) {
	db, d := open(t)
	c := New(db, 4)
	ctx := context.Background()
	for i := range 20 {
		q := fmt.Sprintf("SELECT %d", i)
		var v int
		if err := c.QueryRowContext(ctx, q).Scan(&v); err != nil || v != i {
			t.Fatalf("%s = %d, %v", q, v, err)
		}
		if got := d.count(q); got != 1 {
			t.Errorf("%s prepared %d times for one call, want 1 (the unprepared run)", q, got)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for el := c.lru.Front(); el != nil; el = el.Next() {
		if e := el.Value.(*entry); e.stmt != nil {
			t.Errorf("%q holds a statement after one call", e.query)
		}
	}
}
