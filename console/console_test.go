package console_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/modkit-go/db/console"
	"github.com/modkit-go/db/outbox"
)

// server serves a console over s under prefix /ops.
func server(t *testing.T, s seeded, opts console.Options) (*httptest.Server, *console.Console) {
	t.Helper()
	if opts.Prefix == "" {
		opts.Prefix = "/ops"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	c, err := console.New(s.ob, opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(opts.Prefix+"/", c)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, c
}

// tWriter logs through t, for the console's warnings.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

type response struct {
	code   int
	body   string
	header http.Header
}

func do(t *testing.T, req *http.Request) response {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{res.StatusCode, string(b), res.Header}
}

func get(t *testing.T, u string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

// post sends form to u with the given extra headers.
func post(t *testing.T, u string, form url.Values, headers map[string]string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return do(t, req)
}

func csrfToken(t *testing.T, base string) string {
	t.Helper()
	r := get(t, base+"/api/csrf")
	var v struct{ CSRF string }
	if err := json.Unmarshal([]byte(r.body), &v); err != nil || v.CSRF == "" {
		t.Fatalf("csrf: %v %q", err, r.body)
	}
	return v.CSRF
}

func pending(t *testing.T, ob *outbox.Outbox) int64 {
	t.Helper()
	n, err := ob.CountDeadLetters(t.Context(), outbox.DeadLetterFilter{Status: "pending"})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestForgedActionsRefused: an action without the anti-forgery token, with
// a wrong one, or from another origin (Origin header, Sec-Fetch-Site, or
// both), is answered 403 and changes nothing, through the page route and
// the API route alike; the same request from the console's own origin with
// the token succeeds (so the refusals are not an accident of the request).
func TestForgedActionsRefused(t *testing.T) {
	s := seed(t, backends()[0], 0)
	srv, _ := server(t, s, console.Options{})
	base := srv.URL + "/ops"
	token := csrfToken(t, base)
	bad1 := deadLetter(t, s.ob, "bad-1")
	before := pending(t, s.ob)
	id := url.Values{"id": {fmt.Sprint(bad1.ID)}}
	withToken := url.Values{"id": {fmt.Sprint(bad1.ID)}, "csrf": {token}}
	cases := []struct {
		name    string
		path    string
		form    url.Values
		headers map[string]string
	}{
		{"no token", "/actions/requeue", id, nil},
		{"wrong token", "/actions/requeue", url.Values{"id": id["id"], "csrf": {strings.Repeat("0", len(token))}}, nil},
		{"empty token", "/actions/discard", url.Values{"id": id["id"], "csrf": {""}}, nil},
		{"api without header", "/api/actions/requeue", id, nil},
		{"api wrong header", "/api/actions/requeue", id, map[string]string{"X-CSRF-Token": "nope"}},
		{"other origin", "/actions/requeue", withToken, map[string]string{"Origin": "http://evil.example"}},
		{"null origin", "/actions/requeue", withToken, map[string]string{"Origin": "null"}},
		{"cross-site fetch", "/actions/requeue", withToken, map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"same-site fetch", "/actions/discard", withToken, map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://sub." + strings.TrimPrefix(srv.URL, "http://")}},
		{"same-origin claim, other origin", "/actions/requeue", withToken, map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://evil.example"}},
		{"api other origin", "/api/actions/requeue", id, map[string]string{"X-CSRF-Token": token, "Origin": "http://evil.example"}},
		{"retry partition forged", "/actions/retry", url.Values{"queue": {"orders"}, "partition": {"3"}}, nil},
		{"skip partition other origin", "/actions/skip", url.Values{"queue": {"orders"}, "partition": {"1"}, "csrf": {token}}, map[string]string{"Sec-Fetch-Site": "cross-site"}},
	}
	for _, c := range cases {
		r := post(t, base+c.path, c.form, c.headers)
		if r.code != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403: %s", c.name, r.code, r.body)
		}
	}
	if n := pending(t, s.ob); n != before {
		t.Fatalf("pending dead letters %d after refused actions, want %d", n, before)
	}
	q, err := s.ob.QueueStatus(t.Context(), "orders")
	if err != nil {
		t.Fatal(err)
	}
	if q.Blocked != 2 {
		t.Fatalf("blocked partitions %d after refused actions, want 2", q.Blocked)
	}
	// The genuine request, as the browser sends it from the console's page.
	r := post(t, base+"/actions/requeue", withToken, map[string]string{"Origin": srv.URL, "Sec-Fetch-Site": "same-origin"})
	if r.code != http.StatusOK || !strings.Contains(r.body, "Requeued 1 dead letter.") {
		t.Fatalf("genuine requeue: %d %s", r.code, r.body)
	}
	if n := pending(t, s.ob); n != before-1 {
		t.Fatalf("pending dead letters %d after the genuine requeue, want %d", n, before-1)
	}
	r = post(t, base+"/api/actions/retry", url.Values{"queue": {"orders"}, "partition": {"3"}}, map[string]string{"X-CSRF-Token": token})
	if r.code != http.StatusOK || !strings.Contains(r.body, `"count": 1`) {
		t.Fatalf("API retry: %d %s", r.code, r.body)
	}
}

// TestAccessToken: with a token, every route (pages, API, assets) answers
// 401 without it or with a wrong one, and serves it given as a bearer token
// or as the Basic password; the Host header is then not restricted.
func TestAccessToken(t *testing.T) {
	s := seed(t, backends()[0], 0)
	srv, _ := server(t, s, console.Options{Token: "s3cret-token"})
	for _, path := range []string{"/", "/api/status", "/static/console.js", "/dead-letters", "/api/csrf"} {
		u := srv.URL + "/ops" + path
		for name, set := range map[string]func(*http.Request){
			"none":         func(*http.Request) {},
			"wrong bearer": func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret-tokeN") },
			"prefix":       func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") },
			"wrong basic":  func(r *http.Request) { r.SetBasicAuth("s3cret-token", "x") },
		} {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
			set(req)
			if r := do(t, req); r.code != http.StatusUnauthorized || strings.Contains(r.body, "orders") {
				t.Errorf("%s with %s: %d, want 401", path, name, r.code)
			}
		}
		for name, set := range map[string]func(*http.Request){
			"bearer": func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret-token") },
			"basic":  func(r *http.Request) { r.SetBasicAuth("anyone", "s3cret-token") },
		} {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
			req.Host = "console.example.com"
			set(req)
			if r := do(t, req); r.code != http.StatusOK {
				t.Errorf("%s with %s: %d, want 200", path, name, r.code)
			}
		}
	}
}

// TestLoopbackHostOnly: without a token the console answers only requests
// to a loopback host (and Options.Hosts), so a page on another name that
// resolves to 127.0.0.1 (DNS rebinding) cannot read it.
func TestLoopbackHostOnly(t *testing.T) {
	s := seed(t, backends()[0], 0)
	srv, _ := server(t, s, console.Options{Hosts: []string{"ops.internal"}})
	for host, want := range map[string]int{
		"evil.example": 403, "evil.example:80": 403, "127.0.0.1.nip.io": 403,
		"127.0.0.1": 200, "localhost:8080": 200, "[::1]:8080": 200, "ops.internal": 200,
	} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/ops/api/status", nil)
		req.Host = host
		if r := do(t, req); r.code != want {
			t.Errorf("Host %q: %d, want %d", host, r.code, want)
		}
	}
}

// TestReadOnly: a read-only console offers no action (no confirmation link,
// no form that posts, no anti-forgery token in a page), refuses the
// confirmation page, and answers every action 403 without changing
// anything, even with the right token from the right origin.
func TestReadOnly(t *testing.T) {
	s := seed(t, backends()[0], 0)
	srv, _ := server(t, s, console.Options{ReadOnly: true})
	base := srv.URL + "/ops"
	token := csrfToken(t, base)
	bad1 := deadLetter(t, s.ob, "bad-1")
	before := pending(t, s.ob)
	for _, path := range []string{"/", "/queues/orders", "/dead-letters", fmt.Sprintf("/dead-letters/%d", bad1.ID)} {
		r := get(t, base+path)
		if r.code != 200 {
			t.Fatalf("%s: %d", path, r.code)
		}
		for _, bad := range []string{"/confirm", `method="post"`, token, ">Requeue", ">Retry<", ">Skip<", ">Discard"} {
			if strings.Contains(r.body, bad) {
				t.Errorf("read-only %s contains %q", path, bad)
			}
		}
	}
	if r := get(t, base+"/confirm?do=requeue&id="+fmt.Sprint(bad1.ID)); r.code == 200 {
		t.Errorf("read-only confirmation page: 200")
	}
	form := url.Values{"id": {fmt.Sprint(bad1.ID)}, "csrf": {token}}
	for _, path := range []string{"/actions/requeue", "/actions/discard", "/api/actions/requeue"} {
		if r := post(t, base+path, form, map[string]string{"Origin": srv.URL, "X-CSRF-Token": token}); r.code != 403 {
			t.Errorf("read-only POST %s: %d, want 403", path, r.code)
		}
	}
	for _, do := range []string{"retry", "skip"} {
		r := post(t, base+"/actions/"+do, url.Values{"queue": {"orders"}, "partition": {"3"}, "csrf": {token}}, map[string]string{"Origin": srv.URL})
		if r.code != 403 {
			t.Errorf("read-only %s: %d, want 403", do, r.code)
		}
	}
	if n := pending(t, s.ob); n != before {
		t.Fatalf("pending %d, want %d", n, before)
	}
}

var (
	inlineScript = regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>`)
	eventAttr    = regexp.MustCompile(`(?i)<[^>]*\son[a-z]+\s*=`)
	styleAttr    = regexp.MustCompile(`(?i)<[^>]*\sstyle\s*=`)
)

// TestEscapedAndLocked: every response carries the Content-Security-Policy
// (no inline script, own origin only) and nosniff; no page has an inline
// script, an event handler attribute or a style attribute, and the only
// script is the console's own; the hostile dead letter's strings appear
// only escaped in the HTML (no tag, no attribute break-out, no
// javascript: link), and byte for byte in the JSON API.
func TestEscapedAndLocked(t *testing.T) {
	s := seed(t, backends()[0], 0)
	srv, _ := server(t, s, console.Options{})
	base := srv.URL + "/ops"
	text := deadLetter(t, s.ob, xssScript)
	bin := deadLetter(t, s.ob, "\xff")
	if text.Reason != strings.ToValidUTF8(hostileReason, "\uFFFD") && !strings.Contains(text.Reason, "\uFFFD") {
		t.Fatalf("stored reason %q", text.Reason)
	}
	pages := []string{"/", "/queues/orders", "/queues/orders?all=1", "/dead-letters", "/dead-letters?queue=orders&partition=2",
		fmt.Sprintf("/dead-letters/%d", text.ID), fmt.Sprintf("/dead-letters/%d?view=hex", text.ID),
		fmt.Sprintf("/dead-letters/%d?view=text", text.ID), fmt.Sprintf("/dead-letters/%d", bin.ID),
		"/confirm?do=skip&queue=orders&partition=1", "/confirm?do=requeue&all=1&queue=orders",
		"/dead-letters/999999", "/queues/nope", "/dead-letters?status=" + url.QueryEscape(xssScript), "/?fragment=queues"}
	for _, p := range pages {
		r := get(t, base+p)
		csp := r.header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s: CSP %q", p, csp)
		}
		if r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", p)
		}
		for _, m := range inlineScript.FindAllString(r.body, -1) {
			if m != `<script src="/ops/static/console.js" defer>` {
				t.Errorf("%s: script tag %s", p, m)
			}
		}
		for _, re := range []*regexp.Regexp{eventAttr, styleAttr} {
			if m := re.FindString(r.body); m != "" {
				t.Errorf("%s: %s", p, m)
			}
		}
		for _, raw := range []string{"<img", "alert(1)</script>", "href=\"javascript:", "href='javascript:"} {
			if strings.Contains(r.body, raw) {
				t.Errorf("%s: raw %q in the page", p, raw)
			}
		}
	}
	r := get(t, base+fmt.Sprintf("/dead-letters/%d?view=text", text.ID))
	for _, escaped := range []string{"&lt;script&gt;fetch(", "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;", "javascript:alert(3)"} {
		if !strings.Contains(r.body, escaped) {
			t.Errorf("detail page lacks the escaped %q", escaped)
		}
	}
	// The API returns the stored values exactly.
	var d outbox.DeadLetter
	r = get(t, base+fmt.Sprintf("/api/dead-letters/%d", text.ID))
	if err := json.Unmarshal([]byte(r.body), &d); err != nil {
		t.Fatal(err)
	}
	if d.Reason != text.Reason || d.PayloadType != text.PayloadType || string(d.Payload) != hostilePayload || fmt.Sprint(d.Headers) != fmt.Sprint(hostileHeaders) {
		t.Fatalf("API dead letter %+v", d)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("API content type %q", ct)
	}
	// The download is an attachment the browser does not render.
	r = get(t, base+fmt.Sprintf("/dead-letters/%d/payload", text.ID))
	if r.body != hostilePayload || r.header.Get("Content-Type") != "application/octet-stream" ||
		!strings.HasPrefix(r.header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("download: %q %v", r.body, r.header)
	}
}

// TestHugePayload: a 4 MiB binary payload's detail page stays small (the
// hex dump of the first 64 KiB, marked as cut), the listing does not carry
// the payload, and the download returns every byte.
func TestHugePayload(t *testing.T) {
	s := seed(t, backends()[0], outbox.MaxPayloadLimit)
	srv, _ := server(t, s, console.Options{})
	base := srv.URL + "/ops"
	page, err := s.ob.DeadLetterPage(t.Context(), outbox.DeadLetterFilter{PayloadType: "application/x-huge"})
	if err != nil || len(page.DeadLetters) != 1 {
		t.Fatalf("%v %d", err, len(page.DeadLetters))
	}
	huge := page.DeadLetters[0]
	r := get(t, base+fmt.Sprintf("/dead-letters/%d?t=%d", huge.ID, huge.FailedAt.UnixMicro()))
	if r.code != 200 || !strings.Contains(r.body, `id="truncated"`) || !strings.Contains(r.body, "Showing the first 64.0 KiB of 4.0 MiB") {
		t.Fatalf("detail: %d, %d bytes", r.code, len(r.body))
	}
	if len(r.body) > 400<<10 {
		t.Fatalf("detail page of a 4 MiB payload is %d bytes", len(r.body))
	}
	if r := get(t, base+"/dead-letters"); len(r.body) > 100<<10 {
		t.Fatalf("listing is %d bytes", len(r.body))
	}
	r = get(t, base+fmt.Sprintf("/dead-letters/%d/payload", huge.ID))
	if r.body != string(huge.Payload) {
		t.Fatalf("download: %d bytes, want %d", len(r.body), len(huge.Payload))
	}
}

// TestAPI: the JSON API answers in outboxctl's --json shapes, validates
// filters (400 naming the field), pages, counts, and acts through
// X-CSRF-Token, reporting the count affected and 409 when nothing could
// be done.
func TestAPI(t *testing.T) {
	s := seed(t, backends()[0], 0)
	srv, _ := server(t, s, console.Options{})
	base := srv.URL + "/ops"
	var st []console.QueueJSON
	if err := json.Unmarshal([]byte(get(t, base+"/api/status").body), &st); err != nil || len(st) != 3 {
		t.Fatalf("status: %v %+v", err, st)
	}
	qs, err := s.ob.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := console.StatusJSON(qs)
	for i := range want {
		want[i].Now = st[i].Now // read at different times
		for j := range want[i].Partitions {
			want[i].Partitions[j].OldestAgeMS, st[i].Partitions[j].OldestAgeMS = 0, 0
		}
		want[i].OldestAgeMS, st[i].OldestAgeMS = 0, 0
	}
	if fmt.Sprint(st) != fmt.Sprint(want) {
		t.Fatalf("status\n got %+v\nwant %+v", st, want)
	}
	if r := get(t, base+"/api/status?queue=nope"); r.code != 404 {
		t.Fatalf("unknown queue: %d", r.code)
	}
	if r := get(t, base+"/api/dead-letters?status=bogus"); r.code != 400 || !strings.Contains(r.body, "Status") {
		t.Fatalf("bad status: %d %s", r.code, r.body)
	}
	if r := get(t, base+"/api/dead-letters?partition=x"); r.code != 400 {
		t.Fatalf("bad partition: %d", r.code)
	}
	// Paging: two rows per page, every row once.
	seen := map[int64]bool{}
	u := base + "/api/dead-letters?queue=orders&limit=2"
	for pages := 0; ; pages++ {
		var pg outbox.DeadLetterPage
		if err := json.Unmarshal([]byte(get(t, u).body), &pg); err != nil {
			t.Fatal(err)
		}
		for _, d := range pg.DeadLetters {
			if seen[d.ID] {
				t.Fatalf("id %d twice", d.ID)
			}
			seen[d.ID] = true
		}
		if pg.Next == "" {
			break
		}
		u = base + "/api/dead-letters?queue=orders&limit=2&after=" + url.QueryEscape(pg.Next)
	}
	if len(seen) != 4 {
		t.Fatalf("paged %d dead letters, want 4", len(seen))
	}
	if r := get(t, base+"/api/dead-letters/count?queue=orders&partition=2"); !strings.Contains(r.body, `"count": 3`) {
		t.Fatalf("count: %s", r.body)
	}
	token := csrfToken(t, base)
	h := map[string]string{"X-CSRF-Token": token}
	r := post(t, base+"/api/actions/discard", url.Values{"all": {"1"}, "queue": {"orders"}, "partition": {"2"}}, h)
	if r.code != 200 || !strings.Contains(r.body, `"count": 3`) {
		t.Fatalf("discard all: %d %s", r.code, r.body)
	}
	r = post(t, base+"/api/actions/requeue", url.Values{"all": {"1"}, "queue": {"orders"}, "status": {"discarded"}}, h)
	if r.code != 400 {
		t.Fatalf("requeue discarded: %d %s", r.code, r.body)
	}
	bad1 := deadLetter(t, s.ob, "bad-1")
	for range 2 {
		r = post(t, base+"/api/actions/requeue", url.Values{"id": {fmt.Sprint(bad1.ID)}}, h)
	}
	if r.code != 409 {
		t.Fatalf("second requeue: %d %s", r.code, r.body)
	}
	if r := post(t, base+"/api/actions/retry", url.Values{"queue": {"orders"}, "partition": {"0"}}, h); r.code != 409 {
		t.Fatalf("retry of a partition that is not blocked: %d %s", r.code, r.body)
	}
	if n := pending(t, s.ob); n != 0 {
		t.Fatalf("pending %d, want 0", n)
	}
}

// TestOptions: New rejects invalid options with ErrInvalidOptions.
func TestOptions(t *testing.T) {
	s := seed(t, backends()[0], 0)
	for _, o := range []console.Options{{Prefix: "ops"}, {Prefix: "/ops/"}, {Prefix: "/o ps"}, {Prefix: `/"x`}, {PageSize: -1}, {Refresh: -1}} {
		if _, err := console.New(s.ob, o); !errors.Is(err, console.ErrInvalidOptions) {
			t.Errorf("%+v: %v", o, err)
		}
	}
	if _, err := console.New(nil, console.Options{}); !errors.Is(err, console.ErrInvalidOptions) {
		t.Errorf("nil outbox: %v", err)
	}
}
