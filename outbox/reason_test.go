package outbox

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkStorable asserts what every backend needs of a stored reason.
func checkStorable(t *testing.T, in, got string) {
	t.Helper()
	if !utf8.ValidString(got) {
		t.Fatalf("sanitizeReason(%q) = %q: not valid UTF-8", truncate(in), truncate(got))
	}
	if strings.IndexByte(got, 0) >= 0 {
		t.Fatalf("sanitizeReason(%q) = %q: contains NUL", truncate(in), truncate(got))
	}
	if len(got) > MaxReasonBytes {
		t.Fatalf("sanitizeReason(%q): %d bytes, above %d", truncate(in), len(got), MaxReasonBytes)
	}
	if again := sanitizeReason(got); again != got {
		t.Fatalf("sanitizeReason is not idempotent on %q: %q", truncate(got), truncate(again))
	}
}

func TestSanitizeReason(t *testing.T) {
	long := strings.Repeat("x", MaxReasonBytes)
	for _, c := range []struct{ name, in, want string }{
		{"empty", "", ""},
		{"plain", "timeout talking to billing", "timeout talking to billing"},
		{"unicode kept", "héllo, 世界 🎉", "héllo, 世界 🎉"},
		{"replacement char kept", "a\uFFFDb", "a\uFFFDb"},
		{"exactly the limit", long, long},
		{"invalid UTF-8", "bad \xff\xfe utf8", "bad \uFFFD\uFFFD utf8"},
		{"truncated rune", "é"[:1] + "x", "\uFFFDx"},
		{"surrogate half", "a\xed\xa0\x80b", "a\uFFFD\uFFFD\uFFFDb"},
		{"NUL", "nul \x00 byte", "nul \uFFFD byte"},
		{"one over", long + "y", strings.Repeat("x", MaxReasonBytes-len(reasonCut)) + reasonCut},
		{"5 MiB", strings.Repeat("z", 5<<20), strings.Repeat("z", MaxReasonBytes-len(reasonCut)) + reasonCut},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := sanitizeReason(c.in)
			if got != c.want {
				t.Errorf("sanitizeReason(%q) = %q, want %q", truncate(c.in), truncate(got), truncate(c.want))
			}
			checkStorable(t, c.in, got)
		})
	}

	// A multi-byte rune across the cut is dropped whole, never split.
	in := strings.Repeat("a", MaxReasonBytes-len(reasonCut)-1) + "世界"
	got := sanitizeReason(in + strings.Repeat("b", 100))
	if want := strings.Repeat("a", MaxReasonBytes-len(reasonCut)-1) + reasonCut; got != want {
		t.Errorf("cut inside a rune: got …%q, want …%q", got[len(got)-30:], want[len(want)-30:])
	}
	checkStorable(t, in, got)
	// NULs that grow to three bytes each still respect the bound.
	checkStorable(t, "NULs", sanitizeReason(strings.Repeat("\x00", MaxReasonBytes)))
}

func TestASCIIReason(t *testing.T) {
	got := asciiReason(errors.New("pq: invalid byte sequence \xff \x00 for 世界"))
	for i := 0; i < len(got); i++ {
		if got[i] < 0x20 || got[i] > 0x7e {
			t.Fatalf("asciiReason: byte %#x at %d in %q is not printable ASCII", got[i], i, got)
		}
	}
}

func FuzzSanitizeReason(f *testing.F) {
	for _, s := range []string{"", "ok", "bad \xff utf8", "nul \x00", "héllo 世界", strings.Repeat("é", 3000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := sanitizeReason(s)
		checkStorable(t, s, got)
		if len(s) <= MaxReasonBytes && utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 && got != s {
			t.Fatalf("sanitizeReason changed a storable reason %q to %q", s, got)
		}
		// The oracle: replace rune by rune, then cut on a rune boundary.
		full := strings.Map(func(r rune) rune {
			if r == 0 {
				return utf8.RuneError
			}
			return r
		}, s)
		want := full
		if len(full) > MaxReasonBytes {
			k := MaxReasonBytes - len(reasonCut)
			for !utf8.RuneStart(full[k]) {
				k--
			}
			want = full[:k] + reasonCut
		}
		if got != want {
			t.Fatalf("sanitizeReason(%q) = %q, want %q", truncate(s), truncate(got), truncate(want))
		}
	})
}
