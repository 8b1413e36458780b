package sqlite

import (
	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/opsql"
)

// Operator implements dialect.OperatorSource: the operations store the
// built-in dialects share, with SQLite's clauses (opsql.SQLite).
func (d *Dialect) Operator() dialect.Operator {
	f := opsql.SQLite
	f.LastSeq = lastSeq
	return opsql.New(d, f)
}
