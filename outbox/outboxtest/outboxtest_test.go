package outboxtest_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/modkit-go/db/internal/testdb"
	"github.com/modkit-go/db/outbox"
	"github.com/modkit-go/db/outbox/outboxtest"
)

// kits returns one kit per backend: SQLite always, PostgreSQL and MariaDB
// when their variables are set (skipped with the variable's name
// otherwise, failed under CI).
func kits(t *testing.T, opts ...outboxtest.Option) map[string]func(t *testing.T) *outboxtest.Kit {
	server := func(env string, with func(string) outboxtest.Option) func(t *testing.T) *outboxtest.Kit {
		return func(t *testing.T) *outboxtest.Kit {
			dsn := testdb.DSN(t, env)
			return outboxtest.New(t, append(slices.Clone(opts), with(dsn))...)
		}
	}
	return map[string]func(t *testing.T) *outboxtest.Kit{
		"sqlite":   func(t *testing.T) *outboxtest.Kit { return outboxtest.New(t, opts...) },
		"postgres": server(testdb.PostgresEnv, outboxtest.WithPostgres),
		"mysql":    server(testdb.MySQLEnv, outboxtest.WithMySQL),
	}
}

func msg(queue string, partition int, payload string) outbox.Message {
	return outbox.Message{Queue: queue, Partition: partition, Payload: []byte(payload), PayloadType: "text/plain"}
}

