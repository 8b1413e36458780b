package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"time"

	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
)

// Per-queue options and the block poison policy: after two failed tries
// the partition stops at its head instead of dead-lettering it; an
// operator then skips the head into the dead letters (or retries it with
// RetryPartition), and the partition goes on in order.
func ExampleOutbox_SkipPartition() {
	ctx := context.Background()
	db, cleanup := openSQLite()
	defer cleanup()
	d := sqlite.New()
	if err := migrations.Up(ctx, db, d); err != nil {
		log.Fatal(err)
	}
	ob, err := outbox.New(db, d, outbox.Config{PollInterval: 10 * time.Millisecond, RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.DeclareQueue(ctx, "payments", 1); err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	err = ob.Handle("payments", outbox.PerMessage(func(ctx context.Context, m outbox.Delivery) outbox.Result {
		if string(m.Payload) == "malformed" {
			return outbox.Retry("cannot parse")
		}
		fmt.Printf("delivered seq %d: %s\n", m.Seq, m.Payload)
		close(done)
		return outbox.Success()
	}), outbox.WithMaxAttempts(2), outbox.WithPoisonPolicy(outbox.PoisonBlock))
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer ob.Stop(ctx)
	err = ob.InTx(ctx, func(tx *sql.Tx) error {
		return ob.EnqueueBatch(ctx, tx, []outbox.Message{
			{Queue: "payments", Payload: []byte("malformed"), PayloadType: "text/plain"},
			{Queue: "payments", Payload: []byte("ok"), PayloadType: "text/plain"},
		})
	})
	if err != nil {
		log.Fatal(err)
	}

	// An operator's view: poll the partition's state until it is blocked.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		st, err := ob.PartitionStatus(ctx, "payments", 0)
		if err != nil {
			log.Fatal(err)
		}
		if st.Blocked {
			fmt.Printf("blocked at seq %d after %d attempts: %s\n", st.ProcessedSeq+1, st.Attempts, st.LastError)
			break
		}
	}
	if err := ob.SkipPartition(ctx, "payments", 0, "operator: malformed payload"); err != nil {
		log.Fatal(err)
	}
	<-done
	dlPage, err := ob.DeadLetterPage(ctx, outbox.DeadLetterFilter{Queue: "payments"})
	dl := dlPage.DeadLetters
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("dead letter seq %d after %d attempts: %s\n", dl[0].Seq, dl[0].Attempts, dl[0].Reason)
	// Output:
	// blocked at seq 1 after 2 attempts: max attempts (2) reached: cannot parse
	// delivered seq 2: ok
	// dead letter seq 1 after 2 attempts: operator: malformed payload
}
