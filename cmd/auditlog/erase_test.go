package main

import (
	"context"
	"encoding/json"
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

	var wantUser, wantProject int
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT
		(SELECT count(*) FROM user_events WHERE user_id = 'erin' AND time >= now() - interval '90 days'),
		(SELECT count(*) FROM project_events WHERE actor_id = 'erin')`).Scan(&wantUser, &wantProject))
	require.Positive(t, wantUser)
	require.Positive(t, wantProject)
	out := b.mustCLI(t, "export", "--user", "erin")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, wantUser+wantProject)
	var e service.Event
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &e))

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
