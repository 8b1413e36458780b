package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/modkit-go/db/internal/operator"
	"github.com/modkit-go/db/outbox"
)

// page is what every template receives.
type page struct {
	P        string // the path prefix
	Title    string
	Nav      string // "overview" or "dead-letters"
	CSRF     string
	ReadOnly bool
	Refresh  int64 // milliseconds
	Data     any
}

func (c *Console) page(title, nav string, data any) page {
	return page{P: c.opts.Prefix, Title: title, Nav: nav, CSRF: c.csrf, ReadOnly: c.opts.ReadOnly,
		Refresh: c.opts.Refresh.Milliseconds(), Data: data}
}

// render executes a page's template, or with ?fragment=NAME one of its
// blocks that the page lists as refreshable (the script replaces that
// element in place).
func (c *Console) render(w http.ResponseWriter, r *http.Request, name string, p page, fragments ...string) {
	c.renderStatus(w, r, http.StatusOK, name, p, fragments...)
}

// renderStatus is render with a status code; an error page is always whole.
func (c *Console) renderStatus(w http.ResponseWriter, r *http.Request, code int, name string, p page, fragments ...string) {
	t := c.pages[name]
	block := "layout.html"
	if f := r.URL.Query().Get("fragment"); f != "" && code == http.StatusOK {
		if !slices.Contains(fragments, f) {
			http.Error(w, "unknown fragment", http.StatusNotFound)
			return
		}
		block = f
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, block, p); err != nil {
		c.log.Warn("console: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// fail answers an error: a page for the HTML routes, JSON for the API.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client left (a page refresh cut short by a navigation)
	}
	code := httpStatus(err)
	if code == http.StatusInternalServerError {
		c.log.Warn("console: request failed", "path", r.URL.Path, "err", err)
	}
	if strings.HasPrefix(r.URL.Path, c.opts.Prefix+"/api/") {
		writeJSON(w, code, map[string]string{"error": err.Error()})
		return
	}
	c.renderStatus(w, r, code, "error", c.page("Error", "", struct {
		Code int
		Text string
	}{code, err.Error()}))
}

// badRequest marks an error in the request itself.
type badRequest struct{ error }

func (e badRequest) Unwrap() error { return e.error }

func badf(format string, args ...any) error { return badRequest{fmt.Errorf(format, args...)} }

func httpStatus(err error) int {
	var br badRequest
	switch {
	case errors.As(err, &br), errors.Is(err, outbox.ErrInvalidQueueName), errors.Is(err, outbox.ErrInvalidFilter),
		errors.Is(err, outbox.ErrPartitionOutOfRange):
		return http.StatusBadRequest
	case errors.Is(err, outbox.ErrUnknownQueue), errors.Is(err, outbox.ErrDeadLetterNotFound):
		return http.StatusNotFound
	case errors.Is(err, outbox.ErrStatusConflict), errors.Is(err, outbox.ErrNotBlocked):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func (c *Console) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), c.opts.RequestTimeout)
}

// status reads the status (one queue when queue is set) and feeds the
// charts with it.
func (c *Console) status(r *http.Request, queue string) ([]outbox.QueueStatus, error) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	if queue != "" {
		q, err := c.ob.QueueStatus(ctx, queue)
		if err != nil {
			return nil, err
		}
		return []outbox.QueueStatus{q}, nil
	}
	qs, err := c.ob.Status(ctx)
	if err == nil {
		c.history.observe(qs)
	}
	return qs, err
}

// queueRow is a queue's line in the overview.
type queueRow struct {
	outbox.QueueStatus
	Rate     float64 // delivered per second, from the last two samples
	Statuses []statusCount
}

type statusCount struct {
	Status string
	Count  int64
	URL    string
}

func (c *Console) queueRows(qs []outbox.QueueStatus) []queueRow {
	rates := map[string]float64{}
	for _, h := range c.history.series("") {
		if n := len(h.Samples); n > 0 {
			rates[h.Queue] = h.Samples[n-1].Rate
		}
	}
	rows := make([]queueRow, len(qs))
	for i, q := range qs {
		rows[i] = queueRow{QueueStatus: q, Rate: rates[q.Queue]}
		for _, s := range outbox.DeadLetterStatuses {
			rows[i].Statuses = append(rows[i].Statuses, statusCount{s, q.DeadLetters[s],
				c.opts.Prefix + "/dead-letters?" + url.Values{"queue": {q.Queue}, "status": {s}}.Encode()})
		}
	}
	return rows
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	qs, err := c.status(r, "")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, "overview", c.page("Queues", "overview", c.queueRows(qs)), "queues")
}

