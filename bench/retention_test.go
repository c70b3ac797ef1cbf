package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

// retentionResult is one measurement of both arms.
type retentionResult struct {
	ours, base       time.Duration
	oursWAL, baseWAL int64
	maxStall         time.Duration // longest single insert while ours ran
}

// ours1M is the latest 1M-row time, for BenchmarkRetention4M's growth.
var ours1M time.Duration

// runRetention loads rows events into one month that then expires, and
// removes them both ways on the same rows:
//
//   - ours: one MaintainPartitions pass, which detaches and drops the month;
//   - baseline: a Warehouse-style table (one unpartitioned table, uuid
//     primary key, indexes on the subject and on time) holding the same
//     rows, emptied by DELETE … WHERE time < cutoff and then VACUUM.
//
// While ours runs, a writer keeps inserting into the current month; the
// longest single insert is the writer stall the drop's lock caused.
func runRetention(b *testing.B, rows int) retentionResult {
	b.Helper()
	ctx := context.Background()
	pool := dbtest.Pool(b)
	now := time.Now().UTC()
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -1, 0) // inside today's window
	end := month.AddDate(0, 1, 0)
	span := end.Sub(month).Microseconds()
	exec := func(sql string, args ...any) {
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			b.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`INSERT INTO user_events (time, tag, user_id, actor_id, auth_method, ip, user_agent, description, additional)
		SELECT $1::timestamptz + make_interval(secs => ((g - 1)::numeric * $3::bigint / $2::bigint) / 1e6),
		       'account:login:success', 'user-' || (g % 10000), 'user-' || (g % 10000), 'password',
		       ('10.' || (g % 250) || '.' || (g / 250 % 250) || '.7')::inet,
		       'Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0', 'Signed in', '{}'
		FROM generate_series(1, $2::bigint) g`, month, rows, span)
	exec(`CREATE TABLE warehouse_user_events (
		id uuid PRIMARY KEY DEFAULT gen_random_uuid(), user_id text NOT NULL, tag text NOT NULL,
		time timestamptz NOT NULL, ip inet, additional jsonb NOT NULL)`)
	exec(`CREATE INDEX ON warehouse_user_events (user_id)`)
	exec(`CREATE INDEX ON warehouse_user_events (time)`)
	exec(`INSERT INTO warehouse_user_events (user_id, tag, time, ip, additional)
		SELECT user_id, tag, time, ip, additional FROM user_events WHERE time >= $1 AND time < $2`, month, end)
	exec(`VACUUM ANALYZE user_events`)
	exec(`VACUUM ANALYZE warehouse_user_events`)

	// The pass's clock: just after the month leaves the window. A first
	// pass a minute earlier premakes the months ahead, so the timed pass
	// does only the drop.
	expiry := end.Add(service.DefaultRetention)
	log := service.New(pool, nil)
	if _, err := log.MaintainPartitions(ctx, service.MaintainOpts{Now: expiry.Add(-time.Minute)}); err != nil {
		b.Fatal(err)
	}
	exec("CHECKPOINT")

	var res retentionResult
	wal := func() string {
		var lsn string
		if err := pool.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
			b.Fatal(err)
		}
		return lsn
	}
	walSince := func(lsn string) int64 {
		var n int64
		if err := pool.QueryRow(ctx, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint", lsn).Scan(&n); err != nil {
			b.Fatal(err)
		}
		return n
	}

	// Ours, with a writer inserting into the current month meanwhile.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { res.maxStall = writer(b, pool, stop) })
	time.Sleep(50 * time.Millisecond)
	lsn := wal()
	start := time.Now()
	rep, err := log.MaintainPartitions(ctx, service.MaintainOpts{Now: expiry.Add(time.Minute)})
	res.ours = time.Since(start)
	res.oursWAL = walSince(lsn)
	close(stop)
	wg.Wait()
	if err != nil {
		b.Fatal(err)
	}
	if len(rep.Dropped) != 1 || rep.Dropped[0].Name != service.PartitionName(month) {
		b.Fatalf("dropped %+v, want only %s", rep.Dropped, service.PartitionName(month))
	}

	// Baseline.
	exec("CHECKPOINT")
	lsn = wal()
	start = time.Now()
	tag, err := pool.Exec(ctx, "DELETE FROM warehouse_user_events WHERE time < $1", end)
	if err != nil || tag.RowsAffected() != int64(rows) {
		b.Fatalf("baseline deleted %d of %d: %v", tag.RowsAffected(), rows, err)
	}
	exec("VACUUM warehouse_user_events")
	res.base = time.Since(start)
	res.baseWAL = walSince(lsn)
	return res
}

// writer inserts one event at a time into the current month until stop
// closes, and returns the longest single insert.
func writer(b *testing.B, pool *pgxpool.Pool, stop chan struct{}) time.Duration {
	log := service.New(pool, nil)
	var longest time.Duration
	for i := 0; ; i++ {
		select {
		case <-stop:
			return longest
		default:
		}
		start := time.Now()
		if _, err := log.RecordUser(context.Background(), service.EventParams{
			Tag: "account:login:success", Subject: fmt.Sprintf("writer-%d", i),
		}); err != nil {
			b.Error(err)
			return longest
		}
		longest = max(longest, time.Since(start))
	}
}

func reportRetention(b *testing.B, r retentionResult) {
	b.ReportMetric(r.base.Seconds()/r.ours.Seconds(), "ratio_time")
	b.ReportMetric(float64(r.baseWAL)/float64(max(r.oursWAL, 1)), "ratio_wal")
	b.ReportMetric(r.ours.Seconds(), "ours_s")
	b.ReportMetric(r.base.Seconds(), "baseline_s")
	b.ReportMetric(float64(r.oursWAL), "ours_wal_bytes")
	b.ReportMetric(float64(r.baseWAL), "baseline_wal_bytes")
	b.ReportMetric(float64(r.maxStall.Microseconds())/1000, "max_writer_stall_ms")
}

// BenchmarkRetention1M: one expired month of 1,000,000 events.
func BenchmarkRetention1M(b *testing.B) {
	for i := 0; i < b.N; i++ {
		r := runRetention(b, 1_000_000)
		ours1M = r.ours
		reportRetention(b, r)
	}
}

// BenchmarkRetention4M: the same with 4,000,000 events; ours_growth is our
// time at 4M over our time at 1M (measured first when this benchmark runs
// alone). Dropping a month does not scale with its rows.
func BenchmarkRetention4M(b *testing.B) {
	if ours1M == 0 {
		ours1M = runRetention(b, 1_000_000).ours
	}
	for i := 0; i < b.N; i++ {
		r := runRetention(b, 4_000_000)
		reportRetention(b, r)
		b.ReportMetric(r.ours.Seconds()/ours1M.Seconds(), "ours_growth")
	}
}
