package outbox

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/modkit-go/db/dialect"
)

var (
	// ErrDeadLetterNotFound is returned (inside a DeadLetterConflictError)
	// when a dead-letter id names no row.
	ErrDeadLetterNotFound = errors.New("outbox: dead letter not found")
	// ErrStatusConflict is returned (inside a DeadLetterConflictError)
	// when a dead letter's status, or for a held one its hold, did not
	// allow the operation: another operator acted on it first, or a replay
	// hold expired.
	ErrStatusConflict = errors.New("outbox: dead letter status conflict")
)

// DeadLetterConflictError reports the ids that stopped a dead-letter
// operation; the operation changed nothing. It matches
// ErrDeadLetterNotFound when Missing is not empty and ErrStatusConflict
// when Refused is not empty.
type DeadLetterConflictError struct {
	Op      string  // "requeue", "discard", "resolve" or "return"
	Missing []int64 // ids of no dead letter
	Refused []int64 // ids whose status or hold did not allow Op
}

// Error names the operation and the ids.
func (e *DeadLetterConflictError) Error() string {
	var parts []string
	if len(e.Missing) > 0 {
		parts = append(parts, fmt.Sprintf("%v not found", e.Missing))
	}
	if len(e.Refused) > 0 {
		parts = append(parts, fmt.Sprintf("%v not in a status that allows it", e.Refused))
	}
	return fmt.Sprintf("outbox: %s dead letters: %s; nothing changed", e.Op, strings.Join(parts, ", "))
}

// Is matches ErrDeadLetterNotFound and ErrStatusConflict (see the type).
func (e *DeadLetterConflictError) Is(target error) bool {
	return target == ErrDeadLetterNotFound && len(e.Missing) > 0 || target == ErrStatusConflict && len(e.Refused) > 0
}

// DeadLetterPage is one page of a dead-letter listing.
type DeadLetterPage struct {
	// DeadLetters, newest first (failure time, then id, descending).
	DeadLetters []DeadLetter
	// Next continues the listing as DeadLetterFilter.After; empty when
	// the page is not full (a full last page leads to an empty one).
	Next string
}

// params validates f and turns it into the dialect's filter.
func (f *DeadLetterFilter) params() (*dialect.FindDeadLettersParams, error) {
	if f.Queue != "" && !ValidQueueName(f.Queue) {
		return nil, invalid(-1, "Queue", ErrInvalidQueueName, "%q", truncate(f.Queue))
	}
	if f.Status != "" && !slices.Contains(DeadLetterStatuses, f.Status) {
		return nil, invalid(-1, "Status", ErrInvalidFilter, "%q is not one of %v", truncate(f.Status), DeadLetterStatuses)
	}
	if f.Partition != nil && (*f.Partition < 0 || *f.Partition >= MaxPartitions) {
		return nil, invalid(-1, "Partition", ErrInvalidFilter, "%d is not in 0..%d", *f.Partition, MaxPartitions-1)
	}
	if f.PayloadType != "" && !ValidPayloadType(f.PayloadType) {
		return nil, invalid(-1, "PayloadType", ErrInvalidFilter, "%q is not a valid payload type", truncate(f.PayloadType))
	}
	from, before := f.FailedFrom.Truncate(time.Microsecond), f.FailedBefore.Truncate(time.Microsecond)
	if !from.IsZero() && !before.IsZero() && !from.Before(before) {
		return nil, invalid(-1, "FailedBefore", ErrInvalidFilter, "%v is not after FailedFrom %v", before, from)
	}
	limit := f.Limit
	if limit == 0 {
		limit = 100
	}
	if limit < 1 || limit > MaxDeadLetterLimit {
		return nil, invalid(-1, "Limit", ErrInvalidFilter, "%d is not in 1..%d", f.Limit, MaxDeadLetterLimit)
	}
	p := &dialect.FindDeadLettersParams{
		Queue: f.Queue, Partition: f.Partition, PayloadType: f.PayloadType, Status: f.Status,
		FailedFrom: from, FailedBefore: before, Limit: limit,
	}
	if f.After != "" {
		var ok bool
		if p.AfterFailedAt, p.AfterID, ok = decodePageToken(f.After); !ok {
			return nil, invalid(-1, "After", ErrInvalidFilter, "%q is not a page token this package made", truncate(f.After))
		}
	}
	return p, nil
}

