package service_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

type maintBundle struct {
	ctx  context.Context
	pool *pgxpool.Pool
	log  *service.Log
	now  time.Time
}

// setupMaint gives a fresh database, migrated as `migrate up` leaves it
// (partitions from the window's first month to three months ahead of the
// real clock), and a Log whose clock is that real now.
func setupMaint(t *testing.T) *maintBundle {
	t.Helper()
	pool := dbtest.Pool(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	return &maintBundle{ctx: context.Background(), pool: pool, now: now,
		log: service.New(pool, &service.Opts{Clock: func() time.Time { return now }})}
}

// at returns a Log over the bundle's database whose clock reads t: a real
// pass runs at its Log's clock only.
func (b *maintBundle) at(t time.Time) *service.Log {
	return service.New(b.pool, &service.Opts{Clock: func() time.Time { return t }})
}

func monthStart(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// partitions returns the names of the partitions attached to user_events.
func (b *maintBundle) partitions(t *testing.T) []string {
	t.Helper()
	rows, err := b.pool.Query(b.ctx, `SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'user_events'::regclass AND c.relname <> 'user_events_default' ORDER BY 1`)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

// months names the partitions of every month from first to last.
func months(first, last time.Time) []string {
	var out []string
	for m := monthStart(first); !m.After(last); m = m.AddDate(0, 1, 0) {
		out = append(out, service.PartitionName(m))
	}
	return out
}

// insert writes a row straight into user_events (fixtures older than the
// API's window), returning nothing.
func (b *maintBundle) insert(t *testing.T, user string, at time.Time) {
	t.Helper()
	_, err := b.pool.Exec(b.ctx, `INSERT INTO user_events (time, tag, user_id, description) VALUES ($1, 'account:login:success', $2, 'Signed in')`, at, user)
	require.NoError(t, err)
}

func dropNames(rep *service.MaintenanceReport) []string {
	var out []string
	for _, d := range rep.Dropped {
		out = append(out, d.Name+"/"+d.Reason)
	}
	return out
}

func TestMaintainPremakesAndDropsExpiredMonths(t *testing.T) {
	t.Parallel()
	b := setupMaint(t)
	first := monthStart(b.now.Add(-service.DefaultRetention))
	require.Equal(t, months(first, monthStart(b.now).AddDate(0, 3, 0)), b.partitions(t), "as migrate up leaves it")

	// Rows in the first two months.
	b.insert(t, "u-old", first.Add(time.Hour))
	b.insert(t, "u-old", first.AddDate(0, 1, 0).Add(time.Hour))

	// 200 days later by the Log's clock: everything ending before
	// later − 90 days is dropped, and three months after later are made.
	later := b.now.Add(200 * 24 * time.Hour)
	log := b.at(later)
	rep, err := log.MaintainPartitions(b.ctx, service.MaintainOpts{})
	require.NoError(t, err)
	require.False(t, rep.Skipped)
	cutoff := later.Add(-service.DefaultRetention)
	var wantDropped []string
	for _, name := range months(first, monthStart(b.now).AddDate(0, 3, 0)) {
		if m, _ := time.Parse("200601", name[len("user_events_p"):]); !m.AddDate(0, 1, 0).After(cutoff) {
			wantDropped = append(wantDropped, name+"/expired")
		}
	}
	require.NotEmpty(t, wantDropped)
	require.Equal(t, wantDropped, dropNames(rep))
	require.Equal(t, months(cutoff, monthStart(later).AddDate(0, 3, 0)), b.partitions(t))

	var logged, loggedRows int
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*), count(*) FILTER (WHERE retention = interval '90 days' AND reason = 'expired')
		FROM retention_log`).Scan(&logged, &loggedRows))
	require.Equal(t, len(wantDropped), logged, "one retention_log row per drop")
	require.Equal(t, logged, loggedRows)
	require.Zero(t, count(t, b.pool, "SELECT count(*) FROM user_events WHERE user_id = 'u-old'"))

	// A second pass changes nothing.
	rep, err = log.MaintainPartitions(b.ctx, service.MaintainOpts{})
	require.NoError(t, err)
	require.Empty(t, rep.Dropped)
	require.Empty(t, rep.Created)
}

func TestMaintainKeepsAMonthWithARowInsideTheWindow(t *testing.T) {
	t.Parallel()
	b := setupMaint(t)
	first := monthStart(b.now.Add(-service.DefaultRetention))
	second := first.AddDate(0, 1, 0)
	b.insert(t, "u-first", first.Add(time.Hour))
	b.insert(t, "u-second", second.Add(24*time.Hour))    // before the cutoff below
	b.insert(t, "u-second", second.Add(10*24*time.Hour)) // inside the window

	// The cutoff falls inside the second month.
	later := second.Add(5*24*time.Hour + service.DefaultRetention)
	rep, err := b.at(later).MaintainPartitions(b.ctx, service.MaintainOpts{})
	require.NoError(t, err)
	require.Equal(t, []string{service.PartitionName(first) + "/expired"}, dropNames(rep))
	require.Contains(t, b.partitions(t), service.PartitionName(second))
	require.Equal(t, 2, count(t, b.pool, "SELECT count(*) FROM user_events WHERE user_id = 'u-second'"), "the kept month keeps all its rows")
	require.Zero(t, count(t, b.pool, "SELECT count(*) FROM user_events WHERE user_id = 'u-first'"))
}

func TestMaintainRescuesTheDefaultPartition(t *testing.T) {
	t.Parallel()
	b := setupMaint(t)
	future := monthStart(b.now).AddDate(0, 5, 0) // no partition yet
	expired := monthStart(b.now.Add(-service.DefaultRetention)).AddDate(0, -1, 0)
	for i := range 3 {
		b.insert(t, "u-future", future.Add(time.Duration(i)*time.Hour))
	}
	b.insert(t, "u-expired", expired.Add(time.Hour))
	require.Equal(t, 4, count(t, b.pool, "SELECT count(*) FROM user_events_default"))

	rep, err := b.log.MaintainPartitions(b.ctx, service.MaintainOpts{})
	require.NoError(t, err)
	require.Equal(t, []service.RescuedMonth{{Name: service.PartitionName(future), Rows: 3}}, rep.Rescued)
	require.Equal(t, []service.DroppedPartition{{Name: "user_events_default", Month: expired, Rows: 1, Reason: "default"}}, rep.Dropped)
	require.Len(t, rep.Warnings, 2)
	require.Zero(t, count(t, b.pool, "SELECT count(*) FROM user_events_default"))
	require.Equal(t, 3, count(t, b.pool, fmt.Sprintf("SELECT count(*) FROM %s", service.PartitionName(future))))
	require.Contains(t, b.partitions(t), service.PartitionName(future))
	// The rescued partition has the parent's indexes.
	require.Equal(t, 5, count(t, b.pool, "SELECT count(*) FROM pg_indexes WHERE tablename = $1", service.PartitionName(future)))
}

func TestMaintainWhileOthersInsert(t *testing.T) {
	t.Parallel()
	b := setupMaint(t)
	ctx, stop := context.WithCancel(b.ctx)
	var inserted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				_, err := b.log.RecordUser(b.ctx, login(fmt.Sprintf("w%d", w), time.Time{}))
				if err != nil {
					errs <- err
					return
				}
				inserted.Add(1)
			}
		})
	}
	for range 20 { // let the writers get going
		if inserted.Load() > 50 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// 40 days on, the first months expire: their drops take the parent's
	// lock while the writers insert into the current month.
	rep, err := b.at(b.now.Add(40*24*time.Hour)).MaintainPartitions(b.ctx, service.MaintainOpts{})
	stop()
	wg.Wait()
	close(errs)
	require.NoError(t, err)
	require.NotEmpty(t, rep.Dropped)
	for err := range errs {
		require.NoError(t, err, "no insert fails")
	}
	require.Positive(t, inserted.Load())
	require.EqualValues(t, inserted.Load(), count(t, b.pool, "SELECT count(*) FROM user_events"), "no event lost")
}

func TestMaintainTwoPassesAtOnce(t *testing.T) {
	t.Parallel()
	b := setupMaint(t)
	next := service.PartitionName(monthStart(b.now).AddDate(0, 2, 0))
	_, err := b.pool.Exec(b.ctx, "DROP TABLE "+next)
	require.NoError(t, err)

	// While another session holds the lock, a pass does nothing.
	conn, err := b.pool.Acquire(b.ctx)
	require.NoError(t, err)
	_, err = conn.Exec(b.ctx, "SELECT pg_advisory_lock($1)", int64(service.MaintenanceLockKey))
	require.NoError(t, err)
	rep, err := b.log.MaintainPartitions(b.ctx, service.MaintainOpts{})
	require.NoError(t, err)
	require.True(t, rep.Skipped)
	require.NotContains(t, b.partitions(t), next)
	_, err = conn.Exec(b.ctx, "SELECT pg_advisory_unlock($1)", int64(service.MaintenanceLockKey))
	require.NoError(t, err)
	conn.Release()

	// Two passes started together: every expired month is dropped once.
	later := b.at(b.now.Add(60 * 24 * time.Hour))
	reps := make([]*service.MaintenanceReport, 2)
	var wg sync.WaitGroup
	for i := range reps {
		wg.Go(func() {
			var err error
			reps[i], err = later.MaintainPartitions(b.ctx, service.MaintainOpts{})
			require.NoError(t, err)
		})
	}
	wg.Wait()
	dropped := append(dropNames(reps[0]), dropNames(reps[1])...)
	require.NotEmpty(t, dropped)
	require.Len(t, dropped, len(slices.Compact(slices.Sorted(slices.Values(dropped)))), "no month dropped twice")
	require.Equal(t, len(dropped), count(t, b.pool, "SELECT count(*) FROM retention_log"))
	require.Contains(t, b.partitions(t), next)
}

func TestMaintainFinishesDetachedPartitions(t *testing.T) {
	t.Parallel()
	b := setupMaint(t)
	first := service.PartitionName(b.now.Add(-service.DefaultRetention))
	current := service.PartitionName(b.now)
	for _, name := range []string{first, current} {
		_, err := b.pool.Exec(b.ctx, "ALTER TABLE user_events DETACH PARTITION "+name)
		require.NoError(t, err)
	}
	later := b.now.Add(45 * 24 * time.Hour) // the first month has expired, the current one not
	rep, err := b.at(later).MaintainPartitions(b.ctx, service.MaintainOpts{})
	require.NoError(t, err)
	require.Contains(t, dropNames(rep), first+"/orphan")
	require.Zero(t, count(t, b.pool, "SELECT count(*) FROM pg_class WHERE relname = $1", first))
	require.Contains(t, b.partitions(t), current, "an in-window month is attached again")
	require.Equal(t, []string{current}, rep.Reattached)
	require.NotEmpty(t, rep.Warnings)
}

// snapshot dumps everything a pass may change: every relation named
// user_events* (oid, file, kind, parent, bounds), every row of user_events
// and of the monthly tables left detached, and retention_log.
func (b *maintBundle) snapshot(t *testing.T) string {
	t.Helper()
	var catalog, rows, logged string
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT COALESCE(string_agg(format('%s oid=%s file=%s kind=%s parent=%s bounds=%s',
			c.relname, c.oid, c.relfilenode, c.relkind, COALESCE(i.inhparent::regclass::text, '-'),
			COALESCE(pg_get_expr(c.relpartbound, c.oid), '-')), E'\n' ORDER BY c.relname), '')
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
		WHERE n.nspname = current_schema() AND c.relname LIKE 'user\_events%'`).Scan(&catalog))
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT COALESCE(string_agg(format('%s %s', e.tableoid::regclass, e), E'\n' ORDER BY e.id), '')
		FROM user_events e`).Scan(&rows))
	detached, err := b.pool.Query(b.ctx, `SELECT c.relname::text FROM pg_class c
		WHERE c.relname ~ '^user_events_p[0-9]{6}$' AND c.relkind = 'r' AND NOT c.relispartition ORDER BY 1`)
	require.NoError(t, err)
	names, err := pgx.CollectRows(detached, pgx.RowTo[string])
	require.NoError(t, err)
	for _, name := range names {
		var r string
		require.NoError(t, b.pool.QueryRow(b.ctx, fmt.Sprintf(`SELECT COALESCE(string_agg(e::text, E'\n' ORDER BY e.id), '') FROM %s e`,
			pgx.Identifier{name}.Sanitize())).Scan(&r))
		rows += "\n" + name + ":\n" + r
	}
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT COALESCE(string_agg(r::text, E'\n' ORDER BY r.id), '') FROM retention_log r`).Scan(&logged))
	return catalog + "\n---\n" + rows + "\n---\n" + logged
}

