package dialect_test

// The skeleton of a dialect, as docs/writing-a-dialect.md walks through
// it: every method of the contract, each body standing in for the SQL a
// new backend writes (here it delegates to the SQLite dialect, so that
// the skeleton runs). Its capabilities are what that SQLite code does and
// no more: the single writer, and sequencing on insert (SQLite's insert
// numbers a single row itself; a dialect must never claim less than its
// statements do, or the core would not wake the workers on commit). It
// asks for no prepared statements, has no one-call sequencer round and is
// not a dialect.Waker, so the conformance run below also proves the
// core's answer to those: unprepared statements, a sequencer round in
// several statements, polling without push wake-ups. (A dialect without
// sequencing on insert is every PostgreSQL and MariaDB run.)

import (
	"context"
	"database/sql"
	"io/fs"
	"testing"

	"github.com/modkit-go/db/conformance"
	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/internal/testdb"
)

// skeleton is a dialect. Its zero value uses dialect.DefaultPrefix.
type skeleton struct {
	db sqlite.Dialect // stands for the new backend's SQL text
}

// A missing method is a compile error here, not a skipped case.
var _ dialect.Dialect = (*skeleton)(nil)

// newSkeleton is the constructor: options set the prefix before first use.
func newSkeleton(prefix string) *skeleton {
	s := &skeleton{}
	sqlite.WithPrefix(prefix)(&s.db)
	return s
}

// Schema: the tables and the check that a database is of this kind.

func (s *skeleton) Prefix() string       { return s.db.Prefix() }
func (s *skeleton) GooseDialect() string { return s.db.GooseDialect() }
func (s *skeleton) Migrations() fs.FS    { return s.db.Migrations() }
func (s *skeleton) CheckDatabase(ctx context.Context, q dialect.DBTX) error {
	return s.db.CheckDatabase(ctx, q)
}

// Identity, capabilities, transactions and errors.

func (s *skeleton) Name() string { return "skeleton" }
func (s *skeleton) Capabilities() dialect.Capabilities {
	return dialect.Capabilities{SingleWriter: true, SequencesOnInsert: true}
}
func (s *skeleton) TxOptions() *sql.TxOptions { return s.db.TxOptions() }
func (s *skeleton) ClassifyError(err error) dialect.ErrorClass {
	return s.db.ClassifyError(err)
}

// Queues and enqueue.

func (s *skeleton) DeclareQueue(ctx context.Context, tx *sql.Tx, p *dialect.DeclareQueueParams) (*dialect.DeclareQueueResult, error) {
	return s.db.DeclareQueue(ctx, tx, p)
}
func (s *skeleton) LookupQueue(ctx context.Context, q dialect.DBTX, p *dialect.LookupQueueParams) (*dialect.LookupQueueResult, error) {
	return s.db.LookupQueue(ctx, q, p)
}
func (s *skeleton) InsertMessages(ctx context.Context, q dialect.DBTX, p *dialect.InsertMessagesParams) (*dialect.InsertMessagesResult, error) {
	return s.db.InsertMessages(ctx, q, p)
}

// The sequencer. Without Capabilities.SequencePending the core never
// calls SequencePending; it reports dialect.ErrUnsupported.

func (s *skeleton) PendingPartitions(ctx context.Context, q dialect.DBTX, p *dialect.PendingPartitionsParams) (*dialect.PendingPartitionsResult, error) {
	return s.db.PendingPartitions(ctx, q, p)
}
func (s *skeleton) SequencePartitions(ctx context.Context, tx dialect.DBTX, p *dialect.SequencePartitionsParams) (*dialect.SequencePartitionsResult, error) {
	return s.db.SequencePartitions(ctx, tx, p)
}
func (s *skeleton) SequencePending(context.Context, dialect.DBTX, *dialect.SequencePendingParams) (*dialect.SequencePartitionsResult, error) {
	return nil, dialect.ErrUnsupported
}

// The worker: claim, read, acknowledge, dead-letter, release; the vacuum.

