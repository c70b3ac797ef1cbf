package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

// arm is one way of removing the expired month, measured.
type arm struct {
	took     time.Duration
	wal      int64         // WAL bytes written while it ran (the writer's included)
	maxStall time.Duration // longest single insert of the concurrent writer
}

// retentionRuns counts runRetention's runs in this process: the arms'
// order alternates with it.
var retentionRuns int

// retentionResult is one measurement of every arm on the same rows.
type retentionResult struct {
	ours, base, partman arm
	hasPartman          bool
	detach, drop        time.Duration // ours, split by step
	order               string        // the arms in the order they ran
}

// ours1M is the latest 1M-row time, for BenchmarkRetention4M's growth.
var ours1M time.Duration

// loadSQL inserts $2 events spread evenly over the month starting at $1
// into the table named by %s. Every arm gets these rows.
const loadSQL = `INSERT INTO %s (time, tag, user_id, actor_id, auth_method, ip, user_agent, description, additional)
	SELECT $1::timestamptz + make_interval(secs => ((g - 1)::numeric * $3::bigint / $2::bigint) / 1e6),
	       'account:login:success', 'user-' || (g %% 10000), 'user-' || (g %% 10000), 'password',
	       ('10.' || (g %% 250) || '.' || (g / 250 %% 250) || '.7')::inet,
	       'Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0', 'Signed in', '{}'
	FROM generate_series(1, $2::bigint) g`

// writerSQL inserts one event of now into the table named by %s.
const writerSQL = `INSERT INTO %s (tag, user_id, actor_id, auth_method, ip, user_agent, description)
	VALUES ('account:login:success', $1, $1, 'password', '10.9.9.9', 'bench', 'Signed in')`

