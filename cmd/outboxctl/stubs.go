package main

import "context"

func runStatus(ctx context.Context, c *cli, args []string) error { return exitf(exitUsage, "not yet") }
func runDeadLetters(ctx context.Context, c *cli, args []string) error {
	return exitf(exitUsage, "not yet")
}
func runPartition(ctx context.Context, c *cli, args []string) error {
	return exitf(exitUsage, "not yet")
}
