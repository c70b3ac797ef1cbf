package bench

import (
	"context"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/service"
)

// BenchmarkErasure erases one person who has 10,000 user events spread
// over 4 monthly partitions, in a table of 2,000,000 user events, and who
// acted in 1,000 project events (among 11,000).
//
//   - ours: the erasure job (RunErasure): delete the person's user events
//     in batches of at most 10,000 rows per statement from every table that
//     may hold them, scrub the events they acted in, sweep again, record
//     the counts;
//   - baseline: Warehouse's deletion, DELETE of that person's rows from one
//     unpartitioned table (uuid primary key, index on the subject) holding
//     the same 2,000,000 rows. It scrubs nothing.
//
// Metrics: seconds (ours) and ratio_vs_warehouse (baseline time / ours).
func BenchmarkErasure(b *testing.B) {
	const (
		total, mine   = 2_000_000, 10_000
		projectEvents = 11_000
		mineInProject = 1_000
		others        = 20_000
	)
	for i := 0; i < b.N; i++ {
		ctx := context.Background()
		pool := dbtest.Pool(b)
		exec := mustExec(b, pool)
		now := time.Now().UTC()
		first := dbtest.MonthStart(now).AddDate(0, -3, 0)
		span := now.Sub(first).Microseconds()
		// Every 200th row is the person's; the rest belong to 20,000 others.
		// Times run evenly from the first of the month three months back
		// to now, so the person's rows fall in 4 monthly partitions.
		exec(`INSERT INTO user_events (time, tag, user_id, actor_id, auth_method, ip, user_agent, location, description, additional)
			SELECT $1::timestamptz + make_interval(secs => ((g - 1)::numeric * $3::bigint / $2::bigint) / 1e6),
			       'account:login:success',
			       CASE WHEN g % 200 = 0 THEN 'target' ELSE 'user-' || (g % $4::int) END,
			       CASE WHEN g % 200 = 0 THEN 'target' ELSE 'user-' || (g % $4::int) END,
			       'password', ('10.' || (g % 250) || '.' || (g / 250 % 250) || '.7')::inet,
			       'Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0',
			       '{"country": "DE", "city": "Berlin"}', 'Signed in', '{}'
			FROM generate_series(1, $2::bigint) g`, first, total, span, others)
		exec(`INSERT INTO project_events (time, tag, project_id, actor_id, auth_method, ip, user_agent, description, additional)
			SELECT $1::timestamptz + make_interval(secs => g), 'project:release:add', 'project-' || (g % 500),
			       CASE WHEN g % 11 = 0 THEN 'target' ELSE 'user-' || (g % $3::int) END,
			       'api_token', '192.0.2.1', 'twine/6', 'Released version 1.' || g, jsonb_build_object('version', '1.' || g)
			FROM generate_series(1, $2::bigint) g`, first, projectEvents, others)
		exec(warehouseTableSQL)
		exec(warehouseCopySQL, first, now.Add(time.Hour))
		exec(`CREATE INDEX ON warehouse_user_events (user_id)`)
		exec(`VACUUM ANALYZE`)
		var parts, n int
		if err := pool.QueryRow(ctx, `SELECT count(DISTINCT tableoid), count(*) FROM user_events WHERE user_id = 'target'`).Scan(&parts, &n); err != nil {
			b.Fatal(err)
		}
		if parts != 4 || n != mine {
			b.Fatalf("the person has %d events in %d partitions, want %d in 4", n, parts, mine)
		}

		enq, err := jobs.NewEnqueuer(pool)
		if err != nil {
			b.Fatal(err)
		}
		log := dbtest.Must(service.New(pool, &service.Opts{Enqueuer: enq}))
		req, _, err := log.RequestErasure(ctx, service.ErasureParams{UserID: "target", Reason: "benchmark"})
		if err != nil {
			b.Fatal(err)
		}
		exec("CHECKPOINT")
		start := time.Now()
		rep, err := log.RunErasure(ctx, req.ID, service.RunErasureOpts{})
		ours := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if rep.Request.UserEventsDeleted != mine || rep.Request.ProjectEventsScrubbed != mineInProject {
			b.Fatalf("erased %d user events and scrubbed %d project events, want %d and %d",
				rep.Request.UserEventsDeleted, rep.Request.ProjectEventsScrubbed, mine, mineInProject)
		}
		if v, err := log.VerifyErasure(ctx, req.ID); err != nil || !v.Clean {
			b.Fatalf("not clean: %+v %v", v, err)
		}

		exec("CHECKPOINT")
		start = time.Now()
		tag, err := pool.Exec(ctx, "DELETE FROM warehouse_user_events WHERE user_id = 'target'")
		base := time.Since(start)
		if err != nil || tag.RowsAffected() != mine {
			b.Fatalf("baseline deleted %d: %v", tag.RowsAffected(), err)
		}
		b.ReportMetric(ours.Seconds(), "seconds")
		b.ReportMetric(base.Seconds(), "warehouse_seconds")
		b.ReportMetric(base.Seconds()/ours.Seconds(), "ratio_vs_warehouse")
		b.Logf("counts per table: %v", rep.Request.Counts)
	}
}