// partitionRow is a partition's line on the queue page.
type partitionRow struct {
	outbox.PartitionStatus
	Now          time.Time
	DeadLetters  string // URL of its dead letters
	RetryURL     string
	SkipURL      string
	StateSummary string
}

func (c *Console) queue(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("queue")
	qs, err := c.status(r, name)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	q := qs[0]
	all := r.URL.Query().Get("all") == "1"
	var rows []partitionRow
	for _, p := range q.Partitions {
		if !all && operator.Idle(p) {
			continue
		}
		part := strconv.Itoa(p.Partition)
		row := partitionRow{PartitionStatus: p, Now: q.Now, StateSummary: operator.State(p, q.Now, ago),
			DeadLetters: c.opts.Prefix + "/dead-letters?" + url.Values{"queue": {q.Queue}, "partition": {part}}.Encode()}
		if p.Blocked {
			v := url.Values{"queue": {q.Queue}, "partition": {part}}
			v.Set("do", "retry")
			row.RetryURL = c.opts.Prefix + "/confirm?" + v.Encode()
			v.Set("do", "skip")
			row.SkipURL = c.opts.Prefix + "/confirm?" + v.Encode()
		}
		rows = append(rows, row)
	}
	data := struct {
		Queue      queueRow
		Partitions []partitionRow
		All        bool
		Idle       int
	}{c.queueRows(qs)[0], rows, all, len(q.Partitions) - len(rows)}
	c.render(w, r, "queue", c.page("Queue "+q.Queue, "overview", data), "partitions")
}

// filterForm is the dead-letter filter as the form and the query carry it.
type filterForm struct {
	Queue, Partition, Type, Status, Since, Until string
	Limit                                        int
	After                                        string
}

func (f filterForm) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"queue": f.Queue, "partition": f.Partition, "type": f.Type,
		"status": f.Status, "since": f.Since, "until": f.Until} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// parseFilter reads a filter from query or form values; now anchors
// durations such as "24h" in since and until.
func parseFilter(v url.Values, now time.Time, defLimit int) (outbox.DeadLetterFilter, filterForm, error) {
	ff := filterForm{Queue: v.Get("queue"), Partition: v.Get("partition"), Type: v.Get("type"), Status: v.Get("status"),
		Since: v.Get("since"), Until: v.Get("until"), After: v.Get("after"), Limit: defLimit}
	f := outbox.DeadLetterFilter{Queue: ff.Queue, PayloadType: ff.Type, Status: ff.Status, After: ff.After, Limit: defLimit}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return f, ff, badf("limit %q is not a number", s)
		}
		f.Limit, ff.Limit = n, n
	}
	if ff.Partition != "" {
		n, err := strconv.Atoi(ff.Partition)
		if err != nil {
			return f, ff, badf("partition %q is not a number", ff.Partition)
		}
		f.Partition = &n
	}
	var err error
	if f.FailedFrom, err = operator.When(ff.Since, now); err != nil {
		return f, ff, badf("since: %v", err)
	}
	if f.FailedBefore, err = operator.When(ff.Until, now); err != nil {
		return f, ff, badf("until: %v", err)
	}
	return f, ff, nil
}

// dlRow is a dead letter's line in the listing.
type dlRow struct {
	outbox.DeadLetter
	URL string
}

func (c *Console) detailURL(d outbox.DeadLetter) string {
	return fmt.Sprintf("%s/dead-letters/%d?t=%d", c.opts.Prefix, d.ID, d.FailedAt.UnixMicro())
}

func (c *Console) deadLetters(w http.ResponseWriter, r *http.Request) {
	f, ff, err := parseFilter(r.URL.Query(), time.Now(), c.opts.PageSize)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	ctx, cancel := c.ctx(r)
	defer cancel()
	pg, err := c.ob.DeadLetterPage(ctx, f)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	total, err := c.ob.CountDeadLetters(ctx, f)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	var pending int64
	if !c.opts.ReadOnly && (f.Status == "" || f.Status == "pending") {
		pf := f
		pf.Status = "pending"
		if pending, err = c.ob.CountDeadLetters(ctx, pf); err != nil {
			c.fail(w, r, err)
			return
		}
	}
	rows := make([]dlRow, len(pg.DeadLetters))
	for i, d := range pg.DeadLetters {
		rows[i] = dlRow{d, c.detailURL(d)}
	}
	base := ff.values()
	if ff.Limit != c.opts.PageSize {
		base.Set("limit", strconv.Itoa(ff.Limit))
	}
	data := struct {
		Filter    filterForm
		Statuses  []string
		Rows      []dlRow
		Total     int64
		Pending   int64
		FirstURL  string
		NextURL   string
		Paged     bool
		Hidden    url.Values // the filter, for the action forms
		PageStart int
	}{Filter: ff, Statuses: outbox.DeadLetterStatuses, Rows: rows, Total: total, Pending: pending,
		FirstURL: c.opts.Prefix + "/dead-letters?" + base.Encode(), Paged: ff.After != "", Hidden: ff.values()}
	if pg.Next != "" {
		next := ff.values()
		if ff.Limit != c.opts.PageSize {
			next.Set("limit", strconv.Itoa(ff.Limit))
		}
		next.Set("after", pg.Next)
		data.NextURL = c.opts.Prefix + "/dead-letters?" + next.Encode()
	}
	c.render(w, r, "deadletters", c.page("Dead letters", "dead-letters", data), "dead-letters")
}

