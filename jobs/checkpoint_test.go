package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/service"
)

func integrityKey(t *testing.T) *service.IntegrityKey {
	t.Helper()
	file, _, err := service.GenerateIntegrityKey("jobs.test")
	require.NoError(t, err)
	key, err := service.ParseIntegrityKey(file)
	require.NoError(t, err)
	return key
}

// startClient starts a River client with NewConfig's configuration and
// returns the jobs it finishes, as they finish.
func startClient(t *testing.T, f *dbtest.Fixture, opts jobs.Opts) (<-chan *river.Event, *river.Config) {
	t.Helper()
	cfg := jobs.NewConfig(f.Pool, f.Log, opts)
	client, err := river.NewClient(riverpgxv5.New(f.Pool), cfg)
	require.NoError(t, err)
	events, cancel := client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed)
	t.Cleanup(cancel)
	require.NoError(t, client.Start(f.Ctx))
	t.Cleanup(func() { require.NoError(t, client.Stop(context.Background())) })
	return events, cfg
}

// waitFor waits for a job of kind to finish and requires it completed.
func waitFor(t *testing.T, events <-chan *river.Event, kind string) *rivertype.JobRow {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Job.Kind != kind {
				continue
			}
			require.Equal(t, river.EventKindJobCompleted, ev.Kind, "%s errors: %v", kind, ev.Job.Errors)
			return ev.Job
		case <-deadline:
			t.Fatalf("no %s job finished", kind)
			return nil
		}
	}
}

// With an integrity key, the River client NewConfig configures signs a
// checkpoint on start (the periodic job runs on start) and again every
// interval, each covering what was recorded before it; the events are
// then provable.
func TestClientCheckpointsWithAKey(t *testing.T) {
	t.Parallel()
	f := dbtest.NewFixture(t, dbtest.FixtureOpts{Opts: service.Opts{Integrity: integrityKey(t)}})
	first := f.Record(t, service.ModelUser, dbtest.SignIn("alice", time.Time{}))
	f.Record(t, service.ModelProject, service.EventParams{Tag: "project:create", Subject: "tinyweb", ActorID: "erin"})

	events, cfg := startClient(t, f, jobs.Opts{CheckpointInterval: time.Second})
	require.Len(t, cfg.PeriodicJobs, 2, "maintenance and checkpoint")
	waitFor(t, events, jobs.CheckpointArgs{}.Kind())
	require.Positive(t, f.Count(t, "SELECT count(*) FROM integrity_checkpoints"))
	cp, err := f.Log.LatestCheckpoint(f.Ctx)
	require.NoError(t, err)
	kept, ok := cp.Tree("kept")
	require.True(t, ok)
	require.Equal(t, int64(1), kept.Size, "the project event")
	p, err := f.Log.ProveEvent(f.Ctx, first.ID)
	require.NoError(t, err, "the sign-in is covered")
	require.Equal(t, first.ID, p.EventID)

	// The next interval's checkpoint covers what came after.
	later := f.Record(t, service.ModelUser, dbtest.SignIn("bob", time.Time{}))
	dbtest.Eventually(t, func() bool {
		_, err := f.Log.ProveEvent(f.Ctx, later.ID)
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "no later checkpoint covered event %d", later.ID)
	rep, err := f.Log.Verify(f.Ctx, service.VerifyOpts{})
	require.NoError(t, err)
	require.True(t, rep.Clean, "%v", rep.Findings)
	require.GreaterOrEqual(t, rep.Checkpoints, 2)
}

// Without a key, no checkpoint job is scheduled: the client runs its
// maintenance pass on start and inserts nothing else.
func TestClientSchedulesNoCheckpointWithoutAKey(t *testing.T) {
	t.Parallel()
	f := dbtest.NewFixture(t, dbtest.FixtureOpts{Opts: service.Opts{Clock: time.Now}})
	f.Record(t, service.ModelUser, dbtest.SignIn("alice", time.Time{}))
	events, cfg := startClient(t, f, jobs.Opts{CheckpointInterval: time.Second})
	require.Len(t, cfg.PeriodicJobs, 1, "maintenance only")
	waitFor(t, events, jobs.PartitionMaintenanceArgs{}.Kind())
	time.Sleep(2 * time.Second) // more than an interval
	require.Zero(t, f.Count(t, "SELECT count(*) FROM river_job WHERE kind = $1", jobs.CheckpointArgs{}.Kind()))
	require.Zero(t, f.Count(t, "SELECT count(*) FROM integrity_checkpoints"))
}
