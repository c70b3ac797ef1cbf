package service_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/service"
)

// ingestBundle is a Log over a database of its own with one ingest token.
type ingestBundle struct {
	*dbtest.Fixture
	token string
	tok   service.IngestToken
}

func ingestSetup(t *testing.T, o dbtest.FixtureOpts) *ingestBundle {
	t.Helper()
	b := &ingestBundle{Fixture: dbtest.NewFixture(t, o)}
	var err error
	b.token, err = b.Log.CreateIngestToken(b.Ctx, "billing")
	require.NoError(t, err)
	b.tok, err = b.Log.AuthenticateIngest(b.Ctx, b.token)
	require.NoError(t, err)
	return b
}

// stored counts the events of both models.
func (b *ingestBundle) stored(t *testing.T) int {
	t.Helper()
	return b.Count(t, "SELECT (SELECT count(*) FROM user_events) + (SELECT count(*) FROM project_events)")
}

// keys counts the stored idempotency keys.
func (b *ingestBundle) keys(t *testing.T) int {
	t.Helper()
	return b.Count(t, "SELECT count(*) FROM ingest_requests")
}

func ingestLogin(user, ip string) service.IngestEvent {
	return service.IngestEvent{Tag: service.TagLoginSuccess, UserID: user, ActorID: user, AuthMethod: "password",
		IP: ip, UserAgent: "curl/8", Location: &service.Location{Country: "DE"}}
}

func ingestRelease(project, version string) service.IngestEvent {
	return service.IngestEvent{Tag: "project:release:add", ProjectID: project, ActorID: "ingester", TokenID: "ci",
		Additional: json.RawMessage(`{"version": "` + version + `"}`)}
}

// A batch of both models is recorded, each event in the model its tag
// belongs to, at the Log's clock unless it carries a time.
func TestIngestRecordsEachEventInItsModel(t *testing.T) {
	t.Parallel()
	b := ingestSetup(t, dbtest.FixtureOpts{})
	at := b.Now.Add(-time.Hour)
	late := ingestLogin("u-2", "192.0.2.2")
	late.Time = &at
	res, replayed, err := b.Log.Ingest(b.Ctx, b.tok, "", []byte("body"), []service.IngestEvent{
		ingestLogin("u-1", "192.0.2.1"), ingestRelease("p-1", "1.0"), late,
	})
	require.NoError(t, err)
	require.False(t, replayed)
	require.Equal(t, service.IngestResult{Recorded: 3, UserEvents: 2, ProjectEvents: 1}, res)
	require.Zero(t, b.keys(t), "no key, nothing kept for a replay")

	page, err := b.Log.UserEvents(b.Ctx, "u-1", service.ListOpts{})
	require.NoError(t, err)
	require.Len(t, page.Events, 1)
	require.Equal(t, b.Now, page.Events[0].Time, "no time: the Log's clock")
	require.Equal(t, "192.0.2.1", page.Events[0].IP.String())
	page, err = b.Log.UserEvents(b.Ctx, "u-2", service.ListOpts{})
	require.NoError(t, err)
	require.Len(t, page.Events, 1)
	require.Equal(t, at, page.Events[0].Time)
	page, err = b.Log.ProjectEvents(b.Ctx, "p-1", service.ListOpts{})
	require.NoError(t, err)
	require.Len(t, page.Events, 1)
	require.Equal(t, "Released version 1.0", page.Events[0].Description)
	require.Equal(t, "ci", page.Events[0].TokenID)
}

// A request repeated with its Idempotency-Key returns the first answer,
// marked replayed, and records nothing again; the same key with another
// body is a conflict and records nothing; another token's key of the same
// name is its own.
func TestIngestReplayRecordsNothingTwice(t *testing.T) {
	t.Parallel()
	b := ingestSetup(t, dbtest.FixtureOpts{})
	body := []byte(`{"events": [two sign-ins]}`)
	events := []service.IngestEvent{ingestLogin("u-1", "192.0.2.1"), ingestLogin("u-2", "192.0.2.2")}
	first, replayed, err := b.Log.Ingest(b.Ctx, b.tok, "k-1", body, events)
	require.NoError(t, err)
	require.False(t, replayed)
	require.Equal(t, service.IngestResult{Recorded: 2, UserEvents: 2}, first)
	require.Equal(t, 2, b.stored(t))

	for range 3 {
		again, replayed, err := b.Log.Ingest(b.Ctx, b.tok, "k-1", body, events)
		require.NoError(t, err)
		require.True(t, replayed)
		require.Equal(t, first, again)
	}
	require.Equal(t, 2, b.stored(t), "a replay records nothing")
	require.Equal(t, 1, b.keys(t))

	_, replayed, err = b.Log.Ingest(b.Ctx, b.tok, "k-1", []byte(`{"events": [one sign-in]}`), events[:1])
	require.ErrorIs(t, err, service.ErrIdempotencyConflict)
	require.False(t, replayed)
	require.Equal(t, 2, b.stored(t), "a conflict records nothing")

	other, err := b.Log.CreateIngestToken(b.Ctx, "shipping")
	require.NoError(t, err)
	otherTok, err := b.Log.AuthenticateIngest(b.Ctx, other)
	require.NoError(t, err)
	res, replayed, err := b.Log.Ingest(b.Ctx, otherTok, "k-1", []byte(`{"events": [one sign-in]}`), events[:1])
	require.NoError(t, err)
	require.False(t, replayed, "keys are per token")
	require.Equal(t, service.IngestResult{Recorded: 1, UserEvents: 1}, res)
	require.Equal(t, 3, b.stored(t))
	require.Equal(t, 2, b.keys(t))
}

