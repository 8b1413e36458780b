package outbox

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxReasonBytes bounds a stored reason (a partition's last error, a dead
// letter's reason): longer reasons are cut on a character boundary and end
// with a truncation marker.
const MaxReasonBytes = 4096

// reasonCut ends a reason that was cut to MaxReasonBytes.
const reasonCut = " … [truncated]"

// sanitizeReason makes s storable by every backend: invalid UTF-8 and NUL
// bytes (which PostgreSQL text cannot hold) become U+FFFD, and a result
// longer than MaxReasonBytes is cut on a rune boundary and marked with
// reasonCut. A reason the database cannot store would make the write that
// records a result fail, so the handler's reason must never decide whether
// a result is recorded. It is idempotent, and returns s itself when s is
// already storable.
func sanitizeReason(s string) string {
	if len(s) <= MaxReasonBytes && utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(min(len(s), MaxReasonBytes))
	keep := 0 // the longest prefix of b that leaves room for reasonCut
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == 0 {
			r = utf8.RuneError
		}
		if b.Len()+utf8.RuneLen(r) > MaxReasonBytes {
			return b.String()[:keep] + reasonCut
		}
		b.WriteRune(r)
		if b.Len() <= MaxReasonBytes-len(reasonCut) {
			keep = b.Len()
		}
		i += n
	}
	return b.String()
}

// asciiReason is the reason stored for a delivery whose own result could
// not be recorded: err's text with everything but printable ASCII escaped,
// so that it is storable even where the handler's reason or a driver's
// message was not (a connection whose character set lacks a character).
func asciiReason(err error) string {
	q := strconv.QuoteToASCII(err.Error())
	return sanitizeReason(q[1 : len(q)-1])
}
