package sqlite_test

import (
	"testing"

	"github.com/modkit-go/db/conformance"
	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/internal/testdb"
)

func backend() conformance.Backend {
	return conformance.Backend{
		Name:        "sqlite",
		Dialect:     sqlite.New(),
		WithPrefix:  func(p string) dialect.Dialect { return sqlite.New(sqlite.WithPrefix(p)) },
		NewDatabase: testdb.SQLite,
	}
}

func TestConformance(t *testing.T) { conformance.Run(t, backend()) }

// TestDialectContract checks each dialect method's invariant directly.
func TestDialectContract(t *testing.T) { conformance.RunDialect(t, backend()) }