// Two identical requests at once record once: one of them is the replay.
func TestIngestSameKeyAtOnceRecordsOnce(t *testing.T) {
	t.Parallel()
	b := ingestSetup(t, dbtest.FixtureOpts{})
	events := make([]service.IngestEvent, 200)
	for i := range events {
		events[i] = ingestLogin(fmt.Sprintf("u-%d", i), "192.0.2.1")
	}
	type answer struct {
		res      service.IngestResult
		replayed bool
		err      error
	}
	answers := make(chan answer, 2)
	start := make(chan struct{})
	for range 2 {
		go func() {
			<-start
			res, replayed, err := b.Log.Ingest(b.Ctx, b.tok, "k-once", []byte("the same body"), events)
			answers <- answer{res, replayed, err}
		}()
	}
	close(start)
	var replays int
	for range 2 {
		a := <-answers
		require.NoError(t, a.err)
		require.Equal(t, service.IngestResult{Recorded: 200, UserEvents: 200}, a.res)
		if a.replayed {
			replays++
		}
	}
	require.Equal(t, 1, replays)
	require.Equal(t, 200, b.stored(t))
}

// A batch with a bad event writes nothing, keeps no key, and its
// *BatchError names the first bad event in the batch's order, whichever
// model it belongs to; the corrected request then goes through under the
// same key.
func TestIngestBadEventWritesNothing(t *testing.T) {
	t.Parallel()
	b := ingestSetup(t, dbtest.FixtureOpts{})
	badIP := ingestLogin("u-3", "300.1.1.1")
	badProject := ingestRelease("p-1", "1.0")
	badProject.AuthMethod = "Pass Word"
	wrongSubject := ingestRelease("p-2", "2.0")
	wrongSubject.UserID = "u-9"
	for _, tc := range []struct {
		name   string
		events []service.IngestEvent
		index  int
		err    error
		field  string
	}{
		{"bad address", []service.IngestEvent{ingestLogin("u-1", "192.0.2.1"), ingestRelease("p-1", "1.0"), badIP}, 2, service.ErrInvalidIP, "ip"},
		{"a project event before a user event", []service.IngestEvent{ingestLogin("u-1", "192.0.2.1"), badProject, badIP}, 1, service.ErrInvalidAuthMethod, "auth_method"},
		{"a user id on a project event", []service.IngestEvent{ingestLogin("u-1", "192.0.2.1"), wrongSubject, badIP}, 1, service.ErrWrongModel, "user_id"},
		{"unknown tag", []service.IngestEvent{ingestLogin("u-1", "192.0.2.1"), {Tag: "account:login:teleport", UserID: "u-1"}}, 1, service.ErrUnknownTag, "tag"},
		{"no subject", []service.IngestEvent{{Tag: service.TagLoginSuccess}}, 0, service.ErrEmptySubject, "user_id"},
	} {
		_, _, err := b.Log.Ingest(b.Ctx, b.tok, "k-bad", []byte(tc.name), tc.events)
		var be *service.BatchError
		require.ErrorAs(t, err, &be, tc.name)
		require.Equal(t, tc.index, be.Index, tc.name)
		require.ErrorIs(t, err, tc.err, tc.name)
		var ve *service.ValidationError
		require.ErrorAs(t, err, &ve, tc.name)
		require.Equal(t, tc.field, ve.Field, tc.name)
		require.Zero(t, b.stored(t), "%s: nothing of the batch is written", tc.name)
		require.Zero(t, b.keys(t), "%s: the key is not kept", tc.name)
	}

	res, replayed, err := b.Log.Ingest(b.Ctx, b.tok, "k-bad", []byte("fixed"),
		[]service.IngestEvent{ingestLogin("u-1", "192.0.2.1"), ingestRelease("p-1", "1.0")})
	require.NoError(t, err)
	require.False(t, replayed)
	require.Equal(t, service.IngestResult{Recorded: 2, UserEvents: 1, ProjectEvents: 1}, res)
	require.Equal(t, 2, b.stored(t))
}

