package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

func TestUserEventsNeverOlderThanWindow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	monthStart := time.Date(b.now.Year(), b.now.Month(), 1, 0, 0, 0, 0, time.UTC)
	// Both events sit in the current month's partition, which exists
	// throughout this test.
	early, err := b.log.RecordUserTx(b.ctx, b.tx, dbtest.SignIn("u-win", monthStart.Add(time.Hour)))
	require.NoError(t, err)
	late, err := b.log.RecordUserTx(b.ctx, b.tx, dbtest.SignIn("u-win", monthStart.Add(10*24*time.Hour)))
	require.NoError(t, err)

	// 90 days later, by a clock that moved on while no retention ran.
	later := dbtest.Must(service.New(b.tx, &service.Opts{Clock: dbtest.Clock(early.Time.Add(service.DefaultRetention + time.Minute))}))
	page, err := later.UserEvents(b.ctx, "u-win", service.ListOpts{})
	require.NoError(t, err)
	require.Len(t, page.Events, 1)
	require.Equal(t, late.ID, page.Events[0].ID)

	// Asking for older events explicitly does not widen the window.
	page, err = later.UserEvents(b.ctx, "u-win", service.ListOpts{Since: monthStart.AddDate(-1, 0, 0)})
	require.NoError(t, err)
	require.Len(t, page.Events, 1)
	page, err = later.Events(b.ctx, service.Filter{UserID: "u-win"})
	require.NoError(t, err)
	require.Len(t, page.Events, 1, "the admin query honours the window too")

	// A shorter window hides both.
	short := dbtest.Must(service.New(b.tx, &service.Opts{Retention: time.Hour, Clock: dbtest.Clock(late.Time.Add(2 * time.Hour))}))
	page, err = short.UserEvents(b.ctx, "u-win", service.ListOpts{})
	require.NoError(t, err)
	require.Empty(t, page.Events)
	require.Equal(t, 2, dbtest.Count(t, b.tx, "SELECT count(*) FROM user_events WHERE user_id = 'u-win'"), "both rows still exist")
}

// collect pages through a reader and returns the ids in order.
func collect(t *testing.T, read func(cursor string) (*service.Page, error)) []int64 {
	t.Helper()
	var ids []int64
	cursor := ""
	for range 1000 {
		page, err := read(cursor)
		require.NoError(t, err)
		for _, e := range page.Events {
			ids = append(ids, e.ID)
		}
		if page.NextCursor == "" {
			return ids
		}
		cursor = page.NextCursor
	}
	t.Fatal("pagination did not end")
	return nil
}

func TestKeysetPagesShareOneTimestamp(t *testing.T) {
	t.Parallel()
	b := setup(t)
	same := b.now.Add(-time.Hour)
	var batch, projects []service.EventParams
	for range 23 {
		batch = append(batch, dbtest.SignIn("u-keyset", same))
		projects = append(projects, service.EventParams{Tag: "project:release:add", Subject: "p-keyset", Time: same, ActorID: "u-keyset",
			Additional: json.RawMessage(`{"version": "1.0"}`)})
	}
	for i := range 4 { // some at other times, before and after
		batch = append(batch, dbtest.SignIn("u-keyset", same.Add(time.Duration(i-2)*time.Second)))
	}
	_, err := b.log.RecordUserManyTx(b.ctx, b.tx, batch)
	require.NoError(t, err)
	_, err = b.log.RecordProjectManyTx(b.ctx, b.tx, projects)
	require.NoError(t, err)

	want := func(sql string) []int64 {
		rows, err := b.tx.Query(b.ctx, sql)
		require.NoError(t, err)
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		require.NoError(t, err)
		return ids
	}

	for _, limit := range []int{1, 5, 23, 50} {
		got := collect(t, func(c string) (*service.Page, error) {
			return b.log.UserEvents(b.ctx, "u-keyset", service.ListOpts{Cursor: c, Limit: limit})
		})
		require.Equal(t, want("SELECT id FROM user_events WHERE user_id = 'u-keyset' ORDER BY time DESC, id DESC"), got, "limit %d", limit)

		got = collect(t, func(c string) (*service.Page, error) {
			return b.log.ProjectEvents(b.ctx, "p-keyset", service.ListOpts{Cursor: c, Limit: limit})
		})
		require.Equal(t, want("SELECT id FROM project_events WHERE project_id = 'p-keyset' ORDER BY time DESC, id DESC"), got, "limit %d", limit)

		got = collect(t, func(c string) (*service.Page, error) {
			return b.log.Events(b.ctx, service.Filter{ActorID: "u-keyset", ListOpts: service.ListOpts{Cursor: c, Limit: limit}})
		})
		require.Equal(t, want(`SELECT id FROM (SELECT time, id FROM user_events WHERE actor_id = 'u-keyset'
			UNION ALL SELECT time, id FROM project_events WHERE actor_id = 'u-keyset') e ORDER BY time DESC, id DESC`), got, "limit %d", limit)
	}
}