// A page token is the last row's failure time (microseconds) and id; opaque
// to callers, so its form may change.
const pageTokenVersion = "d1"

func encodePageToken(failedAt time.Time, id int64) string {
	raw := pageTokenVersion + "." + strconv.FormatInt(failedAt.UnixMicro(), 10) + "." + strconv.FormatInt(id, 10)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodePageToken(s string) (time.Time, int64, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return time.Time{}, 0, false
	}
	parts := strings.Split(string(raw), ".")
	if len(parts) != 3 || parts[0] != pageTokenVersion {
		return time.Time{}, 0, false
	}
	us, err1 := strconv.ParseInt(parts[1], 10, 64)
	id, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || id <= 0 {
		return time.Time{}, 0, false
	}
	return time.UnixMicro(us).UTC(), id, true
}

// DeadLetterPage lists one page of the dead letters f selects, newest
// first; pass the page's Next as f.After for the next one. Pages neither
// repeat nor skip a row, even among rows that failed at the same instant,
// while rows are added (a new row is newer than the page token, so it shows on
// a new listing, not on a later page). An invalid filter is rejected before
// the database is asked: a bad Queue wraps ErrInvalidQueueName, any other
// bad field ErrInvalidFilter.
func (o *Outbox) DeadLetterPage(ctx context.Context, f DeadLetterFilter) (DeadLetterPage, error) {
	p, err := f.params()
	if err != nil {
		return DeadLetterPage{}, err
	}
	r, err := o.d.FindDeadLetters(ctx, o.db, p)
	if err != nil {
		return DeadLetterPage{}, cmp.Or(o.wrongDatabase(err), fmt.Errorf("outbox: dead letters: %w", err))
	}
	page := DeadLetterPage{DeadLetters: deadLetters(r.DeadLetters)}
	if n := len(r.DeadLetters); n == p.Limit {
		last := r.DeadLetters[n-1]
		page.Next = encodePageToken(last.FailedAt, last.ID)
	}
	return page, nil
}

// CountDeadLetters counts the dead letters f selects (f.Limit and f.After
// are ignored), with DeadLetterPage's validation and errors.
func (o *Outbox) CountDeadLetters(ctx context.Context, f DeadLetterFilter) (int64, error) {
	f.Limit, f.After = 0, ""
	p, err := f.params()
	if err != nil {
		return 0, err
	}
	r, err := o.d.CountDeadLetters(ctx, o.db, p)
	if err != nil {
		return 0, fmt.Errorf("outbox: count dead letters: %w", err)
	}
	return r.Count, nil
}

// deadLetters converts the dialect's rows.
func deadLetters(in []dialect.DeadLetter) []DeadLetter {
	out := make([]DeadLetter, len(in))
	for i, d := range in {
		out[i] = DeadLetter{
			ID: d.ID, Queue: d.Queue, Partition: d.Partition, Seq: d.Seq, Payload: d.Payload,
			PayloadType: d.PayloadType, CreatedAt: d.CreatedAt, FailedAt: d.FailedAt,
			Attempts: d.Attempts, Reason: d.LastError, Status: d.Status,
			Deadline: d.Deadline, CompletedAt: d.CompletedAt, MessageID: formatID(d.MessageID), Key: d.Key,
		}
		if len(d.Headers) > 0 {
			_ = json.Unmarshal(d.Headers, &out[i].Headers)
		}
	}
	return out
}

