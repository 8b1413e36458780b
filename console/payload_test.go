package console

import (
	"encoding/hex"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestRenderPayload: JSON is indented, printable UTF-8 is text, anything
// else is a hex dump; a view that does not apply falls back; every view is
// cut at the limit (text on a character boundary).
func TestRenderPayload(t *testing.T) {
	cases := []struct {
		name, in, view string
		limit          int
		kind           string
		views          string
		text           string
		shown          int
	}{
		{"json", `{"a":[1,"<b>"]}`, "", 100, "json", "json text hex", "{\n  \"a\": [\n    1,\n    \"<b>\"\n  ]\n}", 15},
		{"json as text", `{"a":1}`, "text", 100, "text", "json text hex", `{"a":1}`, 7},
		{"json as hex", `{"a":1}`, "hex", 100, "hex", "json text hex", hex.Dump([]byte(`{"a":1}`)), 7},
		{"text", "héllo\nwörld\t!", "", 100, "text", "text hex", "héllo\nwörld\t!", 15},
		{"unknown view", "plain", "nonsense", 100, "text", "text hex", "plain", 5},
		{"control character", "a\x1bb", "", 100, "hex", "hex", hex.Dump([]byte("a\x1bb")), 3},
		{"C1 control", "a\u0085b", "text", 100, "hex", "hex", hex.Dump([]byte("a\u0085b")), 4},
		{"invalid UTF-8", "a\xffb", "text", 100, "hex", "hex", hex.Dump([]byte("a\xffb")), 3},
		{"text cut on a rune", "ééé", "", 3, "text", "text hex", "é", 2},
		{"hex cut", "\x00\x01\x02\x03", "", 2, "hex", "hex", hex.Dump([]byte{0, 1}), 2},
		{"json too long indented", `[1,2,3]`, "", 8, "text", "json text hex", `[1,2,3]`, 7},
	}
	for _, c := range cases {
		p := renderPayload([]byte(c.in), c.view, c.limit)
		if p.Kind != c.kind || strings.Join(p.Views, " ") != c.views || p.Text != c.text || p.Shown != c.shown || p.Total != len(c.in) {
			t.Errorf("%s: %+v", c.name, p)
		}
		if !utf8.ValidString(p.Text) {
			t.Errorf("%s: the view is not valid UTF-8", c.name)
		}
		if p.Truncated() != (p.Shown < len(c.in)) {
			t.Errorf("%s: Truncated %v", c.name, p.Truncated())
		}
	}
}
