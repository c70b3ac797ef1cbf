package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/service"
)

// A worker killed during a maintenance pass leaves the pass's job running
// (River rescues it only after the rescue delay). A new worker or serve
// still runs a pass when it starts, although River de-duplicates its own
// pass at start against the dead one: a missing month is created within
// seconds, while the dead job is still marked running.
func TestPassAtStartRunsBesideADeadPass(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		start func(t *testing.T, b *cliBundle) (stop func() error)
	}{
		{"worker", func(t *testing.T, b *cliBundle) func() error {
			ctx, cancel := context.WithCancel(b.ctx)
			errc := make(chan error, 1)
			go func() {
				errc <- run(ctx, []string{"worker", "--database-url", b.url}, func(string) string { return "" }, &strings.Builder{}, &strings.Builder{})
			}()
			return func() error {
				cancel()
				select {
				case err := <-errc:
					return err
				case <-time.After(40 * time.Second):
					return errors.New("worker did not stop")
				}
			}
		}},
		{"serve", func(t *testing.T, b *cliBundle) func() error {
			env := func(k string) string {
				if k == "DATABASE_URL" {
					return b.url
				}
				return cliSecret[k]
			}
			_, stop := b.startServe(t, env)
			return stop
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.mustCLI(t, "migrate", "up")
			now := time.Now().UTC()
			missing := service.PartitionName(now.AddDate(0, 2, 1-now.Day()))
			_, err := b.pool.Exec(b.ctx, "DROP TABLE "+missing)
			require.NoError(t, err)
			// The dead worker's pass: inserted as the periodic job inserts it,
			// then left running by a process that is gone.
			insert, err := river.NewClient(riverpgxv5.New(b.pool), &river.Config{})
			require.NoError(t, err)
			res, err := insert.Insert(b.ctx, jobs.PartitionMaintenanceArgs{}, nil)
			require.NoError(t, err)
			_, err = b.pool.Exec(b.ctx, `UPDATE river_job SET state = 'running', attempt = 1,
				attempted_at = now() - interval '1 minute', attempted_by = ARRAY['killed-worker'] WHERE id = $1`, res.Job.ID)
			require.NoError(t, err)

			stop := tc.start(t, b)
			dbtest.Eventually(t, func() bool { return dbtest.TableExists(t, b.pool, missing) }, 30*time.Second, 50*time.Millisecond,
				"no pass at start created %s", missing)
			var state string
			var jobs int
			require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT (SELECT state::text FROM river_job WHERE id = $1),
				(SELECT count(*) FROM river_job WHERE kind = 'auditlog_partition_maintenance')`, res.Job.ID).Scan(&state, &jobs))
			require.Equal(t, "running", state, "the dead pass's job is not rescued yet: the pass came from the start")
			require.Equal(t, 1, jobs, "River's own pass at start was de-duplicated against the dead one")
			require.NoError(t, stop())
		})
	}
}

// --rescue-after (AUDITLOG_RESCUE_AFTER) must be a positive duration
// longer than every job kind's timeout; anything else is a usage error
// naming the flag, before any connection.
func TestRescueAfterFlag(t *testing.T) {
	t.Parallel()
	url, connections := watchedDatabase(t)
	for _, cmd := range []string{"worker", "serve"} {
		for _, tc := range []struct {
			args []string
			env  string
			want string
		}{
			{args: []string{"--rescue-after", "soon"}, want: `--rescue-after: "soon" is not a positive duration such as 5m`},
			{args: []string{"--rescue-after", "0s"}, want: `--rescue-after: "0s" is not a positive duration`},
			{args: []string{"--rescue-after", "-5m"}, want: `--rescue-after: "-5m" is not a positive duration`},
			{args: []string{"--rescue-after", "4m"}, want: "--rescue-after: 4m0s is not longer than every job's timeout (the longest is 4m0s)"},
			{args: []string{"--rescue-after", "30s"}, want: "--rescue-after: 30s is not longer than every job's timeout (the longest is 4m0s)"},
			{env: "1m", want: "--rescue-after: 1m0s is not longer than every job's timeout"},
			{env: "an hour", want: `--rescue-after: "an hour" is not a positive duration`},
		} {
			env := map[string]string{"AUDITLOG_SECRET": cliSecret["AUDITLOG_SECRET"], "AUDITLOG_RESCUE_AFTER": tc.env}
			_, _, err := runCLI(url, env, append([]string{cmd}, tc.args...)...)
			require.Error(t, err, "%s %v %q", cmd, tc.args, tc.env)
			require.Equal(t, 2, exitCode(err), "%s %v %q: %v", cmd, tc.args, tc.env, err)
			require.Contains(t, err.Error(), tc.want, "%s %v %q", cmd, tc.args, tc.env)
			if tc.env == "1m" {
				require.ErrorIs(t, err, jobs.ErrTimeouts)
			}
		}
	}
	require.Zero(t, connections.Load(), "a refused flag connects to nothing")
	out, _, err := runCLI(url, nil, "worker", "-h")
	require.NoError(t, err)
	require.Contains(t, out, "-rescue-after")
	require.Contains(t, out, "AUDITLOG_RESCUE_AFTER")
}

// A valid --rescue-after reaches River's client and the worker runs.
func TestWorkerTakesRescueAfter(t *testing.T) {
	t.Parallel()
	opts, err := jobsOpts("7m")
	require.NoError(t, err)
	require.Equal(t, 7*time.Minute, opts.RescueAfter)
	require.Equal(t, 7*time.Minute, jobs.NewConfig(nil, dbtest.Must(service.New(nil, nil)), opts).RescueStuckJobsAfter)
	opts, err = jobsOpts(jobs.DefaultRescueAfter.String())
	require.NoError(t, err)
	require.Equal(t, jobs.DefaultRescueAfter, opts.RescueAfter)
}
