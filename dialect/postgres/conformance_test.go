package postgres_test

import (
	"testing"

	"github.com/modkit-go/db/conformance"
	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/internal/testdb"
)

func TestConformance(t *testing.T) {
	testdb.DSN(t, testdb.PostgresEnv) // skip (or fail under CI) once, not per case
	conformance.Run(t, conformance.Backend{
		Name:        "postgres",
		Dialect:     postgres.New(),
		WithPrefix:  func(p string) dialect.Dialect { return postgres.New(postgres.WithPrefix(p)) },
		NewDatabase: testdb.Postgres,
	})
}
