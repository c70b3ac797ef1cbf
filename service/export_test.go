package service_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

// exportLines runs ExportSubject for user and decodes its lines, checking
// the count it returns and that they run newest first, each event once.
func exportLines(t *testing.T, log *service.Log, user string) []service.ExportedEvent {
	t.Helper()
	var buf bytes.Buffer
	n, err := log.ExportSubject(t.Context(), user, &buf)
	require.NoError(t, err)
	var out []service.ExportedEvent
	for line := range strings.SplitSeq(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		if line == "" {
			continue
		}
		var e service.ExportedEvent
		require.NoError(t, json.Unmarshal([]byte(line), &e), line)
		out = append(out, e)
	}
	require.Len(t, out, n)
	for i := 1; i < len(out); i++ {
		a, b := out[i-1], out[i]
		require.True(t, a.Time.After(b.Time) || (a.Time.Equal(b.Time) && a.ID > b.ID),
			"newest first, each event once: %d (%s) before %d (%s)", a.ID, a.Time, b.ID, b.Time)
	}
	return out
}

// The subject access export holds exactly alice's user events inside the
// window and the events she acted in (on bob's account, on projects), with
// every field.
func TestExportSubject(t *testing.T) {
	t.Parallel()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{})
	lines := exportLines(t, b.Log, "alice")
	var ids []int64
	for _, e := range lines {
		ids = append(ids, e.ID)
		switch {
		case e.Model == service.ModelUser && e.UserID == "alice":
			require.Equal(t, []service.ExportRole{service.RoleSubject, service.RoleActor}, e.Roles, "she signed in herself")
			require.Equal(t, "192.0.2.10", e.IP.String())
			require.NotEmpty(t, e.UserAgent)
			require.Equal(t, "DE", e.Location.Country)
		default:
			require.Equal(t, "alice", e.ActorID)
			require.Equal(t, []service.ExportRole{service.RoleActor}, e.Roles)
		}
		require.Empty(t, e.MentionedAs)
	}
	// The user event she acted in on bob's account (adding his e-mail).
	onBob := int64(b.Count(t, "SELECT id FROM user_events WHERE user_id = 'bob' AND actor_id = 'alice'"))
	slices.Sort(ids)
	want := append(slices.Clone(b.Exported), onBob)
	slices.Sort(want)
	require.Equal(t, want, ids)
	var buf bytes.Buffer
	_, err := b.Log.ExportSubject(b.Ctx, "alice", &buf)
	require.NoError(t, err)
	require.Contains(t, buf.String(), `"email":"carol@example.com"`, "personal keys are the person's own data here")

	_, err = b.Log.ExportSubject(b.Ctx, "", &buf)
	require.ErrorIs(t, err, service.ErrEmptySubject)
}

// exportCatalog has user and project tags with keys that name an account
// (person_ref), the tag's own and catalog-wide (submitted_by).
const exportCatalog = `catalog: export
version: 1
keys:
  submitted_by: person_ref
tags:
  account:login:success:
    model: user
    description: "Signed in"
  account:email:add:
    model: user
    description: "Added an email address"
    keys:
      email: personal
  account:team:join:
    model: user
    description: "Joined a team"
    keys:
      inviter: person_ref
      team: public
  project:release:add:
    model: project
    description: "Released version {version}"
    keys:
      version: public
  project:role:add:
    model: project
    description: "Gave {target_user} the {role} role"
    keys:
      target_user: person_ref
      role: public
`

