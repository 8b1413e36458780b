// Package relaytest runs relay tests on every database backend and checks
// what a broker stored: every message present, in seq order per partition,
// with no gap, duplicates counted.
package relaytest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/mysql"
	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/internal/testdb"
	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
)

// Environment variables naming the brokers' URLs.
const (
	NATSEnv  = "OUTBOX_TEST_NATS_URL"
	AMQPEnv  = "OUTBOX_TEST_AMQP_URL"
	RedisEnv = "OUTBOX_TEST_REDIS_URL"
)

// URL returns the broker URL in env. When it is empty the test is skipped
// with a message naming env, or fails when CI is set.
func URL(t testing.TB, env string) string {
	t.Helper()
	u := os.Getenv(env)
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set and CI is: this broker must run in CI", env)
		}
		t.Skipf("broker test skipped: set %s to run it (see .ci/run)", env)
	}
	return u
}

// Env is one test's database.
type Env struct {
	// Name is the dialect's name for outboxctl and outbox-relay
	// (postgres, mysql, sqlite); DSN opens the test's database.
	Name, DSN string
	DB        *sql.DB
	Dialect   dialect.Dialect
}

// ForEachBackend runs fn as a parallel subtest per backend: PostgreSQL and
// MariaDB (skipped, naming their variables, when unset) and SQLite, each
// on a fresh, migrated database.
func ForEachBackend(t *testing.T, fn func(t *testing.T, e Env)) {
	t.Helper()
	for _, name := range []string{"postgres", "mysql", "sqlite"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := Open(t, name)
			fn(t, e)
		})
	}
}

// Open opens a fresh, migrated database of the named backend.
func Open(t testing.TB, name string) Env {
	t.Helper()
	var e Env
	var schema dialect.Schema
	switch name {
	case "postgres":
		open, dsn := testdb.PostgresDSN(t)
		d := postgres.New()
		e, schema = Env{Name: name, DSN: dsn, DB: open(), Dialect: d}, d
	case "mysql":
		open, dsn := testdb.MySQLDSN(t)
		d := mysql.New()
		e, schema = Env{Name: name, DSN: dsn, DB: open(), Dialect: d}, d
	case "sqlite":
		dsn := testdb.SQLiteDSN(filepath.Join(t.TempDir(), "outbox.db"))
		db, err := sql.Open("sqlite", dsn)
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		t.Cleanup(func() { _ = db.Close() })
		d := sqlite.New()
		e, schema = Env{Name: name, DSN: dsn, DB: db, Dialect: d}, d
	default:
		t.Fatalf("unknown backend %q", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := migrations.Up(ctx, e.DB, schema); err != nil {
		t.Fatalf("%s: migrate: %v", name, err)
	}
	return e
}

// Outbox returns an Outbox over e with quick polls and retries (cfg's
// non-zero fields win), queue declared with the given partitions. The
// test stops it at its end if it was started.
func Outbox(t testing.TB, e Env, cfg outbox.Config, queue string, partitions int) *outbox.Outbox {
	t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	if cfg.RetryBase == 0 {
		cfg.RetryBase, cfg.RetryMax = 10*time.Millisecond, 100*time.Millisecond
	}
	ob, err := outbox.New(e.DB, e.Dialect, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.DeclareQueue(context.Background(), queue, partitions); err != nil {
		t.Fatal(err)
	}
	return ob
}

// Produce enqueues n messages spread round-robin over partitions, in
// transactions of up to 100. Message i has payload "i" and header "n" = i.
func Produce(t testing.TB, ob *outbox.Outbox, queue string, partitions, n int) {
	t.Helper()
	ctx := context.Background()
	for start := 0; start < n; start += 100 {
		err := ob.InTx(ctx, func(tx *sql.Tx) error {
			msgs := make([]outbox.Message, 0, 100)
			for i := start; i < min(start+100, n); i++ {
				msgs = append(msgs, outbox.Message{
					Queue: queue, Partition: i % partitions, Payload: []byte(strconv.Itoa(i)),
					PayloadType: "text/plain", Headers: map[string]string{"n": strconv.Itoa(i)},
				})
			}
			return ob.EnqueueBatch(ctx, tx, msgs)
		})
		if err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
}

// WaitDrained waits (up to timeout) until queue has no backlog.
func WaitDrained(t testing.TB, ob *outbox.Outbox, queue string, timeout time.Duration) outbox.QueueStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		qs, err := ob.QueueStatus(context.Background(), queue)
		if err == nil && qs.Backlog == 0 {
			return qs
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %s not drained after %v: %+v (err %v)", queue, timeout, qs, err)
		}
		time.Sleep(10 * time.Millisecond) // polling an observable condition
	}
}

// Stored is one message as read back from the broker.
type Stored struct {
	Partition int
	Seq       int64
	ID        string
}

// Counts is what Check found.
type Counts struct {
	Sent, Stored, Distinct, Duplicates int
}

func (c Counts) String() string {
	return fmt.Sprintf("sent %d, stored %d (%d distinct, %d duplicates), order per partition checked", c.Sent, c.Stored, c.Distinct, c.Duplicates)
}

// Check verifies what the broker stored, in the broker's order, against
// want (partition → messages sent): every seq 1..want[p] is present; each
// stored message is either the partition's next seq or a copy of one
// already stored (nothing stored ahead of an earlier message); and a
// message's ID is the same in every copy and unique across messages.
func Check(t testing.TB, got []Stored, want map[int]int) Counts {
	t.Helper()
	var c Counts
	last := map[int]int64{}
	ids := map[string]string{}
	for _, n := range want {
		c.Sent += n
	}
	for i, s := range got {
		c.Stored++
		key := fmt.Sprintf("%d/%d", s.Partition, s.Seq)
		if s.ID != "" {
			if prev, ok := ids[s.ID]; ok && prev != key {
				t.Errorf("stored #%d: id %s on %s and on %s", i, s.ID, prev, key)
			}
			ids[s.ID] = key
		}
		switch {
		case s.Seq == last[s.Partition]+1:
			last[s.Partition] = s.Seq
			c.Distinct++
		case s.Seq >= 1 && s.Seq <= last[s.Partition]:
			c.Duplicates++
		default:
			t.Errorf("stored #%d: partition %d seq %d after seq %d: stored ahead of a missing message", i, s.Partition, s.Seq, last[s.Partition])
		}
	}
	for p, n := range want {
		if last[p] != int64(n) {
			t.Errorf("partition %d: stored up to seq %d, want %d", p, last[p], n)
		}
	}
	return c
}

// Want returns the per-partition counts that Produce(n, partitions) sends.
func Want(partitions, n int) map[int]int {
	w := map[int]int{}
	for i := 0; i < n; i++ {
		w[i%partitions]++
	}
	return w
}