// Drain delivers everything pending through the registered handlers and
// reports each message's fate: a test needs no sleep. The error-returning
// batch forms map nil, an error and a permanent error to an ack, a retry
// and dead letters, with the error's text as the stored reason.
func TestDrainReportsEveryOutcome(t *testing.T) {
	for name, newKit := range kits(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			kit := newKit(t)
			ctx := context.Background()
			if _, err := kit.DB.ExecContext(ctx, `CREATE TABLE effects (payload VARCHAR(100) NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{"ok", "flaky", "poison", "txok", "txpoison"} {
				kit.Declare(q, 1)
			}
			handle := func(q string, h outbox.Handler) {
				if err := kit.Outbox.Handle(q, h); err != nil {
					t.Fatal(err)
				}
			}
			handle("ok", outbox.BatchE(func(context.Context, []outbox.Delivery) error { return nil }))
			handle("flaky", outbox.BatchE(func(context.Context, []outbox.Delivery) error { return errors.New("downstream timed out") }))
			handle("poison", outbox.BatchE(func(context.Context, []outbox.Delivery) error {
				return fmt.Errorf("decode: %w", outbox.Permanent(errors.New("bad payload")))
			}))
			effect := func(ctx context.Context, tx *sql.Tx, ms []outbox.Delivery) error {
				for _, m := range ms {
					if _, err := tx.ExecContext(ctx, `INSERT INTO effects (payload) VALUES (`+placeholder(name)+`)`, string(m.Payload)); err != nil {
						return err
					}
				}
				return nil
			}
			handle("txok", outbox.TxBatchE(effect))
			handle("txpoison", outbox.TxBatchE(func(ctx context.Context, tx *sql.Tx, ms []outbox.Delivery) error {
				if err := effect(ctx, tx, ms); err != nil {
					return err
				}
				return outbox.Permanent(errors.New("refused"))
			}))
			kit.Enqueue(msg("ok", 0, "a"), msg("ok", 0, "b"), msg("flaky", 0, "c"), msg("flaky", 0, "d"),
				msg("poison", 0, "e"), msg("txok", 0, "f"), msg("txpoison", 0, "g"))

			rep := kit.Drain()
			byQueue := func(ds []outbox.Delivery) map[string][]int64 {
				m := map[string][]int64{}
				for _, d := range ds {
					m[d.Queue] = append(m[d.Queue], d.Seq)
				}
				return m
			}
			if got := byQueue(rep.Delivered); !slices.Equal(got["ok"], []int64{1, 2}) || !slices.Equal(got["txok"], []int64{1}) || len(got) != 2 {
				t.Errorf("delivered %v, want ok 1, 2 and txok 1", got)
			}
			if len(rep.Retried) != 1 || rep.Retried[0].Queue != "flaky" || rep.Retried[0].Seq != 1 || rep.Retried[0].Reason != "downstream timed out" {
				t.Errorf("retried %+v, want flaky's head with the error's text", rep.Retried)
			}
			dead := map[string]string{}
			for _, f := range rep.DeadLettered {
				dead[fmt.Sprintf("%s/%d", f.Queue, f.Seq)] = f.Reason
			}
			if want := map[string]string{"poison/1": "decode: bad payload", "txpoison/1": "refused"}; !mapsEqual(dead, want) {
				t.Errorf("dead-lettered %v, want %v", dead, want)
			}
			var effects []string
			rows, err := kit.DB.QueryContext(ctx, `SELECT payload FROM effects ORDER BY payload`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			for rows.Next() {
				var p string
				if err := rows.Scan(&p); err != nil {
					t.Fatal(err)
				}
				effects = append(effects, p)
			}
			if !slices.Equal(effects, []string{"f"}) {
				t.Errorf("effects %v, want only the acknowledged transactional message's (f)", effects)
			}
			dlPage, err := kit.Outbox.DeadLetterPage(ctx, outbox.DeadLetterFilter{Queue: "poison"})
			dls := dlPage.DeadLetters
			if err != nil || len(dls) != 1 || dls[0].Reason != "decode: bad payload" {
				t.Errorf("poison's dead letters %+v (%v), want one with the error's text", dls, err)
			}
			// The retried partition waits for its backoff: a second drain
			// finds nothing to do.
			if rep := kit.Drain(); len(rep.Delivered)+len(rep.Retried)+len(rep.DeadLettered) != 0 {
				t.Errorf("second drain %+v, want nothing (the retry waits for its backoff)", rep)
			}
		})
	}
}

func placeholder(backend string) string {
	if backend == "postgres" {
		return "$1"
	}
	return "?"
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Messages a handler enqueues while Drain runs are delivered by the same
// Drain, and every partition is delivered in seq order.
func TestDrainDeliversWhatHandlersEnqueue(t *testing.T) {
	for name, newKit := range kits(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			kit := newKit(t)
			kit.Declare("first", 4)
			kit.Declare("second", 1)
			seen := map[int][]int64{}
			if err := kit.Outbox.Handle("first", outbox.TxPerMessage(func(ctx context.Context, tx *sql.Tx, m outbox.Delivery) outbox.Result {
				seen[m.Partition] = append(seen[m.Partition], m.Seq)
				if err := kit.Outbox.Enqueue(ctx, tx, msg("second", 0, string(m.Payload))); err != nil {
					return outbox.Retry(err.Error())
				}
				return outbox.Success()
			})); err != nil {
				t.Fatal(err)
			}
			var second int
			if err := kit.Outbox.Handle("second", outbox.PerMessage(func(context.Context, outbox.Delivery) outbox.Result {
				second++
				return outbox.Success()
			})); err != nil {
				t.Fatal(err)
			}
			var batch []outbox.Message
			for i := range 40 {
				batch = append(batch, msg("first", i%4, fmt.Sprint(i)))
			}
			kit.Enqueue(batch...)
			rep := kit.Drain()
			if len(rep.Delivered) != 80 || second != 40 {
				t.Fatalf("delivered %d (second queue %d), want 80 (40)", len(rep.Delivered), second)
			}
			for p, s := range seen {
				if want := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}; !slices.Equal(s, want) {
					t.Errorf("partition %d delivered %v, want %v", p, s, want)
				}
			}
		})
	}
}

// AssertEnqueued passes for a message the transaction enqueued, and fails,
// listing what was enqueued, for one it did not (another payload,
// partition or header) or for another transaction.
func TestAssertEnqueued(t *testing.T) {
	kit := outboxtest.New(t)
	kit.Declare("orders", 2)
	ctx := context.Background()
	tx, err := kit.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	m := msg("orders", 1, "o-1")
	m.Headers = map[string]string{"tenant": "acme", "v": "2"}
	if err := kit.Outbox.Enqueue(ctx, tx, m); err != nil {
		t.Fatal(err)
	}
	m.Payload[0] = 'X' // the kit keeps a copy
	ok := &recorder{}
	kit.AssertEnqueued(ok, tx, outbox.Message{Queue: "orders", Partition: 1, Payload: []byte("o-1"), PayloadType: "text/plain",
		Headers: map[string]string{"tenant": "acme"}})
	if ok.failed {
		t.Errorf("AssertEnqueued failed for the enqueued message: %s", ok.msg)
	}
	for name, want := range map[string]outbox.Message{
		"payload":   msg("orders", 1, "o-2"),
		"partition": msg("orders", 0, "o-1"),
		"header":    {Queue: "orders", Partition: 1, Payload: []byte("o-1"), PayloadType: "text/plain", Headers: map[string]string{"tenant": "other"}},
	} {
		r := &recorder{}
		kit.AssertEnqueued(r, tx, want)
		if !r.failed {
			t.Errorf("%s: AssertEnqueued passed", name)
		}
		if !strings.Contains(r.msg, `Payload: "o-1"`) {
			t.Errorf("%s: message %q does not list what was enqueued", name, r.msg)
		}
	}
	if err := tx.Rollback(); err != nil { // SQLite: one connection
		t.Fatal(err)
	}
	other, err := kit.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Rollback() }()
	r := &recorder{}
	kit.AssertEnqueued(r, other, msg("orders", 1, "o-1"))
	if !r.failed || !strings.Contains(r.msg, "enqueued: nothing") {
		t.Errorf("another transaction: failed %v, message %q; want a failure saying it enqueued nothing", r.failed, r.msg)
	}
}

// recorder is a testing.TB that records a failure instead of failing.
type recorder struct {
	testing.TB
	failed bool
	msg    string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
}

// Drain refuses a started Outbox (its workers would take the messages
// away from the report) and Start waits for nothing: it is refused while
// Drain runs.
func TestDrainRefusesAStartedOutbox(t *testing.T) {
	kit := outboxtest.New(t)
	kit.Declare("q", 1)
	started := make(chan error, 1)
	if err := kit.Outbox.Handle("q", outbox.PerMessage(func(ctx context.Context, _ outbox.Delivery) outbox.Result {
		started <- kit.Outbox.Start(ctx)
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	kit.Enqueue(msg("q", 0, "x"))
	if _, err := kit.Outbox.DeliverAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-started; !errors.Is(err, outbox.ErrAlreadyStarted) {
		t.Errorf("Start during DeliverAll: %v, want ErrAlreadyStarted", err)
	}
	if err := kit.Outbox.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := kit.Outbox.DeliverAll(context.Background()); !errors.Is(err, outbox.ErrAlreadyStarted) {
		t.Errorf("DeliverAll on a started Outbox: %v, want ErrAlreadyStarted", err)
	}
	if err := kit.Outbox.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := kit.Outbox.DeliverAll(context.Background()); !errors.Is(err, outbox.ErrStopped) {
		t.Errorf("DeliverAll after Stop: %v, want ErrStopped", err)
	}
}
