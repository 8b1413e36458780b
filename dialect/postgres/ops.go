package postgres

import (
	"github.com/jmoiron/sqlx"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/opsql"
)

var _ dialect.OperatorSource = (*Dialect)(nil)

// Operator implements dialect.OperatorSource: the operations store shared
// by the built-in dialects, with PostgreSQL's clock and row locks. now()
// is the transaction's start, so every row a claim or transition writes
// carries the same time.
func (d *Dialect) Operator() dialect.Operator {
	return opsql.New(opsql.Flavor{
		Prefix: d.Prefix(), Bind: sqlx.DOLLAR, TxOptions: d.TxOptions(), Insert: d.InsertMessages,
		Now: "now()", NowPlus: "now() + CAST(? AS BIGINT) * INTERVAL '1 microsecond'",
		ForUpdate: " FOR UPDATE", SkipLocked: " FOR UPDATE SKIP LOCKED",
	})
}
