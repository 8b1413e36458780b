package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/modkit-go/db/internal/operator"
	"github.com/modkit-go/db/outbox"
)

// runDeadLetters dispatches dead-letters list|show|count|requeue|discard|cleanup.
func runDeadLetters(ctx context.Context, c *cli, args []string) error {
	subs := map[string]func(context.Context, *cli, []string) error{
		"list": dlList, "show": dlShow, "count": dlCount,
		"requeue": dlRequeue, "discard": dlDiscard, "cleanup": dlCleanup,
	}
	if len(args) == 0 {
		return exitf(exitUsage, "missing subcommand: list, show, count, requeue, discard or cleanup")
	}
	fn, ok := subs[args[0]]
	if !ok {
		return exitf(exitUsage, "unknown subcommand %q: list, show, count, requeue, discard or cleanup", args[0])
	}
	return fn(ctx, c, args[1:])
}

// filterFlags are the dead-letter filter's flags.
type filterFlags struct {
	queue, payloadType, status, since, until, after string
	partition                                       int
	limit                                           int
}

func (f *filterFlags) register(fs *flag.FlagSet, paging bool) {
	fs.StringVar(&f.queue, "queue", "", "only this queue")
	fs.IntVar(&f.partition, "partition", -1, "only this partition")
	fs.StringVar(&f.payloadType, "type", "", "only this payload type")
	fs.StringVar(&f.status, "status", "", "only this status: "+strings.Join(outbox.DeadLetterStatuses, ", "))
	fs.StringVar(&f.since, "since", "", "failed at or after: RFC 3339 time, or a duration ago (24h)")
	fs.StringVar(&f.until, "until", "", "failed before: RFC 3339 time, or a duration ago")
	if paging {
		fs.IntVar(&f.limit, "limit", 50, "rows per page")
		fs.StringVar(&f.after, "after", "", "continue a listing: the cursor the previous page printed")
	}
}

// filter builds the library's filter; the library validates it.
func (f *filterFlags) filter(now time.Time) (outbox.DeadLetterFilter, error) {
	df := outbox.DeadLetterFilter{Queue: f.queue, PayloadType: f.payloadType, Status: f.status, Limit: f.limit, After: f.after}
	if f.partition >= 0 {
		p := f.partition
		df.Partition = &p
	}
	var err error
	if df.FailedFrom, err = operator.When(f.since, now); err != nil {
		return df, exitf(exitUsage, "--since: %v", err)
	}
	if df.FailedBefore, err = operator.When(f.until, now); err != nil {
		return df, exitf(exitUsage, "--until: %v", err)
	}
	return df, nil
}

// openFiltered parses a filtering subcommand's flags, builds its filter
// and opens the database.
func (c *cli) openFiltered(ctx context.Context, fs *flag.FlagSet, f *filterFlags, args []string) (*session, outbox.DeadLetterFilter, error) {
	if err := parse(fs, args, 0); err != nil {
		return nil, outbox.DeadLetterFilter{}, err
	}
	df, err := f.filter(time.Now())
	if err != nil {
		return nil, df, err
	}
	s, err := c.open(ctx, false)
	return s, df, err
}

func dlList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("dead-letters list")
	var f filterFlags
	f.register(fs, true)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	s, df, err := c.openFiltered(ctx, fs, &f, args)
	if err != nil {
		return err
	}
	defer s.Close()
	page, err := s.o.DeadLetterPage(ctx, df)
	if err != nil {
		return classify(err)
	}
	if *asJSON {
		return writeJSON(c.stdout, page)
	}
	if len(page.DeadLetters) == 0 {
		fmt.Fprintln(c.stdout, "no dead letters")
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tQUEUE\tPARTITION\tSEQ\tTYPE\tSTATUS\tATTEMPTS\tFAILED AT\tREASON")
	for _, d := range page.DeadLetters {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.Queue, d.Partition, d.Seq, d.PayloadType,
			d.Status, d.Attempts, d.FailedAt.UTC().Format(time.RFC3339), oneLine(d.Reason, 60))
	}
	_ = tw.Flush()
	if page.Next != "" {
		fmt.Fprintf(c.stdout, "more: --after %s\n", page.Next)
	}
	return nil
}

// dlShow prints one dead letter in full, payload included.
func dlShow(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("dead-letters show")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return exitf(exitUsage, "usage: outboxctl dead-letters show ID")
	}
	id, err := strconv.ParseInt(fs.Arg(0), 10, 64)
	if err != nil || id < 1 {
		return exitf(exitUsage, "dead-letter id %q is not a positive integer", fs.Arg(0))
	}
	s, err := c.open(ctx, false)
	if err != nil {
		return err
	}
	defer s.Close()
	d, err := findDeadLetter(ctx, s.o, id)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(c.stdout, d)
	}
	writeDeadLetter(c.stdout, d)
	return nil
}

// findDeadLetter pages through the dead letters for id (an operator's
// one-off: the listing is indexed by failure time, not id).
func findDeadLetter(ctx context.Context, o *outbox.Outbox, id int64) (outbox.DeadLetter, error) {
	f := outbox.DeadLetterFilter{Limit: outbox.MaxDeadLetterLimit}
	for {
		page, err := o.DeadLetterPage(ctx, f)
		if err != nil {
			return outbox.DeadLetter{}, classify(err)
		}
		for _, d := range page.DeadLetters {
			if d.ID == id {
				return d, nil
			}
		}
		if page.Next == "" {
			return outbox.DeadLetter{}, exitf(exitNotFound, "no dead letter has id %d", id)
		}
		f.After = page.Next
	}
}

