package service_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

// packageIndex is a fixture whose Log runs the built-in package-index
// catalog, which has organization and team tags.
func packageIndex(t *testing.T) *dbtest.Fixture {
	t.Helper()
	c, err := service.BuiltinCatalog("package-index")
	require.NoError(t, err)
	reg, err := c.Registry()
	require.NoError(t, err)
	return dbtest.NewFixture(t, dbtest.FixtureOpts{Opts: service.Opts{Registry: reg}})
}

func TestOrganizationAndTeamEvents(t *testing.T) {
	t.Parallel()
	f := packageIndex(t)
	ctx, log := f.Ctx, f.Log
	at := func(d time.Duration) time.Time { return f.Now.Add(-d) }

	org := f.Record(t, service.ModelOrganization, service.EventParams{
		Tag: "organization:create", Subject: "acme", ActorID: "alice", Time: at(3 * time.Hour),
		Additional: json.RawMessage(`{"organization_name": "acme", "created_by_user_id": "alice"}`),
	})
	require.Equal(t, service.ModelOrganization, org.Model)
	require.Equal(t, "acme", org.OrganizationID)
	require.Empty(t, org.ProjectID)
	team := f.Record(t, service.ModelTeam, service.EventParams{
		Tag: "team:create", Subject: service.TeamSubject("acme", "release"), ActorID: "alice", Time: at(2 * time.Hour),
		Additional: json.RawMessage(`{"organization_name": "acme", "team_name": "release", "created_by_user_id": "alice"}`),
	})
	require.Equal(t, "acme/release", team.TeamID)
	// A project with the organization's id is another subject.
	f.Record(t, service.ModelProject, service.EventParams{
		Tag: "project:create", Subject: "acme", ActorID: "bob", Time: at(time.Hour),
		Additional: json.RawMessage(`{"created_by": "bob"}`),
	})

	page, err := log.OrganizationEvents(ctx, "acme", service.ListOpts{})
	require.NoError(t, err)
	require.Len(t, page.Events, 1)
	require.Equal(t, org.ID, page.Events[0].ID)
	require.Equal(t, "acme", page.Events[0].Subject())
	require.Equal(t, service.ModelOrganization, page.Events[0].Model)

	page, err = log.TeamEvents(ctx, "acme/release", service.ListOpts{})
	require.NoError(t, err)
	require.Len(t, page.Events, 1)
	require.Equal(t, team.ID, page.Events[0].ID)

	page, err = log.ProjectEvents(ctx, "acme", service.ListOpts{})
	require.NoError(t, err)
	require.Len(t, page.Events, 1)
	require.Equal(t, "project:create", page.Events[0].Tag)

	// The admin query pages across every model and filters by each kind.
	page, err = log.Events(ctx, service.Filter{ActorID: "alice"})
	require.NoError(t, err)
	require.Len(t, page.Events, 2)
	require.Equal(t, team.ID, page.Events[0].ID)
	page, err = log.Events(ctx, service.Filter{OrganizationID: "acme"})
	require.NoError(t, err)
	require.Len(t, page.Events, 1)
	require.Equal(t, org.ID, page.Events[0].ID)
	page, err = log.Events(ctx, service.Filter{TeamID: "acme/release"})
	require.NoError(t, err)
	require.Len(t, page.Events, 1)
	page, err = log.Events(ctx, service.Filter{OrganizationID: "acme", ProjectID: "acme"})
	require.NoError(t, err)
	require.Empty(t, page.Events, "no event has two subjects")

	// Organization and team events are kept forever: like project events,
	// they may be older than the user window.
	old := f.Record(t, service.ModelOrganization, service.EventParams{
		Tag: "organization:rename", Subject: "acme", Time: f.Now.AddDate(-3, 0, 0),
		Additional: json.RawMessage(`{"organization_name": "acme", "previous_organization_name": "acme-old", "renamed_by_user_id": "alice"}`),
	})
	got, err := log.EventAt(ctx, service.ModelOrganization, old.Time, old.ID)
	require.NoError(t, err)
	require.Equal(t, "acme", got.OrganizationID)
}

