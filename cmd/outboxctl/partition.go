package main

import (
	"context"
	"fmt"
)

// runPartition resumes a partition that the "block" poison policy stopped:
// retry gives its head fresh attempts now; skip dead-letters the head and
// goes on with the next message.
func runPartition(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 || (args[0] != "retry" && args[0] != "skip") {
		return exitf(exitUsage, "usage: outboxctl partition retry|skip --queue Q --partition N [--reason TEXT]")
	}
	verb := args[0]
	fs := c.flags("partition " + verb)
	queue := fs.String("queue", "", "the partition's queue (required)")
	partition := fs.Int("partition", -1, "the partition number (required)")
	reason := ""
	if verb == "skip" {
		fs.StringVar(&reason, "reason", "", "the dead letter's reason (default: the partition's last error)")
	}
	if err := parse(fs, args[1:], 0); err != nil {
		return err
	}
	if *queue == "" || *partition < 0 {
		return exitf(exitUsage, "--queue and --partition are required")
	}
	s, err := c.open(ctx, false)
	if err != nil {
		return err
	}
	defer s.Close()
	if verb == "retry" {
		if err := s.o.RetryPartition(ctx, *queue, *partition); err != nil {
			return classify(err)
		}
		fmt.Fprintf(c.stdout, "%s partition %d: unblocked; its head is retried now\n", *queue, *partition)
		return nil
	}
	if err := s.o.SkipPartition(ctx, *queue, *partition, reason); err != nil {
		return classify(err)
	}
	fmt.Fprintf(c.stdout, "%s partition %d: head moved to the dead letters; delivery goes on\n", *queue, *partition)
	return nil
}