// ids validates and de-duplicates the ids of an operation, keeping their
// first order.
func ids(in []int64) ([]int64, error) {
	if len(in) == 0 || len(in) > MaxDeadLetterLimit {
		return nil, invalid(-1, "IDs", ErrInvalidFilter, "%d ids, want 1..%d", len(in), MaxDeadLetterLimit)
	}
	seen := make(map[int64]bool, len(in))
	out := make([]int64, 0, len(in))
	for _, id := range in {
		if id <= 0 {
			return nil, invalid(-1, "IDs", ErrInvalidFilter, "%d is not a dead-letter id", id)
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}

// transition runs one guarded status change of the dialect in a pipeline
// transaction, committed only when every id changed.
func (o *Outbox) transition(ctx context.Context, what string, ids []int64,
	fn func(tx *sql.Tx) (*dialect.TransitionDeadLettersResult, error),
) (int, error) {
	var n int
	err := o.withTx(ctx, func(tx *sql.Tx) error {
		r, err := fn(tx)
		if err != nil {
			return err
		}
		if r.Changed != len(ids) {
			return &DeadLetterConflictError{Op: what, Missing: r.Missing, Refused: r.Refused}
		}
		n = r.Changed
		return nil
	})
	var conflict *DeadLetterConflictError
	switch {
	case err == nil:
		return n, nil
	case errors.As(err, &conflict):
		return 0, conflict
	case errors.Is(err, dialect.ErrQueueNotFound):
		return 0, invalid(-1, "IDs", ErrUnknownQueue, "a dead letter names a partition that no longer exists (%v)", err)
	}
	return 0, cmp.Or(o.wrongDatabase(err), fmt.Errorf("outbox: %s dead letters: %w", what, err))
}

// RequeueDeadLetters puts pending dead letters back into their queues as
// new messages, in their original order within each partition (after
// whatever the partition already holds), and marks them resolved, in one
// transaction: all of them or none. It returns how many it requeued, and
// wakes the workers. It fails, changing nothing, with a
// *DeadLetterConflictError when an id names no dead letter
// (ErrDeadLetterNotFound) or one that is not pending (ErrStatusConflict:
// already requeued, discarded or held for replay; of two concurrent
// calls on one row exactly one succeeds), with ErrUnknownQueue when a
// partition no longer exists, and with ErrInvalidFilter for no ids, more
// than MaxDeadLetterLimit or an id below 1. Duplicate ids count once.
func (o *Outbox) RequeueDeadLetters(ctx context.Context, idList []int64) (int, error) {
	list, err := ids(idList)
	if err != nil {
		return 0, err
	}
	n, err := o.transition(ctx, "requeue", list, func(tx *sql.Tx) (*dialect.TransitionDeadLettersResult, error) {
		r, err := o.d.RequeueDeadLetters(ctx, tx, &dialect.RequeueDeadLettersParams{IDs: list})
		if err != nil {
			return nil, err
		}
		if r.Changed != len(list) {
			return &r.TransitionDeadLettersResult, nil
		}
		// The messages again, in the transaction that marked them.
		ins, err := o.d.InsertMessages(ctx, tx, &dialect.InsertMessagesParams{Rows: r.Rows})
		if err == nil && ins.Inserted != len(r.Rows) {
			err = fmt.Errorf("%w: %d of %d requeued rows inserted", dialect.ErrQueueNotFound, ins.Inserted, len(r.Rows))
		}
		return &r.TransitionDeadLettersResult, err
	})
	if err == nil {
		o.Notify()
	}
	return n, err
}

// DiscardDeadLetters marks pending dead letters discarded: they stay
// listed until CleanupDeadLetters deletes them, and are never delivered.
// All or nothing, with RequeueDeadLetters' errors.
func (o *Outbox) DiscardDeadLetters(ctx context.Context, idList []int64) (int, error) {
	list, err := ids(idList)
	if err != nil {
		return 0, err
	}
	return o.transition(ctx, "discard", list, func(tx *sql.Tx) (*dialect.TransitionDeadLettersResult, error) {
		return o.d.TransitionDeadLetters(ctx, tx, &dialect.TransitionDeadLettersParams{
			IDs: list, From: dialect.StatusPending, To: dialect.StatusDiscarded,
		})
	})
}

// CleanupDeadLetters deletes resolved and discarded dead letters that
// were completed at least olderThan ago (database time), batch rows per
// statement, until a batch comes up short or ctx ends; it never deletes a
// pending or reprocessing row. It returns how many it deleted.
// olderThan must be >= 0 and batch in 1..MaxDeadLetterLimit
// (ErrInvalidFilter).
func (o *Outbox) CleanupDeadLetters(ctx context.Context, olderThan time.Duration, batch int) (int, error) {
	if olderThan < 0 {
		return 0, invalid(-1, "OlderThan", ErrInvalidFilter, "%v is negative", olderThan)
	}
	if batch < 1 || batch > MaxDeadLetterLimit {
		return 0, invalid(-1, "Batch", ErrInvalidFilter, "%d is not in 1..%d", batch, MaxDeadLetterLimit)
	}
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		r, err := o.d.CleanupDeadLetters(ctx, o.db, &dialect.CleanupDeadLettersParams{OlderThan: olderThan, Limit: batch})
		if err != nil {
			return total, fmt.Errorf("outbox: clean up dead letters: %w", err)
		}
		total += r.Deleted
		if r.Deleted < batch {
			return total, nil
		}
	}
}

// DeadLetterHold is a replay hold: dead letters held by one tool until
// Deadline. Resolve or return each with the hold's Token.
type DeadLetterHold struct {
	// DeadLetters held, oldest id first; empty when none was holdable.
	DeadLetters []DeadLetter
	// Token fences ResolveDeadLetter and ReturnDeadLetter: they act only
	// while this hold has the row.
	Token string
	// Deadline is when the hold ends (database time): from then on
	// another HoldDeadLetters may take the rows, and this hold's Token
	// no longer acts on them.
	Deadline time.Time
}

const tokenVersion = "c1"

// HoldDeadLetters holds up to n dead letters of queue (of every queue
// when empty) for replay by a tool that processes them itself: pending
// ones, and reprocessing ones whose hold expired, oldest id first. They
// become reprocessing until now()+hold; two concurrent holds never get
// the same row, and rows another transaction holds are skipped, not
// waited for. The tool then calls ResolveDeadLetter or ReturnDeadLetter
// for each. n must be in 1..MaxDeadLetterLimit and hold positive
// (ErrInvalidFilter); a bad queue name wraps ErrInvalidQueueName.
func (o *Outbox) HoldDeadLetters(ctx context.Context, queue string, n int, hold time.Duration) (DeadLetterHold, error) {
	if queue != "" && !ValidQueueName(queue) {
		return DeadLetterHold{}, invalid(-1, "Queue", ErrInvalidQueueName, "%q", truncate(queue))
	}
	if n < 1 || n > MaxDeadLetterLimit {
		return DeadLetterHold{}, invalid(-1, "N", ErrInvalidFilter, "%d is not in 1..%d", n, MaxDeadLetterLimit)
	}
	if hold < time.Microsecond {
		return DeadLetterHold{}, invalid(-1, "Hold", ErrInvalidFilter, "%v is not positive", hold)
	}
	r, err := o.d.HoldDeadLetters(ctx, o.pool(), &dialect.HoldDeadLettersParams{Queue: queue, Limit: n, For: hold})
	if err != nil {
		return DeadLetterHold{}, fmt.Errorf("outbox: hold dead letters: %w", err)
	}
	return DeadLetterHold{DeadLetters: deadLetters(r.DeadLetters), Token: encodeToken(r.Deadline), Deadline: r.Deadline}, nil
}

// A hold token is its deadline (microseconds, as stored): the guard of
// Resolve and Return compares it with the row's. Opaque to callers.
func encodeToken(deadline time.Time) string {
	raw := tokenVersion + "." + strconv.FormatInt(deadline.UnixMicro(), 10)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodeToken(s string) (time.Time, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	v, us, ok := strings.Cut(string(raw), ".")
	n, perr := strconv.ParseInt(us, 10, 64)
	if err != nil || !ok || v != tokenVersion || perr != nil {
		return time.Time{}, invalid(-1, "Token", ErrInvalidFilter, "%q is not a hold token", truncate(s))
	}
	return time.UnixMicro(n).UTC(), nil
}

// ResolveDeadLetter marks a held dead letter resolved: the tool has
// dealt with it. It fails with a *DeadLetterConflictError when the row
// does not exist (ErrDeadLetterNotFound) or token's hold no longer has
// it (ErrStatusConflict: the deadline passed, or it was resolved or
// returned already), and with ErrInvalidFilter for a malformed token.
func (o *Outbox) ResolveDeadLetter(ctx context.Context, token string, id int64) error {
	return o.settle(ctx, "resolve", token, id, dialect.StatusResolved, "")
}

// ReturnDeadLetter gives a held dead letter back: it becomes pending
// again with reason as its reason and one more attempt, for a later hold
// or an operator. It fails like ResolveDeadLetter.
func (o *Outbox) ReturnDeadLetter(ctx context.Context, token string, id int64, reason string) error {
	return o.settle(ctx, "return", token, id, dialect.StatusPending, sanitizeReason(reason))
}

func (o *Outbox) settle(ctx context.Context, what, token string, id int64, to, reason string) error {
	deadline, err := decodeToken(token)
	if err != nil {
		return err
	}
	list, err := ids([]int64{id})
	if err != nil {
		return err
	}
	_, err = o.transition(ctx, what, list, func(tx *sql.Tx) (*dialect.TransitionDeadLettersResult, error) {
		return o.d.TransitionDeadLetters(ctx, tx, &dialect.TransitionDeadLettersParams{
			IDs: list, From: dialect.StatusReprocessing, To: to, Deadline: deadline, Reason: reason,
		})
	})
	return err
}

// DeadLetter is a message that was rejected, by its handler or by
// MaxAttempts, with a copy of its payload.
type DeadLetter struct {
	ID          int64
	Queue       string
	Partition   int
	Seq         int64
	Payload     []byte
	PayloadType string
	Headers     map[string]string
	CreatedAt   time.Time
	FailedAt    time.Time
	Attempts    int
	Reason      string
	// Status is "pending" when written; see "Dead letters" in the package
	// documentation for the others.
	Status string
	// Deadline is a reprocessing row's hold deadline; CompletedAt is when
	// the row became resolved or discarded. Zero otherwise.
	Deadline, CompletedAt time.Time
	// MessageID and Key are the message's (Delivery.ID and Key); a requeue
	// keeps both.
	MessageID, Key string
}

// DeadLetterFilter selects dead letters. Zero fields match everything.
type DeadLetterFilter struct {
	// Queue, when set, is a valid queue name.
	Queue string
	// Status, when set, is one of DeadLetterStatuses.
	Status string
	// Limit is 1..MaxDeadLetterLimit; 0 means 100. Count ignores it.
	Limit int
	// Partition, when set, is in 0..MaxPartitions-1.
	Partition *int
	// PayloadType, when set, is a valid payload type.
	PayloadType string
	// FailedFrom (inclusive) and FailedBefore (exclusive), when set, bound
	// the failure time (microseconds; finer parts are cut).
	FailedFrom, FailedBefore time.Time
	// After continues a listing: a DeadLetterPage's Next. Count ignores it.
	After string
}

// DeadLetterStatuses are the statuses a dead letter can have.
var DeadLetterStatuses = []string{"pending", "reprocessing", "resolved", "discarded"}

// MaxDeadLetterLimit is the largest DeadLetterFilter.Limit.
const MaxDeadLetterLimit = 10000
