package main

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/service"
)

// On the demo database: export a demo user, request their erasure, let
// the worker carry it out, and verify it.
func TestEraseDemoUserWithWorker(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	b.mustCLI(t, "demo")

	// erin signed in and acted on her project; the demo names her nowhere
	// else (no other account's event, no person_ref key).
	var wantUser, wantProject, elsewhere int
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT
		(SELECT count(*) FROM user_events WHERE user_id = 'erin' AND time >= now() - interval '90 days'),
		(SELECT count(*) FROM project_events WHERE actor_id = 'erin'),
		(SELECT count(*) FROM user_events WHERE user_id <> 'erin' AND (actor_id = 'erin' OR additional::text LIKE '%"erin"%'))
		+ (SELECT count(*) FROM project_events WHERE actor_id IS DISTINCT FROM 'erin' AND additional::text LIKE '%"erin"%')`).
		Scan(&wantUser, &wantProject, &elsewhere))
	require.Positive(t, wantUser)
	require.Positive(t, wantProject)
	require.Zero(t, elsewhere)
	out := b.mustCLI(t, "export", "--user", "erin")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, wantUser+wantProject)
	for _, line := range lines {
		var e service.ExportedEvent
		require.NoError(t, json.Unmarshal([]byte(line), &e))
		if e.Model == service.ModelUser {
			require.Equal(t, "erin", e.UserID)
			require.Equal(t, service.RoleSubject, e.Roles[0], line)
		} else {
			require.Equal(t, service.RoleActor, e.Roles[0], line)
			if len(e.Roles) > 1 { // her own releases name her as submitted_by too
				require.Equal(t, []service.ExportRole{service.RoleActor, service.RoleMentioned}, e.Roles, line)
			}
		}
	}

	out = b.mustCLI(t, "erase", "--user", "erin", "--reason", "account deleted", "--by", "admin")
	id, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	require.NoError(t, err, "erase prints the request id alone: %q", out)
	again := b.mustCLI(t, "erase", "--user", "erin", "--reason", "twice")
	require.Equal(t, out, again, "an open request is returned, not duplicated")

	out, err = b.cli(t, "erasures", "--verify", strconv.FormatInt(id, 10))
	require.ErrorIs(t, err, errNotClean)
	require.Contains(t, out, "NOT clean")
	require.Contains(t, b.mustCLI(t, "erasures"), "pending")

	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"worker", "--database-url", b.url}, func(string) string { return "" }, &strings.Builder{}, &strings.Builder{})
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(b.mustCLI(t, "erasures", "--user", "erin"), " done ") {
		require.True(t, time.Now().Before(deadline), "the worker did not complete the erasure")
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	require.NoError(t, <-errc)

	out = b.mustCLI(t, "erasures", "--verify", strconv.FormatInt(id, 10))
	require.Contains(t, out, "clean: no user event")
	require.Contains(t, out, "removed "+strconv.Itoa(wantUser))
	out = b.mustCLI(t, "export", "--user", "erin")
	require.Equal(t, wantProject, strings.Count(out, "\n"), "the project events stay, without personal fields")
	require.Equal(t, wantProject, strings.Count(out, `"roles":["actor"]`))
	require.NotContains(t, out, `"ip"`)
	require.NotContains(t, out, `"user_agent"`)

	var list []service.ErasureRequest
	for _, line := range strings.Split(strings.TrimSpace(b.mustCLI(t, "erasures", "--json")), "\n") {
		var r service.ErasureRequest
		require.NoError(t, json.Unmarshal([]byte(line), &r))
		list = append(list, r)
	}
	require.Len(t, list, 1)
	require.Equal(t, service.ErasureDone, list[0].Status)
	require.Equal(t, int64(wantProject), list[0].ProjectEventsScrubbed)
}

// On the demo database, the export of a person holds every event that
// names them, each once, with their roles: frank's own events (his user
// events, subject and actor of most), and erin giving him a role on her
// project (mentioned as target_user). Nothing names him elsewhere.
func TestExportDemoUserRoles(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	b.mustCLI(t, "demo")

	stdout, stderr, err := b.cliAll(t, "export", "--user", "frank")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	require.Equal(t, "export: "+strconv.Itoa(len(lines))+" events\n", stderr)
	want := b.strings(t, `SELECT id::text FROM user_events WHERE user_id = 'frank' AND time >= now() - interval '90 days'
		UNION ALL SELECT id::text FROM project_events WHERE additional ->> 'target_user' = 'frank' ORDER BY 1`)
	var ids []string
	mentions := 0
	for _, line := range lines {
		var e service.ExportedEvent
		require.NoError(t, json.Unmarshal([]byte(line), &e))
		ids = append(ids, strconv.FormatInt(e.ID, 10))
		switch e.Model {
		case service.ModelUser:
			require.Equal(t, "frank", e.UserID)
			require.Equal(t, service.RoleSubject, e.Roles[0])
			require.Empty(t, e.MentionedAs)
		case service.ModelProject:
			mentions++
			require.Equal(t, "erin", e.ActorID)
			require.Equal(t, []service.ExportRole{service.RoleMentioned}, e.Roles)
			require.Equal(t, []string{"target_user"}, e.MentionedAs)
			require.Contains(t, line, `"roles":["mentioned"],"mentioned_as":["target_user"]}`)
		}
	}
	require.Equal(t, 1, mentions)
	slices.Sort(ids)
	require.Equal(t, want, ids)
}

func TestEraseUsage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.cli(t, "erase", "--user", "x")
	require.Error(t, err)
	require.Equal(t, 2, exitCode(err))
	_, err = b.cli(t, "erasures", "--verify", "abc")
	require.Equal(t, 2, exitCode(err))
	_, err = b.cli(t, "export")
	require.Equal(t, 2, exitCode(err))
}

// A request whose River job was cancelled, discarded or deleted shows as
// stuck in `erasures`; `erase` for the person then fails it, says why, and
// starts a new request (exit 0) instead of printing the dead one's id.
func TestEraseSupersedesStuckRequest(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	for _, tc := range []struct{ user, state, kill string }{
		{"u-cancel", "cancelled", "UPDATE river_job SET state = 'cancelled', finalized_at = now() WHERE id = $1"},
		{"u-discard", "discarded", "UPDATE river_job SET state = 'discarded', finalized_at = now() WHERE id = $1"},
		{"u-delete", "deleted", "DELETE FROM river_job WHERE id = $1"},
	} {
		b.mustCLI(t, "record", "--tag", "account:login:success", "--subject", tc.user, "--ip", "192.0.2.1")
		out, stderr, err := b.cliAll(t, "erase", "--user", tc.user, "--reason", "account deleted")
		require.NoError(t, err)
		first := strings.TrimSpace(out)
		require.Contains(t, stderr, "erase: new request "+first+" stored")
		require.NotContains(t, stderr, "warning")
		require.Contains(t, b.mustCLI(t, "erasures", "--user", tc.user), " pending ")

		var jobID int64
		require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT id FROM river_job
			WHERE kind = 'auditlog_erasure' AND args->>'request_id' = $1`, first).Scan(&jobID))
		_, err = b.pool.Exec(b.ctx, tc.kill, jobID)
		require.NoError(t, err)

		list, stderr, err := b.cliAll(t, "erasures", "--user", tc.user)
		require.NoError(t, err)
		require.Contains(t, list, "pending (stuck: job "+tc.state+")")
		require.Contains(t, stderr, "1 stuck request(s)")
		var r map[string]any
		require.NoError(t, json.Unmarshal([]byte(b.mustCLI(t, "erasures", "--user", tc.user, "--json")), &r))
		require.Equal(t, true, r["stuck"])
		require.Equal(t, tc.state, r["job_state"])
		require.Equal(t, true, r["events_found"])

		out, stderr, err = b.cliAll(t, "erase", "--user", tc.user, "--reason", "again")
		require.NoError(t, err, "exit 0")
		second := strings.TrimSpace(out)
		require.NotEqual(t, first, second, "a dead request is never returned")
		require.Contains(t, stderr, "erase: request "+first+" for "+tc.user+" was stuck and is now failed (its River job was "+tc.state+"; superseded by request "+second+")")
		require.Contains(t, stderr, "erase: new request "+second+" stored")

		list = b.mustCLI(t, "erasures", "--user", tc.user)
		require.NotContains(t, list, "stuck")
		require.Regexp(t, "(?m)^"+first+` +`+tc.user+` +failed `, list)
		require.Regexp(t, "(?m)^"+second+` +`+tc.user+` +pending `, list)
		var lines []service.ErasureRequest
		for _, line := range strings.Split(strings.TrimSpace(b.mustCLI(t, "erasures", "--user", tc.user, "--json")), "\n") {
			var r service.ErasureRequest
			require.NoError(t, json.Unmarshal([]byte(line), &r))
			lines = append(lines, r)
		}
		require.Len(t, lines, 2)
		require.Equal(t, strconv.FormatInt(lines[1].ID, 10), strconv.FormatInt(lines[0].Supersedes, 10))

		out, stderr, err = b.cliAll(t, "erase", "--user", tc.user, "--reason", "third")
		require.NoError(t, err)
		require.Equal(t, second, strings.TrimSpace(out), "the live request is returned")
		require.Contains(t, stderr, "already has an open request "+second)
	}
}