// A batch of no event or of more than MaxIngestEvents, and an
// Idempotency-Key too long or with a control character, are refused
// before anything is written.
func TestIngestRefusesBadBatchesAndKeys(t *testing.T) {
	t.Parallel()
	b := ingestSetup(t, dbtest.FixtureOpts{})
	one := []service.IngestEvent{ingestLogin("u-1", "192.0.2.1")}
	many := make([]service.IngestEvent, service.MaxIngestEvents+1)
	for i := range many {
		many[i] = ingestLogin("u-1", "192.0.2.1")
	}
	for _, tc := range []struct {
		name   string
		key    string
		events []service.IngestEvent
		err    error
		field  string
	}{
		{"no event", "", nil, service.ErrBatchSize, "events"},
		{"too many events", "", many, service.ErrBatchSize, "events"},
		{"key too long", strings.Repeat("k", 256), one, service.ErrTooLong, "idempotency_key"},
		{"key with a newline", "k\n1", one, service.ErrInvalidText, "idempotency_key"},
	} {
		_, _, err := b.Log.Ingest(b.Ctx, b.tok, tc.key, []byte(tc.name), tc.events)
		require.ErrorIs(t, err, tc.err, tc.name)
		var ve *service.ValidationError
		require.ErrorAs(t, err, &ve, tc.name)
		require.Equal(t, tc.field, ve.Field, tc.name)
	}
	require.Zero(t, b.stored(t))
	require.Zero(t, b.keys(t))

	_, _, err := b.Log.Ingest(b.Ctx, b.tok, strings.Repeat("k", 255), []byte("longest key"), many[:service.MaxIngestEvents])
	require.NoError(t, err, "the limits themselves are allowed")
	require.Equal(t, service.MaxIngestEvents, b.stored(t))
}

// CheckIngest validates as Ingest does and writes nothing.
func TestCheckIngestWritesNothing(t *testing.T) {
	t.Parallel()
	b := ingestSetup(t, dbtest.FixtureOpts{})
	require.NoError(t, b.Log.CheckIngest(b.Ctx, []service.IngestEvent{ingestLogin("u-1", "192.0.2.1"), ingestRelease("p-1", "1.0")}))
	err := b.Log.CheckIngest(b.Ctx, []service.IngestEvent{ingestRelease("p-1", "1.0"), ingestLogin("u-1", "nope"), {Tag: "no:such:tag"}})
	var be *service.BatchError
	require.ErrorAs(t, err, &be)
	require.Equal(t, 1, be.Index)
	require.ErrorIs(t, err, service.ErrInvalidIP)
	require.Zero(t, b.stored(t))
}

// Ingest is the bulk path: hooks fire for its events, signals do not.
func TestIngestRunsHooksNotSignals(t *testing.T) {
	t.Parallel()
	b := ingestSetup(t, dbtest.FixtureOpts{Jobs: true, Opts: service.Opts{
		Signals: service.SignalOpts{NewLocation: true, BurstFailures: 2}, Hooks: jobs.DefaultHooks()}})
	failure := service.IngestEvent{Tag: service.TagLoginFailure, UserID: "u-1", IP: "203.0.113.9",
		Additional: json.RawMessage(`{"reason": "bad password"}`)}
	_, _, err := b.Log.Ingest(b.Ctx, b.tok, "", []byte("body"), []service.IngestEvent{
		ingestLogin("u-1", "192.0.2.1"), ingestLogin("u-1", "198.51.100.1"), failure, failure, failure,
		{Tag: service.TagLoginNewLocation, UserID: "u-1", IP: "198.51.100.1"},
	})
	require.NoError(t, err)
	require.Equal(t, 6, b.stored(t))
	require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM user_events WHERE tag = $1", service.TagLoginNewLocation),
		"only the one sent: no signal ran")
	require.Zero(t, b.Count(t, "SELECT count(*) FROM user_events WHERE tag = $1", service.TagLoginFailureBurst))
	require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM river_job WHERE kind = 'auditlog_hook'"), "the new-location event's hook")
}