func TestInvalidCursorAndFilters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.log.UserEvents(b.ctx, "u-1", service.ListOpts{Cursor: "not-a-cursor"})
	require.ErrorIs(t, err, service.ErrInvalidCursor)
	_, err = b.log.Events(b.ctx, service.Filter{IP: "10.0.0.0/33"})
	require.ErrorIs(t, err, service.ErrInvalidIP)
	_, err = b.log.Events(b.ctx, service.Filter{ListOpts: service.ListOpts{TagPrefix: "account login"}})
	require.ErrorIs(t, err, service.ErrInvalidFilter)
	_, err = b.log.Events(b.ctx, service.Filter{ListOpts: service.ListOpts{Since: b.now, Until: b.now.Add(-time.Hour)}})
	require.ErrorIs(t, err, service.ErrInvalidFilter)
}

func TestAdminFilters(t *testing.T) {
	t.Parallel()
	pool := dbtest.Pool(t)
	ctx := context.Background()
	now := dbtest.Now()
	log := dbtest.Must(service.New(pool, &service.Opts{Clock: dbtest.Clock(now)}))

	ev := func(tag, subject, actor, ip string, ago time.Duration, add string) service.EventParams {
		p := service.EventParams{Tag: tag, Subject: subject, ActorID: actor, IP: ip, Time: now.Add(-ago)}
		if add != "" {
			p.Additional = json.RawMessage(add)
		}
		return p
	}
	users := []service.EventParams{
		ev("account:login:success", "alice", "alice", "10.1.2.3", 5*time.Minute, ""),
		ev("account:login:failure", "alice", "", "203.0.113.9", 4*time.Minute, `{"reason":"bad password"}`),
		ev("account:login:success", "bob", "bob", "10.200.0.1", 3*time.Minute, ""),
		ev("account:api_token:added", "bob", "bob", "2001:db8::1", 2*time.Minute, `{"token_name":"ci"}`),
		ev("account:password:change", "carol", "admin-1", "192.0.2.1", time.Minute, ""),
	}
	_, err := log.RecordUserMany(ctx, users)
	require.NoError(t, err)
	projects := []service.EventParams{
		ev("project:release:add", "demo", "bob", "10.9.9.9", 90*time.Second, `{"version":"2.0"}`),
		ev("project:role:add", "demo", "alice", "198.51.100.2", 30*time.Second, `{"target_user":"bob","role":"Maintainer"}`),
		ev("project:create", "other", "carol", "", 200*24*time.Hour, ""), // project events never expire
	}
	_, err = log.RecordProjectMany(ctx, projects)
	require.NoError(t, err)

	tags := func(f service.Filter) []string {
		t.Helper()
		page, err := log.Events(ctx, f)
		require.NoError(t, err)
		var out []string
		for _, e := range page.Events {
			out = append(out, fmt.Sprintf("%s/%s", e.Tag, e.Subject()))
		}
		return out
	}
	require.Equal(t, []string{
		"project:role:add/demo", "account:password:change/carol", "project:release:add/demo",
		"account:api_token:added/bob", "account:login:success/bob", "account:login:failure/alice",
		"account:login:success/alice", "project:create/other",
	}, tags(service.Filter{}))
	require.Equal(t, []string{"account:login:failure/alice", "account:login:success/alice"}, tags(service.Filter{UserID: "alice"}))
	require.Equal(t, []string{"project:role:add/demo", "project:release:add/demo"}, tags(service.Filter{ProjectID: "demo"}))
	require.Equal(t, []string{"project:release:add/demo", "account:api_token:added/bob", "account:login:success/bob"}, tags(service.Filter{ActorID: "bob"}))
	require.Equal(t, []string{"account:login:success/bob", "account:login:success/alice"}, tags(service.Filter{ListOpts: service.ListOpts{Tag: "account:login:success"}}))
	require.Equal(t, []string{"account:login:success/bob", "account:login:failure/alice", "account:login:success/alice"},
		tags(service.Filter{ListOpts: service.ListOpts{TagPrefix: "account:login:"}}))
	require.Equal(t, []string{"project:role:add/demo", "project:release:add/demo", "project:create/other"},
		tags(service.Filter{ListOpts: service.ListOpts{TagPrefix: "project"}}))
	require.Equal(t, []string{"project:release:add/demo", "account:login:success/bob", "account:login:success/alice"},
		tags(service.Filter{IP: "10.0.0.0/8"}))
	require.Equal(t, []string{"account:login:success/bob"}, tags(service.Filter{IP: "10.200.0.1"}))
	require.Equal(t, []string{"account:api_token:added/bob"}, tags(service.Filter{IP: "2001:db8::/32"}))
	require.Equal(t, []string{"account:password:change/carol", "project:release:add/demo", "account:api_token:added/bob"},
		tags(service.Filter{ListOpts: service.ListOpts{Since: now.Add(-2 * time.Minute), Until: now.Add(-time.Minute + time.Microsecond)}}))
	require.Empty(t, tags(service.Filter{UserID: "alice", ProjectID: "demo"}), "no event has both a user and a project subject")

	page, err := log.ProjectEvents(ctx, "demo", service.ListOpts{TagPrefix: "project:release"})
	require.NoError(t, err)
	require.Len(t, page.Events, 1)
	require.Equal(t, "Released version 2.0", page.Events[0].Description)
}