// `erase` of an id no event names stores the request, exits 0 and warns.
func TestEraseUnknownIDWarns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	out, stderr, err := b.cliAll(t, "erase", "--user", "nobody-42", "--reason", "ticket 9")
	require.NoError(t, err)
	id := strings.TrimSpace(out)
	require.Contains(t, stderr, "erase: warning: no event names nobody-42; check the id — the request is stored\n")
	require.Contains(t, b.mustCLI(t, "erasures"), "nobody-42")
	var r service.ErasureRequest
	require.NoError(t, json.Unmarshal([]byte(b.mustCLI(t, "erasures", "--json")), &r))
	require.Equal(t, id, strconv.FormatInt(r.ID, 10))
	require.False(t, r.EventsFound)

	_, stderr, err = b.cliAll(t, "erase", "--user", "nobody-42", "--reason", "again")
	require.NoError(t, err)
	require.Contains(t, stderr, "warning: no event names nobody-42", "the open request still says so")
}

// Migration 6 adds the job-state function and the new columns; going down
// removes them (and down to zero leaves no function behind).
func TestMigrateDownRemovesErasureFunctions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	functions := `SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = 'public' AND p.proname LIKE 'auditlog%' ORDER BY 1`
	require.Equal(t, []string{"auditlog_append_only", "auditlog_attempt_erased", "auditlog_erased_key", "auditlog_erasure_job_state", "auditlog_holds_personal",
		"auditlog_hook_event_names", "auditlog_hook_jobs_left", "auditlog_hook_jobs_scrub",
		"auditlog_integrity_change", "auditlog_integrity_tree_create", "auditlog_integrity_tree_drop", "auditlog_json_holds", "auditlog_jsonb_replace",
		"auditlog_key_names", "auditlog_personal_fields", "auditlog_tag_keys", "auditlog_text_names", "auditlog_try_inet", "auditlog_zero_salts"}, b.strings(t, functions))
	columns := `SELECT column_name::text FROM information_schema.columns
		WHERE table_name = 'erasure_requests' AND column_name IN ('events_found', 'supersedes', 'admin_reads_scrubbed') ORDER BY 1`
	require.Len(t, b.strings(t, columns), 3)
	b.mustCLI(t, "migrate", "down", "--to", "5")
	require.Empty(t, b.strings(t, functions))
	require.Empty(t, b.strings(t, columns))
	b.mustCLI(t, "migrate", "up")
	b.mustCLI(t, "migrate", "down", "--to", "0")
	require.Empty(t, b.strings(t, `SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = 'public'`), "no function is left")
}