// runRetention loads rows events into the latest month that has left the
// retention window today, and removes them each way on the same rows:
//
//   - ours: one MaintainPartitions pass, which detaches and drops the month;
//   - baseline: a Warehouse-style table (one unpartitioned table, uuid
//     primary key, indexes on the subject and on time) holding the same
//     rows with the same columns, emptied by DELETE … WHERE time < cutoff
//     and then VACUUM;
//   - pg_partman (when the server has the extension): a table identical to
//     user_events, partitioned by pg_partman, whose run_maintenance() drops
//     the month under the same 90-day retention.
//
// Each arm starts after a CHECKPOINT, and while it runs a writer keeps
// inserting into the current month of the same table; its longest single
// insert is the stall that arm caused.
func runRetention(b *testing.B, rows int) retentionResult {
	b.Helper()
	ctx := context.Background()
	pool := dbtest.Pool(b)
	exec := mustExec(b, pool)
	now := time.Now().UTC()
	cutoff := now.Add(-service.DefaultRetention)
	end := dbtest.MonthStart(cutoff)
	month := end.AddDate(0, -1, 0) // the newest month that has expired
	span := end.Sub(month).Microseconds()
	name := service.PartitionName(month)

	// Ours: a partition for the month (as a pass made it when the month
	// was current) and the rows in it.
	exec(fmt.Sprintf("CREATE TABLE %s PARTITION OF user_events FOR VALUES FROM ('%s') TO ('%s')",
		name, month.Format(time.RFC3339), end.Format(time.RFC3339)))
	exec(fmt.Sprintf(loadSQL, "user_events"), month, rows, span)

	// Baseline: the same rows and columns in Warehouse's shape.
	exec(warehouseTableSQL)
	exec(`CREATE INDEX ON warehouse_user_events (user_id)`)
	exec(`CREATE INDEX ON warehouse_user_events (time)`)
	exec(warehouseCopySQL, month, end)

	// pg_partman: user_events' columns, keys and indexes, partitioned by it.
	var res retentionResult
	if err := pool.QueryRow(ctx,
		"SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_partman')").Scan(&res.hasPartman); err != nil {
		b.Fatal(err)
	}
	if res.hasPartman {
		exec(`CREATE SCHEMA partman`)
		exec(`CREATE EXTENSION pg_partman SCHEMA partman`)
		exec(`CREATE TABLE partman_events (LIKE user_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
			PRIMARY KEY (time, id)) PARTITION BY RANGE (time)`)
		exec(`CREATE INDEX ON partman_events (user_id, time DESC, id DESC)`)
		exec(`CREATE INDEX ON partman_events (ip) WHERE ip IS NOT NULL`)
		exec(`CREATE INDEX ON partman_events (actor_id, time DESC) WHERE actor_id IS NOT NULL`)
		exec(`CREATE INDEX ON partman_events (tag, time DESC)`)
		exec(`SELECT partman.create_parent(p_parent_table => 'public.partman_events', p_control => 'time',
			p_type => 'native', p_interval => 'monthly', p_premake => 3, p_start_partition => $1)`,
			month.Format("2006-01-02"))
		exec(fmt.Sprintf(loadSQL, "partman_events"), month, rows, span)
		exec(`UPDATE partman.part_config SET retention = '90 days', retention_keep_table = false
			WHERE parent_table = 'public.partman_events'`)
	}
	exec(`VACUUM ANALYZE`)

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
	// measure runs fn after a checkpoint while insert writes one event at
	// a time into the same table.
	measure := func(insert func(i int) error, fn func() error) arm {
		exec("CHECKPOINT")
		var a arm
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { a.maxStall = writer(b, insert, stop) })
		time.Sleep(50 * time.Millisecond)
		lsn := wal()
		start := time.Now()
		err := fn()
		a.took = time.Since(start)
		a.wal = walSince(lsn)
		close(stop)
		wg.Wait()
		if err != nil {
			b.Fatal(err)
		}
		return a
	}
	rawWriter := func(table string) func(int) error {
		return func(i int) error {
			_, err := pool.Exec(ctx, fmt.Sprintf(writerSQL, table), fmt.Sprintf("writer-%d", i))
			return err
		}
	}

	log := dbtest.Must(service.New(pool, nil))
	oursArm := func() arm {
		return measure(func(i int) error {
			_, err := log.RecordUser(ctx, service.EventParams{Tag: "account:login:success", Subject: fmt.Sprintf("writer-%d", i)})
			return err
		}, func() error {
			rep, err := log.MaintainPartitions(ctx, pool, service.MaintainOpts{})
			if err != nil {
				return err
			}
			if len(rep.Dropped) != 1 || rep.Dropped[0].Name != name || len(rep.Created) != 0 {
				return fmt.Errorf("dropped %+v and created %v, want only %s dropped", rep.Dropped, rep.Created, name)
			}
			res.detach, res.drop = rep.Dropped[0].Detach, rep.Dropped[0].Drop
			return nil
		})
	}

	baseArm := func() arm {
		return measure(rawWriter("warehouse_user_events"), func() error {
			tag, err := pool.Exec(ctx, "DELETE FROM warehouse_user_events WHERE time < $1", end)
			if err != nil {
				return err
			}
			if tag.RowsAffected() != int64(rows) {
				return fmt.Errorf("baseline deleted %d of %d rows", tag.RowsAffected(), rows)
			}
			_, err = pool.Exec(ctx, "VACUUM warehouse_user_events")
			return err
		})
	}

	partmanArm := func() arm {
		return measure(rawWriter("partman_events"), func() error {
			if _, err := pool.Exec(ctx, "SELECT partman.run_maintenance('public.partman_events')"); err != nil {
				return err
			}
			var left int
			if err := pool.QueryRow(ctx, "SELECT count(*) FROM partman_events WHERE time < $1", end).Scan(&left); err != nil {
				return err
			}
			if left != 0 {
				return fmt.Errorf("pg_partman left %d expired rows", left)
			}
			return nil
		})
	}
	// The first arm after the load pays more for the same work (the page
	// cache and the checkpoint before it are not alike), so ours and
	// pg_partman take turns going first from one run to the next; the
	// baseline runs between them.
	retentionRuns++
	if res.hasPartman && retentionRuns%2 == 0 {
		res.order = "pg_partman, baseline, ours"
		res.partman = partmanArm()
		res.base = baseArm()
		res.ours = oursArm()
	} else {
		res.order = "ours, baseline, pg_partman"
		res.ours = oursArm()
		res.base = baseArm()
		if res.hasPartman {
			res.partman = partmanArm()
		}
	}

	if left := dbtest.Count(b, pool, "SELECT count(*) FROM user_events WHERE time < $1", end); left != 0 {
		b.Fatalf("ours left %d expired rows", left)
	}
	return res
}

