package jobs

import (
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/auditlog/auditlog/service"
)

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
}

// NewConfig returns the River configuration with every auditlog worker
// (partition maintenance, erasure, hooks) registered and partition maintenance
// scheduled.
func NewConfig(log *service.Log, opts Opts) *river.Config {
	if opts.MaintenanceInterval <= 0 {
		opts.MaintenanceInterval = time.Hour
	}
	if opts.MaxWorkers <= 0 {
		opts.MaxWorkers = 10
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &PartitionMaintenanceWorker{Maintainer: log, Ahead: opts.PartitionsAhead, Logger: opts.Logger})
	river.AddWorker(workers, &ErasureWorker{Eraser: log, Logger: opts.Logger})
	if opts.Notifier == nil {
		opts.Notifier = LogNotifier{Logger: opts.Logger}
	}
	handlers := map[string]HookHandler{HookNotify: NotifyHandler(opts.Notifier)}
	for name, h := range opts.Hooks {
		handlers[name] = h
	}
	river.AddWorker(workers, &HookWorker{Events: log, Handlers: handlers, Logger: opts.Logger, Observer: opts.HookObserver})
	return &river.Config{
		Logger:       opts.Logger,
		Queues:       map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: opts.MaxWorkers}},
		Workers:      workers,
		PeriodicJobs: []*river.PeriodicJob{PartitionMaintenancePeriodic(opts.MaintenanceInterval)},
	}
}
