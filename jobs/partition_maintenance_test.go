package jobs_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/service"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// A running River client works partition maintenance on start: a missing
// month ahead is created without anyone calling the service.
func TestClientRunsMaintenanceOnStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	missing := service.PartitionName(time.Now().UTC().AddDate(0, 2, 1-time.Now().UTC().Day()))
	_, err := pool.Exec(ctx, "DROP TABLE "+missing)
	require.NoError(t, err)

	log := dbtest.Must(service.New(pool, nil))
	client, err := river.NewClient(riverpgxv5.New(pool), jobs.NewConfig(pool, log, jobs.Opts{}))
	require.NoError(t, err)
	done, cancel := client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed)
	defer cancel()
	require.NoError(t, client.Start(ctx))
	t.Cleanup(func() { require.NoError(t, client.Stop(context.Background())) })

	select {
	case ev := <-done:
		require.Equal(t, river.EventKindJobCompleted, ev.Kind, "job error: %v", ev.Job.Errors)
		require.Equal(t, jobs.PartitionMaintenanceArgs{}.Kind(), ev.Job.Kind)
	case <-time.After(30 * time.Second):
		t.Fatal("no maintenance job completed")
	}
	require.True(t, dbtest.TableExists(t, pool, missing), "%s was created by the worker", missing)
}

func TestWorkerDropsExpiredMonth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	// A clock 120 days ahead: the months before now − 30 days have expired.
	later := time.Now().UTC().Truncate(time.Microsecond).Add(120 * 24 * time.Hour)
	log := dbtest.Must(service.New(pool, &service.Opts{Clock: dbtest.Clock(later)}))
	w := rivertest.NewWorker(t, riverpgxv5.New(pool), &river.Config{}, &jobs.PartitionMaintenanceWorker{Maintainer: log, Pool: pool})

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	res, err := w.Work(ctx, t, tx, jobs.PartitionMaintenanceArgs{}, nil)
	require.NoError(t, err)
	require.Equal(t, river.EventKindJobCompleted, res.EventKind)
	require.Positive(t, dbtest.Count(t, pool, "SELECT count(*) FROM retention_log WHERE reason = 'expired'"))
	require.Zero(t, dbtest.Count(t, pool, "SELECT count(*) FROM retention_log WHERE dropped_at <> $1", later),
		"every drop is dated by the Log's clock")
}

// A burst of requests for a pass (from recording, when a month's partition
// is missing) enqueues one job.
func TestEnqueueMaintenanceIsUnique(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	enq, err := jobs.NewEnqueuer(pool)
	require.NoError(t, err)
	for range 3 {
		require.NoError(t, enq.EnqueueMaintenance(ctx))
	}
	require.Equal(t, 1, dbtest.Count(t, pool, "SELECT count(*) FROM river_job WHERE kind = $1 AND state = 'available'",
		jobs.PartitionMaintenanceArgs{}.Kind()))
}

// A failed step (create, on a name taken by a view) is logged and fails
// the job, naming the step; the other steps ran: the expired months were
// dropped.
func TestWorkerLogsEachFailedStepAndRunsTheOthers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	later := time.Now().UTC().Truncate(time.Microsecond).Add(120 * 24 * time.Hour)
	clash := service.PartitionName(time.Date(later.Year(), later.Month()+3, 1, 0, 0, 0, 0, time.UTC))
	_, err := pool.Exec(ctx, "CREATE VIEW "+clash+" AS SELECT 1 AS x")
	require.NoError(t, err)
	log := dbtest.Must(service.New(pool, &service.Opts{Clock: dbtest.Clock(later)}))
	var out bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&out, nil))
	w := rivertest.NewWorker(t, riverpgxv5.New(pool), &river.Config{}, &jobs.PartitionMaintenanceWorker{Maintainer: log, Pool: pool, Logger: logger})

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = w.Work(ctx, t, tx, jobs.PartitionMaintenanceArgs{}, nil)
	require.ErrorContains(t, err, "create: create "+clash)
	require.Contains(t, out.String(), `msg="partition maintenance step failed" step=create`)
	require.Positive(t, dbtest.Count(t, pool, "SELECT count(*) FROM retention_log WHERE reason = 'expired'"), "drop_expired ran")
}
