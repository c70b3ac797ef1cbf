package service_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/service"
)

// A run removes alice's events from every table that may hold them and
// scrubs the events she acted in; the request records what was removed
// from which table, and verification finds it clean.
func TestRunErasureRemovesEverything(t *testing.T) {
	t.Parallel()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{Batch: 2})

	req := b.Request(t, service.ErasureParams{Reason: "account deleted", RequestedBy: "admin-1"})
	v, err := b.Log.VerifyErasure(b.Ctx, req.ID)
	require.NoError(t, err)
	require.Equal(t, int64(8), v.UserEventsLeft)
	require.Equal(t, int64(1), v.ActedUserEventsPersonal)
	require.Equal(t, int64(3), v.ProjectEventsPersonal)

	rep, err := b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	require.Equal(t, int64(8+1+3), rep.Rows())
	got := b.RequireDone(t, req.ID, "alice")
	require.Equal(t, b.WantCounts(), got.Counts)
}

// The request and its job commit together or not at all.
func TestErasureRequestIsAtomic(t *testing.T) {
	t.Parallel()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{})

	tx, err := b.Pool.Begin(b.Ctx)
	require.NoError(t, err)
	req, created, err := b.Log.RequestErasureTx(b.Ctx, tx, service.ErasureParams{UserID: "alice", Reason: "ticket 42"})
	require.NoError(t, err)
	require.True(t, created)
	job := rivertest.RequireInsertedTx[*riverpgxv5.Driver](b.Ctx, t, tx, &jobs.ErasureArgs{}, nil)
	require.Equal(t, req.ID, job.Args.RequestID)
	require.NoError(t, tx.Rollback(b.Ctx))
	require.Zero(t, b.Count(t, "SELECT count(*) FROM erasure_requests"))
	require.Zero(t, b.Count(t, "SELECT count(*) FROM river_job"))

	tx, err = b.Pool.Begin(b.Ctx)
	require.NoError(t, err)
	req, created, err = b.Log.RequestErasureTx(b.Ctx, tx, service.ErasureParams{UserID: "alice", Reason: "ticket 42"})
	require.NoError(t, err)
	require.True(t, created)
	require.NoError(t, tx.Commit(b.Ctx))
	require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM erasure_requests WHERE id = $1", req.ID))
	require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM river_job WHERE kind = 'auditlog_erasure' AND (args->>'request_id')::bigint = $1", req.ID))
}

// A second request while one is open returns the first and enqueues
// nothing; once done, a new request is a new one.
func TestErasureDuplicateRequestsCollapse(t *testing.T) {
	t.Parallel()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{})
	first, created, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "one"})
	require.NoError(t, err)
	require.True(t, created)
	second, created, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "two"})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, first.ID, second.ID)
	require.Equal(t, "one", second.Reason)
	require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM erasure_requests"))
	require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM river_job WHERE kind = 'auditlog_erasure'"))

	_, err = b.Log.RunErasure(b.Ctx, first.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	third, created, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "three"})
	require.NoError(t, err)
	require.True(t, created)
	require.NotEqual(t, first.ID, third.ID)
}

// Bad requests are refused with a typed error and store nothing.
func TestErasureRequestValidation(t *testing.T) {
	t.Parallel()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{})
	for _, tc := range []struct {
		p     service.ErasureParams
		field string
		err   error
	}{
		{service.ErasureParams{Reason: "x"}, "user_id", service.ErrEmptySubject},
		{service.ErasureParams{UserID: "alice"}, "reason", service.ErrEmptyReason},
		{service.ErasureParams{UserID: strings.Repeat("a", 200), Reason: "x"}, "user_id", service.ErrTooLong},
		{service.ErasureParams{UserID: "alice", Reason: "a\x00b"}, "reason", service.ErrInvalidText},
	} {
		_, _, err := b.Log.RequestErasure(b.Ctx, tc.p)
		require.ErrorIs(t, err, tc.err)
		var ve *service.ValidationError
		require.ErrorAs(t, err, &ve)
		require.Equal(t, tc.field, ve.Field)
	}
	require.Zero(t, b.Count(t, "SELECT count(*) FROM erasure_requests"))
	_, _, err := dbtest.Must(service.New(b.Pool, nil)).RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "x"})
	require.ErrorIs(t, err, service.ErrNoEnqueuer)
}