func TestSubjectRefusals(t *testing.T) {
	t.Parallel()
	f := packageIndex(t)
	ctx, log := f.Ctx, f.Log
	before := dbtest.Count(t, f.Pool, `SELECT count(*) FROM project_events`)
	for _, tc := range []struct {
		what  string
		model service.Model
		p     service.EventParams
		field string
		err   error
	}{
		{"a team without its organization", service.ModelTeam,
			service.EventParams{Tag: "team:create", Subject: "release"}, "team_id", service.ErrInvalidText},
		{"a team id with two slashes", service.ModelTeam,
			service.EventParams{Tag: "team:create", Subject: "acme/release/x"}, "team_id", service.ErrInvalidText},
		{"an empty organization part", service.ModelTeam,
			service.EventParams{Tag: "team:create", Subject: "/release"}, "team_id", service.ErrInvalidText},
		{"an organization tag as a project event", service.ModelProject,
			service.EventParams{Tag: "organization:create", Subject: "acme"}, "tag", service.ErrWrongModel},
		{"a team tag as an organization event", service.ModelOrganization,
			service.EventParams{Tag: "team:create", Subject: "acme"}, "tag", service.ErrWrongModel},
		{"no organization", service.ModelOrganization,
			service.EventParams{Tag: "organization:create"}, "organization_id", service.ErrEmptySubject},
	} {
		_, err := log.Record(ctx, tc.model, tc.p)
		var ve *service.ValidationError
		require.True(t, errors.As(err, &ve), "%s: %v", tc.what, err)
		require.Equal(t, tc.field, ve.Field, tc.what)
		require.ErrorIs(t, err, tc.err, tc.what)
	}

	// Ingest names the subject field of the tag's model.
	err := log.CheckIngest(ctx, []service.IngestEvent{
		{Tag: "team:create", TeamID: "acme/release"},
		{Tag: "organization:create", ProjectID: "acme"},
	})
	var be *service.BatchError
	require.True(t, errors.As(err, &be), "%v", err)
	require.Equal(t, 1, be.Index)
	var ve *service.ValidationError
	require.True(t, errors.As(err, &ve))
	require.Equal(t, "project_id", ve.Field)
	require.ErrorIs(t, err, service.ErrWrongModel)

	// One batch of every model is all or nothing, its error naming the
	// first bad event in the batch's order.
	_, _, err = recordMany(t, f, []service.EventParams{
		{Tag: "organization:create", Subject: "acme"},
		{Tag: "team:create", Subject: "acme/release"},
		{Tag: "team:delete", Subject: "nope"},
	})
	require.True(t, errors.As(err, &be), "%v", err)
	require.Equal(t, 2, be.Index)
	require.Equal(t, before, dbtest.Count(t, f.Pool, `SELECT count(*) FROM project_events`), "nothing was written")

	users, kept, err := recordMany(t, f, []service.EventParams{
		{Tag: "organization:create", Subject: "acme"},
		{Tag: "team:create", Subject: "acme/release"},
		{Tag: "project:create", Subject: "sampleproject"},
		{Tag: "account:create", Subject: "alice"},
	})
	require.NoError(t, err)
	require.Equal(t, [2]int64{1, 3}, [2]int64{users, kept})
	require.Equal(t, 1, dbtest.Count(t, f.Pool, `SELECT count(*) FROM project_events WHERE subject_kind = 'team' AND project_id = 'acme/release'`))
}

// recordMany runs RecordManyTx in a transaction of its own, committed when
// it succeeds.
func recordMany(t *testing.T, f *dbtest.Fixture, ps []service.EventParams) (users, kept int64, err error) {
	t.Helper()
	err = pgx.BeginFunc(f.Ctx, f.Pool, func(tx pgx.Tx) error {
		users, kept, err = f.Log.RecordManyTx(f.Ctx, tx, ps)
		return err
	})
	return users, kept, err
}
