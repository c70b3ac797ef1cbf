package service_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

// heldMonth is an integrity log whose last month holds alice's sign-in
// and an event she acted in on carol's account, with alice under a hold
// and everything checkpointed.
type heldMonth struct {
	*integrityLog
	hold  service.Hold
	acted service.Event // carol's event alice acted in, last month
	later time.Time     // a clock at which last month has expired
	month string        // last month's partition
}

func newHeldMonth(t *testing.T) *heldMonth {
	t.Helper()
	il := newIntegrityLog(t, service.Opts{PseudonymSecret: []byte("a pseudonym secret of some length")})
	h := &heldMonth{integrityLog: il, month: service.PartitionName(il.lastMonth.Time),
		later: dbtest.MonthStart(il.Now).Add(service.DefaultRetention + 24*time.Hour)}
	p := dbtest.SignIn("carol", dbtest.MonthStart(il.Now).Add(-23*time.Hour))
	p.ActorID = "alice"
	h.acted = il.Record(t, service.ModelUser, p)
	_, err := il.Log.Checkpoint(il.Ctx)
	require.NoError(t, err)
	hold, created, err := il.Log.PlaceHold(il.Ctx, service.HoldParams{Kind: service.ModelUser, SubjectID: "alice",
		Reason: "case 2026-114", By: "root"})
	require.NoError(t, err)
	require.True(t, created)
	h.hold = hold
	return h
}

// heldRows is how many rows of alice's (hers, or acted in by her) last
// month holds.
func (h *heldMonth) heldRows(t *testing.T) int {
	return dbtest.Count(t, h.Pool, "SELECT count(*) FROM "+h.month+" WHERE user_id = 'alice' OR actor_id = 'alice'")
}

