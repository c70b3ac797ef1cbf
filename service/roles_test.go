package service_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/service"
)

// loginAs makes a login role that is a member of group for this test (a
// server-wide object: named uniquely, dropped at the end) and returns a
// pool on f's database connected as it.
func loginAs(t *testing.T, f *dbtest.Fixture, group string) *pgxpool.Pool {
	t.Helper()
	name := fmt.Sprintf("auditlog_test_%s_%d", group[len("auditlog_"):], time.Now().UnixNano())
	_, err := f.Pool.Exec(f.Ctx, fmt.Sprintf("CREATE ROLE %s LOGIN IN ROLE %s", name, group))
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = f.Pool.Exec(f.Ctx, "DROP ROLE IF EXISTS "+name)
	})
	cfg := f.Pool.Config().Copy()
	cfg.ConnConfig.User = name
	pool, err := pgxpool.NewWithConfig(f.Ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// The writer role records, ingests and reads, and can change nothing it
// wrote: UPDATE, DELETE, TRUNCATE, ALTER and DROP of the event tables are
// refused by privilege. The reader only reads.
func TestWriterRoleRecordsAndCannotRewrite(t *testing.T) {
	t.Parallel()
	f := dbtest.NewFixture(t, dbtest.FixtureOpts{Jobs: true})
	writer := loginAs(t, f, "auditlog_writer")
	enq, err := jobs.NewEnqueuer(writer)
	require.NoError(t, err)
	log := dbtest.Must(service.New(writer, &service.Opts{Clock: dbtest.Clock(f.Now), Enqueuer: enq}))
	e, err := log.RecordUser(f.Ctx, dbtest.SignIn("alice", f.Now))
	require.NoError(t, err)
	_, err = log.RecordProject(f.Ctx, service.EventParams{Tag: "project:release:add", Subject: "demo", ActorID: "alice",
		Additional: json.RawMessage(`{"version": "1.0"}`)})
	require.NoError(t, err)
	token, err := f.Log.CreateIngestToken(f.Ctx, "svc") // tokens are made by the owner's CLI
	require.NoError(t, err)
	tok, err := log.AuthenticateIngest(f.Ctx, token)
	require.NoError(t, err)
	_, _, err = log.Ingest(f.Ctx, tok, "key-1", []byte("b"), []service.IngestEvent{{Tag: "account:login:failure", UserID: "bob",
		Additional: json.RawMessage(`{"reason": "bad password"}`)}})
	require.NoError(t, err)
	page, err := log.UserEvents(f.Ctx, "alice", service.ListOpts{})
	require.NoError(t, err)
	require.Len(t, page.Events, 1)
	_, _, err = log.RequestErasure(f.Ctx, service.ErasureParams{UserID: "bob", Reason: "asked"})
	require.NoError(t, err, "an admin opens a request from the console; the owner's worker carries it out")

	for _, sql := range []string{
		fmt.Sprintf("UPDATE user_events SET tag = 'account:create' WHERE id = %d", e.ID),
		"DELETE FROM project_events",
		"TRUNCATE user_events",
		"ALTER TABLE user_events ADD COLUMN x int",
		"DROP TABLE project_events",
		"ALTER TABLE user_events DETACH PARTITION " + service.PartitionName(f.Now),
		"DELETE FROM erasure_requests",
	} {
		_, err := writer.Exec(f.Ctx, sql)
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr), "%s: %v", sql, err)
		require.Contains(t, []string{"42501", "42P01"}, pgErr.Code, "%s: %v", sql, err)
	}
	require.Equal(t, 2, dbtest.Count(t, f.Pool, "SELECT count(*) FROM user_events"))

	reader := loginAs(t, f, "auditlog_reader")
	rlog := dbtest.Must(service.New(reader, &service.Opts{Clock: dbtest.Clock(f.Now)}))
	page, err = rlog.Events(f.Ctx, service.Filter{})
	require.NoError(t, err)
	require.Len(t, page.Events, 3)
	_, err = rlog.RecordUser(f.Ctx, dbtest.SignIn("carol", f.Now))
	require.Error(t, err, "the reader records nothing")
}

// Legal holds under the split roles: the console (the writer) places a
// hold, sees the held rows and releases it, which resumes the erasure it
// blocked; the owner's worker drops the month (moving the held rows) and
// carries the erasure out. The writer can change no held row.
func TestHoldsUnderSplitRoles(t *testing.T) {
	t.Parallel()
	f := dbtest.NewFixture(t, dbtest.FixtureOpts{Jobs: true})
	writer := loginAs(t, f, "auditlog_writer")
	enq, err := jobs.NewEnqueuer(writer)
	require.NoError(t, err)
	later := dbtest.MonthStart(f.Now).Add(service.DefaultRetention + 24*time.Hour)
	console := dbtest.Must(service.New(writer, &service.Opts{Clock: dbtest.Clock(later), Enqueuer: enq}))
	old := f.Record(t, service.ModelUser, dbtest.SignIn("alice", dbtest.MonthStart(f.Now).Add(-24*time.Hour)))

	hold, _, err := console.PlaceHold(f.Ctx, service.HoldParams{Kind: service.ModelUser, SubjectID: "alice", Reason: "case 9", By: "root"})
	require.NoError(t, err)
	req, _, err := console.RequestErasure(f.Ctx, service.ErasureParams{UserID: "alice", Reason: "asked"})
	require.NoError(t, err)
	require.Equal(t, service.ErasureBlocked, req.Status)

	ownerEnq, err := jobs.NewEnqueuer(f.Pool)
	require.NoError(t, err)
	worker := dbtest.Must(service.New(f.Pool, &service.Opts{Clock: dbtest.Clock(later), Enqueuer: ownerEnq}))
	rep, err := worker.MaintainPartitions(f.Ctx, f.Pool, service.MaintainOpts{})
	require.NoError(t, err)
	require.Equal(t, int64(1), rep.HeldMoved)
	page, err := console.Events(f.Ctx, service.Filter{UserID: "alice"})
	require.NoError(t, err)
	require.Len(t, page.Events, 1)
	require.True(t, page.Events[0].Held)
	require.Equal(t, old.ID, page.Events[0].ID)
	for _, sql := range []string{"UPDATE held_user_events SET tag = 'x'", "DELETE FROM held_user_events", "TRUNCATE held_user_events",
		"DROP TABLE held_user_events", "DELETE FROM legal_holds", "UPDATE integrity_held_leaves SET n = 0"} {
		_, err := writer.Exec(f.Ctx, sql)
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr), "%s: %v", sql, err)
		require.Equal(t, "42501", pgErr.Code, "%s: %v", sql, err)
	}

	_, resumed, err := console.ReleaseHold(f.Ctx, hold.ID, "root")
	require.NoError(t, err)
	require.Len(t, resumed, 1)
	_, err = worker.RunErasure(f.Ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	require.Zero(t, dbtest.Count(t, f.Pool, "SELECT count(*) FROM held_user_events"), "erased, held rows too")
	done, err := console.ErasureRequest(f.Ctx, req.ID)
	require.NoError(t, err)
	require.Equal(t, service.ErasureDone, done.Status)
}
