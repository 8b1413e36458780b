package postgres_test

import (
	"bytes"
	"database/sql"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/internal/testdb"
	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
)

// syncBuffer is a bytes.Buffer safe for the outbox's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSequenceWithoutRoundFunction: on a database whose schema lacks the
// sequencer's round function (new code before migration 00003 is
// applied), SequencePending reports dialect.ErrUnsupported and changes
// nothing, and the outbox sequences a partition at a time instead, with
// one warning.
func TestSequenceWithoutRoundFunction(t *testing.T) {
	testdb.DSN(t, testdb.PostgresEnv)
	ctx := t.Context()
	db := testdb.Postgres(t)()
	d := postgres.New()
	if err := migrations.Up(ctx, db, d); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `DROP FUNCTION outbox_sequence_pending(bigint, integer, integer)`); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ob, err := outbox.New(db, d, outbox.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.DeclareQueue(ctx, "q", 2); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		err := ob.InTx(ctx, func(tx *sql.Tx) error {
			return ob.Enqueue(ctx, tx, outbox.Message{Queue: "q", Partition: i % 2, Payload: []byte("m"), PayloadType: "text/plain"})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = d.SequencePending(ctx, db, &dialect.SequencePendingParams{MaxPartitions: 10, Limit: 10})
	if !errors.Is(err, dialect.ErrUnsupported) {
		t.Fatalf("SequencePending without the function: %v, want dialect.ErrUnsupported", err)
	}
	for range 2 {
		if n, err := ob.SequenceAll(ctx); err != nil || n != 5 {
			t.Fatalf("SequenceAll: %d, %v; want 5 sequenced by the fallback", n, err)
		}
		if _, err := db.ExecContext(ctx, `UPDATE outbox_messages SET seq = NULL`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `UPDATE outbox_partitions SET last_seq = 0`); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "apply the migrations"); n != 1 {
		t.Fatalf("%d warnings about the missing function, want 1:\n%s", n, logs.String())
	}
}
