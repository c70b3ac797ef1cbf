package jobs

import (
	"context"
	"log/slog"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/auditlog/auditlog/service"
)

// CheckpointArgs appends the events recorded since the last checkpoint to
// the integrity log and signs a checkpoint (service.Log.Checkpoint). It is
// inserted every minute (CheckpointPeriodic) when the log has an integrity
// key, and holds no argument.
type CheckpointArgs struct{}

// Kind implements river.JobArgs.
func (CheckpointArgs) Kind() string { return "auditlog_checkpoint" }

// InsertOpts keeps at most one checkpoint queued or running (the
// checkpoint itself also takes its turn on a row lock).
func (CheckpointArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{
		MaxAttempts: 3,
		UniqueOpts: river.UniqueOpts{ByState: []rivertype.JobState{
			rivertype.JobStateAvailable, rivertype.JobStatePending,
			rivertype.JobStateRunning, rivertype.JobStateScheduled,
		}},
	}
}

// Checkpointer is what the worker needs: *service.Log.
type Checkpointer interface {
	Checkpoint(ctx context.Context) (*service.CheckpointResult, error)
}

// CheckpointWorker works CheckpointArgs.
type CheckpointWorker struct {
	river.WorkerDefaults[CheckpointArgs]
	Log     Checkpointer
	Logger  *slog.Logger
	timeout time.Duration
}

// Timeout bounds one checkpoint.
func (w *CheckpointWorker) Timeout(*river.Job[CheckpointArgs]) time.Duration { return w.timeout }

// Work appends and signs.
func (w *CheckpointWorker) Work(ctx context.Context, _ *river.Job[CheckpointArgs]) error {
	res, err := w.Log.Checkpoint(ctx)
	if err != nil {
		return err
	}
	var n int64
	for _, c := range res.Appended {
		n += c
	}
	if n > 0 || len(res.Unmarked) > 0 {
		w.Logger.Info("checkpoint signed", "checkpoint", res.Checkpoint.ID, "appended", n, "not_appended", len(res.Unmarked))
	}
	return nil
}

// CheckpointPeriodic schedules a checkpoint every interval.
func CheckpointPeriodic(interval time.Duration) *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(interval),
		func() (river.JobArgs, *river.InsertOpts) { return CheckpointArgs{}, nil },
		&river.PeriodicJobOpts{RunOnStart: true})
}
