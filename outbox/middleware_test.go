package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/modkit-go/db/internal/testdb"
	"github.com/modkit-go/db/outbox"
	"github.com/modkit-go/db/outbox/outboxtest"
)

// newKit returns a test kit on backend: SQLite, or the server named by its
// variable (skipped with the variable's name when unset, failed under CI).
func newKit(t *testing.T, backend string, opts ...outboxtest.Option) *outboxtest.Kit {
	switch backend {
	case "postgres":
		return outboxtest.New(t, append(opts, outboxtest.WithPostgres(testdb.DSN(t, testdb.PostgresEnv)))...)
	case "mysql":
		return outboxtest.New(t, append(opts, outboxtest.WithMySQL(testdb.DSN(t, testdb.MySQLEnv)))...)
	}
	return outboxtest.New(t, opts...)
}

// seen is one call as a middleware saw it.
type seen struct {
	seqs   []int64
	withTx bool
	next   string // the wrapped handler's result
	gave   string // the middleware's result
}

// A middleware sees every call of each handler kind (its messages, the
// transaction in transactional mode, the handler's result), and the result
// it returns is the one applied: here it rejects seq 2 of the per-message
// kinds and every batch, although the handler succeeded. In transactional
// mode the rejection undoes the handler's writes for those messages.
func TestMiddlewareSeesEveryCallAndItsResultApplies(t *testing.T) {
	kinds := []struct {
		name     string
		perMsg   bool
		tx       bool
		delivers []int64 // seqs the middleware lets through
	}{
		{"PerMessage", true, false, []int64{1, 3}},
		{"TxPerMessage", true, true, []int64{1, 3}},
		{"Batch", false, false, nil},
		{"TxBatch", false, true, nil},
	}
	for _, backend := range []string{"sqlite", "postgres", "mysql"} {
		for _, k := range kinds {
			t.Run(backend+"/"+k.name, func(t *testing.T) {
				t.Parallel()
				kit := newKit(t, backend)
				ctx := context.Background()
				if _, err := kit.DB.ExecContext(ctx, `CREATE TABLE effects (seq INTEGER NOT NULL)`); err != nil {
					t.Fatal(err)
				}
				kit.Declare("q", 1)
				insert := `INSERT INTO effects (seq) VALUES (?)`
				if backend == "postgres" {
					insert = `INSERT INTO effects (seq) VALUES ($1)`
				}
				var handled []int64
				write := func(ctx context.Context, tx *sql.Tx, ms []outbox.Delivery) outbox.Result {
					for _, m := range ms {
						handled = append(handled, m.Seq)
						if tx == nil {
							continue
						}
						if _, err := tx.ExecContext(ctx, insert, m.Seq); err != nil {
							return outbox.Retry(err.Error())
						}
					}
					return outbox.Success()
				}
				var h outbox.Handler
				switch {
				case k.perMsg && k.tx:
					h = outbox.TxPerMessage(func(ctx context.Context, tx *sql.Tx, m outbox.Delivery) outbox.Result {
						return write(ctx, tx, []outbox.Delivery{m})
					})
				case k.perMsg:
					h = outbox.PerMessage(func(ctx context.Context, m outbox.Delivery) outbox.Result {
						return write(ctx, nil, []outbox.Delivery{m})
					})
				case k.tx:
					h = outbox.TxBatch(write)
				default:
					h = outbox.Batch(func(ctx context.Context, ms []outbox.Delivery) outbox.Result { return write(ctx, nil, ms) })
				}
				var mu sync.Mutex
				var calls []seen
				mw := func(next outbox.CallFunc) outbox.CallFunc {
					return func(ctx context.Context, c outbox.Call) outbox.Result {
						r := next(ctx, c)
						s := seen{withTx: c.Tx != nil, next: r.String()}
						for _, m := range c.Messages {
							s.seqs = append(s.seqs, m.Seq)
						}
						if !k.perMsg || c.Messages[0].Seq == 2 {
							r = outbox.Reject("middleware says no")
						}
						s.gave = r.String()
						mu.Lock()
						calls = append(calls, s)
						mu.Unlock()
						return r
					}
				}
				if err := kit.Outbox.Handle("q", outbox.Wrap(h, mw)); err != nil {
					t.Fatal(err)
				}
				kit.Enqueue(msgs("q", 3)...)
				rep := kit.Drain()

				var want []seen
				if k.perMsg {
					for seq := int64(1); seq <= 3; seq++ {
						gave := "success"
						if seq == 2 {
							gave = "reject: middleware says no"
						}
						want = append(want, seen{seqs: []int64{seq}, withTx: k.tx, next: "success", gave: gave})
					}
				} else {
					want = []seen{{seqs: []int64{1, 2, 3}, withTx: k.tx, next: "success", gave: "reject: middleware says no"}}
				}
				if fmt.Sprint(calls) != fmt.Sprint(want) {
					t.Errorf("the middleware saw %+v, want %+v", calls, want)
				}
				if !slices.Equal(handled, []int64{1, 2, 3}) {
					t.Errorf("the handler saw %v, want every message once", handled)
				}
				var delivered, dead []int64
				for _, d := range rep.Delivered {
					delivered = append(delivered, d.Seq)
				}
				for _, f := range rep.DeadLettered {
					dead = append(dead, f.Seq)
					if f.Reason != "middleware says no" {
						t.Errorf("dead letter %d's reason %q, want the middleware's", f.Seq, f.Reason)
					}
				}
				wantDead := []int64{2}
				if !k.perMsg {
					wantDead = []int64{1, 2, 3}
				}
				if !slices.Equal(delivered, k.delivers) || !slices.Equal(dead, wantDead) {
					t.Errorf("delivered %v, dead-lettered %v; want %v and %v", delivered, dead, k.delivers, wantDead)
				}
				if k.tx {
					var effects []int64
					rows, err := kit.DB.QueryContext(ctx, `SELECT seq FROM effects ORDER BY seq`)
					if err != nil {
						t.Fatal(err)
					}
					defer rows.Close()
					for rows.Next() {
						var s int64
						if err := rows.Scan(&s); err != nil {
							t.Fatal(err)
						}
						effects = append(effects, s)
					}
					if !slices.Equal(effects, k.delivers) {
						t.Errorf("effects %v, want those of the acknowledged messages %v", effects, k.delivers)
					}
				}
			})
		}
	}
}

