package outbox

import (
	"encoding/json"
	"fmt"
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
	// MaxHeaders is the most headers one message may carry.
	MaxHeaders = 256
	// MaxHeaderBytes limits a message's headers as stored: their JSON
	// encoding (an object of string values) takes at most 64 KiB. Headers
	// are metadata; bulk data belongs in the payload.
	MaxHeaderBytes = 64 << 10
	// MaxHeaderKeyLen is the longest header key, in bytes.
	MaxHeaderKeyLen = 256
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
	// Headers are optional string metadata delivered with the message: at
	// most MaxHeaders entries, keys of 1–MaxHeaderKeyLen bytes, keys and
	// values valid UTF-8, MaxHeaderBytes in all once JSON-encoded.
	Headers map[string]string
	// Key is an optional key (an aggregate id, say), delivered with the
	// message: at most MaxKeyLen bytes of valid UTF-8 without control
	// characters; "" for none. Relays use it as the Kafka record key and in
	// routes ({key}). With Partition set to PartitionByKey, Enqueue places
	// the message by it.
	Key string
}

// PartitionByKey is a Message.Partition that makes Enqueue place the
// message in PartitionFor(Key, the queue's partition count): one key's
// messages share a partition, and keep their order, without the producer
// knowing the count. The message must have a Key (without one, -1 is out
// of range: ErrPartitionOutOfRange).
const PartitionByKey = -1

// MaxKeyLen is the longest Message.Key, in bytes.
const MaxKeyLen = 512

// Delivery is a message as a handler sees it.
type Delivery struct {
	Queue     string
	Partition int
	// Seq is the message's position in its partition: 1, 2, 3… with no
	// gap and never reused. A consumer that remembers the last Seq it
	// applied per (Queue, Partition) can drop redeliveries with
	// "Seq <= last".
	Seq int64
	// ID identifies the message: a UUIDv7 drawn at Enqueue, the same on
	// every redelivery and after a requeue from the dead letters, and
	// unique across outboxes and databases (so a broker or consumer can
	// deduplicate by it). Empty for a message enqueued before the schema
	// had ids (migration 4).
	ID          string
	Key         string
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
	// uint64: a count of 2^32 or more must not truncate to 0 (a division
	// by zero); below that the result is the same as with uint32.
	return int(uint64(h.Sum32()) % uint64(partitions))
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

// validateMessage checks everything that does not need the database and
// returns the encoded headers (nil when there are none).
func validateMessage(i int, m *Message, maxPayload int) ([]byte, error) {
	if !ValidQueueName(m.Queue) {
		return nil, invalid(i, "Queue", ErrInvalidQueueName, "%q", truncate(m.Queue))
	}
	if (m.Partition < 0 || m.Partition >= MaxPartitions) && m.Partition != PartitionByKey {
		return nil, invalid(i, "Partition", ErrPartitionOutOfRange, "%d is not in 0..%d", m.Partition, MaxPartitions-1)
	}
	if err := validKey(m.Key); err != nil {
		return nil, invalid(i, "Key", ErrInvalidKey, "%v", err)
	}
	if m.Partition == PartitionByKey && m.Key == "" {
		// Without a key, -1 is just a partition out of range.
		return nil, invalid(i, "Partition", ErrPartitionOutOfRange, "PartitionByKey (-1) needs a Key")
	}
	if len(m.Payload) > maxPayload {
		return nil, invalid(i, "Payload", ErrPayloadTooLarge, "%d bytes, limit %d", len(m.Payload), maxPayload)
	}
	if !ValidPayloadType(m.PayloadType) {
		return nil, invalid(i, "PayloadType", ErrInvalidPayloadType, "%q", truncate(m.PayloadType))
	}
	h, err := encodeHeaders(m.Headers)
	if err != nil {
		return nil, invalid(i, "Headers", ErrInvalidHeaders, "%v", err)
	}
	return h, nil
}

// encodeHeaders checks h against the header limits and encodes it as a
// JSON object; nil when h is empty. The count and the raw size are checked
// before encoding, so an oversized map costs no encoding work.
func encodeHeaders(h map[string]string) ([]byte, error) {
	if len(h) == 0 {
		return nil, nil
	}
	if len(h) > MaxHeaders {
		return nil, fmt.Errorf("%d headers, limit %d", len(h), MaxHeaders)
	}
	size := 0
	for k, v := range h {
		if k == "" || len(k) > MaxHeaderKeyLen {
			return nil, fmt.Errorf("key %q is not 1-%d bytes", truncate(k), MaxHeaderKeyLen)
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("key %q: key or value is not valid UTF-8", truncate(k))
		}
		// Each entry encodes to at least "k":"v", plus a comma.
		if size += len(k) + len(v) + 6; size > MaxHeaderBytes {
			return nil, fmt.Errorf("more than %d bytes encoded", MaxHeaderBytes)
		}
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxHeaderBytes {
		return nil, fmt.Errorf("%d bytes encoded, limit %d", len(b), MaxHeaderBytes)
	}
	return b, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// validKey checks a message key: at most MaxKeyLen bytes of valid UTF-8
// without control characters ("" is no key).
func validKey(k string) error {
	if len(k) > MaxKeyLen {
		return fmt.Errorf("%d bytes, limit %d", len(k), MaxKeyLen)
	}
	if !utf8.ValidString(k) {
		return fmt.Errorf("%q is not valid UTF-8", truncate(k))
	}
	for _, r := range k {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return fmt.Errorf("%q has a control character", truncate(k))
		}
	}
	return nil
}