// The export holds every event that names the person — as subject, as
// actor (on another account, on a project), as a mention under a
// person_ref key (in another account's user event, in a project event) —
// each once with its roles, and nothing else: not others' events that do
// not name them (nor name them under a key that does not name an
// account), nor user events outside the window, whatever their role.
func TestExportSubjectRoles(t *testing.T) {
	t.Parallel()
	f := dbtest.NewFixture(t, dbtest.FixtureOpts{Opts: service.Opts{Registry: registryFrom(t, exportCatalog)}})
	at := func(hours int) time.Time { return f.Now.Add(-time.Duration(hours) * time.Hour) }
	want := map[int64]struct {
		roles []service.ExportRole
		keys  []string
	}{}
	expect := func(e service.Event, keys []string, roles ...service.ExportRole) {
		want[e.ID] = struct {
			roles []service.ExportRole
			keys  []string
		}{roles, keys}
	}
	user := func(p service.EventParams) service.Event { return f.Record(t, service.ModelUser, p) }
	project := func(p service.EventParams) service.Event { return f.Record(t, service.ModelProject, p) }
	const (
		subject   = service.RoleSubject
		actor     = service.RoleActor
		mentioned = service.RoleMentioned
	)

	// Subject: her own sign-in; an admin acting on her account; her own
	// event naming herself.
	expect(user(dbtest.SignIn("alice", at(1))), nil, subject, actor)
	expect(user(service.EventParams{Tag: "account:email:add", Subject: "alice", ActorID: "admin", Time: at(2),
		Additional: json.RawMessage(`{"email": "alice@example.com"}`)}), nil, subject)
	expect(user(service.EventParams{Tag: "account:team:join", Subject: "alice", ActorID: "alice", Time: at(3),
		Additional: json.RawMessage(`{"inviter": "alice", "team": "core"}`)}), []string{"inviter"}, subject, actor, mentioned)
	// Actor: on bob's account (also naming herself), on a project.
	expect(user(service.EventParams{Tag: "account:email:add", Subject: "bob", ActorID: "alice", Time: at(4), IP: "192.0.2.10",
		Additional: json.RawMessage(`{"email": "bob@example.com"}`)}), nil, actor)
	expect(user(service.EventParams{Tag: "account:team:join", Subject: "bob", ActorID: "alice", Time: at(5),
		Additional: json.RawMessage(`{"inviter": "alice"}`)}), []string{"inviter"}, actor, mentioned)
	expect(project(service.EventParams{Tag: "project:release:add", Subject: "demo", ActorID: "alice", Time: at(6),
		IP: "192.0.2.10", UserAgent: "twine/6", Additional: json.RawMessage(`{"version": "1.0"}`)}), nil, actor)
	expect(project(service.EventParams{Tag: "project:role:add", Subject: "demo", ActorID: "alice", Time: at(7),
		Additional: json.RawMessage(`{"target_user": "alice", "role": "Owner"}`)}), []string{"target_user"}, actor, mentioned)
	// Mentioned: in carol's user event (carol acting, and nobody acting),
	// in a project event by bob under two keys, the tag's own and the
	// catalog-wide one.
	expect(user(service.EventParams{Tag: "account:team:join", Subject: "carol", ActorID: "carol", Time: at(8),
		IP: "203.0.113.5", Additional: json.RawMessage(`{"inviter": "alice", "team": "core"}`)}), []string{"inviter"}, mentioned)
	expect(user(service.EventParams{Tag: "account:team:join", Subject: "carol", Time: at(9),
		Additional: json.RawMessage(`{"inviter": "alice"}`)}), []string{"inviter"}, mentioned)
	expect(project(service.EventParams{Tag: "project:role:add", Subject: "demo", ActorID: "bob", Time: at(10),
		Additional: json.RawMessage(`{"target_user": "alice", "role": "Maintainer", "submitted_by": "alice"}`)}),
		[]string{"submitted_by", "target_user"}, mentioned)
	// A project event is kept forever, and so exported whatever its age.
	old := dbtest.InsertRaw(t, f.Pool, dbtest.Raw{Table: "project_events", Time: f.Now.AddDate(-3, 0, 0), Tag: "project:role:add",
		Subject: "legacy", ActorID: "bob", Description: "Gave alice the Owner role", Additional: `{"target_user": "alice", "role": "Owner"}`})
	want[old] = struct {
		roles []service.ExportRole
		keys  []string
	}{[]service.ExportRole{mentioned}, []string{"target_user"}}

	// Not naming her: others' events, her id under keys that name no
	// account, a mention of someone else.
	user(dbtest.SignIn("bob", at(11)))
	user(service.EventParams{Tag: "account:team:join", Subject: "carol", ActorID: "bob", Time: at(12),
		Additional: json.RawMessage(`{"inviter": "bob", "team": "alice"}`)})
	project(service.EventParams{Tag: "project:role:add", Subject: "demo", ActorID: "bob", Time: at(13),
		Additional: json.RawMessage(`{"target_user": "carol", "role": "alice"}`)})
	project(service.EventParams{Tag: "project:release:add", Subject: "alice", ActorID: "bob", Time: at(14),
		Additional: json.RawMessage(`{"version": "alice", "submitted_by": "bob"}`)})
	// Outside the window: user events of hers, by her and naming her,
	// written as they were when they were current (months whose partition
	// is kept, and the default partition).
	gone := dbtest.MonthStart(f.Now).AddDate(0, -3, 0).Add(time.Hour)
	dbtest.InsertRaw(t, f.Pool, dbtest.Raw{Time: gone, Subject: "alice", ActorID: "alice"})
	dbtest.InsertRaw(t, f.Pool, dbtest.Raw{Time: gone, Subject: "bob", ActorID: "alice", Tag: "account:email:add", Description: "Added"})
	dbtest.InsertRaw(t, f.Pool, dbtest.Raw{Time: gone, Subject: "carol", ActorID: "carol", Tag: "account:team:join",
		Description: "Joined a team", Additional: `{"inviter": "alice"}`})
	dbtest.InsertRaw(t, f.Pool, dbtest.Raw{Time: dbtest.MonthStart(f.Now).AddDate(0, -8, 0), Subject: "carol", Tag: "account:team:join",
		Description: "Joined a team", Additional: `{"inviter": "alice"}`})
	require.Equal(t, 4, f.Count(t, "SELECT count(*) FROM user_events WHERE time < $1", f.Now.AddDate(0, 0, -90)))

	lines := exportLines(t, f.Log, "alice")
	got := map[int64]bool{}
	for _, e := range lines {
		w, ok := want[e.ID]
		require.True(t, ok, "event %d (%s of %s) does not name alice", e.ID, e.Tag, e.Subject())
		require.Equal(t, w.roles, e.Roles, "event %d (%s)", e.ID, e.Tag)
		require.Equal(t, w.keys, e.MentionedAs, "event %d (%s)", e.ID, e.Tag)
		got[e.ID] = true
	}
	require.Len(t, got, len(want), "every event that names alice")

	// Each line is the whole event, with the other actor's fields too.
	var buf bytes.Buffer
	_, err := f.Log.ExportSubject(f.Ctx, "alice", &buf)
	require.NoError(t, err)
	first, _, _ := strings.Cut(buf.String(), "\n")
	var fields map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(first), &fields))
	require.Equal(t, `["subject","actor"]`, string(fields["roles"]))
	require.NotContains(t, fields, "mentioned_as", "left out when she is not mentioned")
	for _, k := range []string{"id", "model", "time", "tag", "user_id", "actor_id", "auth_method", "ip", "user_agent", "location", "description", "additional"} {
		require.Contains(t, fields, k)
	}
	require.Contains(t, buf.String(), `"ip":"203.0.113.5","description":"Joined a team","additional":{"team":"core","inviter":"alice"},"roles":["mentioned"],"mentioned_as":["inviter"]}`)

	// A person nothing names gets an empty export.
	require.Empty(t, exportLines(t, f.Log, "nobody"))
}