// writer calls insert until stop closes, and returns the longest call.
func writer(b *testing.B, insert func(i int) error, stop chan struct{}) time.Duration {
	var longest time.Duration
	for i := 0; ; i++ {
		select {
		case <-stop:
			return longest
		default:
		}
		start := time.Now()
		if err := insert(i); err != nil {
			b.Error(err)
			return longest
		}
		longest = max(longest, time.Since(start))
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func reportRetention(b *testing.B, r retentionResult) {
	b.ReportMetric(r.base.took.Seconds()/r.ours.took.Seconds(), "ratio_time")
	b.ReportMetric(float64(r.base.wal)/float64(max(r.ours.wal, 1)), "ratio_wal")
	b.ReportMetric(r.ours.took.Seconds(), "ours_s")
	b.ReportMetric(ms(r.detach), "ours_detach_ms")
	b.ReportMetric(ms(r.drop), "ours_drop_ms")
	b.ReportMetric(r.base.took.Seconds(), "baseline_s")
	b.ReportMetric(float64(r.ours.wal), "ours_wal_bytes")
	b.ReportMetric(float64(r.base.wal), "baseline_wal_bytes")
	b.ReportMetric(ms(r.ours.maxStall), "ours_writer_stall_ms")
	b.ReportMetric(ms(r.base.maxStall), "baseline_writer_stall_ms")
	if r.hasPartman {
		b.ReportMetric(r.partman.took.Seconds()/r.ours.took.Seconds(), "ratio_vs_partman")
		b.ReportMetric(r.partman.took.Seconds(), "partman_s")
		b.ReportMetric(ms(r.partman.maxStall), "partman_writer_stall_ms")
		b.Logf("arms ran in the order %s", r.order)
	} else {
		b.Log("pg_partman is not available on this server: no ratio_vs_partman")
	}
}

// BenchmarkRetention1M: one expired month of 1,000,000 events.
func BenchmarkRetention1M(b *testing.B) {
	for i := 0; i < b.N; i++ {
		r := runRetention(b, 1_000_000)
		ours1M = r.ours.took
		reportRetention(b, r)
	}
}

// BenchmarkRetention4M: the same with 4,000,000 events; ours_growth is our
// time at 4M over our time at 1M (measured first when this benchmark runs
// alone). Dropping a month does not scale with its rows; removing its
// files does, a little, on most file systems (see ours_drop_ms).
func BenchmarkRetention4M(b *testing.B) {
	if ours1M == 0 {
		ours1M = runRetention(b, 1_000_000).ours.took
	}
	for i := 0; i < b.N; i++ {
		r := runRetention(b, 4_000_000)
		reportRetention(b, r)
		b.ReportMetric(r.ours.took.Seconds()/ours1M.Seconds(), "ours_growth")
	}
}

// readerHeldSpan is how long the writers of BenchmarkRetentionReaderHeld
// write in each arm, and readerHold how long its reader holds the
// expiring month.
const (
	readerHeldSpan = 13 * time.Second
	readerHold     = 10 * time.Second
	readerWriters  = 4
)

// BenchmarkRetentionReaderHeld: a reader holds the expiring month (a
// transaction that read it and stays open for 10 s) while a pass drops
// it, and four writers insert one event at a time into the current month.
// longest_insert_ms is the writers' longest insert over the span with
// the pass; baseline_longest_insert_ms the same writers' over the same
// span with the same reader but no pass, just before, in the same
// process; ratio_longest_insert the first over the second (target ≤ 2).
// The pass takes the month's own lock first, so it waits for the reader
// without holding anything on user_events.
func BenchmarkRetentionReaderHeld(b *testing.B) {
	for i := 0; i < b.N; i++ {
		base, ours, pass := runReaderHeld(b, 100_000)
		b.ReportMetric(ms(ours), "longest_insert_ms")
		b.ReportMetric(ms(base), "baseline_longest_insert_ms")
		b.ReportMetric(ours.Seconds()/base.Seconds(), "ratio_longest_insert")
		b.ReportMetric(pass.Seconds(), "pass_s")
	}
}

// runReaderHeld loads rows events into the newest expired month and
// returns the writers' longest insert without a pass (baseline) and with
// one (ours), each while a reader holds the month for readerHold, and how
// long the pass took.
func runReaderHeld(b *testing.B, rows int) (base, ours, pass time.Duration) {
	b.Helper()
	ctx := context.Background()
	pool := dbtest.PoolWith(b, func(c *pgxpool.Config) { c.MaxConns = readerWriters + 4 })
	exec := mustExec(b, pool)
	now := time.Now().UTC()
	cutoff := now.Add(-service.DefaultRetention)
	end := dbtest.MonthStart(cutoff)
	month := end.AddDate(0, -1, 0)
	name := service.PartitionName(month)
	exec(fmt.Sprintf("CREATE TABLE %s PARTITION OF user_events FOR VALUES FROM ('%s') TO ('%s')",
		name, month.Format(time.RFC3339), end.Format(time.RFC3339)))
	exec(fmt.Sprintf(loadSQL, "user_events"), month, rows, end.Sub(month).Microseconds())
	exec(`VACUUM ANALYZE`)
	log := dbtest.Must(service.New(pool, nil))

	// arm runs the writers for readerHeldSpan (and until pass, when not
	// nil, returns) while a reader holds the month for readerHold from the
	// start; it returns the longest insert.
	arm := func(pass func() error) time.Duration {
		exec("CHECKPOINT")
		reader, err := pool.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = reader.Rollback(ctx) }()
		dbtest.Count(b, reader, "SELECT count(*) FROM "+name)
		start := time.Now()
		stop := make(chan struct{})
		longest := make([]time.Duration, readerWriters)
		var wg sync.WaitGroup
		for w := range readerWriters {
			wg.Go(func() {
				longest[w] = writer(b, func(i int) error {
					_, err := log.RecordUser(ctx, service.EventParams{Tag: "account:login:success",
						Subject: fmt.Sprintf("writer-%d-%d", w, i)})
					return err
				}, stop)
			})
		}
		passDone := make(chan error, 1)
		if pass != nil {
			time.Sleep(500 * time.Millisecond)
			go func() { passDone <- pass() }()
		} else {
			passDone <- nil
		}
		time.Sleep(readerHold - time.Since(start))
		if err := reader.Commit(ctx); err != nil {
			b.Fatal(err)
		}
		err = <-passDone
		time.Sleep(readerHeldSpan - time.Since(start))
		close(stop)
		wg.Wait()
		if err != nil {
			b.Fatal(err)
		}
		return slices.Max(longest)
	}

	base = arm(nil)
	ours = arm(func() error {
		start := time.Now()
		rep, err := log.MaintainPartitions(ctx, pool, service.MaintainOpts{})
		pass = time.Since(start)
		if err != nil {
			return err
		}
		if len(rep.Dropped) != 1 || rep.Dropped[0].Name != name {
			return fmt.Errorf("dropped %+v, want %s", rep.Dropped, name)
		}
		return nil
	})
	return base, ours, pass
}

// monthDrop is one pass that dropped the expired month, measured.
type monthDrop struct {
	took, detach, drop time.Duration
	sealed             int64 // the seal's leaf count in retention_log; 0 without one
}

// expiredMonth is the newest month that has left the retention window
// today, and the start of the month after it.
func expiredMonth() (month, end time.Time) {
	end = dbtest.MonthStart(time.Now().UTC().Add(-service.DefaultRetention))
	return end.AddDate(0, -1, 0), end
}

// dropExpiredMonth creates the expired month's partition on a fresh
// database, fills it with load (outside the timer), and times the one
// MaintainPartitions pass of log(pool) that drops it, after VACUUM
// ANALYZE and a CHECKPOINT.
func dropExpiredMonth(b *testing.B, load func(pool *pgxpool.Pool, month, end time.Time), log func(pool *pgxpool.Pool) *service.Log) monthDrop {
	b.Helper()
	ctx := context.Background()
	pool := dbtest.Pool(b)
	exec := mustExec(b, pool)
	month, end := expiredMonth()
	name := service.PartitionName(month)
	exec(fmt.Sprintf("CREATE TABLE %s PARTITION OF user_events FOR VALUES FROM ('%s') TO ('%s')",
		name, month.Format(time.RFC3339), end.Format(time.RFC3339)))
	load(pool, month, end)
	exec("VACUUM ANALYZE")
	exec("CHECKPOINT")
	l := log(pool)
	start := time.Now()
	rep, err := l.MaintainPartitions(ctx, pool, service.MaintainOpts{})
	took := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if len(rep.Dropped) != 1 || rep.Dropped[0].Name != name || len(rep.Created) != 0 {
		b.Fatalf("dropped %+v and created %v, want only %s dropped", rep.Dropped, rep.Created, name)
	}
	if left := dbtest.Count(b, pool, "SELECT count(*) FROM user_events WHERE time < $1", end); left != 0 {
		b.Fatalf("the pass left %d expired rows", left)
	}
	for _, t := range []string{"integrity_leaves_user_", "integrity_hashes_user_"} {
		if dbtest.TableExists(b, pool, t+month.Format("200601")) {
			b.Fatalf("the pass left %s%s", t, month.Format("200601"))
		}
	}
	d := monthDrop{took: took, detach: rep.Dropped[0].Detach, drop: rep.Dropped[0].Drop}
	if err := pool.QueryRow(ctx, "SELECT coalesce(sum(sealed_size), 0) FROM retention_log WHERE partition_name = $1",
		name).Scan(&d.sealed); err != nil {
		b.Fatal(err)
	}
	return d
}

// loadRaw is a dropExpiredMonth load: rows events spread over the month
// by one INSERT … SELECT, as BenchmarkRetention1M loads them.
func loadRaw(b *testing.B, rows int) func(*pgxpool.Pool, time.Time, time.Time) {
	return func(pool *pgxpool.Pool, month, end time.Time) {
		mustExec(b, pool)(fmt.Sprintf(loadSQL, "user_events"), month, rows, end.Sub(month).Microseconds())
	}
}

// plainLog is a dropExpiredMonth log: the default Log, no integrity key.
func plainLog(pool *pgxpool.Pool) *service.Log { return dbtest.Must(service.New(pool, nil)) }

// BenchmarkRetentionIntegrity1M: BenchmarkRetention1M's month with
// integrity on. The month's 1,000,000 events are recorded through a Log
// with an integrity key whose clock stands in that month (RecordUserMany,
// batches of 100,000, so every event has its record mark), and that Log's
// Checkpoint appends them all as leaves of the month's tree; both outside
// the timer. Then one MaintainPartitions pass of a Log with the same key
// and the real clock drops the month: it detaches it, seals the tree from
// the newest checkpoint (retention_log keeps its size and root) and drops
// the tree's leaf and hash tables. The plain arm drops a month of as many
// rows on a database without a key, in the same process; the two arms
// alternate which goes first.
//
// Metrics: ours_s, ours_detach_ms and ours_drop_ms (the pass with
// integrity, its DETACH step and its DROP-to-commit step, which holds the
// seal), plain_s, plain_detach_ms, ratio_vs_plain (ours_s / plain_s) and
// sealed_leaves (the seal's leaf count, checked against the checkpoint).
func BenchmarkRetentionIntegrity1M(b *testing.B) { benchRetentionIntegrity(b, 1_000_000) }

// BenchmarkRetentionIntegrity4M is BenchmarkRetentionIntegrity1M with
// 4,000,000 events: ours_detach_ms should not grow with the month's rows.
func BenchmarkRetentionIntegrity4M(b *testing.B) { benchRetentionIntegrity(b, 4_000_000) }

func benchRetentionIntegrity(b *testing.B, rows int) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		opts := integrityOpts(b)
		var checkpointed int64
		keyed := func(pool *pgxpool.Pool, month, end time.Time) {
			at := end.Add(-time.Second)
			past := dbtest.Must(service.New(pool, &service.Opts{Integrity: opts.Integrity, Clock: dbtest.Clock(at)}))
			recorded := recordBulk(b, &benchBundle{ctx: context.Background(), pool: pool, log: past, now: at}, rows, nil)
			start := time.Now()
			res, err := past.Checkpoint(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			checkpointed = res.Appended["user-"+month.Format("200601")]
			if checkpointed != int64(rows) || len(res.Unmarked) != 0 {
				b.Fatalf("the checkpoint appended %v (%d unmarked), want %d in the month", res.Appended, len(res.Unmarked), rows)
			}
			b.Logf("recorded %d events in %.1f s and checkpointed them in %.1f s, before the timer",
				rows, recorded.Seconds(), time.Since(start).Seconds())
		}
		withKey := func(pool *pgxpool.Pool) *service.Log {
			return dbtest.Must(service.New(pool, &service.Opts{Integrity: opts.Integrity}))
		}
		var ours, plain monthDrop
		retentionRuns++
		if retentionRuns%2 == 0 {
			plain = dropExpiredMonth(b, loadRaw(b, rows), plainLog)
			ours = dropExpiredMonth(b, keyed, withKey)
		} else {
			ours = dropExpiredMonth(b, keyed, withKey)
			plain = dropExpiredMonth(b, loadRaw(b, rows), plainLog)
		}
		if ours.sealed != checkpointed {
			b.Fatalf("the seal holds %d leaves, the checkpoint %d", ours.sealed, checkpointed)
		}
		if plain.sealed != 0 {
			b.Fatalf("the plain arm sealed %d leaves", plain.sealed)
		}
		b.ReportMetric(ours.took.Seconds(), "ours_s")
		b.ReportMetric(ms(ours.detach), "ours_detach_ms")
		b.ReportMetric(ms(ours.drop), "ours_drop_ms")
		b.ReportMetric(plain.took.Seconds(), "plain_s")
		b.ReportMetric(ms(plain.detach), "plain_detach_ms")
		b.ReportMetric(ours.took.Seconds()/plain.took.Seconds(), "ratio_vs_plain")
		b.ReportMetric(float64(ours.sealed), "sealed_leaves")
	}
}

