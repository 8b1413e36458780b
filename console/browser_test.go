package console_test

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/modkit-go/db/console"
	"github.com/modkit-go/db/outbox"
)

// Environment of the browser tests.
const (
	// chromiumEnv names the Chromium (or Chrome) binary. When it is unset
	// the tests look for one on the PATH and skip when there is none,
	// unless CI is set: then they fail.
	chromiumEnv = "OUTBOX_TEST_CHROMIUM"
	// artifactsEnv names the directory for the screenshots (default: a
	// new temporary directory, printed).
	artifactsEnv = "OUTBOX_TEST_ARTIFACTS"
)

var artifactsFlag = flag.String("console.artifacts", "", "directory for the browser tests' screenshots (default $"+artifactsEnv+", else a new temporary directory)")

// theBrowser is one Chromium for the test binary, started by the first
// browser test and stopped by TestMain.
var theBrowser struct {
	once      sync.Once
	ctx       context.Context // the browser's context; tabs derive from it
	cancel    func()
	err       error
	skip      string
	artifacts string
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if theBrowser.cancel != nil {
		theBrowser.cancel()
	}
	os.Exit(code)
}

// findChromium returns the browser binary, or why there is none.
func findChromium() (path, missing string) {
	if p := os.Getenv(chromiumEnv); p != "" {
		return p, ""
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, ""
		}
	}
	return "", fmt.Sprintf("browser test skipped: no Chromium found; install it (apt-get install chromium) or set %s to its path", chromiumEnv)
}

// tab opens a new tab in the shared browser for t, closed at t's end. It
// skips when no browser is available (fails under CI or when chromiumEnv
// is set).
func tab(t *testing.T) context.Context {
	t.Helper()
	b := &theBrowser
	b.once.Do(func() {
		path, missing := findChromium()
		if missing != "" {
			b.skip = missing
			return
		}
		dir, err := os.MkdirTemp("", "console-chromium-")
		if err != nil {
			b.err = err
			return
		}
		b.artifacts = *artifactsFlag
		if b.artifacts == "" {
			b.artifacts = os.Getenv(artifactsEnv)
		}
		if b.artifacts == "" {
			if b.artifacts, err = os.MkdirTemp("", "console-screenshots-"); err != nil {
				b.err = err
				return
			}
		} else if err := os.MkdirAll(b.artifacts, 0o755); err != nil {
			b.err = err
			return
		}
		// Flags for a closed network, and for root (no sandbox).
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(path), chromedp.UserDataDir(dir), chromedp.DisableGPU, chromedp.NoFirstRun,
			chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
			chromedp.WindowSize(1280, 900))
		if os.Geteuid() == 0 {
			opts = append(opts, chromedp.NoSandbox)
		}
		alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancelCtx := chromedp.NewContext(alloc)
		b.ctx = ctx
		b.cancel = func() {
			cancelCtx()
			cancelAlloc()
			_ = os.RemoveAll(dir)
		}
		// The first run starts the browser, bound to the context it is
		// given: the browser's own, not one with a deadline.
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`1`)); err != nil {
			b.err = fmt.Errorf("start %s: %w", path, err)
		}
	})
	switch {
	case b.err != nil:
		t.Fatalf("browser: %v", b.err)
	case b.skip != "" && os.Getenv("CI") != "":
		t.Fatalf("%s (CI is set: the browser tests must run)", b.skip)
	case b.skip != "":
		t.Skip(b.skip)
	}
	ctx, cancel := chromedp.NewContext(b.ctx)
	t.Cleanup(cancel)
	return ctx
}

// monitor records what a tab did that a hostile string could cause:
// dialogs, requests, exceptions and CSP reports.
type monitor struct {
	mu         sync.Mutex
	dialogs    []string
	requests   []string
	exceptions []string
	security   []string
}

