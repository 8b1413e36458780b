package conformance

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/modkit-go/db/outbox"
)

var identityTests = []test{
	{"Identity/IDStableAndUnique", testIdentityIDStableAndUnique},
	{"Identity/KeyAndIDThroughDeadLetters", testIdentityThroughDeadLetters},
	{"Identity/PartitionByKey", testIdentityPartitionByKey},
	{"Identity/BadKeyChangesNothing", testIdentityBadKey},
}

// uuidV7 is the canonical text of a version-7, variant-10 UUID.
var uuidV7 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// testIdentityIDStableAndUnique: every message gets a UUIDv7 id, the same
// on each redelivery, different from every other message's (two outboxes
// on two databases included); its key is delivered as enqueued.
func testIdentityIDStableAndUnique(t *testing.T, b *Backend) {
	ids := map[string]string{} // id -> "database/seq"
	for db := range 2 {
		e := newEnv(t, b)
		ob := e.outbox(nil, fast(outbox.Config{}))
		e.declare(ob, "q", 1)
		var msgs []outbox.Message
		for i, k := range []string{"order-1", "", "order-2", "ключ/ü"} {
			msgs = append(msgs, outbox.Message{Queue: "q", Payload: []byte{byte(i)}, PayloadType: "t", Key: k})
		}
		e.enqueue(ob, msgs...)
		var got recorder
		calls := 0
		if err := ob.Handle("q", outbox.Batch(func(_ context.Context, ds []outbox.Delivery) outbox.Result {
			got.add(ds...)
			if calls++; calls == 1 {
				return outbox.Retry("once more").WithProcessed(1)
			}
			return outbox.Success()
		})); err != nil {
			t.Fatal(err)
		}
		e.start(ob)
		e.awaitProcessed(ob, "q", 0, 4)
		e.stop(ob)
		first := map[int64]string{}
		for _, d := range got.deliveries() {
			if !uuidV7.MatchString(d.ID) {
				t.Fatalf("seq %d: id %q is not a UUIDv7", d.Seq, d.ID)
			}
			if want := msgs[d.Seq-1].Key; d.Key != want {
				t.Fatalf("seq %d: key %q, want %q", d.Seq, d.Key, want)
			}
			if id, ok := first[d.Seq]; ok {
				if id != d.ID {
					t.Fatalf("seq %d: id %s on redelivery, %s before", d.Seq, d.ID, id)
				}
				continue
			}
			first[d.Seq] = d.ID
			where := string(rune('A'+db)) + "/" + string(rune('0'+d.Seq))
			if prev, ok := ids[d.ID]; ok {
				t.Fatalf("id %s on %s and on %s", d.ID, prev, where)
			}
			ids[d.ID] = where
		}
		if len(first) != 4 || len(got.deliveries()) != 7 {
			t.Fatalf("%d distinct messages in %d deliveries, want 4 in 7 (seqs 2-4 redelivered)", len(first), len(got.deliveries()))
		}
	}
}