func msgs(queue string, n int) []outbox.Message {
	var out []outbox.Message
	for i := range n {
		out = append(out, outbox.Message{Queue: queue, Payload: fmt.Appendf(nil, "m%d", i+1), PayloadType: "text/plain"})
	}
	return out
}

// Wrap(h, a, b) runs a, then b, then h; nil middlewares are skipped, and a
// middleware's Retry undoes nothing it should not: the message is retried.
func TestWrapOrder(t *testing.T) {
	kit := outboxtest.New(t)
	kit.Declare("q", 1)
	var order []string
	named := func(name string) outbox.Middleware {
		return func(next outbox.CallFunc) outbox.CallFunc {
			return func(ctx context.Context, c outbox.Call) outbox.Result {
				order = append(order, name+" in")
				r := next(ctx, c)
				order = append(order, name+" out")
				return r
			}
		}
	}
	h := outbox.PerMessageE(func(context.Context, outbox.Delivery) error {
		order = append(order, "handler")
		return errors.New("not yet")
	})
	if err := kit.Outbox.Handle("q", outbox.Wrap(h, named("a"), nil, named("b"))); err != nil {
		t.Fatal(err)
	}
	kit.Enqueue(msgs("q", 2)...)
	rep := kit.Drain()
	if want := []string{"a in", "b in", "handler", "b out", "a out"}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	if len(rep.Retried) != 1 || rep.Retried[0].Seq != 1 || rep.Retried[0].Reason != "not yet" || len(rep.Delivered) != 0 {
		t.Errorf("report %+v, want seq 1 retried with the error's text and nothing delivered", rep)
	}
	if outbox.Wrap(nil, named("a")) != nil {
		t.Error("Wrap(nil) is not nil")
	}
	if err := kit.Outbox.Handle("r", outbox.Wrap(outbox.Batch(nil), named("a"))); !errors.Is(err, outbox.ErrInvalidHandler) {
		t.Errorf("Handle(Wrap(Batch(nil))): %v, want ErrInvalidHandler", err)
	}
}

// FromError maps nil to Success, a permanent error (wrapped or not) to
// Reject and any other error to Retry, each with the error's text.
func TestFromError(t *testing.T) {
	base := errors.New("boom")
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, "success"},
		{base, "retry: boom"},
		{outbox.Permanent(base), "reject: boom"},
		{fmt.Errorf("charge: %w", outbox.Permanent(base)), "reject: charge: boom"},
		{errors.Join(errors.New("a"), outbox.Permanent(base)), "reject: a\nboom"},
		{context.Canceled, "retry: context canceled"},
	} {
		if got := outbox.FromError(c.err).String(); got != c.want {
			t.Errorf("FromError(%v) = %q, want %q", c.err, got, c.want)
		}
	}
	if outbox.Permanent(nil) != nil {
		t.Error("Permanent(nil) is not nil")
	}
	var pe *outbox.PermanentError
	if err := fmt.Errorf("x: %w", outbox.Permanent(base)); !errors.As(err, &pe) || !errors.Is(err, base) {
		t.Errorf("a wrapped permanent error is not found by errors.As, or hides its cause")
	}
}
