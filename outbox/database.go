package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/modkit-go/db/dialect"
)

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
