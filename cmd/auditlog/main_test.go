package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

type cliBundle struct {
	ctx  context.Context
	url  string
	pool *pgxpool.Pool
}

// setup gives the CLI an empty database of the test's own.
func setup(t *testing.T) *cliBundle {
	t.Helper()
	name := dbtest.EmptyDatabase(t)
	url, err := dbtest.DatabaseURL(name)
	require.NoError(t, err)
	cfg, err := dbtest.Config(name)
	require.NoError(t, err)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return &cliBundle{ctx: context.Background(), url: url, pool: pool}
}

// runCLI runs the command line as main would, with DATABASE_URL set to
// databaseURL and the extra environment variables, and returns what it
// printed.
func runCLI(databaseURL string, extra map[string]string, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	env := func(k string) string {
		if k == "DATABASE_URL" {
			return databaseURL
		}
		return extra[k]
	}
	err = run(context.Background(), args, env, &out, &errOut)
	return out.String(), errOut.String(), err
}

// cli runs the command line on the bundle's database and returns stdout.
func (b *cliBundle) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, _, err := runCLI(b.url, nil, args...)
	return out, err
}

// cliEnv is cli with more environment variables set.
func (b *cliBundle) cliEnv(t *testing.T, extra map[string]string, args ...string) (string, error) {
	t.Helper()
	out, _, err := runCLI(b.url, extra, args...)
	return out, err
}

// cliAll is cli returning stderr too.
func (b *cliBundle) cliAll(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runCLI(b.url, nil, args...)
}

func (b *cliBundle) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := b.cli(t, args...)
	require.NoError(t, err, "auditlog %s", strings.Join(args, " "))
	return out
}

func (b *cliBundle) strings(t *testing.T, sql string) []string {
	t.Helper()
	rows, err := b.pool.Query(b.ctx, sql)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

func TestMigrateUpAndDownToZero(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")

	require.Equal(t, []string{"p"}, b.strings(t, "SELECT relkind::text FROM pg_class WHERE relname = 'user_events'"), "user_events is partitioned")
	require.Equal(t, []string{"r"}, b.strings(t, "SELECT relkind::text FROM pg_class WHERE relname = 'project_events'"), "project_events is a plain table")
	parts := b.strings(t, `SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'user_events'::regclass ORDER BY 1`)
	require.Contains(t, parts, "user_events_default")
	now := time.Now().UTC()
	for m := range 3 {
		require.Contains(t, parts, service.PartitionName(now.AddDate(0, m, 1-now.Day())), "month +%d", m)
	}
	require.Contains(t, parts, service.PartitionName(now.Add(-service.DefaultRetention)), "the window's first month")
	for _, table := range []string{"river_job", "river_leader", "river_migration", "river_queue"} {
		require.Equal(t, []string{table}, b.strings(t, "SELECT tablename::text FROM pg_tables WHERE tablename = '"+table+"'"))
	}

	status := b.mustCLI(t, "migrate", "status")
	require.Contains(t, status, "00001_events.sql")
	require.Contains(t, status, "00002_river_schema")
	require.NotContains(t, status, "pending")

	// Recording works at once.
	out := b.mustCLI(t, "record", "--tag", "account:login:success", "--subject", "u-1", "--ip", "192.0.2.1")
	require.Contains(t, out, `"user_id":"u-1"`)

	b.mustCLI(t, "migrate", "down", "--to", "0")
	require.Empty(t, b.strings(t, `SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public'`), "no table, index or sequence is left")
	require.Empty(t, b.strings(t, `SELECT t.typname::text FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
		WHERE n.nspname = 'public'`), "no type is left")

	// And it comes back.
	b.mustCLI(t, "migrate", "up")
	require.Equal(t, []string{"p"}, b.strings(t, "SELECT relkind::text FROM pg_class WHERE relname = 'user_events'"))
}

func TestRecordAndEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	b.mustCLI(t, "record", "--tag", "project:release:add", "--subject", "demo", "--actor", "alice",
		"--auth-method", "api_token", "--token", "ci-upload", "--two-factor", "true", "--ip", "2001:db8::7",
		"--user-agent", "twine/6.1.0", "--country", "DE", "--city", "Berlin", "--additional", `{"canonical_version":"1.2.0","submitted_by":"alice"}`)
	b.mustCLI(t, "record", "--tag", "account:login:failure", "--subject", "alice", "--ip", "10.0.0.9",
		"--additional", `{"reason":"invalid_password"}`)

	out := b.mustCLI(t, "events", "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2)
	var newest, older map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &newest))
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &older))
	require.Equal(t, "account:login:failure", newest["tag"])
	require.Equal(t, "alice", newest["user_id"])
	require.Equal(t, "10.0.0.9", newest["ip"])
	require.Equal(t, "Sign-in failed: incorrect password", newest["description"])
	require.Equal(t, map[string]any{
		"id": older["id"], "model": "project", "time": older["time"], "tag": "project:release:add",
		"project_id": "demo", "actor_id": "alice", "auth_method": "api_token", "token_id": "ci-upload",
		"actor_two_factor": true, "ip": "2001:db8::7", "user_agent": "twine/6.1.0",
		"location":    map[string]any{"country": "DE", "city": "Berlin"},
		"description": "Released version 1.2.0, uploaded by alice", "additional": map[string]any{"canonical_version": "1.2.0", "submitted_by": "alice"},
	}, older)

	out = b.mustCLI(t, "events", "--ip", "10.0.0.0/8")
	require.Contains(t, out, "Sign-in failed: incorrect password")
	require.NotContains(t, out, "Released version")
	out = b.mustCLI(t, "events", "--project", "demo", "--json")
	require.Equal(t, 1, strings.Count(out, "\n"))

	// Bad input: a typed error, nothing written.
	_, err := b.cli(t, "record", "--tag", "account:login:teleport", "--subject", "alice")
	require.ErrorIs(t, err, service.ErrUnknownTag)
	_, err = b.cli(t, "record", "--tag", "account:login:success", "--subject", "alice", "--ip", "999.1.1.1")
	require.ErrorIs(t, err, service.ErrInvalidIP)
	_, err = b.cli(t, "record", "--tag", "account:login:success")
	var ue *usageError
	require.True(t, errors.As(err, &ue))
	require.Equal(t, 2, exitCode(err))
	require.Equal(t, 1, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events"))
}

