package relay

import (
	"fmt"

	"github.com/modkit-go/db/outbox"
)

// messageID is the id a relay sends as the broker's dedup or message id:
// the message's UUIDv7 (outbox.Delivery.ID), unique across outboxes. A
// message enqueued before the schema had ids has none; it gets
// "queue/partition/seq", unique within its outbox only.
func messageID(d outbox.Delivery) string {
	if d.ID != "" {
		return d.ID
	}
	return fmt.Sprintf("%s/%d/%d", d.Queue, d.Partition, d.Seq)
}

// messageKey is the message's key, "" for none.
func messageKey(d outbox.Delivery) string { return d.Key }
