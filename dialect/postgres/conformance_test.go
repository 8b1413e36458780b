package postgres_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/modkit-go/db/conformance"
	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/internal/testdb"
)

func TestConformance(t *testing.T) {
	testdb.DSN(t, testdb.PostgresEnv) // skip (or fail under CI) once, not per case
	b := backend("postgres", testdb.Postgres)
	b.StopServer, b.StartServer = testdb.ServerControl("postgres") // opt-in
	conformance.Run(t, b)
}

// TestConformancePGX runs the suite through pgx's database/sql driver
// (github.com/jackc/pgx/v5/stdlib) instead of lib/pq: the dialect imports
// no driver and must work with either.
func TestConformancePGX(t *testing.T) {
	testdb.DSN(t, testdb.PostgresEnv)
	conformance.Run(t, backend("pgx", testdb.PostgresPGX))
}

func backend(name string, open func(testing.TB) func() *sql.DB) conformance.Backend {
	return conformance.Backend{
		Name:        name,
		Dialect:     postgres.New(),
		WithPrefix:  func(p string) dialect.Dialect { return postgres.New(postgres.WithPrefix(p)) },
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
	}
}
