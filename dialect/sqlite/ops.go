package sqlite

import (
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/opsql"
)

var _ dialect.OperatorSource = (*Dialect)(nil)

// Operator implements dialect.OperatorSource: the operations store shared
// by the built-in dialects, with times as microseconds since the epoch.
// SQLite has no row locks: every status change is a guarded UPDATE, and
// the single writer makes each one atomic.
func (d *Dialect) Operator() dialect.Operator {
	return opsql.New(opsql.Flavor{
		Prefix: d.Prefix(), Bind: sqlx.QUESTION, TxOptions: d.TxOptions(), Insert: d.InsertMessages,
		Now: now, NowPlus: "(" + now + " + ?)",
		TimeArg: func(t time.Time) any { return t.UnixMicro() },
	})
}
