package console

import (
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/modkit-go/db/outbox"
)

// ErrInvalidOptions is wrapped by New's errors for an invalid Options field.
var ErrInvalidOptions = errors.New("console: invalid options")

// Options configure a Console. The zero value serves at the root path,
// without a token (loopback requests only), with actions enabled.
type Options struct {
	// Prefix is the path the console is mounted under: "" (the root) or a
	// path such as "/ops/outbox" (no trailing slash; letters, digits and
	// "/._-" only). Mount the Console at Prefix+"/".
	Prefix string
	// Token, when set, is required on every request (see "Security" in
	// the package documentation).
	Token string
	// Hosts are host names (without port) accepted in the Host header
	// when Token is empty, besides loopback addresses and "localhost":
	// set them when the console is mounted behind the application's own
	// authentication on a public name.
	Hosts []string
	// ReadOnly refuses every action (403) and shows none.
	ReadOnly bool
	// Logger receives the console's logs: each action at info level, a
	// failed status sample or request at warn level. Default: discard.
	Logger *slog.Logger
	// SampleInterval is how often Start's loop samples the status for the
	// charts (default 2s); History how long samples are kept (default 10m).
	SampleInterval, History time.Duration
	// Refresh is how often pages refresh their tables (default 3s).
	Refresh time.Duration
	// MaxPayloadBytes caps how much of a payload the detail page shows
	// (default 64 KiB); the whole payload stays downloadable.
	MaxPayloadBytes int
	// PageSize is how many dead letters a page lists unless the request
	// says (default 50).
	PageSize int
	// RequestTimeout bounds each request's database work (default 30s).
	RequestTimeout time.Duration
}

// Console serves the operator pages and the JSON API of one Outbox. It is
// an http.Handler, safe for concurrent use.
type Console struct {
	ob      *outbox.Outbox
	opts    Options
	log     *slog.Logger
	csrf    string
	token   [32]byte // SHA-256 of Options.Token
	pages   map[string]*template.Template
	mux     *http.ServeMux
	cop     *http.CrossOriginProtection
	history *history
	sampler sampler
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

var prefixRE = regexp.MustCompile(`^(/[A-Za-z0-9._-]+)*$`)

// New returns a Console over ob. It fails with an error wrapping
// ErrInvalidOptions for an invalid field of opts.
func New(ob *outbox.Outbox, opts Options) (*Console, error) {
	if ob == nil {
		return nil, fmt.Errorf("%w: nil *outbox.Outbox", ErrInvalidOptions)
	}
	if !prefixRE.MatchString(opts.Prefix) {
		return nil, fmt.Errorf("%w: Prefix %q: empty or /segments of letters, digits and ._- with no trailing slash", ErrInvalidOptions, opts.Prefix)
	}
	for name, d := range map[string]*time.Duration{
		"SampleInterval": &opts.SampleInterval, "History": &opts.History, "Refresh": &opts.Refresh, "RequestTimeout": &opts.RequestTimeout,
	} {
		if *d < 0 {
			return nil, fmt.Errorf("%w: %s %v is negative", ErrInvalidOptions, name, *d)
		}
	}
	if opts.MaxPayloadBytes < 0 || opts.PageSize < 0 || opts.PageSize > outbox.MaxDeadLetterLimit {
		return nil, fmt.Errorf("%w: MaxPayloadBytes %d, PageSize %d (0..%d)", ErrInvalidOptions, opts.MaxPayloadBytes, opts.PageSize, outbox.MaxDeadLetterLimit)
	}
	opts.SampleInterval = or(opts.SampleInterval, 2*time.Second)
	opts.History = or(opts.History, 10*time.Minute)
	opts.Refresh = or(opts.Refresh, 3*time.Second)
	opts.RequestTimeout = or(opts.RequestTimeout, 30*time.Second)
	opts.MaxPayloadBytes = or(opts.MaxPayloadBytes, 64<<10)
	opts.PageSize = or(opts.PageSize, 50)
	c := &Console{ob: ob, opts: opts, log: opts.Logger, cop: http.NewCrossOriginProtection()}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	c.csrf = hex.EncodeToString(b[:])
	c.token = tokenHash(opts.Token)
	c.history = newHistory(opts.SampleInterval, opts.History)
	c.sampler.c = c
	if err := c.parseTemplates(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// parseTemplates builds one template set per page: the layout, the shared
// blocks and the page's own file.
func (c *Console) parseTemplates() error {
	funcs := template.FuncMap{
		"ago":    ago,
		"until":  until,
		"clip":   clip,
		"micros": func(t time.Time) int64 { return t.UnixMicro() },
		"utc":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000") },
		"bytes":  byteSize,
		"add":    func(a, b int) int { return a + b },
	}
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return err
	}
	files, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	c.pages = map[string]*template.Template{}
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(f, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, f)
		if err != nil {
			return err
		}
		c.pages[name] = t
	}
	return nil
}

// routes registers every page, action and API endpoint under the prefix.
func (c *Console) routes() {
	p := c.opts.Prefix
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET "+p+"/static/", http.StripPrefix(p+"/static/", http.FileServerFS(static)))
	m.HandleFunc("GET "+p+"/{$}", c.overview)
	m.HandleFunc("GET "+p+"/queues/{queue}", c.queue)
	m.HandleFunc("GET "+p+"/dead-letters", c.deadLetters)
	m.HandleFunc("GET "+p+"/dead-letters/{id}", c.deadLetter)
	m.HandleFunc("GET "+p+"/dead-letters/{id}/payload", c.payload)
	m.HandleFunc("GET "+p+"/confirm", c.confirm)
	m.HandleFunc("POST "+p+"/actions/{action}", c.act)

	m.HandleFunc("GET "+p+"/api/status", c.apiStatus)
	m.HandleFunc("GET "+p+"/api/history", c.apiHistory)
	m.HandleFunc("GET "+p+"/api/dead-letters", c.apiDeadLetters)
	m.HandleFunc("GET "+p+"/api/dead-letters/count", c.apiCount)
	m.HandleFunc("GET "+p+"/api/dead-letters/{id}", c.apiDeadLetter)
	m.HandleFunc("GET "+p+"/api/csrf", c.apiCSRF)
	m.HandleFunc("POST "+p+"/api/actions/{action}", c.act)
	c.mux = m
}

// ServeHTTP applies the security checks (see the package documentation),
// then serves the request.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
		"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	if !c.authorized(r) {
		if c.opts.Token == "" {
			http.Error(w, "forbidden: without a token the console answers only requests to a loopback host", http.StatusForbidden)
			return
		}
		h.Set("WWW-Authenticate", `Basic realm="outbox console", charset="UTF-8"`)
		http.Error(w, "unauthorized: the console's token is required", http.StatusUnauthorized)
		return
	}
	if r.Method == http.MethodPost {
		if err := c.checkPost(r); err != nil {
			c.log.Warn("console: action refused", "path", r.URL.Path, "err", err)
			http.Error(w, "forbidden: "+err.Error(), http.StatusForbidden)
			return
		}
	}
	c.mux.ServeHTTP(w, r)
}
