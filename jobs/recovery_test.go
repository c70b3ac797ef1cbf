package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/service"
)

// The defaults make every job kind's timeout shorter than River's rescue
// delay (so no attempt is rescued while it runs), and the rescue delay
// short enough for a killed worker's jobs to run again within minutes;
// options that break the order are refused with a typed error.
func TestOptsTimeoutsAreBelowTheRescueDelay(t *testing.T) {
	t.Parallel()
	require.NoError(t, jobs.Opts{}.Validate())
	cfg := jobs.NewConfig(nil, dbtest.Must(service.New(nil, nil)), jobs.Opts{})
	require.Equal(t, jobs.DefaultRescueAfter, cfg.RescueStuckJobsAfter)
	require.LessOrEqual(t, jobs.DefaultRescueAfter, 5*time.Minute)
	for name, d := range map[string]time.Duration{
		"maintenance": jobs.DefaultMaintenanceTimeout,
		"erasure":     (&jobs.ErasureWorker{}).Timeout(nil),
		"hook":        (&jobs.HookWorker{}).Timeout(nil),
		"client":      cfg.JobTimeout,
	} {
		require.Less(t, d, jobs.DefaultRescueAfter, name)
	}
	require.Less(t, jobs.DefaultErasureBudget+service.DefaultErasureStatementTimeout, jobs.DefaultErasureTimeout,
		"an attempt hands over before River cuts it off, even in the middle of a batch")
	require.Equal(t, 3*time.Second, (&jobs.ErasureWorker{AttemptTimeout: 3 * time.Second}).Timeout(nil))
	require.Equal(t, 3*time.Second, (&jobs.HookWorker{AttemptTimeout: 3 * time.Second}).Timeout(nil))

	for _, tc := range []struct {
		opts jobs.Opts
		want string
	}{
		{jobs.Opts{RescueAfter: 4 * time.Minute}, "the maintenance timeout (4m0s) is not shorter than the rescue delay (4m0s)"},
		{jobs.Opts{RescueAfter: time.Minute, MaintenanceTimeout: time.Second, ErasureTimeout: time.Minute}, "the erasure timeout (1m0s)"},
		{jobs.Opts{RescueAfter: time.Minute, MaintenanceTimeout: time.Second, ErasureTimeout: 2 * time.Second, ErasureBudget: time.Second},
			"the hook timeout (1m0s)"},
		{jobs.Opts{ErasureBudget: 5 * time.Minute}, "the erasure budget (5m0s) is not shorter than the erasure timeout (4m0s)"},
	} {
		err := tc.opts.Validate()
		require.ErrorIs(t, err, jobs.ErrTimeouts)
		require.Contains(t, err.Error(), tc.want)
		_, err = jobs.NewClient(nil, dbtest.Must(service.New(nil, nil)), tc.opts)
		require.ErrorIs(t, err, jobs.ErrTimeouts, "NewClient refuses it too")
	}
}

// A rescued erasure is retried within minutes whatever its attempt: the
// backoff is River's attempt⁴ seconds, capped.
func TestErasureRetryDelayIsCapped(t *testing.T) {
	t.Parallel()
	w := &jobs.ErasureWorker{}
	for errs, want := range map[int]time.Duration{0: time.Second, 2: 81 * time.Second, 4: jobs.ErasureMaxRetryDelay, 20: jobs.ErasureMaxRetryDelay} {
		job := &river.Job[jobs.ErasureArgs]{JobRow: &rivertype.JobRow{Errors: make([]rivertype.AttemptError, errs)}}
		before := time.Now()
		next := w.NextRetry(job)
		require.False(t, next.Before(before.Add(want)), "%d errors", errs)
		require.False(t, next.After(time.Now().Add(want)), "%d errors", errs)
	}
	require.Less(t, jobs.DefaultRescueAfter+30*time.Second+jobs.ErasureMaxRetryDelay, 10*time.Minute)

	// The attempts still ride out more than an hour of failures.
	require.Equal(t, jobs.ErasureMaxAttempts, jobs.ErasureArgs{}.InsertOpts().MaxAttempts)
	var span time.Duration
	for errs := range jobs.ErasureMaxAttempts - 1 {
		job := &river.Job[jobs.ErasureArgs]{JobRow: &rivertype.JobRow{Errors: make([]rivertype.AttemptError, errs)}}
		span += time.Until(w.NextRetry(job))
	}
	require.Greater(t, span, time.Hour)
}

