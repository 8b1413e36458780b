package relaytest

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modkit-go/db/dialect/mysql"
	"github.com/modkit-go/db/dialect/postgres"
	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/outbox"
)

// Variables that make a test binary a relay child (see Children).
const (
	childEnv        = "OUTBOX_RELAYTEST_CHILD"
	childDialectEnv = "OUTBOX_RELAYTEST_DIALECT"
	childDSNEnv     = "OUTBOX_RELAYTEST_DSN"
	childQueueEnv   = "OUTBOX_RELAYTEST_QUEUE"
)

// ChildLease is a child's lease: short, so that the next child takes over
// a killed one's partitions quickly.
const ChildLease = 2 * time.Second

// IsChild reports whether this test binary runs as a relay child.
func IsChild() bool { return os.Getenv(childEnv) != "" }

// RunChild relays the queue named by the parent with h until SIGTERM,
// then stops gracefully and exits, when this binary runs as a relay child;
// otherwise it returns at once. Call it first in the test that calls Children.
func RunChild(h func() outbox.Handler) {
	if !IsChild() {
		return
	}
	err := runChild(h)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runChild(h func() outbox.Handler) error {
	name, dsn, queue := os.Getenv(childDialectEnv), os.Getenv(childDSNEnv), os.Getenv(childQueueEnv)
	driver := map[string]string{"postgres": "postgres", "mysql": "mysql", "sqlite": "sqlite"}[name]
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	cfg := outbox.Config{LeaseDuration: ChildLease, PollInterval: 20 * time.Millisecond,
		RetryBase: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond, BatchSize: 20}
	var ob *outbox.Outbox
	switch name {
	case "postgres":
		ob, err = outbox.New(db, postgres.New(), cfg)
	case "mysql":
		ob, err = outbox.New(db, mysql.New(), cfg)
	default:
		db.SetMaxOpenConns(1)
		ob, err = outbox.New(db, sqlite.New(), cfg)
	}
	if err != nil {
		return err
	}
	if err := ob.Handle(queue, h()); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := ob.Start(context.Background()); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return ob.Stop(sctx)
}

// Children relays queue in child processes (this test binary run again,
// see RunChild): for each count in killAt, a child runs until stored()
// reaches it and is then SIGKILLed; a last child runs until the queue is
// drained (read through ob, which is not started) and is stopped with
// SIGTERM. extraEnv is passed to every child. It returns how many
// children were killed.
func Children(t *testing.T, e Env, ob *outbox.Outbox, queue string, extraEnv []string, stored func() int, killAt []int) int {
	t.Helper()
	var parts []string
	for _, p := range strings.Split(t.Name(), "/") {
		parts = append(parts, "^"+regexp.QuoteMeta(p)+"$")
	}
	start := func() (*exec.Cmd, *syncBuffer) {
		cmd := exec.Command(os.Args[0], "-test.run="+strings.Join(parts, "/"), "-test.count=1")
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		cmd.Env = append(os.Environ(), childEnv+"=1", childDialectEnv+"="+e.Name, childDSNEnv+"="+e.DSN, childQueueEnv+"="+queue)
		cmd.Env = append(cmd.Env, extraEnv...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, out
	}
	killed := 0
	for _, k := range killAt {
		cmd, out := start()
		deadline := time.Now().Add(time.Minute)
		for stored() < k {
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("broker holds %d messages after a minute, want %d; child output:\n%s", stored(), k, out)
			}
			time.Sleep(time.Millisecond) // polling an observable condition
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		killed++
	}
	cmd, out := start()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("last child: %v; output:\n%s", err, out)
		}
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		qs, err := ob.QueueStatus(context.Background(), queue)
		if err == nil && qs.Backlog == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue not drained by the last child: %+v (%v); output:\n%s", qs, err, out)
		}
		time.Sleep(10 * time.Millisecond) // polling an observable condition
	}
	return killed
}

// syncBuffer is a bytes.Buffer a child's stdout and stderr share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
