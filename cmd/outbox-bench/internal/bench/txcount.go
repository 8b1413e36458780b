package bench

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"strings"
	"sync/atomic"
)

// txCounter counts write transactions at the driver: explicit commits, and
// statements run outside a transaction that write (autocommit, one
// transaction each). On a machine shared with other work the rates move a
// lot between runs; the count of write transactions per message does not,
// and it is what the pipeline's batching is meant to cut.
type txCounter struct {
	commits    atomic.Int64
	autocommit atomic.Int64
}

func (c *txCounter) total() int64 { return c.commits.Load() + c.autocommit.Load() }

// countingConnector wraps a driver.Connector so that every connection it
// makes counts into c.
type countingConnector struct {
	driver.Connector
	c *txCounter
}

func (cc countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := cc.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, c: cc.c}, nil
}

// countingConn forwards to the driver's connection. It implements the
// optional interfaces database/sql uses on the hot paths and that the three
// drivers of the project implement; a missing one reports driver.ErrSkip
// (database/sql then prepares the statement instead).
type countingConn struct {
	driver.Conn
	c    *txCounter
	inTx bool
}

func writes(query string) bool {
	return strings.Contains(query, "UPDATE ") || strings.Contains(query, "DELETE ") || strings.Contains(query, "INSERT ")
}

// writesIfRows: a call of PostgreSQL's sequencer round function is a write
// transaction only when it numbered rows, that is when its last column
// (owners, the partition of each row numbered) is not the empty array.
func writesIfRows(query string) bool { return strings.Contains(query, "sequence_pending(") }

// rowsCounter counts one write for a row whose last column is a non-empty
// array.
type rowsCounter struct {
	driver.Rows
	c *txCounter
}

func (r *rowsCounter) Next(dest []driver.Value) error {
	err := r.Rows.Next(dest)
	if err == nil && len(dest) > 0 {
		var last string
		switch v := dest[len(dest)-1].(type) {
		case []byte:
			last = string(v)
		case string:
			last = v
		}
		if last != "" && last != "{}" {
			r.c.autocommit.Add(1)
		}
	}
	return err
}

func (cn *countingConn) countRows(query string, rows driver.Rows, err error) (driver.Rows, error) {
	if err != nil || cn.inTx || !writesIfRows(query) {
		return rows, err
	}
	return &rowsCounter{Rows: rows, c: cn.c}, nil
}

func (cn *countingConn) note(query string) {
	if !cn.inTx && writes(query) {
		cn.c.autocommit.Add(1)
	}
}

func (cn *countingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := cn.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	cn.note(query)
	return e.ExecContext(ctx, query, args)
}

func (cn *countingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := cn.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	cn.note(query)
	rows, err := q.QueryContext(ctx, query, args)
	return cn.countRows(query, rows, err)
}

func (cn *countingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	// A prepared statement (the outbox's statement cache, or a driver
	// that prepares instead of ErrSkip) counts at each execution outside a
	// transaction on this connection.
	var st driver.Stmt
	var err error
	if p, ok := cn.Conn.(driver.ConnPrepareContext); ok {
		st, err = p.PrepareContext(ctx, query)
	} else {
		st, err = cn.Conn.Prepare(query)
	}
	if err != nil {
		return nil, err
	}
	return &countingStmt{Stmt: st, cn: cn, query: query, writes: writes(query)}, nil
}

// countingStmt counts the executions of a prepared writing statement that
// run outside a transaction.
type countingStmt struct {
	driver.Stmt
	cn     *countingConn
	query  string
	writes bool
}

func (s *countingStmt) note() {
	if s.writes && !s.cn.inTx {
		s.cn.c.autocommit.Add(1)
	}
}

// The three drivers the bench links implement the context methods on
// their statements; database/sql calls these only.
func (s *countingStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	e, ok := s.Stmt.(driver.StmtExecContext)
	if !ok {
		return nil, fmt.Errorf("bench: driver statement %T has no ExecContext", s.Stmt)
	}
	s.note()
	return e.ExecContext(ctx, args)
}

func (s *countingStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := s.Stmt.(driver.StmtQueryContext)
	if !ok {
		return nil, fmt.Errorf("bench: driver statement %T has no QueryContext", s.Stmt)
	}
	s.note()
	rows, err := q.QueryContext(ctx, args)
	return s.cn.countRows(s.query, rows, err)
}

func (s *countingStmt) CheckNamedValue(nv *driver.NamedValue) error {
	if c, ok := s.Stmt.(driver.NamedValueChecker); ok {
		return c.CheckNamedValue(nv)
	}
	return s.cn.CheckNamedValue(nv)
}

func (cn *countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	b, ok := cn.Conn.(driver.ConnBeginTx)
	if !ok { // every driver the bench links implements it
		return nil, fmt.Errorf("bench: driver %T has no BeginTx", cn.Conn)
	}
	tx, err := b.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	cn.inTx = true
	return &countingTx{Tx: tx, cn: cn}, nil
}

func (cn *countingConn) ResetSession(ctx context.Context) error {
	if r, ok := cn.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (cn *countingConn) IsValid() bool {
	if v, ok := cn.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (cn *countingConn) CheckNamedValue(nv *driver.NamedValue) error {
	if c, ok := cn.Conn.(driver.NamedValueChecker); ok {
		return c.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

type countingTx struct {
	driver.Tx
	cn *countingConn
}

func (t *countingTx) Commit() error {
	t.cn.inTx = false
	err := t.Tx.Commit()
	if err == nil {
		t.cn.c.commits.Add(1)
	}
	return err
}

func (t *countingTx) Rollback() error {
	t.cn.inTx = false
	return t.Tx.Rollback()
}

// openCounting is sql.Open with a txCounter between database/sql and the
// driver.
func openCounting(driverName, dsn string) (*sql.DB, *txCounter, error) {
	probe, err := sql.Open(driverName, dsn)
	if err != nil {
		return nil, nil, err
	}
	drv := probe.Driver()
	_ = probe.Close()
	var conn driver.Connector
	if dc, ok := drv.(driver.DriverContext); ok {
		if conn, err = dc.OpenConnector(dsn); err != nil {
			return nil, nil, err
		}
	} else {
		conn = dsnConnector{dsn: dsn, drv: drv}
	}
	c := &txCounter{}
	return sql.OpenDB(countingConnector{Connector: conn, c: c}), c, nil
}

type dsnConnector struct {
	dsn string
	drv driver.Driver
}

func (d dsnConnector) Connect(context.Context) (driver.Conn, error) { return d.drv.Open(d.dsn) }
func (d dsnConnector) Driver() driver.Driver                        { return d.drv }