// find returns dead letter id. The listing is indexed by failure time, so
// the detail links carry it (t, in Unix microseconds) and the lookup reads
// the rows of that instant; without it, or when the row is not there, it
// pages through every dead letter.
func (c *Console) find(ctx context.Context, r *http.Request) (outbox.DeadLetter, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return outbox.DeadLetter{}, badf("dead-letter id %q is not a positive integer", r.PathValue("id"))
	}
	look := func(f outbox.DeadLetterFilter) (outbox.DeadLetter, bool, error) {
		f.Limit = outbox.MaxDeadLetterLimit
		for {
			pg, err := c.ob.DeadLetterPage(ctx, f)
			if err != nil {
				return outbox.DeadLetter{}, false, err
			}
			for _, d := range pg.DeadLetters {
				if d.ID == id {
					return d, true, nil
				}
			}
			if pg.Next == "" {
				return outbox.DeadLetter{}, false, nil
			}
			f.After = pg.Next
		}
	}
	if us, err := strconv.ParseInt(r.URL.Query().Get("t"), 10, 64); err == nil {
		at := time.UnixMicro(us)
		if d, ok, err := look(outbox.DeadLetterFilter{FailedFrom: at, FailedBefore: at.Add(time.Microsecond)}); ok || err != nil {
			return d, err
		}
	}
	d, ok, err := look(outbox.DeadLetterFilter{})
	if err == nil && !ok {
		err = fmt.Errorf("%w: no dead letter has id %d", outbox.ErrDeadLetterNotFound, id)
	}
	return d, err
}

// header is one header of a dead letter, in key order.
type header struct{ Key, Value string }

func (c *Console) deadLetter(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	d, err := c.find(ctx, r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	hs := make([]header, 0, len(d.Headers))
	for k, v := range d.Headers {
		hs = append(hs, header{k, v})
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].Key < hs[j].Key })
	self := c.detailURL(d)
	pv := renderPayload(d.Payload, r.URL.Query().Get("view"), c.opts.MaxPayloadBytes)
	views := make([]viewLink, len(pv.Views))
	for i, v := range pv.Views {
		views[i] = viewLink{v, self + "&view=" + v, v == pv.Kind}
	}
	ids := url.Values{"id": {strconv.FormatInt(d.ID, 10)}}
	data := struct {
		D           outbox.DeadLetter
		Headers     []header
		Payload     payloadView
		Views       []viewLink
		DownloadURL string
		QueueURL    string
		RequeueURL  string
		DiscardURL  string
	}{D: d, Headers: hs, Payload: pv, Views: views,
		DownloadURL: fmt.Sprintf("%s/dead-letters/%d/payload?t=%d", c.opts.Prefix, d.ID, d.FailedAt.UnixMicro()),
		QueueURL:    c.opts.Prefix + "/queues/" + url.PathEscape(d.Queue)}
	if d.Status == "pending" && !c.opts.ReadOnly {
		ids.Set("do", "requeue")
		data.RequeueURL = c.opts.Prefix + "/confirm?" + ids.Encode()
		ids.Set("do", "discard")
		data.DiscardURL = c.opts.Prefix + "/confirm?" + ids.Encode()
	}
	c.render(w, r, "deadletter", c.page(fmt.Sprintf("Dead letter %d", d.ID), "dead-letters", data))
}

type viewLink struct {
	Name    string
	URL     string
	Current bool
}

// payload downloads a dead letter's payload as bytes, never for display:
// an attachment of type application/octet-stream (with nosniff).
func (c *Console) payload(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	d, err := c.find(ctx, r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="dead-letter-%d.bin"`, d.ID))
	_, _ = w.Write(d.Payload)
}

// Template helpers.

// ago formats a duration for tables, to the millisecond under a second
// and to the second above.
func ago(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func until(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return ago(t.Sub(now))
}

// clip shortens s to n runes on one line.
func clip(n int, s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

func byteSize(n int) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