// A plan lists every action a pass at its time would take and changes
// nothing; a pass whose Log clock reads that time then takes exactly those
// actions.
func TestPlanChangesNothingAndThePassDoesWhatItSaid(t *testing.T) {
	t.Parallel()
	b := setupMaint(t)
	cur := monthStart(b.now)
	first := monthStart(b.now.Add(-service.DefaultRetention))
	// At later the window starts at b.now: every month before the current
	// one has expired.
	later := b.now.Add(service.DefaultRetention)
	exec := func(sql string) {
		t.Helper()
		_, err := b.pool.Exec(b.ctx, sql)
		require.NoError(t, err)
	}

	// Left detached: the expired first month (dropped as an orphan) and the
	// current month with a row (attached again).
	current := service.PartitionName(cur)
	b.insert(t, "u-now", b.now)
	exec("ALTER TABLE user_events DETACH PARTITION " + service.PartitionName(first))
	exec("ALTER TABLE user_events DETACH PARTITION " + current)
	// Rows in the default partition: two of a month inside the window
	// whose partition is gone (rescued), one of an expired month (deleted).
	gap := cur.AddDate(0, 2, 0)
	exec("DROP TABLE " + service.PartitionName(gap))
	b.insert(t, "u-gap", gap.Add(time.Hour))
	b.insert(t, "u-gap", gap.Add(2*time.Hour))
	gone := first.AddDate(0, -1, 0)
	b.insert(t, "u-gone", gone.Add(time.Hour))
	// An expired month's name over bounds inside the window, with a row:
	// the last check keeps it.
	odd := service.PartitionName(first.AddDate(0, -3, 0))
	far := monthStart(later).AddDate(0, 10, 0)
	exec(fmt.Sprintf("CREATE TABLE %s PARTITION OF user_events FOR VALUES FROM ('%s') TO ('%s')",
		odd, far.Format(time.RFC3339), far.AddDate(0, 1, 0).Format(time.RFC3339)))
	b.insert(t, "u-far", far.Add(time.Hour))

	wantDropped := []string{service.PartitionName(first) + "/orphan", "user_events_default/default"}
	for _, name := range months(first.AddDate(0, 1, 0), cur.AddDate(0, -1, 0)) {
		wantDropped = append(wantDropped, name+"/expired")
	}
	wantCreated := append([]string{service.PartitionName(gap)}, months(cur.AddDate(0, 4, 0), monthStart(later).AddDate(0, 3, 0))...)
	wantRescued := []service.RescuedMonth{{Name: service.PartitionName(gap), Rows: 2}}
	check := func(rep *service.MaintenanceReport, planned bool) {
		t.Helper()
		require.Equal(t, planned, rep.Planned)
		require.False(t, rep.Skipped)
		require.Equal(t, later.UTC(), rep.Now)
		require.Equal(t, b.now, rep.Cutoff)
		require.Equal(t, []string{current}, rep.Reattached)
		require.Equal(t, wantDropped, dropNames(rep))
		require.Equal(t, gone, rep.Dropped[1].Month)
		require.EqualValues(t, 1, rep.Dropped[1].Rows, "rows of the default partition are counted")
		require.Equal(t, wantRescued, rep.Rescued)
		require.Equal(t, wantCreated, rep.Created)
		require.Equal(t, []string{odd}, rep.Kept)
		require.Len(t, rep.Warnings, 4, "detached, two default months, kept")
	}

	before := b.snapshot(t)
	plan, err := b.log.PlanPartitions(b.ctx, service.PlanOpts{Now: later})
	require.NoError(t, err)
	check(plan, true)
	for _, d := range plan.Dropped {
		require.Zero(t, d.Detach+d.Drop, "nothing was timed: nothing ran")
	}
	require.Contains(t, plan.Warnings[0], "would attach it again")
	require.Equal(t, before, b.snapshot(t), "a plan changes nothing")

	// Without Now, a plan is made at the Log's clock.
	plan, err = b.at(later).PlanPartitions(b.ctx, service.PlanOpts{})
	require.NoError(t, err)
	check(plan, true)
	require.Equal(t, before, b.snapshot(t))

	// The pass at that clock does what the plan said.
	rep, err := b.at(later).MaintainPartitions(b.ctx, service.MaintainOpts{})
	require.NoError(t, err)
	check(rep, false)
	require.NotEqual(t, before, b.snapshot(t))
	require.Contains(t, b.partitions(t), current)
	require.Contains(t, b.partitions(t), odd)
	require.NotContains(t, b.partitions(t), service.PartitionName(first.AddDate(0, 1, 0)))
	require.Equal(t, 1, count(t, b.pool, "SELECT count(*) FROM user_events WHERE user_id = 'u-now'"))
	require.Equal(t, 2, count(t, b.pool, "SELECT count(*) FROM "+service.PartitionName(gap)))
	require.Equal(t, 1, count(t, b.pool, "SELECT count(*) FROM user_events WHERE user_id = 'u-far'"))
	require.Zero(t, count(t, b.pool, "SELECT count(*) FROM user_events_default"))
	require.Equal(t, len(wantDropped), count(t, b.pool, "SELECT count(*) FROM retention_log WHERE dropped_at = $1", later),
		"every drop is logged at the Log's clock")
}

