package mysql_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"log"
	"strconv"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/modkit-go/db/conformance"
	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/mysql"
	"github.com/modkit-go/db/internal/testdb"
)

func TestConformance(t *testing.T) {
	testdb.DSN(t, testdb.MySQLEnv) // skip (or fail under CI) once, not per case
	// The connection-loss cases make the driver log every killed
	// connection; the outbox's own errors are what the cases check.
	_ = gomysql.SetLogger(log.New(io.Discard, "", 0))
	stop, start := testdb.ServerControl("mysql") // opt-in
	conformance.Run(t, conformance.Backend{
		StopServer:        stop,
		StartServer:       start,
		Name:              "mysql",
		Dialect:           mysql.New(),
		WithPrefix:        func(p string) dialect.Dialect { return mysql.New(mysql.WithPrefix(p)) },
		NewDatabase:       testdb.MySQL,
		TerminateSessions: terminateSessions,
	})
}

// TestDialectContract checks each dialect method's invariant directly,
// with times scanned by the driver (parseTime=true) and as text.
func TestDialectContract(t *testing.T) {
	testdb.DSN(t, testdb.MySQLEnv)
	for name, open := range map[string]func(testing.TB) func() *sql.DB{
		"parseTime": testdb.MySQL, "noParseTime": testdb.MySQLNoParseTime,
	} {
		t.Run(name, func(t *testing.T) {
			conformance.RunDialect(t, conformance.Backend{Name: "mysql", Dialect: mysql.New(), NewDatabase: open})
		})
	}
}

// terminateSessions KILLs every other connection to db's database (each
// test has its own database).
func terminateSessions(ctx context.Context, db *sql.DB) (int, error) {
	rows, err := db.QueryContext(ctx, `SELECT id FROM information_schema.processlist
		WHERE db = DATABASE() AND id <> CONNECTION_ID()`)
	if err != nil {
		return 0, err
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			_ = rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		_, err := db.ExecContext(ctx, "KILL "+strconv.FormatInt(id, 10))
		var me *gomysql.MySQLError
		if errors.As(err, &me) && me.Number == 1094 { // unknown thread: it ended by itself
			continue
		}
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