func (s *skeleton) ClaimLeases(ctx context.Context, pool dialect.Pool, p *dialect.ClaimLeaseParams) (*dialect.ClaimResult, error) {
	return s.db.ClaimLeases(ctx, pool, p)
}
func (s *skeleton) LockPartition(ctx context.Context, tx *sql.Tx, p *dialect.LockPartitionParams) (*dialect.ClaimResult, error) {
	return s.db.LockPartition(ctx, tx, p)
}
func (s *skeleton) ReadPartitions(ctx context.Context, q dialect.DBTX, p *dialect.ReadPartitionsParams) (*dialect.ReadPartitionsResult, error) {
	return s.db.ReadPartitions(ctx, q, p)
}
func (s *skeleton) UpdateCursors(ctx context.Context, q dialect.DBTX, p *dialect.UpdateCursorsParams) (*dialect.UpdateCursorsResult, error) {
	return s.db.UpdateCursors(ctx, q, p)
}
func (s *skeleton) InsertDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.InsertDeadLettersParams) (*dialect.InsertDeadLettersResult, error) {
	return s.db.InsertDeadLetters(ctx, q, p)
}
func (s *skeleton) ReleaseLeases(ctx context.Context, q dialect.DBTX, p *dialect.ReleaseLeasesParams) (*dialect.ReleaseLeasesResult, error) {
	return s.db.ReleaseLeases(ctx, q, p)
}
func (s *skeleton) Vacuum(ctx context.Context, q dialect.DBTX, p *dialect.VacuumParams) (*dialect.VacuumResult, error) {
	return s.db.Vacuum(ctx, q, p)
}

// Operations: a blocked partition, status, dead letters.

func (s *skeleton) LockCursor(ctx context.Context, tx *sql.Tx, p *dialect.LockCursorParams) (*dialect.LockCursorResult, error) {
	return s.db.LockCursor(ctx, tx, p)
}
func (s *skeleton) QueueStatus(ctx context.Context, q dialect.DBTX, p *dialect.QueueStatusParams) (*dialect.QueueStatusResult, error) {
	return s.db.QueueStatus(ctx, q, p)
}
func (s *skeleton) Stats(ctx context.Context, q dialect.DBTX, p *dialect.StatsParams) (*dialect.StatsResult, error) {
	return s.db.Stats(ctx, q, p)
}
func (s *skeleton) FindDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.FindDeadLettersParams) (*dialect.FindDeadLettersResult, error) {
	return s.db.FindDeadLetters(ctx, q, p)
}
func (s *skeleton) CountDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.FindDeadLettersParams) (*dialect.CountDeadLettersResult, error) {
	return s.db.CountDeadLetters(ctx, q, p)
}
func (s *skeleton) TransitionDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.TransitionDeadLettersParams) (*dialect.TransitionDeadLettersResult, error) {
	return s.db.TransitionDeadLetters(ctx, q, p)
}
func (s *skeleton) RequeueDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.RequeueDeadLettersParams) (*dialect.RequeueDeadLettersResult, error) {
	return s.db.RequeueDeadLetters(ctx, q, p)
}
func (s *skeleton) HoldDeadLetters(ctx context.Context, pool dialect.Pool, p *dialect.HoldDeadLettersParams) (*dialect.HoldDeadLettersResult, error) {
	return s.db.HoldDeadLetters(ctx, pool, p)
}
func (s *skeleton) CleanupDeadLetters(ctx context.Context, q dialect.DBTX, p *dialect.CleanupDeadLettersParams) (*dialect.CleanupDeadLettersResult, error) {
	return s.db.CleanupDeadLetters(ctx, q, p)
}

func skeletonBackend() conformance.Backend {
	return conformance.Backend{
		Name:        "skeleton",
		Dialect:     newSkeleton(""),
		WithPrefix:  func(p string) dialect.Dialect { return newSkeleton(p) },
		NewDatabase: testdb.SQLite,
	}
}

// TestSkeletonContract runs every contract case its capabilities select.
func TestSkeletonContract(t *testing.T) { conformance.RunDialect(t, skeletonBackend()) }

// TestSkeletonConformance runs every conformance case.
func TestSkeletonConformance(t *testing.T) { conformance.Run(t, skeletonBackend()) }