func writeDeadLetter(w io.Writer, d outbox.DeadLetter) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%d\n", d.ID)
	fmt.Fprintf(tw, "queue:\t%s\n", d.Queue)
	fmt.Fprintf(tw, "partition:\t%d\n", d.Partition)
	fmt.Fprintf(tw, "seq:\t%d\n", d.Seq)
	fmt.Fprintf(tw, "status:\t%s\n", d.Status)
	fmt.Fprintf(tw, "attempts:\t%d\n", d.Attempts)
	fmt.Fprintf(tw, "created at:\t%s\n", d.CreatedAt.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(tw, "failed at:\t%s\n", d.FailedAt.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(tw, "reason:\t%s\n", d.Reason)
	fmt.Fprintf(tw, "payload type:\t%s\n", d.PayloadType)
	for k, v := range d.Headers {
		fmt.Fprintf(tw, "header %s:\t%s\n", k, v)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "payload (%d bytes):\n%s\n", len(d.Payload), printable(d.Payload))
}

// printable shows a payload as text when it is valid UTF-8 without
// control characters other than whitespace, and as Go-quoted bytes
// otherwise.
func printable(b []byte) string {
	s := string(b)
	for _, r := range s {
		if r == '\uFFFD' || (r < 0x20 && r != '\n' && r != '\t' && r != '\r') {
			return strconv.Quote(s)
		}
	}
	return s
}

func dlCount(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("dead-letters count")
	var f filterFlags
	f.register(fs, false)
	s, df, err := c.openFiltered(ctx, fs, &f, args)
	if err != nil {
		return err
	}
	defer s.Close()
	n, err := s.o.CountDeadLetters(ctx, df)
	if err != nil {
		return classify(err)
	}
	fmt.Fprintln(c.stdout, n)
	return nil
}

func dlRequeue(ctx context.Context, c *cli, args []string) error {
	return dlAct(ctx, c, "requeue", "requeued", args, (*outbox.Outbox).RequeueDeadLetters)
}

func dlDiscard(ctx context.Context, c *cli, args []string) error {
	return dlAct(ctx, c, "discard", "discarded", args, (*outbox.Outbox).DiscardDeadLetters)
}

// idList collects --id values (repeatable, or comma-separated).
type idList []int64

func (l *idList) String() string { return fmt.Sprint([]int64(*l)) }

func (l *idList) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		id, err := strconv.ParseInt(strings.TrimSpace(part), 10, 64)
		if err != nil || id < 1 {
			return fmt.Errorf("%q is not a positive integer", part)
		}
		*l = append(*l, id)
	}
	return nil
}

// dlAct requeues or discards pending dead letters: the given ids (all or
// nothing), or every pending one the filter selects (in transactions of
// operator.Batch, oldest first), which needs --queue or --all so
// that a slip of the keyboard does not act on everything.
func dlAct(ctx context.Context, c *cli, verb, done string, args []string,
	act func(*outbox.Outbox, context.Context, []int64) (int, error)) error {
	fs := c.flags("dead-letters " + verb)
	var ids idList
	fs.Var(&ids, "id", "a dead letter's id (repeatable, or comma-separated)")
	var f filterFlags
	f.register(fs, false)
	all := fs.Bool("all", false, "act on every pending dead letter the filter selects, in every queue")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if f.status != "" && f.status != "pending" {
		return exitf(exitUsage, "only pending dead letters can be %s (--status %s)", done, f.status)
	}
	if len(ids) == 0 && f.queue == "" && !*all {
		return exitf(exitUsage, "say which dead letters: --id, or a filter with --queue, or --all")
	}
	if len(ids) > 0 && (f.queue != "" || f.partition >= 0 || f.payloadType != "" || f.since != "" || f.until != "" || *all) {
		return exitf(exitUsage, "--id cannot be combined with a filter")
	}
	f.status = "pending"
	df, err := f.filter(time.Now())
	if err != nil {
		return err
	}
	s, err := c.open(ctx, false)
	if err != nil {
		return err
	}
	defer s.Close()
	if len(ids) > 0 {
		n, err := act(s.o, ctx, ids)
		if err != nil {
			return classify(err)
		}
		fmt.Fprintf(c.stdout, "%s %d dead letters\n", done, n)
		return nil
	}
	// Every pending one the filter selects, oldest first, in batches.
	total, err := operator.ActOnMatching(ctx, s.o, df, func(ctx context.Context, ids []int64) (int, error) {
		return act(s.o, ctx, ids)
	})
	if err != nil {
		if total > 0 {
			fmt.Fprintf(c.stdout, "%s %d dead letters before the error\n", done, total)
		}
		return classify(err)
	}
	fmt.Fprintf(c.stdout, "%s %d dead letters\n", done, total)
	return nil
}

func dlCleanup(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("dead-letters cleanup")
	olderThan := fs.Duration("older-than", 7*24*time.Hour, "delete resolved and discarded dead letters completed at least this long ago")
	batch := fs.Int("batch", 1000, "rows per DELETE")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	s, err := c.open(ctx, false)
	if err != nil {
		return err
	}
	defer s.Close()
	n, err := s.o.CleanupDeadLetters(ctx, *olderThan, *batch)
	if err != nil {
		return classify(err)
	}
	fmt.Fprintf(c.stdout, "deleted %d resolved or discarded dead letters\n", n)
	return nil
}