// A worker killed in the middle of an erasure leaves its job running and
// the request running (its failure is never recorded). Another worker's
// River client rescues the job after the rescue delay (short here, through
// the option) and the erasure completes with exact counts.
func TestKilledErasureIsRescuedAndCompletes(t *testing.T) {
	t.Parallel()
	b, req := dbtest.KilledAfterFirstBatch(t, "killed")
	// What kill -9 leaves: the job running since its attempt began, the
	// request running, one batch committed and counted.
	_, err := b.Pool.Exec(b.Ctx, `UPDATE river_job SET state = 'running', attempt = 1,
		attempted_at = now() - interval '30 seconds', attempted_by = ARRAY['killed-worker'] WHERE kind = 'auditlog_erasure'`)
	require.NoError(t, err)
	_, err = b.Pool.Exec(b.Ctx, "UPDATE erasure_requests SET status = 'running', error = NULL WHERE id = $1", req.ID)
	require.NoError(t, err)
	got, err := b.Log.ErasureRequest(b.Ctx, req.ID)
	require.NoError(t, err)
	require.Equal(t, int64(1), got.UserEventsDeleted)
	require.Equal(t, "running", got.JobState)

	opts := jobs.Opts{
		RescueAfter: 10 * time.Second, MaintenanceTimeout: 5 * time.Second, ErasureTimeout: 5 * time.Second,
		ErasureBudget: 4 * time.Second, HookTimeout: 5 * time.Second,
	}
	require.NoError(t, opts.Validate())
	cfg := jobs.NewConfig(b.Pool, b.Log, opts)
	require.Equal(t, 10*time.Second, cfg.RescueStuckJobsAfter)
	cfg.PeriodicJobs = nil // no maintenance pass: it would drop the expired rows of alice's before the erasure counts them
	client, err := river.NewClient(riverpgxv5.New(b.Pool), cfg)
	require.NoError(t, err)
	require.NoError(t, client.Start(b.Ctx))
	t.Cleanup(func() { require.NoError(t, client.Stop(context.Background())) })

	deadline := time.Now().Add(90 * time.Second)
	for {
		got, err = b.Log.ErasureRequest(b.Ctx, req.ID)
		require.NoError(t, err)
		if got.Status == service.ErasureDone {
			break
		}
		require.NotEqual(t, service.ErasureFailed, got.Status)
		require.True(t, time.Now().Before(deadline), "the killed erasure was not rescued (status %s, job %s)", got.Status, got.JobState)
		time.Sleep(100 * time.Millisecond)
	}
	// Exact: the killed attempt's batch once, the rest by the rescued one.
	got = b.RequireDone(t, req.ID, "alice")
	require.Equal(t, 2, got.Attempts)
	var state string
	var errs []byte
	require.NoError(t, b.Pool.QueryRow(b.Ctx, "SELECT state, to_jsonb(errors)::text FROM river_job WHERE kind = 'auditlog_erasure'").Scan(&state, &errs))
	require.Contains(t, string(errs), "Stuck job rescued")
	dbtest.Eventually(t, func() bool {
		require.NoError(t, b.Pool.QueryRow(b.Ctx, "SELECT state FROM river_job WHERE kind = 'auditlog_erasure'").Scan(&state))
		return state == "completed"
	}, 30*time.Second, 50*time.Millisecond)
}