// A hold keeps the person's events through the drop of their month, where
// admins see them marked held, and verification covers them against the
// month's seal; the person's erasure waits for the hold. Released, the
// erasure runs and takes the held rows too, and the next pass drops the
// rest, which no hold covers any more.
func TestHoldKeepsEventsThroughADropAndBlocksErasure(t *testing.T) {
	t.Parallel()
	h := newHeldMonth(t)
	ctx := h.Ctx
	again, created, err := h.Log.PlaceHold(ctx, service.HoldParams{Kind: service.ModelUser, SubjectID: "alice", Reason: "again", By: "root"})
	require.NoError(t, err)
	require.False(t, created, "one open hold per subject")
	require.Equal(t, h.hold.ID, again.ID)
	placed, err := h.Log.UserEvents(ctx, "root", service.ListOpts{Tag: service.TagAdminHoldPlaced})
	require.NoError(t, err)
	require.Len(t, placed.Events, 1, "placing is an event of the admin")
	require.Contains(t, placed.Events[0].Description, "Placed legal hold")

	req, created, err := h.Log.RequestErasure(ctx, service.ErasureParams{UserID: "alice", Reason: "asked", RequestedBy: "root"})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, service.ErasureBlocked, req.Status)
	require.Equal(t, h.hold.ID, req.BlockedBy)
	require.False(t, req.Stuck, "blocked is not stuck")
	require.Zero(t, h.Count(t, `SELECT count(*) FROM river_job WHERE kind = 'auditlog_erasure'`), "no job while blocked")
	listed, err := h.Log.ErasureRequests(ctx, "alice", 10)
	require.NoError(t, err)
	require.Equal(t, service.ErasureBlocked, listed[0].Status)

	want := h.heldRows(t)
	require.Equal(t, 2, want, "her sign-in and the one she acted in")
	later := h.at(h.later)
	rep, err := later.MaintainPartitions(ctx, h.Pool, service.MaintainOpts{})
	require.NoError(t, err)
	require.Contains(t, dropNames(rep), h.month+"/expired")
	require.Equal(t, int64(want), rep.HeldMoved)
	require.Equal(t, want, h.Count(t, `SELECT count(*) FROM held_user_events`))
	require.Equal(t, want, h.Count(t, `SELECT count(*) FROM integrity_held_leaves`))

	page, err := later.Events(ctx, service.Filter{UserID: "alice"})
	require.NoError(t, err)
	var held []int64
	for _, e := range page.Events {
		if e.Held {
			held = append(held, e.ID)
		}
	}
	require.Equal(t, []int64{h.lastMonth.ID}, held, "admins see her held sign-in, marked held")
	page, err = later.UserEvents(ctx, "alice", service.ListOpts{})
	require.NoError(t, err)
	for _, e := range page.Events {
		require.NotEqual(t, h.lastMonth.ID, e.ID, "the person's own view keeps to the window")
	}

	// Held rows are events: append-only for the owner too.
	_, err = h.Pool.Exec(ctx, `UPDATE held_user_events SET tag = 'x'`)
	require.ErrorContains(t, err, "rule update_only_by_erasure")
	_, err = h.Pool.Exec(ctx, `TRUNCATE held_user_events`)
	require.ErrorContains(t, err, "rule no_truncate")

	vrep, findings := h.verify(t, service.VerifyOpts{})
	require.True(t, vrep.Clean, findings)
	require.Equal(t, int64(want), vrep.Held)
	proof, err := h.Log.ProveEvent(ctx, h.lastMonth.ID)
	require.NoError(t, err, "a held event is proved against the checkpoint its seal came from")
	vkey, err := service.NewCheckpointVerifier(h.key.VerifierKey)
	require.NoError(t, err)
	require.NoError(t, service.VerifyInclusion(proof, vkey))

	// Still held: a second pass keeps them.
	rep, err = later.MaintainPartitions(ctx, h.Pool, service.MaintainOpts{})
	require.NoError(t, err)
	require.Zero(t, rep.HeldDropped)

	released, resumed, err := later.ReleaseHold(ctx, h.hold.ID, "root")
	require.NoError(t, err)
	require.False(t, released.Open())
	require.Len(t, resumed, 1)
	require.Equal(t, req.ID, resumed[0].ID)
	require.Equal(t, service.ErasureStatus("pending"), resumed[0].Status)
	require.Equal(t, 1, h.Count(t, `SELECT count(*) FROM river_job WHERE kind = 'auditlog_erasure' AND (args->>'request_id')::bigint = $1`, req.ID),
		"released: its job is enqueued")
	_, _, err = later.ReleaseHold(ctx, h.hold.ID, "root")
	require.ErrorIs(t, err, service.ErrHoldNotOpen)

	_, err = later.RunErasure(ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	done, err := later.ErasureRequest(ctx, req.ID)
	require.NoError(t, err)
	require.Equal(t, service.ErasureDone, done.Status)
	require.Zero(t, h.Count(t, `SELECT count(*) FROM held_user_events WHERE user_id = 'alice' OR actor_id = 'alice'`),
		"her held sign-in deleted, the one she acted in pseudonymised")
	require.Equal(t, 1, h.Count(t, `SELECT count(*) FROM held_user_events WHERE id = $1 AND ip IS NULL AND actor_id LIKE 'anon:%'`, h.acted.ID))
	vrep, findings = h.verify(t, service.VerifyOpts{})
	require.True(t, vrep.Clean, findings)

	rep, err = later.MaintainPartitions(ctx, h.Pool, service.MaintainOpts{})
	require.NoError(t, err)
	require.Equal(t, int64(1), rep.HeldDropped, "carol's row: no hold covers it, and it has expired")
	require.Zero(t, h.Count(t, `SELECT count(*) FROM held_user_events`))
	require.Zero(t, h.Count(t, `SELECT count(*) FROM integrity_held_leaves`))
	require.Equal(t, 1, h.Count(t, `SELECT count(*) FROM retention_log WHERE reason = 'released' AND rows_estimated = 1`))
	vrep, findings = h.verify(t, service.VerifyOpts{})
	require.True(t, vrep.Clean, findings)
}

