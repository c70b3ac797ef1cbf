package jobs_test

import (
	"context"
	"sync"
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

// hookSetup gives a Log with the new-location signal and the default
// hooks, enqueuing River jobs.
func hookSetup(t *testing.T) *dbtest.Fixture {
	t.Helper()
	return dbtest.NewFixture(t, dbtest.FixtureOpts{Jobs: true,
		Opts: service.Opts{Signals: service.SignalOpts{NewLocation: true}, Hooks: jobs.DefaultHooks()}})
}

// A hook's job is inserted in the event's transaction: committed with it,
// rolled back with it.
func TestHookEnqueuedWithTheEvent(t *testing.T) {
	t.Parallel()
	b := hookSetup(t)
	b.Record(t, service.ModelUser, service.EventParams{Tag: service.TagLoginSuccess, Subject: "eve", ActorID: "eve",
		AuthMethod: "password", IP: "192.0.2.1", Time: b.Now.Add(-5 * time.Hour)})

	tx, err := b.Pool.Begin(b.Ctx)
	require.NoError(t, err)
	_, err = b.Log.RecordUserTx(b.Ctx, tx, service.EventParams{Tag: service.TagLoginSuccess, Subject: "eve", IP: "198.51.100.1"})
	require.NoError(t, err)
	job := rivertest.RequireInsertedTx[*riverpgxv5.Driver](b.Ctx, t, tx, &jobs.HookArgs{}, nil)
	require.Equal(t, jobs.HookNotify, job.Args.Hook)
	require.Equal(t, service.ModelUser, job.Args.Model)
	require.NoError(t, tx.Rollback(b.Ctx))
	require.Zero(t, b.Count(t, "SELECT count(*) FROM user_events WHERE user_id = 'eve' AND tag = $1", service.TagLoginNewLocation))
	hookJobs := "SELECT count(*) FROM river_job WHERE kind = 'auditlog_hook'"
	require.Zero(t, b.Count(t, hookJobs), "a rolled-back event enqueues nothing")

	tx, err = b.Pool.Begin(b.Ctx)
	require.NoError(t, err)
	_, err = b.Log.RecordUserTx(b.Ctx, tx, service.EventParams{Tag: service.TagLoginSuccess, Subject: "eve", IP: "198.51.100.1"})
	require.NoError(t, err)
	require.NoError(t, tx.Commit(b.Ctx))
	require.Equal(t, 1, b.Count(t, hookJobs))

	// The bulk path fires hooks too (it runs no signal).
	_, err = b.Log.RecordUserMany(b.Ctx, []service.EventParams{
		{Tag: service.TagLoginSuccess, Subject: "eve", IP: "203.0.113.1"},
		{Tag: service.TagLoginNewLocation, Subject: "eve", IP: "203.0.113.1"},
	})
	require.NoError(t, err)
	require.Equal(t, 2, b.Count(t, hookJobs))
	require.Equal(t, 2, b.Count(t, "SELECT count(*) FROM user_events WHERE user_id = 'eve' AND tag = $1", service.TagLoginNewLocation), "no signal ran for the bulk sign-in")
}

type recordingNotifier struct {
	mu    sync.Mutex
	notes []jobs.Notification
}

func (r *recordingNotifier) Notify(_ context.Context, n jobs.Notification) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, n)
	return nil
}

// The notify hook tells the person, through the host's Notifier.
func TestNotifyHook(t *testing.T) {
	t.Parallel()
	b := hookSetup(t)
	b.Record(t, service.ModelUser, service.EventParams{Tag: service.TagLoginSuccess, Subject: "finn", ActorID: "finn",
		AuthMethod: "password", IP: "192.0.2.1", Time: b.Now.Add(-5 * time.Hour)})
	_, err := b.Log.RecordUser(b.Ctx, service.EventParams{Tag: service.TagLoginSuccess, Subject: "finn", IP: "198.51.100.1",
		Location: &service.Location{Country: "PT", City: "Lisbon"}})
	require.NoError(t, err)

	notifier := &recordingNotifier{}
	job := runFirstJob(t, b.Pool, hookWorkers(b.Log, notifier))
	require.Equal(t, "auditlog_hook", job.Kind)
	notifier.mu.Lock()
	defer notifier.mu.Unlock()
	require.Len(t, notifier.notes, 1)
	require.Equal(t, "finn", notifier.notes[0].UserID)
	require.Equal(t, "New sign-in to your account", notifier.notes[0].Subject)
	require.Contains(t, notifier.notes[0].Body, "Lisbon, PT")
}

func hookWorkers(log *service.Log, n jobs.Notifier) *river.Workers {
	w := river.NewWorkers()
	river.AddWorker(w, &jobs.HookWorker{Events: log, Handlers: map[string]jobs.HookHandler{jobs.HookNotify: jobs.NotifyHandler(n)}})
	return w
}
