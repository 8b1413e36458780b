package console

import (
	"context"
	"net/http"
	"time"

	"github.com/modkit-go/db/outbox"
)

// apiStatus: GET {prefix}/api/status[?queue=Q], the JSON of outboxctl
// status --json.
func (c *Console) apiStatus(w http.ResponseWriter, r *http.Request) {
	qs, err := c.status(r, r.URL.Query().Get("queue"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, StatusJSON(qs))
}

// apiHistory: GET {prefix}/api/history[?queue=Q], the charts' samples.
func (c *Console) apiHistory(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		IntervalMS int64         `json:"interval_ms"`
		Queues     []historyJSON `json:"queues"`
	}{c.opts.SampleInterval.Milliseconds(), c.history.series(r.URL.Query().Get("queue"))})
}

// apiDeadLetters: GET {prefix}/api/dead-letters?queue=&partition=&type=
// &status=&since=&until=&limit=&after=, the JSON of outboxctl dead-letters
// list --json (an outbox.DeadLetterPage).
func (c *Console) apiDeadLetters(w http.ResponseWriter, r *http.Request) {
	serveFiltered(c, w, r, c.ob.DeadLetterPage)
}

// apiCount: GET {prefix}/api/dead-letters/count with the list's filter:
// {"count": N}.
func (c *Console) apiCount(w http.ResponseWriter, r *http.Request) {
	serveFiltered(c, w, r, func(ctx context.Context, f outbox.DeadLetterFilter) (map[string]int64, error) {
		n, err := c.ob.CountDeadLetters(ctx, f)
		return map[string]int64{"count": n}, err
	})
}

// serveFiltered answers with the JSON of what read returns for the
// request's dead-letter filter.
func serveFiltered[T any](c *Console, w http.ResponseWriter, r *http.Request, read func(context.Context, outbox.DeadLetterFilter) (T, error)) {
	f, _, err := parseFilter(r.URL.Query(), time.Now(), c.opts.PageSize)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	ctx, cancel := c.ctx(r)
	defer cancel()
	v, err := read(ctx, f)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// apiDeadLetter: GET {prefix}/api/dead-letters/{id}[?t=MICROS], the JSON
// of outboxctl dead-letters show --json (an outbox.DeadLetter).
func (c *Console) apiDeadLetter(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	d, err := c.find(ctx, r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// apiCSRF: GET {prefix}/api/csrf, the anti-forgery token that API clients
// send as X-CSRF-Token with each action. Another origin cannot read it.
func (c *Console) apiCSRF(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"csrf": c.csrf})
}