// Held rows are covered by the integrity proofs: a held event changed or
// inserted behind the service's back, or a kept leaf moved to another
// position, is named.
func TestVerifyNamesTamperedHeldEvents(t *testing.T) {
	t.Parallel()
	h := newHeldMonth(t)
	_, err := h.at(h.later).MaintainPartitions(h.Ctx, h.Pool, service.MaintainOpts{})
	require.NoError(t, err)
	vrep, findings := h.verify(t, service.VerifyOpts{})
	require.True(t, vrep.Clean, findings)

	h.exec(t, `UPDATE held_user_events SET tag = 'account:login:failure' WHERE id = $1`, h.lastMonth.ID)
	h.exec(t, `UPDATE integrity_held_leaves SET n = n + 1 WHERE event_id = $1`, h.acted.ID)
	h.exec(t, `INSERT INTO held_user_events (id, time, tag, user_id, description, additional)
		VALUES (999999, $1, 'account:login:success', 'alice', 'Signed in', '{}')`, h.lastMonth.Time)
	vrep, findings = h.verify(t, service.VerifyOpts{})
	require.False(t, vrep.Clean)
	require.Regexp(t, `altered: event `+strconv.FormatInt(h.lastMonth.ID, 10)+` .*differs from its leaf`, findings)
	require.Contains(t, findings, "altered: event "+strconv.FormatInt(h.acted.ID, 10))
	require.Contains(t, findings, "inserted: event 999999")
	proof, err := h.Log.ProveEvent(h.Ctx, h.lastMonth.ID)
	require.NoError(t, err)
	vkey, err := service.NewCheckpointVerifier(h.key.VerifierKey)
	require.NoError(t, err)
	require.ErrorIs(t, service.VerifyInclusion(proof, vkey), service.ErrProof, "the altered held event's proof fails")
}

// A pass killed after it copied the held rows and before its commit (the
// worker dies mid-drop) leaves neither the copy nor the drop: the hold and
// the month are as they were, and the next pass moves the rows once.
func TestHoldSurvivesAPassKilledMidDrop(t *testing.T) {
	t.Parallel()
	h := newHeldMonth(t)
	want := h.heldRows(t)

	cfg := h.Pool.Config().Copy()
	ctx, kill := context.WithCancel(h.Ctx)
	defer kill()
	var copied atomic.Bool
	cfg.ConnConfig.Tracer = &afterStatement{match: `INSERT INTO held_user_events`, then: func() { copied.Store(true); kill() }}
	dying, err := pgxpool.NewWithConfig(h.Ctx, cfg)
	require.NoError(t, err)
	defer dying.Close()
	worker := dbtest.Must(service.New(dying, &service.Opts{Clock: dbtest.Clock(h.later), Integrity: h.key, Registry: h.Log.Registry()}))
	_, err = worker.MaintainPartitions(ctx, dying, service.MaintainOpts{})
	require.Error(t, err)
	require.True(t, copied.Load(), "killed right after the copy")
	require.True(t, dbtest.TableExists(t, h.Pool, h.month), "the month is still there")
	require.Zero(t, h.Count(t, `SELECT count(*) FROM held_user_events`), "the copy went with the transaction")
	holds, err := h.Log.Holds(h.Ctx, true, 10)
	require.NoError(t, err)
	require.Len(t, holds, 1)

	// The worker restarts: a new process, a new pass. Until the server
	// has noticed the dead session, its maintenance lock is still held and
	// a pass is skipped; the job runs again, as it does hourly.
	dying.Close()
	var rep *service.MaintenanceReport
	dbtest.Eventually(t, func() bool {
		rep, err = h.at(h.later).MaintainPartitions(h.Ctx, h.Pool, service.MaintainOpts{})
		require.NoError(t, err)
		return !rep.Skipped
	}, 30*time.Second, 100*time.Millisecond, "the dead pass's lock is released")
	require.Contains(t, dropNames(rep), h.month+"/expired")
	require.Equal(t, int64(want), rep.HeldMoved)
	require.Equal(t, want, h.Count(t, `SELECT count(*) FROM held_user_events`))
	vrep, findings := h.verify(t, service.VerifyOpts{})
	require.True(t, vrep.Clean, findings)
}

// afterStatement is a pgx tracer that calls then once a statement whose
// text contains match has finished.
type afterStatement struct {
	match string
	then  func()
}

type statementKey struct{}

func (a *afterStatement) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, statementKey{}, data.SQL)
}

func (a *afterStatement) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	if sql, _ := ctx.Value(statementKey{}).(string); data.Err == nil && strings.Contains(sql, a.match) {
		a.then()
	}
}

