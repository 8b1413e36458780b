package postgres_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/modkit-go/db/conformance"
	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/dialect/postgres/pgxlisten"
	"github.com/modkit-go/db/dialect/postgres/pqlisten"
	"github.com/modkit-go/db/internal/testdb"
)

// TestConformance runs the suite with lib/pq, wake-ups through pqlisten.
func TestConformance(t *testing.T) {
	dsn := testdb.DSN(t, testdb.PostgresEnv) // skip (or fail under CI) once, not per case
	l := postgres.WithListener(pqlisten.New(dsn))
	conformance.Run(t, conformance.Backend{
		Name:               "postgres",
		Dialect:            postgres.New(l),
		WithPrefix:         func(p string) dialect.Dialect { return postgres.New(postgres.WithPrefix(p), l) },
		NewDatabase:        testdb.Postgres,
		TerminateListeners: terminateListeners,
	})
}

// TestConformancePGX runs the suite with pgx's stdlib driver, wake-ups
// through pgxlisten.
func TestConformancePGX(t *testing.T) {
	testdb.DSN(t, testdb.PostgresEnv)
	l := postgres.WithListener(pgxlisten.New())
	conformance.Run(t, conformance.Backend{
		Name:               "postgres",
		Dialect:            postgres.New(l),
		WithPrefix:         func(p string) dialect.Dialect { return postgres.New(postgres.WithPrefix(p), l) },
		NewDatabase:        testdb.PostgresPGX,
		TerminateListeners: terminateListeners,
	})
}

// terminateListeners ends the sessions whose last statement was the LISTEN
// on d's channel: the listeners of that prefix, and no other test's session.
func terminateListeners(ctx context.Context, db *sql.DB, d dialect.Dialect) (int, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query = $1`,
		`LISTEN "`+d.(*postgres.Dialect).Channel()+`"`).Scan(&n)
	return n, err
}
