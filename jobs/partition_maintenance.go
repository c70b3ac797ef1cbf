package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/auditlog/auditlog/service"
)

// PartitionMaintenanceArgs runs one partition-maintenance pass: premake
// monthly partitions, drop expired ones, rescue the default partition. It
// is inserted hourly (PartitionMaintenancePeriodic) and at once when
// recording finds a month's partition missing (Enqueuer.EnqueueMaintenance).
// It holds no argument: nothing personal reaches River's table.
type PartitionMaintenanceArgs struct{}

// Kind implements river.JobArgs.
func (PartitionMaintenanceArgs) Kind() string { return "auditlog_partition_maintenance" }

// InsertOpts keeps at most one pass queued or running: a periodic insert
// while one waits or runs is a no-op. (The pass itself also holds an
// advisory lock, so a pass started from the CLI never overlaps either.)
func (PartitionMaintenanceArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{
		MaxAttempts: 5,
		UniqueOpts: river.UniqueOpts{ByState: []rivertype.JobState{
			rivertype.JobStateAvailable, rivertype.JobStatePending,
			rivertype.JobStateRunning, rivertype.JobStateScheduled,
		}},
	}
}

// PartitionMaintainer is what the worker needs: *service.Log.
type PartitionMaintainer interface {
	MaintainPartitions(ctx context.Context, pool *pgxpool.Pool, opts service.MaintainOpts) (*service.MaintenanceReport, error)
}

// PartitionMaintenanceWorker works PartitionMaintenanceArgs.
type PartitionMaintenanceWorker struct {
	river.WorkerDefaults[PartitionMaintenanceArgs]
	Maintainer PartitionMaintainer
	// Pool is the database the passes run on (the River client's).
	Pool *pgxpool.Pool
	// Ahead is how many months after the current one keep a partition.
	Ahead  int
	Logger *slog.Logger
}

// Timeout bounds one pass: DDL waits are bounded by lock_timeout, so a pass
// that runs this long is stuck.
func (w *PartitionMaintenanceWorker) Timeout(*river.Job[PartitionMaintenanceArgs]) time.Duration {
	return 10 * time.Minute
}

// Work runs the pass and logs what it did; warnings (rows rescued from the
// default partition, detached tables) are logged at warn level, and each
// failed step at error level. A failed step does not stop the others (nor
// the pruning of idempotency keys); the job then fails, naming every
// failed step, and River retries it.
func (w *PartitionMaintenanceWorker) Work(ctx context.Context, job *river.Job[PartitionMaintenanceArgs]) error {
	logger := w.Logger
	if logger == nil {
		logger = slog.Default()
	}
	rep, err := w.Maintainer.MaintainPartitions(ctx, w.Pool, service.MaintainOpts{Ahead: w.Ahead})
	if rep == nil {
		return err
	}
	if rep.Skipped {
		logger.InfoContext(ctx, "partition maintenance skipped: another pass holds the lock")
		return nil
	}
	for _, msg := range rep.Warnings {
		logger.WarnContext(ctx, "partition maintenance", "warning", msg)
	}
	for _, d := range rep.Dropped {
		logger.InfoContext(ctx, "dropped expired month", "partition", d.Name, "month", d.Month.Format("2006-01"),
			"rows_estimated", d.Rows, "reason", d.Reason)
	}
	for _, se := range rep.Errors {
		logger.ErrorContext(ctx, "partition maintenance step failed", "step", se.Step, "error", se.Err)
	}
	logger.InfoContext(ctx, "partition maintenance done", "created", rep.Created, "dropped", len(rep.Dropped),
		"failed_steps", len(rep.Errors), "cutoff", rep.Cutoff.Format(time.RFC3339))
	if p, ok := w.Maintainer.(IngestKeyPruner); ok {
		n, perr := p.PruneIngestKeys(ctx)
		if perr != nil {
			err = errors.Join(err, fmt.Errorf("prune idempotency keys: %w", perr))
		} else if n > 0 {
			logger.InfoContext(ctx, "pruned expired idempotency keys", "keys", n)
		}
	}
	return err
}

// IngestKeyPruner is the optional hourly chore of the same job: deleting
// ingest idempotency keys past their 24 hours (*service.Log).
type IngestKeyPruner interface {
	PruneIngestKeys(ctx context.Context) (int64, error)
}

// PartitionMaintenancePeriodic runs a pass when the client starts and then
// every interval (hourly in `auditlog worker`). River runs periodic jobs
// on the elected leader only.
func PartitionMaintenancePeriodic(interval time.Duration) *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(interval),
		func() (river.JobArgs, *river.InsertOpts) { return PartitionMaintenanceArgs{}, nil },
		&river.PeriodicJobOpts{RunOnStart: true})
}