func TestDemo(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	out := b.mustCLI(t, "demo")
	require.Contains(t, out, "demo: recorded")

	// Several users and projects, across the last three months.
	require.GreaterOrEqual(t, len(b.strings(t, "SELECT DISTINCT user_id FROM user_events")), 5)
	require.GreaterOrEqual(t, len(b.strings(t, "SELECT DISTINCT project_id FROM project_events")), 3)
	require.Len(t, b.strings(t, "SELECT DISTINCT tableoid::regclass::text FROM user_events"), 4, "events in four monthly partitions")
	require.GreaterOrEqual(t, len(b.strings(t, `SELECT DISTINCT network(set_masklen(ip, CASE family(ip) WHEN 4 THEN 25 ELSE 48 END))::text
		FROM user_events`)), 4, "from several networks")
	tags := b.strings(t, "SELECT DISTINCT tag FROM user_events UNION SELECT DISTINCT tag FROM project_events")
	for _, want := range []string{"account:login:success", "account:login:failure", "account:login:new_location",
		"account:api_token:added", "account:two_factor:method_added", "account:two_factor:method_removed",
		"project:release:add", "project:role:add"} {
		require.Contains(t, tags, want)
	}
	require.NotEmpty(t, b.strings(t, "SELECT token_id FROM project_events WHERE tag = 'project:release:add' AND auth_method = 'api_token'"),
		"releases published with tokens")
	require.Empty(t, b.strings(t, "SELECT id::text FROM user_events_default"))
	require.Equal(t, []string{"organization", "project", "team"},
		b.strings(t, "SELECT DISTINCT subject_kind FROM project_events ORDER BY 1"), "an organization and a team too")
	// In the package-index vocabulary, every description renders whole.
	require.Empty(t, b.strings(t, `SELECT tag || ': ' || description FROM user_events WHERE description LIKE '%(unknown)%'
		UNION ALL SELECT tag || ': ' || description FROM project_events WHERE description LIKE '%(unknown)%'`))

	// The seeded history is the past: it raises no notification.
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM river_job WHERE kind = 'auditlog_hook'"),
		"the demo enqueues no hook job")
	// A person's first sign-in has nothing to compare with: no new location
	// accompanies it (each is recorded a second after its sign-in), but
	// later sign-ins from somewhere new do get one.
	require.Empty(t, b.strings(t, `SELECT n.user_id || ' at ' || n.time::text FROM user_events n
		WHERE n.tag = 'account:login:new_location'
		  AND n.time <= (SELECT min(s.time) FROM user_events s
		                 WHERE s.user_id = n.user_id AND s.tag = 'account:login:success') + interval '1 second'`),
		"a new location at or right after the person's first sign-in")
	require.NotEmpty(t, b.strings(t, `SELECT n.id::text FROM user_events n
		WHERE n.tag = 'account:login:new_location'
		  AND EXISTS (SELECT 1 FROM user_events s WHERE s.user_id = n.user_id AND s.tag = 'account:login:success'
		              AND s.time < n.time - interval '1 second')`), "new locations for later sign-ins")

	out = b.mustCLI(t, "demo")
	require.Contains(t, out, "not seeding again")
	out = b.mustCLI(t, "events", "--limit", "5")
	require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 6, "a header and five events")
}