func watch(t *testing.T, ctx context.Context) *monitor {
	t.Helper()
	m := &monitor{}
	err := chromedp.Listen(ctx, func(ev any) {
		m.mu.Lock()
		defer m.mu.Unlock()
		switch e := ev.(type) {
		case *page.EventJavascriptDialogOpening:
			m.dialogs = append(m.dialogs, e.Message)
			go func() {
				_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
			}()
		case *network.EventRequestWillBeSent:
			m.requests = append(m.requests, e.Request.URL)
		case *runtime.EventExceptionThrown:
			m.exceptions = append(m.exceptions, fmt.Sprintf("%s at %s:%d", e.ExceptionDetails.Text, e.ExceptionDetails.URL, e.ExceptionDetails.LineNumber))
		case *log.EventEntryAdded:
			if e.Entry.Source == log.EntrySourceSecurity || strings.Contains(e.Entry.Text, "Content Security Policy") {
				m.security = append(m.security, e.Entry.Text)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// reset forgets what was recorded.
func (m *monitor) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dialogs, m.requests, m.exceptions, m.security = nil, nil, nil, nil
}

// check fails the test for any dialog, exception or CSP report, and for
// any request other than the allowed URLs.
func (m *monitor) check(t *testing.T, where string, allowed ...string) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.dialogs) > 0 {
		t.Errorf("%s: a dialog opened: %q", where, m.dialogs)
	}
	if len(m.exceptions) > 0 {
		t.Errorf("%s: script exceptions: %q", where, m.exceptions)
	}
	if len(m.security) > 0 {
		t.Errorf("%s: security reports: %q", where, m.security)
	}
	for _, u := range m.requests {
		if !slices.Contains(allowed, u) && !strings.HasSuffix(u, "/favicon.ico") {
			t.Errorf("%s: unexpected request %s", where, u)
		}
	}
}

// run runs browser actions with a bound, failing the test on error.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// click clicks the first element sel selects, found and clicked in one
// evaluation: a table that refreshes itself replaces its rows, so a node
// found in one step may be gone in the next.
func click(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	q, err := json.Marshal(sel)
	if err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, sel, fmt.Sprintf(`document.querySelector(%s) !== null`, q))
	run(t, ctx, "click "+sel, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector(%s).click()`, q)))
}

// eval evaluates a JavaScript expression.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// poll waits until a JavaScript expression is true, across navigations
// (an evaluation fails while the next page loads).
func poll(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := chromedp.Run(ectx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s (%s): %v", what, expr, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// text returns the textContent of the first element sel selects, once
// there is one (read in one evaluation, so a refresh that replaces the
// element cannot come between finding and reading it).
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	q, err := json.Marshal(sel)
	if err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, sel, fmt.Sprintf(`document.querySelector(%s) !== null`, q))
	return eval[string](t, ctx, fmt.Sprintf(`document.querySelector(%s).textContent`, q))
}

// screenshot saves the page as NAME.png in the artifacts directory.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(theBrowser.artifacts, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// inert is a script that is true when the page holds no element or
// attribute that a hostile string could have injected.
const inert = `(() => {
	const all = [...document.querySelectorAll('*')];
	return document.querySelectorAll('img, iframe, object, embed, frame, base').length === 0 &&
		document.scripts.length === 1 && document.scripts[0].getAttribute('src').endsWith('/static/console.js') &&
		!all.some(e => [...e.attributes].some(a => a.name.toLowerCase().startsWith('on') ||
			/^\s*javascript:/i.test(a.value) && ['href', 'src', 'action', 'formaction'].includes(a.name.toLowerCase())));
})()`

// TestBrowser drives Chromium through the console over a seeded database
// on each backend: the overview lists the queues and refreshes itself in
// place, the charts draw, the dead-letter filters and paging work, the
// hostile dead letter renders as inert text equal to what is stored, a
// 4 MiB payload leaves the page responsive, and the actions taken from the
// pages (requeue one, requeue selected, retry and skip a blocked
// partition, discard all that a filter selects) change the database and
// make a running worker deliver the messages.
func TestBrowser(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s := seed(t, b, outbox.MaxPayloadLimit)
			testBrowser(t, tab(t), b, s)
		})
	}
}

func testBrowser(t *testing.T, ctx context.Context, b backend, s seeded) {
	start := time.Now()
	step := func(name string) { t.Logf("%6.2fs %s", time.Since(start).Seconds(), name) }
	defer step("done")
	srv, c := server(t, s, console.Options{SampleInterval: 100 * time.Millisecond, Refresh: 500 * time.Millisecond})
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	base := srv.URL + "/ops"
	w := startWorker(t, s)
	m := watch(t, ctx)

	// Traffic for the charts: a backlog that grows on emails (no worker)
	// and deliveries on orders, over several samples.
	producer, err := outbox.New(s.open(), s.d, outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for round := range 6 {
		enqueueN(t, producer, "emails", 5*(round+1), 0, 1)
		enqueueN(t, producer, "orders", 40, 0, 2)
		n := samples(t, base, "orders")
		waitFor(t, "a new sample", func() bool { return samples(t, base, "orders") > n })
	}
	emails := backlog(t, s, "emails")

	step("traffic")
	// The overview: the seeded queues, the charts drawn, the table
	// refreshed in place (the page is not reloaded: a marker survives).
	run(t, ctx, "overview", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`#queues tr[data-queue="orders"]`)))
	if got := text(t, ctx, `#queues tr[data-queue="orders"] td.blocked-count`); got != "2" {
		t.Errorf("orders blocked: %q, want 2", got)
	}
	poll(t, ctx, "the charts", `document.querySelectorAll('figure.chart svg polyline.backlog').length === 3 &&
		document.querySelector('figure.chart[data-queue="orders"] svg').dataset.points >= 6`)
	// Enough samples: stop sampling (the page's refreshes still add some),
	// so that three backends on a shared machine do not read the status
	// ten times a second each for the rest of the test.
	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "marker", chromedp.Evaluate[chromedp.Void](`window.stayed = true`))
	enqueueN(t, producer, "emails", 7, 0, 1)
	poll(t, ctx, "the refreshed backlog", fmt.Sprintf(`window.stayed === true &&
		document.querySelector('#queues tr[data-queue="emails"] td.backlog').textContent === "%d"`, emails+7))
	screenshot(t, ctx, b.name+"-overview")
	m.check(t, "overview", base+"/", base+"/static/console.css", base+"/static/console.js", base+"/api/history", base+"/?fragment=queues")

	step("overview")
	// The queue page: the blocked partitions, with their last errors.
	run(t, ctx, "queue page", chromedp.Navigate(base+"/queues/orders"), chromedp.WaitVisible(chromedp.CSS(`tr[data-partition="3"]`)))
	if got := text(t, ctx, `tr[data-partition="1"] td.reason`); !strings.Contains(got, "downstream refuses poison-1") {
		t.Errorf("partition 1's last error: %q", got)
	}
	poll(t, ctx, "the queue chart", `document.querySelector('figure.chart[data-queue="orders"] svg polyline.rate') !== null`)
	screenshot(t, ctx, b.name+"-queue")

	step("queue page")
	// Filters and paging, through the form.
	run(t, ctx, "filter", chromedp.Navigate(base+"/dead-letters"),
		chromedp.SetValue(chromedp.CSS(`input[name="queue"]`), "orders"),
		chromedp.SetValue(chromedp.CSS(`input[name="partition"]`), "2"),
		chromedp.Click(chromedp.CSS(`#apply`)))
	poll(t, ctx, "the filtered list", `location.search.includes('partition=2') && document.querySelectorAll('#dl-table tr[data-id]').length === 3`)
	if got := text(t, ctx, "#total"); got != "3" {
		t.Errorf("total: %q, want 3", got)
	}
	screenshot(t, ctx, b.name+"-dead-letters")
	run(t, ctx, "per page", chromedp.SetValue(chromedp.CSS(`input[name="limit"]`), "2"), chromedp.Click(chromedp.CSS(`#apply`)))
	poll(t, ctx, "the first page", `location.search.includes('limit=2') && document.querySelectorAll('#dl-table tr[data-id]').length === 2`)
	first := eval[[]string](t, ctx, `[...document.querySelectorAll('#dl-table tr[data-id]')].map(r => r.dataset.id)`)
	run(t, ctx, "next page", chromedp.Click(chromedp.CSS(`#next`)))
	poll(t, ctx, "the second page", `location.search.includes('after=') && document.querySelectorAll('#dl-table tr[data-id]').length === 1`)
	second := eval[[]string](t, ctx, `[...document.querySelectorAll('#dl-table tr[data-id]')].map(r => r.dataset.id)`)
	if all := append(first, second...); len(slices.Compact(slices.Sorted(slices.Values(all)))) != 3 {
		t.Errorf("pages %v and %v: want 3 different dead letters", first, second)
	}
	m.reset()

	step("filters")
	// The hostile dead letter: inert text, equal to what is stored.
	hostile := deadLetter(t, s.ob, xssScript)
	page := fmt.Sprintf("%s/dead-letters/%d?t=%d", base, hostile.ID, hostile.FailedAt.UnixMicro())
	run(t, ctx, "hostile dead letter", chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS("#payload")))
	for sel, want := range map[string]string{"#reason": hostile.Reason, "#payload-type": hostile.PayloadType, "#payload": hostilePayload} {
		if got := text(t, ctx, sel); got != want {
			t.Errorf("%s: DOM text %q, stored %q", sel, got, want)
		}
	}
	if !strings.Contains(hostile.Reason, xssScript) || !strings.Contains(hostile.Reason, "\uFFFD") {
		t.Errorf("stored reason %q lacks the script or the replaced invalid UTF-8", hostile.Reason)
	}
	headers := eval[[][]string](t, ctx, `[...document.querySelectorAll('#headers tbody tr')].map(r => [r.cells[0].textContent, r.cells[1].textContent])`)
	got := map[string]string{}
	for _, kv := range headers {
		got[kv[0]] = kv[1]
	}
	if fmt.Sprint(got) != fmt.Sprint(hostileHeaders) {
		t.Errorf("headers in the DOM %q, stored %q", got, hostileHeaders)
	}
	if !eval[bool](t, ctx, inert) {
		t.Errorf("the hostile dead letter's page holds an injected element or attribute")
	}
	screenshot(t, ctx, b.name+"-hostile")
	m.check(t, "hostile dead letter", page, base+"/static/console.css", base+"/static/console.js")

	// The binary one, as a hex dump of exactly its bytes.
	bin := deadLetter(t, s.ob, "\xff")
	page = fmt.Sprintf("%s/dead-letters/%d?t=%d", base, bin.ID, bin.FailedAt.UnixMicro())
	m.reset()
	run(t, ctx, "binary dead letter", chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS("#payload.hex")))
	if got := text(t, ctx, "#payload"); got != hex.Dump([]byte(hostileBinary)) {
		t.Errorf("hex view %q", got)
	}
	if !eval[bool](t, ctx, inert) {
		t.Errorf("the binary dead letter's page holds an injected element or attribute")
	}
	m.check(t, "binary dead letter", page, base+"/static/console.css", base+"/static/console.js")

	// The listing that shows them is inert too.
	m.reset()
	page = base + "/dead-letters?queue=orders&partition=2"
	run(t, ctx, "hostile listing", chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS("#dl-table")))
	if !eval[bool](t, ctx, inert) {
		t.Errorf("the listing holds an injected element or attribute")
	}
	m.check(t, "hostile listing", page, base+"/static/console.css", base+"/static/console.js")

	step("hostile")
	// A 4 MiB payload: the page loads, shows the cut hex dump, and answers.
	huge, err := s.ob.DeadLetterPage(t.Context(), outbox.DeadLetterFilter{PayloadType: "application/x-huge"})
	if err != nil || len(huge.DeadLetters) != 1 {
		t.Fatalf("huge: %v", err)
	}
	h := huge.DeadLetters[0]
	run(t, ctx, "huge payload", chromedp.Navigate(fmt.Sprintf("%s/dead-letters/%d?t=%d", base, h.ID, h.FailedAt.UnixMicro())),
		chromedp.WaitVisible(chromedp.CSS("#truncated")))
	if n, want := eval[int](t, ctx, `document.getElementById('payload').textContent.length`), len(hex.Dump(h.Payload[:64<<10])); n != want {
		t.Errorf("the huge payload's page shows %d characters, want %d (the hex dump of its first 64 KiB)", n, want)
	}
	if got := eval[int](t, ctx, `1 + 1`); got != 2 {
		t.Errorf("the page does not answer after the huge payload")
	}

	step("huge")
	// Requeue one from its page: the worker delivers it.
	bad1 := deadLetter(t, s.ob, "bad-1")
	run(t, ctx, "requeue one", chromedp.Navigate(base+"/dead-letters?queue=orders&partition=0"),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-id="%d"] a`, bad1.ID))),
		chromedp.WaitVisible(chromedp.CSS("#payload")),
		chromedp.Click(chromedp.CSS("#requeue")), chromedp.WaitVisible(chromedp.CSS("#confirm")))
	if got := text(t, ctx, "#confirm-count"); got != "1" {
		t.Errorf("confirmation count %q, want 1", got)
	}
	screenshot(t, ctx, b.name+"-confirm")
	run(t, ctx, "confirm requeue", chromedp.Click(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS("#result")))
	if got := text(t, ctx, "#result"); got != "Requeued 1 dead letter." {
		t.Errorf("result %q", got)
	}
	waitFor(t, "the worker to deliver bad-1", func() bool { return w.received("bad-1") })

	step("requeue one")
	// Requeue selected: bad-2 and the binary one.
	bad2 := deadLetter(t, s.ob, "bad-2")
	run(t, ctx, "requeue selected", chromedp.Navigate(base+"/dead-letters?queue=orders&partition=2"),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`input[name="id"][value="%d"]`, bad2.ID))),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`input[name="id"][value="%d"]`, bin.ID))),
		chromedp.Click(chromedp.CSS("#requeue-selected")), chromedp.WaitVisible(chromedp.CSS("#confirm")))
	if got := text(t, ctx, "#confirm-count"); got != "2" {
		t.Errorf("confirmation count %q, want 2", got)
	}
	run(t, ctx, "confirm selected", chromedp.Click(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS("#result")))
	if got := text(t, ctx, "#result"); got != "Requeued 2 dead letters." {
		t.Errorf("result %q", got)
	}
	waitFor(t, "the worker to deliver bad-2 and the binary one", func() bool { return w.received("bad-2") && w.received(hostileBinary) })

	step("requeue selected")
	// A blocked partition resumes from its queue page.
	run(t, ctx, "queue page", chromedp.Navigate(base+"/queues/orders"))
	click(t, ctx, `tr[data-partition="3"] a.button`)
	run(t, ctx, "retry partition", chromedp.WaitVisible(chromedp.CSS("#confirm")))
	if got := text(t, ctx, "#confirm-count"); got != "1" {
		t.Errorf("retry confirmation count %q, want 1", got)
	}
	run(t, ctx, "confirm retry", chromedp.Click(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS("#result")))
	if got := text(t, ctx, "#result"); got != "Retried 1 partition." {
		t.Errorf("result %q", got)
	}
	waitFor(t, "the worker to deliver poison-3", func() bool { return w.received("poison-3") })

	step("retry")
	// Skip the head of the other blocked partition, with a reason: the
	// message behind it is delivered.
	run(t, ctx, "queue page", chromedp.Navigate(base+"/queues/orders"))
	click(t, ctx, `tr[data-partition="1"] a.button:nth-of-type(2)`)
	run(t, ctx, "skip partition", chromedp.WaitVisible(chromedp.CSS("#confirm")),
		chromedp.SetValue(chromedp.CSS(`input[name="reason"]`), "operator skipped"),
		chromedp.Click(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS("#result")))
	if got := text(t, ctx, "#result"); got != "Skipped 1 partition." {
		t.Errorf("result %q", got)
	}
	waitFor(t, "the worker to deliver o3", func() bool { return w.received("o3") })
	if d := deadLetter(t, s.ob, "poison-1"); d.Reason != "operator skipped" {
		t.Errorf("the skipped head's reason %q", d.Reason)
	}
	step("skip")

	// Discard every pending one that a filter selects: the hostile one
	// and the skipped head.
	run(t, ctx, "discard all", chromedp.Navigate(base+"/dead-letters?queue=orders"),
		chromedp.Click(chromedp.CSS("#discard-all")), chromedp.WaitVisible(chromedp.CSS("#confirm")))
	if got := text(t, ctx, "#confirm-count"); got != "2" {
		t.Errorf("discard confirmation count %q, want 2", got)
	}
	run(t, ctx, "confirm discard", chromedp.Click(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS("#result")))
	if got := text(t, ctx, "#result"); got != "Discarded 2 dead letters." {
		t.Errorf("result %q", got)
	}
	for status, want := range map[string]int64{"discarded": 2, "pending": 0, "resolved": 3} {
		n, err := s.ob.CountDeadLetters(t.Context(), outbox.DeadLetterFilter{Queue: "orders", Status: status})
		if err != nil || n != want {
			t.Errorf("%s: %d %v, want %d", status, n, err, want)
		}
	}
}

// enqueueN enqueues n messages on queue, spread over the partitions.
func enqueueN(t *testing.T, ob *outbox.Outbox, queue string, n int, partitions ...int) {
	t.Helper()
	err := ob.InTx(t.Context(), func(tx *sql.Tx) error {
		for i := range n {
			m := outbox.Message{Queue: queue, Partition: partitions[i%len(partitions)], Payload: fmt.Appendf(nil, "m%d", i), PayloadType: "text/plain"}
			if err := ob.Enqueue(t.Context(), tx, m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// samples counts the console's samples of queue.
func samples(t *testing.T, base, queue string) int {
	t.Helper()
	r := get(t, base+"/api/history?queue="+queue)
	var h struct {
		Queues []struct {
			Samples []json.RawMessage `json:"samples"`
		} `json:"queues"`
	}
	if err := json.Unmarshal([]byte(r.body), &h); err != nil || r.code != http.StatusOK {
		t.Fatalf("history: %d %v", r.code, err)
	}
	if len(h.Queues) == 0 {
		return 0
	}
	return len(h.Queues[0].Samples)
}

func backlog(t *testing.T, s seeded, queue string) int64 {
	t.Helper()
	q, err := s.ob.QueueStatus(t.Context(), queue)
	if err != nil {
		t.Fatal(err)
	}
	return q.Backlog
}