// The export pages each of its streams on its own: with more than a page
// in several of them, every event comes once, newest first.
func TestExportSubjectPages(t *testing.T) {
	t.Parallel()
	f := dbtest.NewFixture(t, dbtest.FixtureOpts{Opts: service.Opts{Registry: registryFrom(t, exportCatalog)}})
	var users, projects []service.EventParams
	n := service.ExportPage + service.ExportPage/2
	for i := range n {
		// Interleaved in time, two to a second, so pages of different
		// streams overlap; the same instant for some, so ids break ties.
		at := f.Now.Add(-time.Duration(i/2) * time.Second)
		users = append(users, dbtest.SignIn("alice", at))
		users = append(users, service.EventParams{Tag: "account:team:join", Subject: fmt.Sprintf("u%d", i), Time: at,
			Additional: json.RawMessage(`{"inviter": "alice"}`)})
		projects = append(projects, service.EventParams{Tag: "project:role:add", Subject: "demo", ActorID: "bob", Time: at,
			Additional: json.RawMessage(`{"target_user": "alice", "role": "Owner"}`)})
		if i%3 == 0 {
			projects = append(projects, service.EventParams{Tag: "project:release:add", Subject: "demo", ActorID: "alice", Time: at,
				Additional: json.RawMessage(fmt.Sprintf(`{"version": "1.%d"}`, i))})
		}
	}
	_, err := f.Log.RecordUserMany(f.Ctx, users)
	require.NoError(t, err)
	_, err = f.Log.RecordProjectMany(f.Ctx, projects)
	require.NoError(t, err)
	lines := exportLines(t, f.Log, "alice")
	require.Len(t, lines, len(users)+len(projects))
	count := map[string]int{}
	for _, e := range lines {
		count[string(e.Model)+" "+fmt.Sprint(e.Roles)]++
	}
	require.Equal(t, map[string]int{
		"user [subject actor]": n, "user [mentioned]": n, "project [mentioned]": n, "project [actor]": (n + 2) / 3,
	}, count)
}
