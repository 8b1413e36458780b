package postgres_test

import (
	"fmt"

	"github.com/modkit-go/db/dialect/postgres"
)

// Behind a pooler that cannot keep a connection's prepared statements
// across transactions (PgBouncer in transaction mode before 1.21), turn
// the outbox's prepared statements off; everything else is unchanged.
func ExampleWithPreparedStatements() {
	d := postgres.New(postgres.WithPreparedStatements(false))
	fmt.Println(d.Capabilities().PreparedStatements, postgres.New().Capabilities().PreparedStatements)
	// Output: false true
}