func TestRecordIntoAMonthWithoutPartitionIsRefused(t *testing.T) {
	t.Parallel()
	b := setupMaint(t)
	gap := monthStart(b.now).AddDate(0, 1, 0)
	_, err := b.pool.Exec(b.ctx, "DROP TABLE "+service.PartitionName(gap))
	require.NoError(t, err)
	log := service.New(b.pool, &service.Opts{Clock: func() time.Time { return b.now }})
	_, err = log.RecordUser(b.ctx, login("u-gap", gap.Add(time.Hour)))
	require.ErrorIs(t, err, service.ErrNoPartition)
	_, err = log.RecordUserMany(b.ctx, []service.EventParams{login("u-gap", b.now), login("u-gap", gap.Add(time.Hour))})
	require.ErrorIs(t, err, service.ErrNoPartition)
	require.Zero(t, count(t, b.pool, "SELECT count(*) FROM user_events"), "nothing stored, not even in the default partition")

	// Maintenance fills the gap; recording then works at once.
	_, err = log.MaintainPartitions(b.ctx, service.MaintainOpts{})
	require.NoError(t, err)
	_, err = log.RecordUser(b.ctx, login("u-gap", gap.Add(time.Hour)))
	require.NoError(t, err)
	require.Zero(t, count(t, b.pool, "SELECT count(*) FROM user_events_default"))
}