// A token is shown once and only its hash is kept; names are unique among
// active tokens; a revoked token is refused at once, and its name may be
// issued again.
func TestIngestTokens(t *testing.T) {
	t.Parallel()
	b := ingestSetup(t, dbtest.FixtureOpts{})
	require.Regexp(t, `^alin_[A-Za-z0-9_-]{43}$`, b.token)
	require.Equal(t, "billing", b.tok.Name)
	require.Positive(t, b.tok.ID)
	require.Zero(t, b.Count(t, "SELECT count(*) FROM ingest_tokens WHERE strpos(row_to_json(ingest_tokens)::text, $1) > 0", b.token),
		"the token itself is stored nowhere")
	require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM ingest_tokens WHERE token_hash = sha256(convert_to($1, 'UTF8'))", b.token))

	_, err := b.Log.CreateIngestToken(b.Ctx, "billing")
	require.ErrorIs(t, err, service.ErrTokenNameTaken)
	_, err = b.Log.CreateIngestToken(b.Ctx, "")
	require.ErrorIs(t, err, service.ErrEmptySubject)
	var ve *service.ValidationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "name", ve.Field)
	for _, bad := range []string{"", "billing", "alin_" + strings.Repeat("A", 43), b.token + "x", "alin_" + strings.Repeat("A", 200)} {
		_, err := b.Log.AuthenticateIngest(b.Ctx, bad)
		require.ErrorIs(t, err, service.ErrTokenInvalid, "%q", bad)
	}

	require.NoError(t, b.Log.RevokeIngestToken(b.Ctx, "billing"))
	_, err = b.Log.AuthenticateIngest(b.Ctx, b.token)
	require.ErrorIs(t, err, service.ErrTokenInvalid, "a revoked token is refused")
	require.ErrorIs(t, b.Log.RevokeIngestToken(b.Ctx, "billing"), service.ErrNotFound, "no active token has that name now")

	again, err := b.Log.CreateIngestToken(b.Ctx, "billing")
	require.NoError(t, err, "a revoked name may be issued again")
	require.NotEqual(t, b.token, again)
	tok, err := b.Log.AuthenticateIngest(b.Ctx, again)
	require.NoError(t, err)
	require.NotEqual(t, b.tok.ID, tok.ID)
	_, err = b.Log.AuthenticateIngest(b.Ctx, b.token)
	require.ErrorIs(t, err, service.ErrTokenInvalid, "the old one stays refused")

	list, err := b.Log.IngestTokens(b.Ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, b.tok.ID, list[0].ID)
	require.NotNil(t, list[0].RevokedAt)
	require.Equal(t, b.Now, *list[0].RevokedAt, "revoked at the Log's clock")
	require.Equal(t, tok.ID, list[1].ID)
	require.Nil(t, list[1].RevokedAt)
}

// PruneIngestKeys deletes the keys older than IdempotencyKeyTTL and keeps
// the others; a key past the keep time may carry a new request, pruned or
// not.
func TestPruneIngestKeys(t *testing.T) {
	t.Parallel()
	b := ingestSetup(t, dbtest.FixtureOpts{})
	_, _, err := b.Log.Ingest(b.Ctx, b.tok, "k-old", []byte("old"), []service.IngestEvent{ingestLogin("u-1", "192.0.2.1")})
	require.NoError(t, err)
	_, _, err = b.Log.Ingest(b.Ctx, b.tok, "k-expires", []byte("expires"), []service.IngestEvent{ingestLogin("u-1", "192.0.2.1")})
	require.NoError(t, err)

	n, err := b.Log.PruneIngestKeys(b.Ctx)
	require.NoError(t, err)
	require.Zero(t, n, "nothing is old yet")
	later := dbtest.Must(service.New(b.Pool, &service.Opts{Clock: dbtest.Clock(b.Now.Add(service.IdempotencyKeyTTL + time.Minute))}))
	res, replayed, err := later.Ingest(b.Ctx, b.tok, "k-new", []byte("new"), []service.IngestEvent{ingestLogin("u-1", "192.0.2.1")})
	require.NoError(t, err)
	require.False(t, replayed)
	require.Equal(t, int64(1), res.Recorded)
	_, replayed, err = later.Ingest(b.Ctx, b.tok, "k-expires", []byte("another body"), []service.IngestEvent{ingestLogin("u-2", "192.0.2.1")})
	require.NoError(t, err, "an expired key is taken over, not a conflict")
	require.False(t, replayed)
	require.Equal(t, 4, b.stored(t))

	n, err = later.PruneIngestKeys(b.Ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), n, "k-old")
	require.Equal(t, 2, b.keys(t))
	_, replayed, err = later.Ingest(b.Ctx, b.tok, "k-new", []byte("new"), []service.IngestEvent{ingestLogin("u-1", "192.0.2.1")})
	require.NoError(t, err)
	require.True(t, replayed, "a key inside the keep time is kept")
	_, replayed, err = later.Ingest(b.Ctx, b.tok, "k-old", []byte("old"), []service.IngestEvent{ingestLogin("u-1", "192.0.2.1")})
	require.NoError(t, err)
	require.False(t, replayed, "a pruned key records again")
	require.Equal(t, 5, b.stored(t))
}