// testIdentityThroughDeadLetters: a dead letter keeps the message's id and
// key, and a requeued message is delivered with both.
func testIdentityThroughDeadLetters(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 1)
	e.enqueue(ob, outbox.Message{Queue: "q", Payload: []byte("x"), PayloadType: "t", Key: "acct-7"})
	var got recorder
	if err := ob.Handle("q", outbox.PerMessage(func(_ context.Context, d outbox.Delivery) outbox.Result {
		if got.add(d); got.count() == 1 {
			return outbox.Reject("no")
		}
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	e.start(ob)
	e.awaitProcessed(ob, "q", 0, 1)
	dlsPage, err := ob.DeadLetterPage(e.ctx, outbox.DeadLetterFilter{Queue: "q"})
	dls := dlsPage.DeadLetters
	if err != nil || len(dls) != 1 {
		t.Fatalf("dead letters %v, %v", dls, err)
	}
	first := got.deliveries()[0]
	if dls[0].MessageID != first.ID || dls[0].Key != "acct-7" {
		t.Fatalf("dead letter id %q key %q, want %q and acct-7", dls[0].MessageID, dls[0].Key, first.ID)
	}
	if _, err := ob.RequeueDeadLetters(e.ctx, []int64{dls[0].ID}); err != nil {
		t.Fatal(err)
	}
	ob.Notify()
	await(t, got.reached(2), "the requeued message")
	e.stop(ob)
	again := got.deliveries()[1]
	if again.Seq != 2 || again.ID != first.ID || again.Key != "acct-7" {
		t.Fatalf("requeued delivery seq %d id %q key %q, want seq 2 with id %s and key acct-7", again.Seq, again.ID, again.Key, first.ID)
	}
}

// testIdentityPartitionByKey: PartitionByKey places each message in
// PartitionFor(key, the queue's count); one key's messages keep their
// order.
func testIdentityPartitionByKey(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 7)
	keys := []string{"a", "b", "c", "a", "d", "b", "a"}
	var msgs []outbox.Message
	for i, k := range keys {
		msgs = append(msgs, outbox.Message{Queue: "q", Partition: outbox.PartitionByKey, Key: k, Payload: []byte{byte(i)}, PayloadType: "t"})
	}
	e.enqueue(ob, msgs...)
	e.enqueue(ob, outbox.Message{Queue: "q", Partition: outbox.PartitionByKey, Key: "a", Payload: []byte{7}, PayloadType: "t"})
	var got recorder
	if err := ob.Handle("q", outbox.PerMessage(func(_ context.Context, d outbox.Delivery) outbox.Result {
		got.add(d)
		return outbox.Success()
	})); err != nil {
		t.Fatal(err)
	}
	e.start(ob)
	await(t, got.reached(8), "every message")
	e.stop(ob)
	var lastA byte
	for _, d := range got.deliveries() {
		if want := outbox.PartitionFor(d.Key, 7); d.Partition != want {
			t.Fatalf("key %q in partition %d, want %d", d.Key, d.Partition, want)
		}
		if d.Key == "a" {
			if d.Payload[0] < lastA {
				t.Fatalf("key a: payload %d after %d", d.Payload[0], lastA)
			}
			lastA = d.Payload[0]
		}
	}
}

// testIdentityBadKey: an invalid key, or PartitionByKey without one, is a
// typed error and writes nothing, even in a batch with valid messages.
func testIdentityBadKey(t *testing.T, b *Backend) {
	e := newEnv(t, b)
	ob := e.outbox(nil, fast(outbox.Config{}))
	e.declare(ob, "q", 2)
	ok := outbox.Message{Queue: "q", Payload: []byte("ok"), PayloadType: "t", Key: "k"}
	for _, tc := range []struct {
		name string
		m    outbox.Message
		want error
	}{
		{"too long", outbox.Message{Queue: "q", PayloadType: "t", Key: strings.Repeat("k", outbox.MaxKeyLen+1)}, outbox.ErrInvalidKey},
		{"not UTF-8", outbox.Message{Queue: "q", PayloadType: "t", Key: "\xff"}, outbox.ErrInvalidKey},
		{"control character", outbox.Message{Queue: "q", PayloadType: "t", Key: "a\nb"}, outbox.ErrInvalidKey},
		{"by key without a key", outbox.Message{Queue: "q", PayloadType: "t", Partition: outbox.PartitionByKey}, outbox.ErrPartitionOutOfRange},
	} {
		tx := e.begin(nil)
		err := ob.EnqueueBatch(e.ctx, tx, []outbox.Message{ok, tc.m})
		e.commit(tx)
		var ve *outbox.ValidationError
		if !errors.Is(err, tc.want) || !errors.As(err, &ve) || ve.Index != 1 {
			t.Fatalf("%s: %v, want %v at index 1", tc.name, err, tc.want)
		}
	}
	if st := e.stats(ob); st.Messages != 0 {
		t.Fatalf("stats %+v: want no message written", st)
	}
	long := outbox.Message{Queue: "q", Payload: []byte("ok"), PayloadType: "t", Key: strings.Repeat("é", outbox.MaxKeyLen/2)}
	e.enqueue(ob, long)
}
