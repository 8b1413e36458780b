package dialect_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"

	_ "modernc.org/sqlite"

	"github.com/modkit-go/db/dialect"
)

// Savepoint undoes part of a transaction: what follows the savepoint is
// rolled back, what came before it stays.
func ExampleSavepoint() {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file::memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	exec := func(q string) {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			log.Fatal(err)
		}
	}
	exec("CREATE TABLE t (v TEXT)")
	exec("INSERT INTO t VALUES ('kept')")
	if err := dialect.Savepoint(ctx, tx, "sp_1", dialect.SavepointCreate); err != nil {
		log.Fatal(err)
	}
	exec("INSERT INTO t VALUES ('undone')")
	if err := dialect.Savepoint(ctx, tx, "sp_1", dialect.SavepointRollback); err != nil {
		log.Fatal(err)
	}
	if err := dialect.Savepoint(ctx, tx, "sp_1", dialect.SavepointRelease); err != nil {
		log.Fatal(err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM t").Scan(&n); err != nil {
		log.Fatal(err)
	}
	fmt.Println(n, "row")

	// A name that is not [a-z0-9_]{1,63} is refused before anything runs.
	err = dialect.Savepoint(ctx, tx, "x; DROP TABLE t", dialect.SavepointCreate)
	fmt.Println(err)
	// Output:
	// 1 row
	// dialect: invalid savepoint: name "x; DROP TABLE t"
}