// A hold on a project blocks the erasure of whoever acted in its events
// until it is released; a hold with an until lapses at the first pass
// after it.
func TestProjectHoldBlocksErasureAndHoldsLapse(t *testing.T) {
	t.Parallel()
	il := newIntegrityLog(t, service.Opts{})
	until := il.Now.Add(time.Hour)
	hold, _, err := il.Log.PlaceHold(il.Ctx, service.HoldParams{Kind: service.ModelProject, SubjectID: "sampleproject",
		Reason: "case 7", By: "root", Until: &until})
	require.NoError(t, err)
	req, _, err := il.Log.RequestErasure(il.Ctx, service.ErasureParams{UserID: "bob", Reason: "asked"})
	require.NoError(t, err)
	require.Equal(t, service.ErasureBlocked, req.Status, "bob acted in sampleproject's events")
	require.Equal(t, hold.ID, req.BlockedBy)
	other, _, err := il.Log.RequestErasure(il.Ctx, service.ErasureParams{UserID: "dave", Reason: "asked"})
	require.NoError(t, err)
	require.Equal(t, service.ErasureStatus("pending"), other.Status, "dave never acted in it")

	plan, err := il.Log.PlanPartitions(il.Ctx, service.PlanOpts{Now: il.Now.Add(2 * time.Hour)})
	require.NoError(t, err)
	require.Equal(t, []int64{hold.ID}, plan.HoldsLapsed)
	still, err := il.Log.GetHold(il.Ctx, hold.ID)
	require.NoError(t, err)
	require.True(t, still.Open(), "a plan changes nothing")

	rep, err := il.at(il.Now.Add(2*time.Hour)).MaintainPartitions(il.Ctx, il.Pool, service.MaintainOpts{})
	require.NoError(t, err)
	require.Equal(t, []int64{hold.ID}, rep.HoldsLapsed)
	lapsed, err := il.Log.GetHold(il.Ctx, hold.ID)
	require.NoError(t, err)
	require.Equal(t, service.LapsedBy, lapsed.ReleasedBy)
	got, err := il.Log.ErasureRequest(il.Ctx, req.ID)
	require.NoError(t, err)
	require.Equal(t, service.ErasureStatus("pending"), got.Status, "resumed when the hold lapsed")
	released, err := il.Log.UserEvents(il.Ctx, "root", service.ListOpts{Tag: service.TagAdminHoldReleased})
	require.NoError(t, err)
	require.Len(t, released.Events, 1)
}

// Bad hold requests are typed errors naming the field, and change
// nothing.
func TestHoldRefusesBadInput(t *testing.T) {
	t.Parallel()
	f := dbtest.NewFixture(t, dbtest.FixtureOpts{Jobs: true})
	past := f.Now.Add(-time.Hour)
	for _, c := range []struct {
		p     service.HoldParams
		field string
	}{
		{service.HoldParams{Kind: service.ModelTeam, SubjectID: "acme/core", Reason: "r", By: "root"}, "kind"},
		{service.HoldParams{Kind: service.ModelUser, Reason: "r", By: "root"}, "user_id"},
		{service.HoldParams{Kind: service.ModelProject, SubjectID: "p", By: "root"}, "reason"},
		{service.HoldParams{Kind: service.ModelOrganization, SubjectID: "acme", Reason: "r"}, "by"},
		{service.HoldParams{Kind: service.ModelUser, SubjectID: "alice", Reason: "r", By: "root", Until: &past}, "until"},
		{service.HoldParams{Kind: service.ModelUser, SubjectID: "al\x00ice", Reason: "r", By: "root"}, "user_id"},
	} {
		_, _, err := f.Log.PlaceHold(f.Ctx, c.p)
		var ve *service.ValidationError
		require.True(t, errors.As(err, &ve), "%+v: %v", c.p, err)
		require.Equal(t, c.field, ve.Field, "%+v", c.p)
	}
	_, _, err := f.Log.ReleaseHold(f.Ctx, 42, "root")
	require.ErrorIs(t, err, service.ErrNotFound)
	_, _, err = f.Log.ReleaseHold(f.Ctx, 42, "")
	var ve *service.ValidationError
	require.True(t, errors.As(err, &ve))
	require.Equal(t, "by", ve.Field)
	require.Zero(t, f.Count(t, `SELECT count(*) FROM legal_holds`))
	require.Zero(t, f.Count(t, `SELECT count(*) FROM user_events`))
}
