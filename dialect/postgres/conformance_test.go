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
	b := backend("postgres", testdb.Postgres, postgres.WithListener(pqlisten.New(dsn)))
	b.StopServer, b.StartServer = testdb.ServerControl("postgres") // opt-in
	conformance.Run(t, b)
}

// TestConformancePGX runs the suite through pgx's database/sql driver
// (github.com/jackc/pgx/v5/stdlib) instead of lib/pq, wake-ups through
// pgxlisten: the dialect imports no driver and must work with either.
func TestConformancePGX(t *testing.T) {
	testdb.DSN(t, testdb.PostgresEnv)
	conformance.Run(t, backend("pgx", testdb.PostgresPGX, postgres.WithListener(pgxlisten.New())))
}

// TestDialectContract checks each dialect method's invariant directly,
// through lib/pq and through pgx.
func TestDialectContract(t *testing.T) {
	testdb.DSN(t, testdb.PostgresEnv)
	t.Run("pq", func(t *testing.T) {
		conformance.RunDialect(t, conformance.Backend{Name: "postgres", Dialect: postgres.New(), NewDatabase: testdb.Postgres})
	})
	t.Run("pgx", func(t *testing.T) {
		conformance.RunDialect(t, conformance.Backend{Name: "pgx", Dialect: postgres.New(), NewDatabase: testdb.PostgresPGX})
	})
}

func backend(name string, open func(testing.TB) func() *sql.DB, listener postgres.Option) conformance.Backend {
	return conformance.Backend{
		Name:        name,
		Dialect:     postgres.New(listener),
		WithPrefix:  func(p string) dialect.Dialect { return postgres.New(postgres.WithPrefix(p), listener) },
		NewDatabase: open,
		// testdb gives every session of a test its schema's name as
		// application_name, so this ends only that test's sessions.
		TerminateSessions: func(ctx context.Context, db *sql.DB) (int, error) {
			var n int
			err := db.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
				FROM pg_stat_activity
				WHERE application_name = current_setting('application_name')
				  AND current_setting('application_name') <> '' AND pid <> pg_backend_pid()`).Scan(&n)
			return n, err
		},
		TerminateListeners: terminateListeners,
	}
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
