// Command auditlog runs auditlog's schema migrations and operator tools.
// Run `auditlog help` for the commands and configuration.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "auditlog: %v\n", err)
		os.Exit(exitCode(err))
	}
}
