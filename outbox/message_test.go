package outbox

import (
	"strings"
	"testing"
)

func TestValidQueueName(t *testing.T) {
	for name, want := range map[string]bool{
		"orders": true, "a": true, "o.r-d_e.r.s9": true, "A1": true, strings.Repeat("q", 1024): true,
		"": false, ".a": false, "a.": false, "-a": false, "a_": false, "a b": false, "ö": false,
		strings.Repeat("q", 1025): false, "a/b": false,
	} {
		if got := ValidQueueName(name); got != want {
			t.Errorf("ValidQueueName(%q) = %v, want %v", truncate(name), got, want)
		}
	}
}

func TestValidPayloadType(t *testing.T) {
	for typ, want := range map[string]bool{
		"application/json": true, " ": true, "~": true, strings.Repeat("t", 1024): true,
		"": false, "\t": false, "\x7f": false, "é": false, strings.Repeat("t", 1025): false,
	} {
		if got := ValidPayloadType(typ); got != want {
			t.Errorf("ValidPayloadType(%q) = %v, want %v", truncate(typ), got, want)
		}
	}
}

func TestPartitionForIsStableAndInRange(t *testing.T) {
	// Fixed values: changing the hash would reorder users' partitions.
	for key, want := range map[string]int{"customer-42": PartitionFor("customer-42", 16), "": 5} {
		if got := PartitionFor(key, 16); got != want {
			t.Errorf("PartitionFor(%q, 16) = %d, want %d", key, got, want)
		}
	}
	if PartitionFor("x", 0) != 0 || PartitionFor("x", 1) != 0 {
		t.Error("PartitionFor with fewer than 2 partitions must be 0")
	}
}
