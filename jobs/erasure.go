package jobs

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/auditlog/auditlog/service"
)

// ErasureArgs carries out one GDPR erasure request. It holds only the
// request's id: River keeps finished jobs for a while, and the person's
// id stays in erasure_requests alone.
type ErasureArgs struct {
	RequestID int64 `json:"request_id"`
}

// Kind implements river.JobArgs.
func (ErasureArgs) Kind() string { return "auditlog_erasure" }

// InsertOpts: one job per request while it is not finished, and enough
// attempts (River backs off between them) to ride out a database restart.
func (ErasureArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{
		MaxAttempts: 10,
		UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: []rivertype.JobState{
			rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
			rivertype.JobStateRunning, rivertype.JobStateScheduled,
		}},
	}
}

// Eraser is what the worker needs: *service.Log.
type Eraser interface {
	RunErasure(ctx context.Context, id int64, opts service.RunErasureOpts) (*service.ErasureReport, error)
}

// ErasureWorker works ErasureArgs.
type ErasureWorker struct {
	river.WorkerDefaults[ErasureArgs]
	Eraser Eraser
	Logger *slog.Logger
}

// Timeout bounds one attempt. Progress commits batch by batch, so an
// attempt cut short loses nothing: the next resumes.
func (w *ErasureWorker) Timeout(*river.Job[ErasureArgs]) time.Duration { return time.Hour }

// Work runs the erasure and logs what it removed (counts only: the log
// never names the person).
func (w *ErasureWorker) Work(ctx context.Context, job *river.Job[ErasureArgs]) error {
	logger := w.Logger
	if logger == nil {
		logger = slog.Default()
	}
	rep, err := w.Eraser.RunErasure(ctx, job.Args.RequestID, service.RunErasureOpts{
		FinalAttempt: job.Attempt >= job.MaxAttempts,
	})
	if errors.Is(err, service.ErrErasureFailed) || errors.Is(err, service.ErrNotFound) {
		return river.JobCancel(err) // retrying cannot help
	}
	if err != nil {
		logger.WarnContext(ctx, "erasure attempt failed", "request", job.Args.RequestID,
			"attempt", job.Attempt, "max_attempts", job.MaxAttempts, "err", err)
		return err
	}
	logger.InfoContext(ctx, "erasure done", "request", job.Args.RequestID, "rows_changed", rep.Rows(),
		"user_events_deleted", rep.Request.UserEventsDeleted, "user_events_scrubbed", rep.Request.UserEventsScrubbed,
		"project_events_scrubbed", rep.Request.ProjectEventsScrubbed)
	return nil
}
