package dialect_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/modkit-go/db/dialect"
)

// recorder is a DBTX that records the statements it is asked to run.
type recorder struct{ ran []string }

func (r *recorder) ExecContext(_ context.Context, query string, _ ...any) (sql.Result, error) {
	r.ran = append(r.ran, query)
	return nil, nil
}

func (r *recorder) QueryContext(context.Context, string, ...any) (*sql.Rows, error) {
	return nil, errors.New("not used")
}

func (r *recorder) QueryRowContext(context.Context, string, ...any) *sql.Row { return nil }

// TestSavepoint: the three operations run the standard statements; a name
// outside [a-z0-9_]{1,63} or an unknown op is ErrInvalidSavepoint and runs
// nothing (the name is statement text, so this is what keeps it safe).
func TestSavepoint(t *testing.T) {
	ctx := context.Background()
	var r recorder
	for _, op := range []dialect.SavepointOp{dialect.SavepointCreate, dialect.SavepointRollback, dialect.SavepointRelease} {
		if err := dialect.Savepoint(ctx, &r, "sp_1", op); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"SAVEPOINT sp_1", "ROLLBACK TO SAVEPOINT sp_1", "RELEASE SAVEPOINT sp_1"}
	if len(r.ran) != len(want) {
		t.Fatalf("ran %q, want %q", r.ran, want)
	}
	for i := range want {
		if r.ran[i] != want[i] {
			t.Fatalf("ran %q, want %q", r.ran, want)
		}
	}
	long := make([]byte, 64)
	for i := range long {
		long[i] = 'a'
	}
	for _, name := range []string{"", "sp; DROP TABLE x", "Sp", "sp-1", string(long)} {
		r.ran = nil
		if err := dialect.Savepoint(ctx, &r, name, dialect.SavepointCreate); !errors.Is(err, dialect.ErrInvalidSavepoint) || len(r.ran) != 0 {
			t.Errorf("Savepoint(%q): %v, ran %q; want ErrInvalidSavepoint and nothing run", name, err, r.ran)
		}
	}
	if err := dialect.Savepoint(ctx, &r, "sp", dialect.SavepointOp(9)); !errors.Is(err, dialect.ErrInvalidSavepoint) || len(r.ran) != 0 {
		t.Errorf("unknown op: %v, ran %q", err, r.ran)
	}
}

func TestValidPrefix(t *testing.T) {
	for p, want := range map[string]bool{
		"outbox_": true, "a": true, "a1_": true, "abcdefghijklmnopqrstuvwxyz012345": true,
		"": false, "_a": false, "1a": false, "A_": false, "a-b": false, "a b": false,
		"abcdefghijklmnopqrstuvwxyz0123456": false,
	} {
		if got := dialect.ValidPrefix(p); got != want {
			t.Errorf("ValidPrefix(%q) = %v, want %v", p, got, want)
		}
	}
}
