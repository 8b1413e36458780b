package outbox

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// A message id is a UUIDv7 (RFC 9562) drawn at Enqueue and stored with the
// message: 48 bits of Unix milliseconds, then 74 random bits. It is the
// same on every redelivery and after a requeue from the dead letters, and
// two outboxes never draw the same one (2^74 random values per
// millisecond), whatever their queue names or databases. An id built from
// (queue, partition, seq) would collide between two services that publish
// the same queue names into one stream, and after a database is restored
// from a backup, and a broker deduplicating by it would drop real messages.

// messageIDs returns n fresh message ids.
func messageIDs(n int) [][16]byte {
	ids := make([][16]byte, n)
	buf := make([]byte, 10*n)
	_, _ = rand.Read(buf) // crypto/rand.Read never fails (Go 1.24+)
	ms := uint64(time.Now().UnixMilli())
	for i := range ids {
		u := &ids[i]
		var t [8]byte
		binary.BigEndian.PutUint64(t[:], ms)
		copy(u[0:6], t[2:8])
		copy(u[6:], buf[i*10:(i+1)*10])
		u[6] = u[6]&0x0f | 0x70 // version 7
		u[8] = u[8]&0x3f | 0x80 // variant 10
	}
	return ids
}

// formatID renders a 16-byte id in the canonical 8-4-4-4-12 form; nil or
// any other length renders as "".
func formatID(b []byte) string {
	if len(b) != 16 {
		return ""
	}
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
