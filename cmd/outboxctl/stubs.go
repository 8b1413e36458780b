package main

import "context"

func runPartition(ctx context.Context, c *cli, args []string) error {
	return exitf(exitUsage, "not yet")
}
