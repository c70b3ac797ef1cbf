package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/auditlog/auditlog/jobs"
)

// shutdownGrace is how long running jobs get to finish after SIGTERM.
const shutdownGrace = 30 * time.Second

func runWorker(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	var cfg config
	fs, finish := newFlagSet("worker", `Run the River workers until SIGTERM or SIGINT (30 s grace for running jobs):
partition maintenance at start and every --maintenance-interval, erasure
requests, hooks.`, getenv, &cfg, stdout, stderr)
	interval := fs.Duration("maintenance-interval", time.Hour, "how often partition maintenance runs after the pass at start")
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	pool, log, err := cfg.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	client, err := river.NewClient(riverpgxv5.New(pool), jobs.NewConfig(log, jobs.Opts{
		PartitionsAhead: cfg.ahead, MaintenanceInterval: *interval, Logger: cfg.logger,
	}))
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	// The client runs until ctx ends (SIGTERM or SIGINT in main).
	if err := client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	cfg.logger.Info("worker started", "retention", cfg.retention.String(), "partitions_ahead", cfg.ahead,
		"maintenance_interval", interval.String())
	<-ctx.Done()
	cfg.logger.Info("worker stopping: letting running jobs finish", "grace", shutdownGrace.String())
	stopCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := client.Stop(stopCtx); err != nil {
		cfg.logger.Warn("jobs still running at the end of the grace period; cancelling them", "err", err)
		if err := client.StopAndCancel(context.Background()); err != nil {
			return fmt.Errorf("worker: stop: %w", err)
		}
	}
	cfg.logger.Info("worker stopped")
	return nil
}