// Through River: each attempt that used its budget is snoozed, which does
// not count as an attempt, and the job completes on its first attempt
// with no error recorded.
func TestErasureJobSnoozesAtItsBudget(t *testing.T) {
	t.Parallel()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{Batch: 2})
	req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "budget"})
	require.NoError(t, err)
	workers := river.NewWorkers()
	river.AddWorker(workers, &jobs.ErasureWorker{Eraser: b.Log, Budget: time.Nanosecond})
	job := runFirstJob(t, b.Pool, workers)
	require.Equal(t, 1, job.Attempt)
	require.Empty(t, job.Errors)
	var meta struct {
		Snoozes int                `json:"snoozes"`
		Output  jobs.ErasureOutput `json:"output"`
	}
	require.NoError(t, json.Unmarshal(job.Metadata, &meta))
	require.Equal(t, 9, meta.Snoozes, "as many as the attempts that handed over in service's TestErasureYieldsWhenItsBudgetIsUsed")
	require.Equal(t, jobs.ErasureOutput{BatchSize: 2, Outcome: "done"}, meta.Output, "the last attempt found nothing left")
	b.RequireDone(t, req.ID, "alice")
}

// fakeEraser answers RunErasure with a fixed outcome and keeps the
// options it was given.
type fakeEraser struct {
	rep  *service.ErasureReport
	err  error
	opts service.RunErasureOpts
}

func (f *fakeEraser) RunErasure(_ context.Context, _ int64, opts service.RunErasureOpts) (*service.ErasureReport, error) {
	f.opts = opts
	return f.rep, f.err
}

// The worker snoozes an attempt that used its budget (at once) or found
// another attempt working, records the batch size it ended at as the
// job's output, starts from the previous attempt's batch size, and passes
// its budget and statement timeout.
func TestErasureWorkerOutcomes(t *testing.T) {
	t.Parallel()
	pool := dbtest.Pool(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		err     error
		kind    river.EventKind
		outcome string
	}{
		{"used its budget", fmt.Errorf("erasure 1: %w", service.ErrErasureYielded), river.EventKindJobSnoozed, "continues"},
		{"another attempt works", fmt.Errorf("erasure 1: %w", service.ErrErasureBusy), river.EventKindJobSnoozed, ""},
		{"failed", errors.New("erasure 1: boom"), river.EventKindJobFailed, "failed"},
		{"done", nil, river.EventKindJobCompleted, "done"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeEraser{rep: &service.ErasureReport{BatchSize: 3, Counts: map[string]int64{"project_events:scrubbed": 7}}, err: tc.err}
			w := rivertest.NewWorker(t, riverpgxv5.New(pool), &river.Config{},
				&jobs.ErasureWorker{Eraser: f, Budget: time.Minute, StatementTimeout: 2 * time.Second})
			tx, err := pool.Begin(ctx)
			require.NoError(t, err)
			defer tx.Rollback(ctx)
			res, err := w.Work(ctx, t, tx, jobs.ErasureArgs{RequestID: 1},
				&river.InsertOpts{Metadata: []byte(`{"output": {"batch_size": 5, "rows_changed": 9, "outcome": "failed"}}`)})
			if tc.kind == river.EventKindJobFailed {
				require.Error(t, err)
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tc.kind, res.EventKind)
			require.Equal(t, service.RunErasureOpts{Budget: time.Minute, Batch: 5, StatementTimeout: 2 * time.Second}, f.opts)
			var meta struct {
				Output jobs.ErasureOutput `json:"output"`
			}
			require.NoError(t, json.Unmarshal(res.Job.Metadata, &meta))
			want := jobs.ErasureOutput{BatchSize: 3, RowsChanged: 7, Outcome: tc.outcome}
			if tc.outcome == "" {
				want = jobs.ErasureOutput{BatchSize: 5, RowsChanged: 9, Outcome: "failed"} // untouched
			}
			require.Equal(t, want, meta.Output)
			if tc.kind == river.EventKindJobSnoozed {
				require.Equal(t, 0, res.Job.Attempt, "a snooze is not an attempt")
			}
		})
	}
}
