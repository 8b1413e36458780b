package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/modkit-go/db/internal/operator"
	"github.com/modkit-go/db/outbox"
)

// action is an operator's request, as the confirmation page and the POST
// carry it.
type action struct {
	Do        string // requeue, discard, retry, skip
	IDs       []int64
	All       bool // every pending dead letter the filter selects
	Filter    outbox.DeadLetterFilter
	Form      filterForm
	Queue     string
	Partition int
	Reason    string
}

var verbs = map[string]string{"requeue": "requeued", "discard": "discarded", "retry": "retried", "skip": "skipped"}

// parseAction reads an action from query or form values.
func parseAction(do string, v url.Values) (action, error) {
	a := action{Do: do, Reason: v.Get("reason")}
	if _, ok := verbs[do]; !ok {
		return a, badf("unknown action %q: requeue, discard, retry or skip", do)
	}
	if do == "retry" || do == "skip" {
		a.Queue = v.Get("queue")
		n, err := strconv.Atoi(v.Get("partition"))
		if a.Queue == "" || err != nil {
			return a, badf("%s needs a queue and a partition number", do)
		}
		a.Partition = n
		return a, nil
	}
	for _, s := range v["id"] {
		for _, part := range strings.Split(s, ",") {
			id, err := strconv.ParseInt(strings.TrimSpace(part), 10, 64)
			if err != nil || id < 1 {
				return a, badf("dead-letter id %q is not a positive integer", part)
			}
			a.IDs = append(a.IDs, id)
		}
	}
	a.All = v.Get("all") == "1"
	if a.All == (len(a.IDs) > 0) {
		return a, badf("say which dead letters: select some, or all that the filter selects")
	}
	if a.All {
		f, ff, err := parseFilter(v, time.Now(), 0)
		if err != nil {
			return a, err
		}
		if f.Status != "" && f.Status != "pending" {
			return a, badf("only pending dead letters can be %s (the filter asks for status %s)", verbs[do], f.Status)
		}
		f.Status, f.After, ff.Status, ff.After = "pending", "", "pending", ""
		a.Filter, a.Form = f, ff
	}
	return a, nil
}

// values is the action as form fields, for the confirmation's POST.
func (a action) values() url.Values {
	v := url.Values{}
	switch {
	case a.Do == "retry" || a.Do == "skip":
		v.Set("queue", a.Queue)
		v.Set("partition", strconv.Itoa(a.Partition))
	case a.All:
		v = a.Form.values()
		v.Set("all", "1")
	default:
		ids := make([]string, len(a.IDs))
		for i, id := range a.IDs {
			ids[i] = strconv.FormatInt(id, 10)
		}
		v.Set("id", strings.Join(ids, ","))
	}
	return v
}

// describe says what the action will touch, for the confirmation page.
func (a action) describe() string {
	switch {
	case a.Do == "retry":
		return fmt.Sprintf("Retry the head of queue %s, partition %d, now, with fresh attempts", a.Queue, a.Partition)
	case a.Do == "skip":
		return fmt.Sprintf("Move the head of queue %s, partition %d, to the dead letters and deliver the next message", a.Queue, a.Partition)
	case a.All:
		var parts []string
		for k, v := range a.Form.values() {
			parts = append(parts, k+"="+v[0])
		}
		slices.Sort(parts)
		return fmt.Sprintf("%s every pending dead letter where %s", title(a.Do), strings.Join(parts, ", "))
	}
	return fmt.Sprintf("%s the selected dead letters %v", title(a.Do), a.IDs)
}

