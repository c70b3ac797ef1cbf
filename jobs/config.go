package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/auditlog/auditlog/service"
)

// Defaults for Opts. Every job kind's timeout is shorter than the rescue
// delay, so River never rescues an attempt that is still running: the
// attempt's own timeout has cancelled it first.
const (
	// DefaultRescueAfter is how long a job may stay running before River
	// presumes its process dead and retries it: a killed worker's jobs
	// run again within about six minutes (this, River's rescuer running
	// every 30 s, and the job's retry delay).
	DefaultRescueAfter = 5 * time.Minute
	// DefaultMaintenanceTimeout bounds one partition-maintenance pass.
	DefaultMaintenanceTimeout = 4 * time.Minute
	// DefaultErasureTimeout bounds one erasure attempt: River cancels it
	// then, and the attempt's committed batches stay.
	DefaultErasureTimeout = 4 * time.Minute
	// DefaultErasureBudget is how long an erasure attempt works before it
	// hands over to the next one (it commits, stops between two batches
	// and River runs it again at once); shorter than DefaultErasureTimeout
	// by more than a batch's statement timeout.
	DefaultErasureBudget = 2 * time.Minute
	// DefaultHookTimeout bounds one hook run.
	DefaultHookTimeout = time.Minute
)

// ErrTimeouts: a job timeout is not shorter than the rescue delay (River
// could rescue an attempt while it still runs, and run it twice at once),
// or the erasure budget is not shorter than the erasure timeout.
var ErrTimeouts = errors.New("every job timeout must be shorter than the rescue delay")

// Opts configures the River client of `auditlog worker`.
type Opts struct {
	// PartitionsAhead is how many months after the current one keep a
	// partition; service.DefaultPartitionsAhead when zero.
	PartitionsAhead int
	// MaintenanceInterval is how often partition maintenance runs after
	// the pass at start; an hour when zero.
	MaintenanceInterval time.Duration
	// MaxWorkers bounds the default queue; 10 when zero.
	MaxWorkers int
	Logger     *slog.Logger
	// Notifier delivers the notify hook's messages; LogNotifier when nil.
	Notifier Notifier
	// Hooks are extra hook handlers by name, beside HookNotify.
	Hooks map[string]HookHandler
	// HookObserver counts hook runs (metrics); none when nil.
	HookObserver HookObserver

	// RescueAfter is how long a job may stay running before River's
	// rescuer (on the elected leader) presumes its process dead and
	// retries it (River's RescueStuckJobsAfter); DefaultRescueAfter when
	// zero. Every timeout below must be shorter.
	RescueAfter time.Duration
	// MaintenanceTimeout bounds one maintenance pass, River's and the one
	// MaintainAtStart runs; DefaultMaintenanceTimeout when zero.
	MaintenanceTimeout time.Duration
	// ErasureTimeout bounds one erasure attempt; DefaultErasureTimeout
	// when zero.
	ErasureTimeout time.Duration
	// ErasureBudget is how long an erasure attempt works before it
	// commits and hands over (service.RunErasureOpts.Budget);
	// DefaultErasureBudget when zero. It must be shorter than
	// ErasureTimeout.
	ErasureBudget time.Duration
	// HookTimeout bounds one hook run; DefaultHookTimeout when zero.
	HookTimeout time.Duration
	// CheckpointInterval is how often the integrity log is checkpointed
	// when the Log has an integrity key; a minute when zero.
	CheckpointInterval time.Duration
}

