package outbox

import (
	"encoding/json"
	"errors"
	"maps"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzValidateMessage: validation never panics, and what it accepts keeps
// every documented limit.
func FuzzValidateMessage(f *testing.F) {
	f.Add("orders", 3, []byte("x"), "application/json", "k", "v", 16)
	f.Add("", -1, []byte{}, "\n", "", "\xff", 0)
	f.Add("a.b-c_d", 1023, make([]byte, 17), "t", strings.Repeat("k", 257), "", 16)
	f.Fuzz(func(t *testing.T, queue string, partition int, payload []byte, typ, key, value string, maxPayload int) {
		m := Message{Queue: queue, Partition: partition, Payload: payload, PayloadType: typ}
		if key != "" || value != "" {
			m.Headers = map[string]string{key: value}
		}
		h, err := validateMessage(0, &m, maxPayload)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Index != 0 || ve.Field == "" {
				t.Fatalf("untyped rejection: %#v", err)
			}
			return
		}
		switch {
		case !ValidQueueName(queue), !ValidPayloadType(typ):
			t.Fatalf("accepted an invalid name or type: %+v", m)
		case partition < 0 || partition >= MaxPartitions:
			t.Fatalf("accepted partition %d", partition)
		case len(payload) > maxPayload:
			t.Fatalf("accepted %d payload bytes over a %d limit", len(payload), maxPayload)
		case len(h) > MaxHeaderBytes:
			t.Fatalf("accepted %d header bytes", len(h))
		case (len(m.Headers) == 0) != (h == nil):
			t.Fatalf("headers %v encoded as %q", m.Headers, h)
		}
	})
}

// FuzzHeaders: headers that pass validation encode to a JSON object that
// decodes back equal, within the limits; over-limit headers are rejected.
func FuzzHeaders(f *testing.F) {
	f.Add("trace-id", "abc", "", "", 0)
	f.Add("k", "v\x00\"<>&\u2028", "é", "\xff", 1)
	f.Add("k", strings.Repeat("v", MaxHeaderBytes), "", "", 0)
	f.Add("k", "v", "w", "x", MaxHeaders)
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string, extra int) {
		h := map[string]string{k1: v1}
		if k2 != "" {
			h[k2] = v2
		}
		// extra adds that many small, distinct headers (bounded, to keep
		// each run fast), to cross MaxHeaders.
		for i := range min(max(extra, 0), MaxHeaders+2) {
			h["x"+strconv.Itoa(i)] = "y"
		}
		b, err := encodeHeaders(h)
		valid := len(h) <= MaxHeaders
		raw := 0
		for k, v := range h {
			raw += len(k) + len(v)
			valid = valid && k != "" && len(k) <= MaxHeaderKeyLen && utf8.ValidString(k) && utf8.ValidString(v)
		}
		if err != nil {
			if valid && raw < MaxHeaderBytes/8 {
				t.Fatalf("rejected small valid headers %q: %v", h, err)
			}
			return
		}
		if !valid {
			t.Fatalf("accepted invalid headers %q", h)
		}
		if len(b) > MaxHeaderBytes {
			t.Fatalf("accepted %d encoded bytes", len(b))
		}
		var back map[string]string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("encoding %q does not decode: %v", b, err)
		}
		if !maps.Equal(back, h) {
			t.Fatalf("round trip changed headers: %q -> %q", h, back)
		}
	})
}

// FuzzPartitionFor: the partition is in range and depends only on the key
// and the count.
func FuzzPartitionFor(f *testing.F) {
	f.Add("customer-42", 16)
	f.Add("", 1)
	f.Add("\xff\x00", MaxPartitions)
	f.Add("k", 0)
	f.Add("k", -5)
	f.Fuzz(func(t *testing.T, key string, partitions int) {
		p := PartitionFor(key, partitions)
		if partitions < 1 {
			if p != 0 {
				t.Fatalf("PartitionFor(%q, %d) = %d, want 0", key, partitions, p)
			}
			return
		}
		if p < 0 || p >= partitions {
			t.Fatalf("PartitionFor(%q, %d) = %d, out of range", key, partitions, p)
		}
		if again := PartitionFor(strings.Clone(key), partitions); again != p {
			t.Fatalf("PartitionFor(%q, %d) not stable: %d then %d", key, partitions, p, again)
		}
	})
}
