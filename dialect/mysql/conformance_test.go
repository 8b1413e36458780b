package mysql_test

import (
	"testing"

	"github.com/modkit-go/db/conformance"
	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/mysql"
	"github.com/modkit-go/db/internal/testdb"
)

func TestConformance(t *testing.T) {
	testdb.DSN(t, testdb.MySQLEnv) // skip (or fail under CI) once, not per case
	conformance.Run(t, conformance.Backend{
		Name:        "mysql",
		Dialect:     mysql.New(),
		WithPrefix:  func(p string) dialect.Dialect { return mysql.New(mysql.WithPrefix(p)) },
		NewDatabase: testdb.MySQL,
	})
}