func title(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

// confirm shows what an action will do and how many rows it will touch,
// with the POST form that does it.
func (c *Console) confirm(w http.ResponseWriter, r *http.Request) {
	if c.opts.ReadOnly {
		c.fail(w, r, badf("the console is read-only"))
		return
	}
	q := r.URL.Query()
	a, err := parseAction(q.Get("do"), q)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	ctx, cancel := c.ctx(r)
	defer cancel()
	data := struct {
		Action  string
		Text    string
		Count   int64
		Unit    string
		Fields  url.Values
		Skip    bool
		Problem string
		Back    string
	}{Action: a.Do, Text: a.describe(), Fields: a.values(), Skip: a.Do == "skip", Unit: "dead letters",
		Back: c.opts.Prefix + "/dead-letters"}
	switch {
	case a.Do == "retry" || a.Do == "skip":
		data.Unit, data.Back = "partition", c.opts.Prefix+"/queues/"+url.PathEscape(a.Queue)
		qs, err := c.ob.QueueStatus(ctx, a.Queue)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		if a.Partition < 0 || a.Partition >= len(qs.Partitions) {
			c.fail(w, r, fmt.Errorf("%w: queue %s has no partition %d", outbox.ErrUnknownQueue, a.Queue, a.Partition))
			return
		}
		p := qs.Partitions[a.Partition]
		if p.Blocked {
			data.Count = 1
			data.Problem = fmt.Sprintf("Its head failed %d times; last error: %s", p.Attempts, p.LastError)
		} else {
			data.Problem = "This partition is not blocked: the action would change nothing."
		}
	case a.All:
		if data.Count, err = c.ob.CountDeadLetters(ctx, a.Filter); err != nil {
			c.fail(w, r, err)
			return
		}
		data.Back += "?" + a.Form.values().Encode()
	default:
		data.Count = int64(len(a.IDs))
	}
	c.render(w, r, "confirm", c.page("Confirm: "+a.Do, "", data))
}

// act performs an action (the checks of checkPost have passed): it answers
// a page under /actions/ and JSON under /api/actions/.
func (c *Console) act(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, badf("%v", err))
		return
	}
	a, err := parseAction(r.PathValue("action"), r.PostForm)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	ctx, cancel := c.ctx(r)
	defer cancel()
	n, err := c.do(ctx, a)
	c.log.Info("console: action", "action", a.Do, "ids", a.IDs, "all", a.All, "queue", a.Queue, "count", n, "err", err)
	if err != nil && n == 0 {
		c.fail(w, r, err)
		return
	}
	res := ActionJSON{Action: a.Do, Count: n}
	if a.Do == "retry" || a.Do == "skip" {
		res.Queue, res.Partition = a.Queue, &a.Partition
	}
	if strings.HasPrefix(r.URL.Path, c.opts.Prefix+"/api/") {
		if err != nil {
			writeJSON(w, httpStatus(err), map[string]any{"error": err.Error(), "count": n})
			return
		}
		writeJSON(w, http.StatusOK, res)
		return
	}
	unit := "dead letters"
	back := c.opts.Prefix + "/dead-letters"
	if a.Do == "retry" || a.Do == "skip" {
		unit, back = "partition", c.opts.Prefix+"/queues/"+url.PathEscape(a.Queue)
	} else if n == 1 {
		unit = "dead letter"
	}
	data := struct {
		Text  string
		Error string
		Back  string
	}{Text: fmt.Sprintf("%s %d %s.", title(verbs[a.Do]), n, unit), Back: back}
	if err != nil {
		data.Error = err.Error()
	}
	c.render(w, r, "done", c.page("Done", "", data))
}

// do runs an action and returns how many rows it changed. Selected ids are
// changed all or none; dead letters selected by a filter as
// operator.ActOnMatching does (on an error, the count is what the batches
// before it changed).
func (c *Console) do(ctx context.Context, a action) (int, error) {
	switch a.Do {
	case "retry", "skip":
		var err error
		if a.Do == "retry" {
			err = c.ob.RetryPartition(ctx, a.Queue, a.Partition)
		} else {
			err = c.ob.SkipPartition(ctx, a.Queue, a.Partition, a.Reason)
		}
		if err != nil {
			return 0, err
		}
		return 1, nil
	}
	fn := c.ob.RequeueDeadLetters
	if a.Do == "discard" {
		fn = c.ob.DiscardDeadLetters
	}
	if !a.All {
		return fn(ctx, a.IDs)
	}
	return operator.ActOnMatching(ctx, c.ob, a.Filter, fn)
}