// withDefaults returns o with every zero field set to its default.
func (o Opts) withDefaults() Opts {
	if o.MaintenanceInterval <= 0 {
		o.MaintenanceInterval = time.Hour
	}
	if o.MaxWorkers <= 0 {
		o.MaxWorkers = 10
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Notifier == nil {
		o.Notifier = LogNotifier{Logger: o.Logger}
	}
	for _, d := range []struct {
		to  *time.Duration
		def time.Duration
	}{
		{&o.RescueAfter, DefaultRescueAfter}, {&o.MaintenanceTimeout, DefaultMaintenanceTimeout},
		{&o.ErasureTimeout, DefaultErasureTimeout}, {&o.ErasureBudget, DefaultErasureBudget}, {&o.HookTimeout, DefaultHookTimeout},
	} {
		if *d.to <= 0 {
			*d.to = d.def
		}
	}
	return o
}

// Validate checks that every job timeout (zero fields at their defaults)
// is shorter than the rescue delay, and the erasure budget shorter than
// the erasure timeout; the error wraps ErrTimeouts and names the values.
func (o Opts) Validate() error {
	o = o.withDefaults()
	for _, t := range []struct {
		name string
		d    time.Duration
	}{{"maintenance timeout", o.MaintenanceTimeout}, {"erasure timeout", o.ErasureTimeout}, {"hook timeout", o.HookTimeout}} {
		if t.d >= o.RescueAfter {
			return fmt.Errorf("the %s (%s) is not shorter than the rescue delay (%s): %w", t.name, t.d, o.RescueAfter, ErrTimeouts)
		}
	}
	if o.ErasureBudget >= o.ErasureTimeout {
		return fmt.Errorf("the erasure budget (%s) is not shorter than the erasure timeout (%s): %w", o.ErasureBudget, o.ErasureTimeout, ErrTimeouts)
	}
	return nil
}

// LongestTimeout is the longest job timeout of o (zero fields at their
// defaults): the rescue delay must be longer.
func (o Opts) LongestTimeout() time.Duration {
	o = o.withDefaults()
	return max(o.MaintenanceTimeout, o.ErasureTimeout, o.HookTimeout)
}

// NewConfig returns the River configuration with every auditlog worker
// (partition maintenance, erasure, hooks) registered and partition
// maintenance scheduled, River's rescue delay at opts.RescueAfter and each
// job kind's timeout at opts'. It does not check opts: NewClient does
// (Validate), and River refuses a rescue delay shorter than the longest
// timeout, which NewConfig makes the client's default JobTimeout.
func NewConfig(pool *pgxpool.Pool, log *service.Log, opts Opts) *river.Config {
	opts = opts.withDefaults()
	workers := river.NewWorkers()
	river.AddWorker[PartitionMaintenanceArgs](workers, maintenanceWorker{
		PartitionMaintenanceWorker: &PartitionMaintenanceWorker{Maintainer: log, Pool: pool, Ahead: opts.PartitionsAhead, Logger: opts.Logger},
		timeout:                    opts.MaintenanceTimeout,
	})
	river.AddWorker(workers, &ErasureWorker{Eraser: log, Logger: opts.Logger,
		AttemptTimeout: opts.ErasureTimeout, Budget: opts.ErasureBudget})
	handlers := map[string]HookHandler{HookNotify: NotifyHandler(opts.Notifier)}
	for name, h := range opts.Hooks {
		handlers[name] = h
	}
	river.AddWorker(workers, &HookWorker{Events: log, Handlers: handlers, Logger: opts.Logger, Observer: opts.HookObserver,
		AttemptTimeout: opts.HookTimeout})
	periodic := []*river.PeriodicJob{PartitionMaintenancePeriodic(opts.MaintenanceInterval)}
	river.AddWorker(workers, &CheckpointWorker{Log: log, Logger: opts.Logger, timeout: opts.MaintenanceTimeout})
	if log.Integrity() {
		periodic = append(periodic, CheckpointPeriodic(opts.CheckpointInterval))
	}
	return &river.Config{
		Logger:               opts.Logger,
		Queues:               map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: opts.MaxWorkers}},
		Workers:              workers,
		PeriodicJobs:         periodic,
		RescueStuckJobsAfter: opts.RescueAfter,
		JobTimeout:           opts.LongestTimeout(),
	}
}

// NewClient checks opts (Validate) and returns a River client over pool
// with NewConfig's configuration; Start runs it.
func NewClient(pool *pgxpool.Pool, log *service.Log, opts Opts) (*river.Client[pgx.Tx], error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	client, err := river.NewClient(riverpgxv5.New(pool), NewConfig(pool, log, opts))
	if err != nil {
		return nil, fmt.Errorf("river client: %w", err)
	}
	return client, nil
}

// maintenanceWorker is PartitionMaintenanceWorker with the timeout of
// Opts.MaintenanceTimeout, shorter than the rescue delay.
type maintenanceWorker struct {
	*PartitionMaintenanceWorker
	timeout time.Duration
}

// Timeout bounds one pass.
func (w maintenanceWorker) Timeout(*river.Job[PartitionMaintenanceArgs]) time.Duration {
	return w.timeout
}

// MaintainAtStart runs one partition-maintenance pass now, outside River,
// bounded by opts.MaintenanceTimeout, and logs it as the job does;
// `auditlog worker` and `serve` run it when they start. River's own pass
// at start cannot be relied on after a crash: its job is unique while one
// is running, and the dead process's job stays running until River
// rescues it, so the new pass would be de-duplicated against it. The pass
// holds the maintenance advisory lock like every other, so it never
// overlaps River's (one of the two returns at once, skipped).
func MaintainAtStart(ctx context.Context, pool *pgxpool.Pool, log *service.Log, opts Opts) error {
	opts = opts.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, opts.MaintenanceTimeout)
	defer cancel()
	w := &PartitionMaintenanceWorker{Maintainer: log, Pool: pool, Ahead: opts.PartitionsAhead, Logger: opts.Logger}
	if err := w.Work(ctx, &river.Job[PartitionMaintenanceArgs]{JobRow: &rivertype.JobRow{Kind: PartitionMaintenanceArgs{}.Kind()}}); err != nil {
		return fmt.Errorf("maintenance pass at start: %w", err)
	}
	return nil
}
