package mysql_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	driver "github.com/go-sql-driver/mysql"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/mysql"
	"github.com/modkit-go/db/internal/testdb"
	"github.com/modkit-go/db/migrations"
)

// The behaviour of every method is checked by conformance.RunDialect (see
// conformance_test.go); what stays here is MySQL's own.

func TestMigrationsIdempotent(t *testing.T) {
	for _, d := range []*mysql.Dialect{mysql.New(), mysql.New(mysql.WithPrefix("ob2_"))} {
		db := testdb.MySQL(t)()
		for i := range 2 {
			if err := migrations.Up(context.Background(), db, d); err != nil {
				t.Fatalf("Up %d (prefix %q): %v", i+1, d.Prefix(), err)
			}
		}
		if _, err := d.Stats(context.Background(), db, &dialect.StatsParams{}); err != nil {
			t.Fatalf("prefix %q: %v", d.Prefix(), err)
		}
	}
}

func TestIsRetryable(t *testing.T) {
	d := mysql.New()
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&driver.MySQLError{Number: 1213}, true},
		{&driver.MySQLError{Number: 1205}, true},
		{&driver.MySQLError{Number: 1062}, false},
		{&driver.MySQLError{Number: 9999, SQLState: [5]byte{'4', '0', '0', '0', '1'}}, true},
		{errors.New("x"), false},
		{nil, false},
	} {
		if got := d.IsRetryable(c.err); got != c.want {
			t.Errorf("IsRetryable(%v) = %v", c.err, got)
		}
	}
	if d.TxOptions() == nil || d.TxOptions().Isolation != sql.LevelReadCommitted {
		t.Error("TxOptions must be READ COMMITTED")
	}
}