// An attempt killed after its first batch leaves the request retrying
// with its error and exact counts; the retry finishes the job, and a run
// after success changes nothing and reports zero rows.
func TestErasureResumesAfterKillAndIsIdempotent(t *testing.T) {
	t.Parallel()
	b, got := dbtest.KilledAfterFirstBatch(t, "resume")
	require.Equal(t, service.ErasureRetrying, got.Status)
	require.Contains(t, got.Error, "context canceled")
	require.Equal(t, int64(1), got.UserEventsDeleted, "exactly the committed batch is counted")
	require.Equal(t, 7, b.AliceLeft(t))

	rep, err := b.Log.RunErasure(b.Ctx, got.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	require.Equal(t, int64(7+1+3), rep.Rows())
	require.Equal(t, service.ErasureDone, rep.Request.Status)
	require.Equal(t, int64(8), rep.Request.UserEventsDeleted)
	require.Equal(t, 2, rep.Request.Attempts)
	require.Empty(t, rep.Request.Error)
	b.RequireErased(t, got.ID, "alice")

	again, err := b.Log.RunErasure(b.Ctx, got.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	require.Zero(t, again.Rows())
	require.Empty(t, again.Counts)
	require.Equal(t, rep.Request, again.Request, "a run after success changes nothing")
}

// A failure on the last attempt leaves the request failed, with its error.
func TestErasureFinalFailureIsVisible(t *testing.T) {
	t.Parallel()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{})
	req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "x"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(b.Ctx)
	cancel()
	_, err = b.Log.RunErasure(ctx, req.ID, service.RunErasureOpts{FinalAttempt: true})
	require.Error(t, err)
	got, err := b.Log.ErasureRequest(b.Ctx, req.ID)
	require.NoError(t, err)
	require.Equal(t, service.ErasureFailed, got.Status)
	require.NotEmpty(t, got.Error)
	_, err = b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{})
	require.ErrorIs(t, err, service.ErrErasureFailed, "a failed request is final")
	got, err = b.Log.ErasureRequest(b.Ctx, req.ID)
	require.NoError(t, err)
	require.Equal(t, service.ErasureFailed, got.Status)
	_, err = b.Log.RunErasure(b.Ctx, 999999, service.RunErasureOpts{})
	require.ErrorIs(t, err, service.ErrNotFound)
}

// Events recorded while the job runs are erased too: here, after the
// first sweep has passed every user-event table.
func TestErasureCoversEventsWrittenDuringTheJob(t *testing.T) {
	t.Parallel()
	var b *dbtest.Erasure
	var sawProject, wrote atomic.Bool
	b = dbtest.NewErasure(t, dbtest.ErasureOpts{OnQuery: func(sql string) {
		switch {
		case strings.Contains(sql, "UPDATE project_events"):
			sawProject.Store(true)
		case sql == "commit" && sawProject.Load() && wrote.CompareAndSwap(false, true):
			_, err := b.Log.RecordUser(context.Background(), service.EventParams{
				Tag: "account:login:success", Subject: "alice", ActorID: "alice", IP: "192.0.2.99"})
			if err != nil {
				t.Error(err)
			}
			_, err = b.Log.RecordProject(context.Background(), service.EventParams{
				Tag: "project:release:add", Subject: "late", ActorID: "alice", IP: "192.0.2.99",
				Additional: json.RawMessage(`{"version": "2.0"}`)})
			if err != nil {
				t.Error(err)
			}
		}
	}})
	req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "x"})
	require.NoError(t, err)
	rep, err := b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	require.True(t, wrote.Load(), "the events were written during the job")
	require.Equal(t, int64(9), rep.Request.UserEventsDeleted)
	require.Equal(t, int64(4), rep.Request.ProjectEventsScrubbed)
	v, err := b.Log.VerifyErasure(b.Ctx, req.ID)
	require.NoError(t, err)
	require.True(t, v.Clean, "problems: %v", v.Problems)
	require.Equal(t, 4, b.Count(t, "SELECT count(*) FROM project_events WHERE actor_id = 'alice'"))
}

// With a pseudonym secret, the events alice acted in name a stable
// pseudonym instead of her id.
func TestErasurePseudonymisesActor(t *testing.T) {
	t.Parallel()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{Pseudonym: []byte("test secret")})
	pseudonym := b.Log.Pseudonym("alice")
	require.Regexp(t, `^anon:[0-9a-f]{32}$`, pseudonym)
	require.Equal(t, pseudonym, b.Log.Pseudonym("alice"), "stable")
	require.NotEqual(t, pseudonym, b.Log.Pseudonym("bob"))

	req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "x"})
	require.NoError(t, err)
	_, err = b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	b.RequireErased(t, req.ID, pseudonym)
	require.Zero(t, b.Count(t, "SELECT count(*) FROM project_events WHERE actor_id = 'alice'"))
	require.Zero(t, b.Count(t, "SELECT count(*) FROM user_events WHERE actor_id = 'alice'"))
}

// Verification is not fooled: an event that escaped (written back by
// hand after the erasure) makes it unclean, and says where.
func TestVerifyErasureFindsLeftovers(t *testing.T) {
	t.Parallel()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{})
	req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "x"})
	require.NoError(t, err)
	_, err = b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	_, err = b.Pool.Exec(b.Ctx, `INSERT INTO user_events_default (time, tag, user_id, description)
		VALUES ('2001-01-01', 'account:create', 'alice', 'Account created')`)
	require.NoError(t, err)
	dbtest.Tamper(t, b.Pool, `UPDATE project_events SET additional = additional || '{"email": "a@example.com"}'
		WHERE actor_id = 'alice' AND tag = 'project:role:invite'`)
	v, err := b.Log.VerifyErasure(b.Ctx, req.ID)
	require.NoError(t, err)
	require.False(t, v.Clean)
	require.Equal(t, int64(1), v.UserEventsLeft)
	require.Equal(t, int64(1), v.ProjectEventsPersonal)
	require.Len(t, v.Problems, 2)
	require.Contains(t, v.Problems[0], "user_events_default")
}
