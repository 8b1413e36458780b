package console

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"slices"
	"unicode/utf8"
)

// payloadView is a payload as the detail page shows it.
type payloadView struct {
	Kind  string   // "json", "text" or "hex": the view shown
	Views []string // the views this payload allows
	Text  string   // the view's text, at most the cap (hex: the dump of the first cap bytes)
	Total int      // the payload's size
	Shown int      // bytes of the payload the text covers
}

// Truncated reports a view cut at the cap.
func (p payloadView) Truncated() bool { return p.Shown < p.Total }

// renderPayload shows b as pretty JSON when it is JSON, as text when it is
// printable UTF-8, and always allows a hex dump; view picks one of those
// (the first that applies otherwise). At most limit bytes of the payload
// are shown, so that a huge payload cannot make a huge page.
func renderPayload(b []byte, view string, limit int) payloadView {
	p := payloadView{Total: len(b)}
	text := printable(b)
	if text && json.Valid(b) {
		p.Views = append(p.Views, "json")
	}
	if text {
		p.Views = append(p.Views, "text")
	}
	p.Views = append(p.Views, "hex")
	p.Kind = p.Views[0]
	if slices.Contains(p.Views, view) {
		p.Kind = view
	}
	switch p.Kind {
	case "json":
		var buf bytes.Buffer
		if json.Indent(&buf, b, "", "  ") == nil && buf.Len() <= limit {
			p.Text, p.Shown = buf.String(), len(b)
			return p
		}
		// Too long once indented: show the payload as it is, cut.
		p.Kind = "text"
		fallthrough
	case "text":
		cut := cutUTF8(b, limit)
		p.Text, p.Shown = string(cut), len(cut)
	default:
		n := min(len(b), limit)
		p.Text, p.Shown = hex.Dump(b[:n]), n
	}
	return p
}

// printable reports valid UTF-8 without control characters other than
// newline, carriage return and tab.
func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if (r < 0x20 && r != '\n' && r != '\r' && r != '\t') || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// cutUTF8 returns at most n bytes of b, cut on a rune boundary.
func cutUTF8(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return b[:n]
}
