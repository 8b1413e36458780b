package postgres

import (
	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/opsql"
)

// Operator implements dialect.OperatorSource: the operations store the
// built-in dialects share, with PostgreSQL's clauses (opsql.Postgres).
func (d *Dialect) Operator() dialect.Operator { return opsql.New(d, opsql.Postgres) }
