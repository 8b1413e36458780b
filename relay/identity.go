package relay

import (
	"fmt"

	"github.com/modkit-go/db/outbox"
)

// messageID is the id a relay sends as the broker's dedup id.
func messageID(d outbox.Delivery) string {
	return fmt.Sprintf("%s/%d/%d", d.Queue, d.Partition, d.Seq)
}

// messageKey is the message's key, "" for none.
func messageKey(outbox.Delivery) string { return "" }
