package main

import "context"

func runStatus(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("status")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	s, err := c.open(ctx, false)
	if err != nil {
		return err
	}
	defer s.Close()
	return exitf(exitUsage, "not yet")
}
func runDeadLetters(ctx context.Context, c *cli, args []string) error {
	return exitf(exitUsage, "not yet")
}
func runPartition(ctx context.Context, c *cli, args []string) error {
	return exitf(exitUsage, "not yet")
}
