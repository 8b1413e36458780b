package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/modkit-go/db/outbox"
)

// logCalls logs every handler call with its queue, seqs, whether it ran
// in a transaction, its result and how long it took.
func logCalls(logger *slog.Logger) outbox.Middleware {
	return func(next outbox.CallFunc) outbox.CallFunc {
		return func(ctx context.Context, c outbox.Call) outbox.Result {
			start := time.Now()
			r := next(ctx, c)
			first, last := c.Messages[0], c.Messages[len(c.Messages)-1]
			logger.InfoContext(ctx, "handled", "queue", first.Queue, "partition", first.Partition,
				"seq", first.Seq, "seq_last", last.Seq, "tx", c.Tx != nil, "result", r.String(),
				"took", time.Since(start))
			return r
		}
	}
}

// A logging middleware around a per-message handler: it sees each call and
// its result. DeliverAll delivers without Start, so the example needs no
// waiting.
func ExampleMiddleware_logging() {
	ctx := context.Background()
	db, cleanup := openSQLite()
	defer cleanup()
	ob := exampleOutbox(ctx, db, "emails", 1)

	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "took" { // vary from run to run
				return slog.Attr{}
			}
			return a
		},
	}))
	send := outbox.PerMessageE(func(ctx context.Context, m outbox.Delivery) error {
		if string(m.Payload) == "bounce@example.com" {
			return outbox.Permanent(fmt.Errorf("mailbox %s does not exist", m.Payload))
		}
		return nil
	})
	if err := ob.Handle("emails", outbox.Wrap(send, logCalls(logger))); err != nil {
		log.Fatal(err)
	}
	enqueue(ctx, ob, "emails", "ann@example.com", "bounce@example.com")
	if _, err := ob.DeliverAll(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// level=INFO msg=handled queue=emails partition=0 seq=1 seq_last=1 tx=false result=success
	// level=INFO msg=handled queue=emails partition=0 seq=2 seq_last=2 tx=false result="reject: mailbox bounce@example.com does not exist"
}

// perKeyRateLimit lets each key's calls start at least interval apart:
// a call whose key went too recently waits for its turn (or for its
// context to end, which retries it). key picks the key of a call, here a
// header of its first message. In transactional mode the wait holds the
// call's transaction open; for long waits return a Retry instead.
func perKeyRateLimit(interval time.Duration, key func(outbox.Call) string) outbox.Middleware {
	var mu sync.Mutex
	next := map[string]time.Time{} // the earliest start of each key's next call
	return func(handler outbox.CallFunc) outbox.CallFunc {
		return func(ctx context.Context, c outbox.Call) outbox.Result {
			k := key(c)
			mu.Lock()
			now := time.Now()
			at := next[k]
			if at.Before(now) {
				at = now
			}
			next[k] = at.Add(interval)
			mu.Unlock()
			if wait := at.Sub(now); wait > 0 {
				t := time.NewTimer(wait)
				defer t.Stop()
				select {
				case <-t.C:
				case <-ctx.Done():
					return outbox.Retry("rate limit for " + k + ": " + ctx.Err().Error())
				}
			}
			return handler(ctx, c)
		}
	}
}

// A per-tenant rate limit around a transactional handler: the middleware
// delays calls, sees the transaction, and passes the handler's result on.
func ExampleMiddleware_perKeyRateLimit() {
	ctx := context.Background()
	db, cleanup := openSQLite()
	defer cleanup()
	if _, err := db.ExecContext(ctx, `CREATE TABLE calls (tenant TEXT, n INTEGER)`); err != nil {
		log.Fatal(err)
	}
	ob := exampleOutbox(ctx, db, "webhooks", 1)

	record := outbox.TxPerMessageE(func(ctx context.Context, tx *sql.Tx, m outbox.Delivery) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO calls (tenant, n) VALUES (?, 1)`, m.Headers["tenant"])
		return err
	})
	limit := perKeyRateLimit(20*time.Millisecond, func(c outbox.Call) string { return c.Messages[0].Headers["tenant"] })
	if err := ob.Handle("webhooks", outbox.Wrap(record, limit)); err != nil {
		log.Fatal(err)
	}
	err := ob.InTx(ctx, func(tx *sql.Tx) error {
		for _, tenant := range []string{"acme", "acme", "globex", "acme"} {
			m := outbox.Message{Queue: "webhooks", Payload: []byte("{}"), PayloadType: "application/json",
				Headers: map[string]string{"tenant": tenant}}
			if err := ob.Enqueue(ctx, tx, m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	start := time.Now()
	rep, err := ob.DeliverAll(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("delivered:", len(rep.Delivered), "at least 40ms:", time.Since(start) >= 40*time.Millisecond)
	// Output: delivered: 4 at least 40ms: true
}

// enqueue commits one message per payload to queue's partition 0.
func enqueue(ctx context.Context, ob *outbox.Outbox, queue string, payloads ...string) {
	err := ob.InTx(ctx, func(tx *sql.Tx) error {
		for _, p := range payloads {
			if err := ob.Enqueue(ctx, tx, outbox.Message{Queue: queue, Payload: []byte(p), PayloadType: "text/plain"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}