// heldEvents is how many events BenchmarkRetention1MHeld's held person
// has in the expiring month.
const heldEvents = 1_000

// BenchmarkRetention1MHeld: BenchmarkRetention1M's month (1,000,000
// events) plus 1,000 events of one more person, dropped by one
// MaintainPartitions pass twice in the same process on the same rows: once
// with that person under a legal hold, whose 1,000 rows the pass copies
// into held_user_events in the drop's transaction, and once without a
// hold. The two arms alternate which goes first.
//
// Metrics: ours_s (the pass with the hold), no_hold_s, ratio_vs_no_hold
// (ours_s / no_hold_s; target ≤ 1.2), ours_detach_ms, ours_drop_ms (the
// copy runs between the two) and held_rows_moved.
func BenchmarkRetention1MHeld(b *testing.B) {
	const rows = 1_000_000
	const person = "held-person"
	load := func(pool *pgxpool.Pool, month, end time.Time) {
		loadRaw(b, rows)(pool, month, end)
		mustExec(b, pool)(`INSERT INTO user_events (time, tag, user_id, actor_id, auth_method, ip, user_agent, description, additional)
			SELECT $1::timestamptz + make_interval(secs => g * 60), 'account:login:success', $2, $2, 'password',
			       '10.77.0.1', 'Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0', 'Signed in', '{}'
			FROM generate_series(1, $3::int) g`, month, person, heldEvents)
	}
	var moved int64
	held := func(pool *pgxpool.Pool) *service.Log {
		log := plainLog(pool)
		if _, _, err := log.PlaceHold(context.Background(), service.HoldParams{Kind: service.ModelUser, SubjectID: person,
			Reason: "benchmark", By: "root"}); err != nil {
			b.Fatal(err)
		}
		return log
	}
	for i := 0; i < b.N; i++ {
		var ours, plain monthDrop
		arm := func(withHold bool) monthDrop {
			if !withHold {
				return dropExpiredMonth(b, load, plainLog)
			}
			var pool *pgxpool.Pool
			d := dropExpiredMonth(b, load, func(p *pgxpool.Pool) *service.Log { pool = p; return held(p) })
			moved = int64(dbtest.Count(b, pool, "SELECT count(*) FROM held_user_events WHERE user_id = $1", person))
			return d
		}
		retentionRuns++
		if retentionRuns%2 == 0 {
			plain, ours = arm(false), arm(true)
		} else {
			ours, plain = arm(true), arm(false)
		}
		if moved != heldEvents {
			b.Fatalf("moved %d held rows, want %d", moved, heldEvents)
		}
		b.ReportMetric(ours.took.Seconds(), "ours_s")
		b.ReportMetric(plain.took.Seconds(), "no_hold_s")
		b.ReportMetric(ours.took.Seconds()/plain.took.Seconds(), "ratio_vs_no_hold")
		b.ReportMetric(ms(ours.detach), "ours_detach_ms")
		b.ReportMetric(ms(ours.drop), "ours_drop_ms")
		b.ReportMetric(float64(moved), "held_rows_moved")
	}
}
