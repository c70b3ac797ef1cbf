package jobs_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/service"
)

// A running River client carries out the request in the job the request
// enqueued, which carries no personal data; the request records what was
// removed from which table, and verification finds it clean. (What a run
// removes and records is service's TestRunErasureRemovesEverything.)
func TestErasureJobRemovesEverything(t *testing.T) {
	t.Parallel()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{Batch: 2})

	req := b.Request(t, service.ErasureParams{Reason: "account deleted", RequestedBy: "admin-1"})

	workers := river.NewWorkers()
	river.AddWorker(workers, &jobs.ErasureWorker{Eraser: b.Log})
	job := runFirstJob(t, b.Pool, workers)
	require.Equal(t, "auditlog_erasure", job.Kind)
	require.JSONEq(t, fmt.Sprintf(`{"request_id": %d}`, req.ID), string(job.EncodedArgs), "the job carries no personal data")

	got := b.RequireDone(t, req.ID, "alice")
	require.Equal(t, b.WantCounts(), got.Counts)
}

// rivertest runs the worker alone on a request.
func TestErasureWorker(t *testing.T) {
	t.Parallel()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{})
	req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "x"})
	require.NoError(t, err)
	w := rivertest.NewWorker(t, riverpgxv5.New(b.Pool), &river.Config{}, &jobs.ErasureWorker{Eraser: b.Log})
	tx, err := b.Pool.Begin(b.Ctx)
	require.NoError(t, err)
	defer tx.Rollback(b.Ctx)
	res, err := w.Work(b.Ctx, t, tx, jobs.ErasureArgs{RequestID: req.ID}, nil)
	require.NoError(t, err)
	require.Equal(t, river.EventKindJobCompleted, res.EventKind)
	b.RequireDone(t, req.ID, "alice")
}

// runFirstJob starts a River client with workers on pool and waits for its
// first job to finish, which must complete; the client stops with the test.
func runFirstJob(t *testing.T, pool *pgxpool.Pool, workers *river.Workers) *rivertype.JobRow {
	t.Helper()
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Queues: map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 2}}, Workers: workers,
		FetchCooldown: 20 * time.Millisecond, FetchPollInterval: 50 * time.Millisecond, // a snoozed job runs again at once
	})
	require.NoError(t, err)
	events, cancel := client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed)
	defer cancel()
	require.NoError(t, client.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, client.Stop(context.Background())) })
	select {
	case ev := <-events:
		require.Equal(t, river.EventKindJobCompleted, ev.Kind, "job errors: %v", ev.Job.Errors)
		return ev.Job
	case <-time.After(30 * time.Second):
		t.Fatal("no job finished")
		return nil
	}
}
