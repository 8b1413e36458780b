package outbox

import (
	"hash/fnv"
	"time"
	"unicode/utf8"
)

// Limits of the data model.
const (
	// MaxPartitions is the largest partition count of a queue.
	MaxPartitions = 1024
	// MaxQueueNameLen is the longest queue name.
	MaxQueueNameLen = 1024
	// MaxPayloadTypeLen is the longest payload type.
	MaxPayloadTypeLen = 1024
	// DefaultMaxPayloadBytes is the default payload limit (64 KiB).
	DefaultMaxPayloadBytes = 64 << 10
	maxHeaderKeyLen        = 256
)

// Message is what a producer enqueues.
type Message struct {
	// Queue is a declared queue's name.
	Queue string
	// Partition is the partition index, 0 <= Partition < the queue's
	// partition count. Messages of one partition are delivered in order;
	// use PartitionFor to map a key (an aggregate id, say) to a partition.
	Partition int
	// Payload is the message body, at most Config.MaxPayloadBytes.
	Payload []byte
	// PayloadType names the payload's schema (for example
	// "application/json" or "orders.OrderPlaced.v1"): 1–1024 printable
	// ASCII bytes.
	PayloadType string
	// Headers are optional string metadata delivered with the message.
	Headers map[string]string
}

// Delivery is a message as a handler sees it.
type Delivery struct {
	Queue     string
	Partition int
	// Seq is the message's position in its partition: 1, 2, 3… with no
	// gap and never reused. A consumer that remembers the last Seq it
	// applied per (Queue, Partition) can drop redeliveries with
	// "Seq <= last".
	Seq         int64
	Payload     []byte
	PayloadType string
	Headers     map[string]string
	// CreatedAt is the database time of the enqueue.
	CreatedAt time.Time
	// Attempts counts failed deliveries of the partition's head so far
	// (0 on the first try). A crash or an expired lease counts as one.
	Attempts int
}

// PartitionFor maps key to a partition index in [0, partitions) with a
// stable hash (32-bit FNV-1a), so one key always lands in one partition and
// keeps its order. It returns 0 when partitions < 1.
func PartitionFor(key string, partitions int) int {
	if partitions < 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(partitions))
}

// ValidQueueName reports whether name is a valid queue name:
// [A-Za-z0-9._-]{1,1024}, alphanumeric at both ends.
func ValidQueueName(name string) bool {
	if len(name) == 0 || len(name) > MaxQueueNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if alnum {
			continue
		}
		if (c == '.' || c == '_' || c == '-') && i > 0 && i < len(name)-1 {
			continue
		}
		return false
	}
	return true
}

// ValidPayloadType reports whether t is 1–1024 bytes of printable ASCII
// (0x20–0x7E).
func ValidPayloadType(t string) bool {
	if len(t) == 0 || len(t) > MaxPayloadTypeLen {
		return false
	}
	for i := 0; i < len(t); i++ {
		if t[i] < 0x20 || t[i] > 0x7e {
			return false
		}
	}
	return true
}

// validateMessage checks everything that does not need the database.
func validateMessage(i int, m *Message, maxPayload int) error {
	if !ValidQueueName(m.Queue) {
		return invalid(i, "Queue", ErrInvalidQueueName, "%q", truncate(m.Queue))
	}
	if m.Partition < 0 {
		return invalid(i, "Partition", ErrPartitionOutOfRange, "%d is negative", m.Partition)
	}
	if len(m.Payload) > maxPayload {
		return invalid(i, "Payload", ErrPayloadTooLarge, "%d bytes, limit %d", len(m.Payload), maxPayload)
	}
	if !ValidPayloadType(m.PayloadType) {
		return invalid(i, "PayloadType", ErrInvalidPayloadType, "%q", truncate(m.PayloadType))
	}
	for k, v := range m.Headers {
		if k == "" || len(k) > maxHeaderKeyLen || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return invalid(i, "Headers", ErrInvalidHeaders, "key %q", truncate(k))
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
