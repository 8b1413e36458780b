package mysql

import (
	"github.com/jmoiron/sqlx"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/opsql"
)

var _ dialect.OperatorSource = (*Dialect)(nil)

// Operator implements dialect.OperatorSource: the operations store shared
// by the built-in dialects, with NOW(6) and InnoDB's row locks. Its statements run at
// READ COMMITTED (TxOptions) when the caller's transaction is the core's.
//
// The replay claim reads in primary-key order (FORCE INDEX): through the
// (status, …) indexes InnoDB would lock every claimable row before the
// sort and LIMIT, and keep them locked, so a concurrent claimer would skip
// rows nobody took and come back empty-handed. In id order it locks, and
// keeps, only the rows it returns.
//
// Times given by the application (a dead-letter listing's failed-at
// bounds) are compared with values NOW(6) wrote: run the session in the
// time zone of the DSN's loc (UTC unless set) for them to mean the same
// instant. Times the store read itself (paging cursors, claim deadlines)
// round-trip exactly either way.
func (d *Dialect) Operator() dialect.Operator {
	return opsql.New(opsql.Flavor{
		Prefix: d.Prefix(), Bind: sqlx.QUESTION, TxOptions: d.TxOptions(), Insert: d.InsertMessages,
		Now: "NOW(6)", NowPlus: "NOW(6) + INTERVAL ? MICROSECOND",
		ForUpdate: " FOR UPDATE", SkipLocked: " FOR UPDATE SKIP LOCKED", ClaimHint: " FORCE INDEX (PRIMARY)",
	})
}
