// Package examples_test runs the examples as a user would: the producer
// and the worker as separate processes on PostgreSQL.
package examples_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modkit-go/db/internal/testdb"
)

// build compiles the example in dir into t's temporary directory.
func build(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(dir))
	out, err := exec.Command("go", "build", "-o", bin, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", dir, err, out)
	}
	return bin
}

// start runs bin with the example DSN and stops it with an interrupt (a
// graceful shutdown) at the test's end.
func start(t *testing.T, dsn, bin string, args ...string) *bytes.Buffer {
	t.Helper()
	var logs bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "OUTBOX_EXAMPLE_DSN="+dsn)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v\n%s", filepath.Base(bin), err, logs.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("%s did not stop on interrupt\n%s", filepath.Base(bin), logs.String())
		}
	})
	return &logs
}

// The producer service takes orders over HTTP; the worker, in another
// process, applies each exactly once through its inbox, in order per
// customer, woken by LISTEN/NOTIFY.
func TestProducerAndWorker(t *testing.T) {
	open, dsn := testdb.PostgresDSN(t)
	// The examples use pgx, which would send lib/pq's binary_parameters
	// to the server as a setting.
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Del("binary_parameters")
	u.RawQuery = q.Encode()
	dsn = u.String()

	worker, producer := build(t, "./worker"), build(t, "./producer")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	wlogs := start(t, dsn, worker)
	plogs := start(t, dsn, producer, "-addr", addr)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	post := func(body string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/orders", strings.NewReader(body))
		return http.DefaultClient.Do(req)
	}
	// Until the producer listens.
	for {
		resp, err := post(`{}`)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("an empty order: %s, want 400", resp.Status)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the producer did not listen: %v\n%s", err, plogs.String())
		}
		time.Sleep(50 * time.Millisecond) // polling a process we started, with a deadline
	}
	customers := []string{"ann", "bob", "cy"}
	for i := range 30 {
		resp, err := post(fmt.Sprintf(`{"customer":%q,"amount_cents":%d}`, customers[i%3], 100+i))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("order %d: %s", i, resp.Status)
		}
	}

	db := open()
	var applied int
	for applied < 30 {
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM inbox`).Scan(&applied); err != nil && ctx.Err() != nil {
			t.Fatalf("inbox: %v\nworker:\n%s", err, wlogs.String())
		}
		if applied < 30 {
			time.Sleep(20 * time.Millisecond) // polling the observable result, with a deadline
		}
	}
	rows, err := db.QueryContext(ctx, `SELECT customer, orders, amount_cents FROM customer_totals ORDER BY customer`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var c string
		var n, amount int64
		if err := rows.Scan(&c, &n, &amount); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %d %d", c, n, amount))
	}
	// ann: orders 0, 3, …, 27 → 10 orders, 100·10 + (0+3+…+27) = 1135.
	if want := "ann 10 1135, bob 10 1145, cy 10 1155"; strings.Join(got, ", ") != want {
		t.Errorf("totals %q, want %q", strings.Join(got, ", "), want)
	}
	var dup sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT max(n) FROM (SELECT count(*) AS n FROM inbox GROUP BY queue, partition_num, seq) c`).Scan(&dup); err != nil || dup.Int64 != 1 {
		t.Errorf("an inbox entry applied %d times (%v), want once", dup.Int64, err)
	}
}
