package conformance

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"reflect"
	"testing"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
)

// testCheckKeepsCause: the database check reports ErrWrongDialect only for
// a real mismatch; a cancelled context or a closed pool wraps its cause.
// (The mismatches themselves are checked pairwise in outbox's
// TestWrongDialectEveryPair, which needs every driver.)
func testCheckKeepsCause(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	cancelled, cancel := context.WithCancel(e.ctx)
	cancel()

	ob := e.outbox(nil, outbox.Config{})
	notWrong := func(what string, err error, cause error) {
		t.Helper()
		if err == nil || errors.Is(err, outbox.ErrWrongDialect) || !errors.Is(err, cause) {
			t.Errorf("%s: got %v, want an error wrapping %v and not ErrWrongDialect", what, err, cause)
		}
	}
	notWrong("DeclareQueue, cancelled context", ob.DeclareQueue(cancelled, "q", 1), context.Canceled)
	if err := ob.Handle("q", outbox.Batch(func(context.Context, []outbox.Delivery) outbox.Result { return outbox.Success() })); err != nil {
		t.Fatal(err)
	}
	notWrong("Start, cancelled context", ob.Start(cancelled), context.Canceled)
	tx := e.begin(nil)
	notWrong("Enqueue, cancelled context", ob.Enqueue(cancelled, tx, msg("q", 0, "x")), context.Canceled)
	_ = tx.Rollback()

	closed := e.open()
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	oc := e.outbox(closed, outbox.Config{})
	notWrong("DeclareQueue, closed *sql.DB", oc.DeclareQueue(e.ctx, "q", 1), sql.ErrConnDone)

	// The outbox still works once the cause is gone: a failed check is not
	// remembered as a verdict.
	e.declare(ob, "q", 1)
	e.enqueue(ob, msg("q", 0, "after"))
}

// testZeroValueDialect: a typed nil dialect is a typed error from New, not
// a panic; the dialect's zero value means the default prefix, like New().
func testZeroValueDialect(t *testing.T, b *Backend) {
	typ := reflect.TypeOf(b.Dialect)
	if typ.Kind() != reflect.Pointer {
		t.Skipf("dialect %T is not a pointer type", b.Dialect) // no typed nil, no zero pointer
	}
	e := newEnv(t, b)
	typedNil := reflect.Zero(typ).Interface().(dialect.Dialect)
	if _, err := outbox.New(e.db, typedNil, outbox.Config{}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("New with %T(nil): got %v, want ErrInvalidConfig", typedNil, err)
	}

	zero := reflect.New(typ.Elem()).Interface().(dialect.Dialect)
	if p := zero.Prefix(); p != migrations.DefaultPrefix {
		t.Fatalf("zero %T has prefix %q, want %q", zero, p, migrations.DefaultPrefix)
	}
	if b.Dialect.Prefix() == migrations.DefaultPrefix {
		want, got := readAll(t, b.Dialect.Migrations()), readAll(t, zero.Migrations())
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("zero %T's migrations differ from the default dialect's", zero)
		}
	}
	// It runs against the default-prefix schema newEnv applied.
	ob, err := outbox.New(e.db, zero, outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.DeclareQueue(e.ctx, "q", 2); err != nil {
		t.Fatalf("DeclareQueue through the zero value: %v", err)
	}
	e.enqueue(ob, msg("q", 1, "zero"))
	if n := e.count("SELECT COUNT(*) FROM " + migrations.DefaultPrefix + "messages"); n != 1 {
		t.Fatalf("%smessages has %d rows, want 1", migrations.DefaultPrefix, n)
	}
}

// readAll returns every file of fsys by path.
func readAll(t *testing.T, fsys fs.FS) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, path)
		out[path] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
