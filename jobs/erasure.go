package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
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

// ErasureMaxAttempts is how many failed attempts River makes of an
// erasure before it gives up (the request is then failed). Attempts that
// hand over after their time budget, or that find another attempt
// working, are snoozed and do not count. With retry delays capped at
// ErasureMaxRetryDelay, the attempts span about 85 minutes of failures:
// enough to ride out a database restart or failover.
const ErasureMaxAttempts = 25

// ErasureMaxRetryDelay caps River's backoff between two attempts of an
// erasure (attempt⁴ seconds otherwise): a rescued attempt (its process was
// killed) is retried at most this long after the rescue, so within the
// rescue delay plus about 4.5 minutes.
const ErasureMaxRetryDelay = 4 * time.Minute

// erasureBusyDelay is how long an attempt that found another attempt of
// the same request working waits before River runs it again.
const erasureBusyDelay = 30 * time.Second

// InsertOpts: one job per request while it is not finished, and enough
// attempts (River backs off between them) to ride out a database restart.
func (ErasureArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{
		MaxAttempts: ErasureMaxAttempts,
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
	// AttemptTimeout bounds one attempt (River cancels it then);
	// DefaultErasureTimeout when zero.
	AttemptTimeout time.Duration
	// Budget is how long an attempt works before it commits and hands
	// over to the next (service.RunErasureOpts.Budget); DefaultErasureBudget
	// when zero.
	Budget time.Duration
	// StatementTimeout is the statement_timeout of the erasure's
	// transactions; service.DefaultErasureStatementTimeout when zero.
	StatementTimeout time.Duration
}

// Timeout bounds one attempt. Progress commits batch by batch, so an
// attempt cut short loses nothing: the next resumes.
func (w *ErasureWorker) Timeout(*river.Job[ErasureArgs]) time.Duration {
	if w.AttemptTimeout > 0 {
		return w.AttemptTimeout
	}
	return DefaultErasureTimeout
}

// NextRetry is River's backoff (attempt⁴ seconds, the attempt counted from
// the job's errors) capped at ErasureMaxRetryDelay. River's rescuer uses
// it too, so a killed attempt is not left waiting for long.
func (w *ErasureWorker) NextRetry(job *river.Job[ErasureArgs]) time.Time {
	delay := time.Duration(math.Pow(float64(len(job.Errors)+1), 4)) * time.Second
	return time.Now().Add(min(delay, ErasureMaxRetryDelay))
}

// ErasureOutput is what an erasure attempt records as its River job's
// output (visible in River UI; counts only, never the person): the next
// attempt starts from its batch size.
type ErasureOutput struct {
	// BatchSize is the batch size the attempt ended at.
	BatchSize int `json:"batch_size"`
	// RowsChanged is the rows the attempt changed.
	RowsChanged int64 `json:"rows_changed"`
	// Outcome is "done", "continues" (the attempt used its budget), or
	// "failed".
	Outcome string `json:"outcome"`
}

// lastBatchSize is the batch size the job's previous attempt ended at,
// from its recorded output; 0 when none.
func lastBatchSize(job *river.Job[ErasureArgs]) int {
	if job.JobRow == nil || len(job.Metadata) == 0 {
		return 0
	}
	var m struct {
		Output ErasureOutput `json:"output"`
	}
	if json.Unmarshal(job.Metadata, &m) != nil {
		return 0
	}
	return m.Output.BatchSize
}

// Work runs one attempt of the erasure and logs what it removed (counts
// only: the log never names the person). An attempt that used its time
// budget, or found another attempt of the request working, is snoozed:
// River runs it again (at once, or after erasureBusyDelay) without
// counting an attempt.
func (w *ErasureWorker) Work(ctx context.Context, job *river.Job[ErasureArgs]) error {
	logger := w.Logger
	if logger == nil {
		logger = slog.Default()
	}
	budget := w.Budget
	if budget <= 0 {
		budget = DefaultErasureBudget
	}
	rep, err := w.Eraser.RunErasure(ctx, job.Args.RequestID, service.RunErasureOpts{
		FinalAttempt:     job.Attempt >= job.MaxAttempts,
		Budget:           budget,
		Batch:            lastBatchSize(job),
		StatementTimeout: w.StatementTimeout,
	})
	if errors.Is(err, service.ErrErasureBusy) {
		logger.InfoContext(ctx, "erasure attempt skipped: another attempt of the request is running",
			"request", job.Args.RequestID, "retry_in", erasureBusyDelay.String())
		return river.JobSnooze(erasureBusyDelay)
	}
	if errors.Is(err, service.ErrErasureFailed) || errors.Is(err, service.ErrNotFound) {
		return river.JobCancel(err) // retrying cannot help
	}
	out := ErasureOutput{Outcome: "done"}
	if rep != nil {
		out.BatchSize, out.RowsChanged = rep.BatchSize, rep.Rows()
	}
	blocked := err == nil && rep != nil && rep.Request.Status == service.ErasureBlocked
	switch {
	case blocked:
		out.Outcome = "blocked"
	case errors.Is(err, service.ErrErasureYielded):
		out.Outcome = "continues"
	case err != nil:
		out.Outcome = "failed"
	}
	if rerr := river.RecordOutput(ctx, out); rerr != nil {
		logger.WarnContext(ctx, "erasure: recording the job's output failed", "request", job.Args.RequestID, "err", rerr)
	}
	switch {
	case errors.Is(err, service.ErrErasureYielded):
		logger.InfoContext(ctx, "erasure attempt used its time budget; the next continues", "request", job.Args.RequestID,
			"rows_changed", out.RowsChanged, "batch_size", out.BatchSize, "budget", budget.String())
		return river.JobSnooze(0)
	case err != nil:
		logger.WarnContext(ctx, "erasure attempt failed", "request", job.Args.RequestID,
			"attempt", job.Attempt, "max_attempts", job.MaxAttempts, "batch_size", out.BatchSize, "err", err)
		return err
	}
	if blocked {
		// Releasing the hold enqueues the request again.
		logger.InfoContext(ctx, "erasure blocked by a legal hold; it runs when the hold is released", "request", job.Args.RequestID,
			"hold", rep.Request.BlockedBy, "rows_changed", rep.Rows())
		return nil
	}
	logger.InfoContext(ctx, "erasure done", "request", job.Args.RequestID, "rows_changed", rep.Rows(),
		"user_events_deleted", rep.Request.UserEventsDeleted, "user_events_scrubbed", rep.Request.UserEventsScrubbed,
		"project_events_scrubbed", rep.Request.ProjectEventsScrubbed, "batch_size", rep.BatchSize)
	return nil
}
