package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/service"
)

// shutdownGrace is how long running jobs get to finish after SIGTERM.
const shutdownGrace = 30 * time.Second

func runWorker(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	var cfg config
	cfg.owner = true // changes more than it records: the owner role (AUDITLOG_ADMIN_DATABASE_URL)
	fs, finish := newFlagSet("worker", `Run the River workers until SIGTERM or SIGINT (30 s grace for running jobs):
a partition-maintenance pass at start and every --maintenance-interval,
erasure requests, hooks. Jobs of a worker that died are retried after
--rescue-after.`, getenv, &cfg, stdout, stderr)
	interval := fs.Duration("maintenance-interval", time.Hour, "how often partition maintenance runs after the pass at start")
	rescue := rescueAfterFlag(fs, getenv)
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	opts, err := jobsOpts(*rescue)
	if err != nil {
		return err
	}
	opts.PartitionsAhead, opts.MaintenanceInterval, opts.Logger = cfg.ahead, *interval, cfg.logger
	pool, log, err := cfg.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	warnCatalog(ctx, log, cfg.stderr)
	client, err := jobs.NewClient(pool, log, opts)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	// The client runs until ctx ends (SIGTERM or SIGINT in main).
	if err := client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	passDone := maintainAtStart(ctx, pool, log, opts, cfg.logger)
	cfg.logger.Info("worker started", "retention", cfg.retention.String(), "partitions_ahead", cfg.ahead,
		"maintenance_interval", interval.String(), "rescue_after", opts.RescueAfter.String())
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
	waitPass(stopCtx, passDone, cfg.logger)
	cfg.logger.Info("worker stopped")
	return nil
}

// rescueAfterFlag defines --rescue-after (env AUDITLOG_RESCUE_AFTER), read
// by jobsOpts after parsing.
func rescueAfterFlag(fs *flagSet, getenv env) *string {
	return fs.String("rescue-after", orDefault(getenv("AUDITLOG_RESCUE_AFTER"), jobs.DefaultRescueAfter.String()),
		fmt.Sprintf("how long a job may stay running before River retries it as the job of a dead worker; longer than every job's timeout (the longest is %s) (env AUDITLOG_RESCUE_AFTER)",
			jobs.Opts{}.LongestTimeout()))
}

// jobsOpts checks --rescue-after and returns the jobs options it gives:
// a positive duration longer than every job kind's timeout.
func jobsOpts(rescue string) (jobs.Opts, error) {
	d, err := time.ParseDuration(rescue)
	if err != nil || d <= 0 {
		return jobs.Opts{}, usagef("--rescue-after: %q is not a positive duration such as 5m", rescue)
	}
	opts := jobs.Opts{RescueAfter: d}
	if err := opts.Validate(); err != nil {
		return jobs.Opts{}, &usageError{msg: fmt.Sprintf("--rescue-after: %s is not longer than every job's timeout (the longest is %s)",
			d, opts.LongestTimeout()), err: err}
	}
	return opts, nil
}

// maintainAtStart runs one maintenance pass beside the River client that
// just started (jobs.MaintainAtStart: a dead process's pass, still marked
// running, must not hold it back) and returns a channel closed when it
// ends. Shutdown does not cancel it; waitPass waits for it.
func maintainAtStart(ctx context.Context, pool *pgxpool.Pool, log *service.Log, opts jobs.Opts, logger *slog.Logger) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := jobs.MaintainAtStart(context.WithoutCancel(ctx), pool, log, opts); err != nil {
			logger.Error("partition maintenance at start failed; the periodic job tries again", "err", err)
		}
	}()
	return done
}

// waitPass waits for the pass at start to end, at most until ctx ends.
func waitPass(ctx context.Context, done <-chan struct{}, logger *slog.Logger) {
	select {
	case <-done:
	case <-ctx.Done():
		logger.Warn("the maintenance pass at start is still running at the end of the grace period")
	}
}
