package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/modkit-go/db/console"
	"github.com/modkit-go/db/internal/operator"
	"github.com/modkit-go/db/outbox"
)

// runStatus prints every queue's status (or one queue's with --queue): a
// line of totals per queue, then its partitions that are not idle (all of
// them with --all).
func runStatus(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("status")
	queue := fs.String("queue", "", "only this queue")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	all := fs.Bool("all", false, "list idle partitions too")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	s, err := c.open(ctx, false)
	if err != nil {
		return err
	}
	defer s.Close()
	var qs []outbox.QueueStatus
	if *queue != "" {
		q, err := s.o.QueueStatus(ctx, *queue)
		if err != nil {
			return classify(err)
		}
		qs = []outbox.QueueStatus{q}
	} else if qs, err = s.o.Status(ctx); err != nil {
		return classify(err)
	}
	if *asJSON {
		return writeJSON(c.stdout, console.StatusJSON(qs))
	}
	writeStatus(c.stdout, qs, *all)
	return nil
}

// writeStatus prints the aligned tables.
func writeStatus(w io.Writer, qs []outbox.QueueStatus, all bool) {
	if len(qs) == 0 {
		fmt.Fprintln(w, "no queues declared")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tPARTITIONS\tBACKLOG\tUNSEQUENCED\tOLDEST\tRETRYING\tLEASED\tBLOCKED\tDEAD(pending/reprocessing/resolved/discarded)")
	for _, q := range qs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%d\t%d\t%d\t%d/%d/%d/%d\n", q.Queue, len(q.Partitions), q.Backlog, q.Unsequenced,
			since(q.Age), q.Retrying, q.Leased, q.Blocked,
			q.DeadLetters["pending"], q.DeadLetters["reprocessing"], q.DeadLetters["resolved"], q.DeadLetters["discarded"])
	}
	_ = tw.Flush()
	for _, q := range qs {
		var rows []outbox.PartitionStatus
		for _, p := range q.Partitions {
			if all || !operator.Idle(p) {
				rows = append(rows, p)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", q.Queue)
		fmt.Fprintln(tw, "PARTITION\tLAST SEQ\tPROCESSED\tBACKLOG\tOLDEST\tATTEMPTS\tSTATE\tNEXT ATTEMPT\tLAST ERROR")
		for _, p := range rows {
			next := "-"
			if !p.NextAttemptAt.IsZero() {
				next = "in " + since(p.NextAttemptAt.Sub(q.Now))
			}
			fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%s\t%d\t%s\t%s\t%s\n", p.Partition, p.LastSeq, p.ProcessedSeq, p.Backlog,
				since(p.Age), p.Attempts, operator.State(p, q.Now, since), next, oneLine(p.LastError, 60))
		}
		_ = tw.Flush()
	}
}

// oneLine shortens s to n runes on one line, for tables.
func oneLine(s string, n int) string {
	r := []rune(s)
	for i, c := range r {
		if c == '\n' || c == '\r' || c == '\t' {
			r[i] = ' '
		}
	}
	if len(r) > n {
		return string(r[:n-1]) + "…"
	}
	if len(r) == 0 {
		return "-"
	}
	return string(r)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// classify gives the library's typed errors their exit codes.
func classify(err error) error {
	switch {
	case errors.Is(err, outbox.ErrUnknownQueue), errors.Is(err, outbox.ErrDeadLetterNotFound):
		return &exitError{code: exitNotFound, err: err}
	case errors.Is(err, outbox.ErrStatusConflict), errors.Is(err, outbox.ErrNotBlocked):
		return &exitError{code: exitConflict, err: err}
	case errors.Is(err, outbox.ErrInvalidQueueName), errors.Is(err, outbox.ErrInvalidFilter),
		errors.Is(err, outbox.ErrPartitionOutOfRange), errors.Is(err, outbox.ErrInvalidConfig):
		return &exitError{code: exitUsage, err: err}
	}
	return err
}

// since formats an age for tables.
func since(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return d.Round(time.Millisecond).String()
}
