package service_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/jobs"
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
		log: dbtest.Must(service.New(pool, &service.Opts{Clock: dbtest.Clock(now)}))}
}

// at returns a Log over the bundle's database whose clock reads t: a real
// pass runs at its Log's clock only.
func (b *maintBundle) at(t time.Time) *service.Log {
	return dbtest.Must(service.New(b.pool, &service.Opts{Clock: dbtest.Clock(t)}))
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
	for m := dbtest.MonthStart(first); !m.After(last); m = m.AddDate(0, 1, 0) {
		out = append(out, service.PartitionName(m))
	}
	return out
}

// insert writes user's sign-in at at straight into user_events
// (fixtures older than the API's window).
func (b *maintBundle) insert(t *testing.T, user string, at time.Time) {
	t.Helper()
	dbtest.InsertRaw(t, b.pool, dbtest.Raw{Time: at, Subject: user})
}

func dropNames(rep *service.MaintenanceReport) []string {
	var out []string
	for _, d := range rep.Dropped {
		out = append(out, d.Name+"/"+string(d.Reason))
	}
	return out
}

func TestMaintainPremakesAndDropsExpiredMonths(t *testing.T) {
	t.Parallel()
	b := setupMaint(t)
	first := dbtest.MonthStart(b.now.Add(-service.DefaultRetention))
	require.Equal(t, months(first, dbtest.MonthStart(b.now).AddDate(0, 3, 0)), b.partitions(t), "as migrate up leaves it")

	// Rows in the first two months.
	b.insert(t, "u-old", first.Add(time.Hour))
	b.insert(t, "u-old", first.AddDate(0, 1, 0).Add(time.Hour))

	// 200 days later by the Log's clock: everything ending before
	// later − 90 days is dropped, and three months after later are made.
	later := b.now.Add(200 * 24 * time.Hour)
	log := b.at(later)
	rep, err := log.MaintainPartitions(b.ctx, b.pool, service.MaintainOpts{})
	require.NoError(t, err)
	require.False(t, rep.Skipped)
	cutoff := later.Add(-service.DefaultRetention)
	var wantDropped []string
	for _, name := range months(first, dbtest.MonthStart(b.now).AddDate(0, 3, 0)) {
		if m, _ := time.Parse("200601", name[len("user_events_p"):]); !m.AddDate(0, 1, 0).After(cutoff) {
			wantDropped = append(wantDropped, name+"/expired")
		}
	}
	require.NotEmpty(t, wantDropped)
	require.Equal(t, wantDropped, dropNames(rep))
	require.Equal(t, months(cutoff, dbtest.MonthStart(later).AddDate(0, 3, 0)), b.partitions(t))

	var logged, loggedRows int
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*), count(*) FILTER (WHERE retention = interval '90 days' AND reason = 'expired')
		FROM retention_log`).Scan(&logged, &loggedRows))
	require.Equal(t, len(wantDropped), logged, "one retention_log row per drop")
	require.Equal(t, logged, loggedRows)
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events WHERE user_id = 'u-old'"))

	// A second pass changes nothing.
	rep, err = log.MaintainPartitions(b.ctx, b.pool, service.MaintainOpts{})
	require.NoError(t, err)
	require.Empty(t, rep.Dropped)
	require.Empty(t, rep.Created)
}

func TestMaintainKeepsAMonthWithARowInsideTheWindow(t *testing.T) {
	t.Parallel()
	b := setupMaint(t)
	first := dbtest.MonthStart(b.now.Add(-service.DefaultRetention))
	second := first.AddDate(0, 1, 0)
	b.insert(t, "u-first", first.Add(time.Hour))
	b.insert(t, "u-second", second.Add(24*time.Hour))    // before the cutoff below
	b.insert(t, "u-second", second.Add(10*24*time.Hour)) // inside the window

	// The cutoff falls inside the second month.
	later := second.Add(5*24*time.Hour + service.DefaultRetention)
	rep, err := b.at(later).MaintainPartitions(b.ctx, b.pool, service.MaintainOpts{})
	require.NoError(t, err)
	require.Equal(t, []string{service.PartitionName(first) + "/expired"}, dropNames(rep))
	require.Contains(t, b.partitions(t), service.PartitionName(second))
	require.Equal(t, 2, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events WHERE user_id = 'u-second'"), "the kept month keeps all its rows")
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events WHERE user_id = 'u-first'"))
}

func TestMaintainRescuesTheDefaultPartition(t *testing.T) {
	t.Parallel()
	b := setupMaint(t)
	future := dbtest.MonthStart(b.now).AddDate(0, 5, 0) // no partition yet
	expired := dbtest.MonthStart(b.now.Add(-service.DefaultRetention)).AddDate(0, -1, 0)
	for i := range 3 {
		b.insert(t, "u-future", future.Add(time.Duration(i)*time.Hour))
	}
	b.insert(t, "u-expired", expired.Add(time.Hour))
	require.Equal(t, 4, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events_default"))

	rep, err := b.log.MaintainPartitions(b.ctx, b.pool, service.MaintainOpts{})
	require.NoError(t, err)
	require.Equal(t, []service.RescuedMonth{{Name: service.PartitionName(future), Rows: 3}}, rep.Rescued)
	require.Equal(t, []service.DroppedPartition{{Name: "user_events_default", Month: expired, Rows: 1, Reason: "default"}}, rep.Dropped)
	require.Len(t, rep.Warnings, 2)
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events_default"))
	require.Equal(t, 3, dbtest.Count(t, b.pool, fmt.Sprintf("SELECT count(*) FROM %s", service.PartitionName(future))))
	require.Contains(t, b.partitions(t), service.PartitionName(future))
	// The rescued partition has the parent's indexes.
	require.Equal(t, 6, dbtest.Count(t, b.pool, "SELECT count(*) FROM pg_indexes WHERE tablename = $1", service.PartitionName(future)))
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
				_, err := b.log.RecordUser(b.ctx, dbtest.SignIn(fmt.Sprintf("w%d", w), time.Time{}))
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
	rep, err := b.at(b.now.Add(40*24*time.Hour)).MaintainPartitions(b.ctx, b.pool, service.MaintainOpts{})
	stop()
	wg.Wait()
	close(errs)
	require.NoError(t, err)
	require.NotEmpty(t, rep.Dropped)
	for err := range errs {
		require.NoError(t, err, "no insert fails")
	}
	require.Positive(t, inserted.Load())
	require.EqualValues(t, inserted.Load(), dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events"), "no event lost")
}

func TestMaintainTwoPassesAtOnce(t *testing.T) {
	t.Parallel()
	b := setupMaint(t)
	next := service.PartitionName(dbtest.MonthStart(b.now).AddDate(0, 2, 0))
	_, err := b.pool.Exec(b.ctx, "DROP TABLE "+next)
	require.NoError(t, err)

	// While another session holds the lock, a pass does nothing.
	conn, err := b.pool.Acquire(b.ctx)
	require.NoError(t, err)
	_, err = conn.Exec(b.ctx, "SELECT pg_advisory_lock($1)", int64(service.MaintenanceLockKey))
	require.NoError(t, err)
	rep, err := b.log.MaintainPartitions(b.ctx, b.pool, service.MaintainOpts{})
	require.NoError(t, err)
	require.True(t, rep.Skipped)
	require.NotContains(t, b.partitions(t), next)
	_, err = conn.Exec(b.ctx, "SELECT pg_advisory_unlock($1)", int64(service.MaintenanceLockKey))
	require.NoError(t, err)
	conn.Release()

	// Two passes started together: every expired month is dropped once.
	later := b.at(b.now.Add(60 * 24 * time.Hour))
	reps := make([]*service.MaintenanceReport, 2)
	errs := make([]error, len(reps))
	var wg sync.WaitGroup
	for i := range reps {
		wg.Go(func() { reps[i], errs[i] = later.MaintainPartitions(b.ctx, b.pool, service.MaintainOpts{}) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	dropped := append(dropNames(reps[0]), dropNames(reps[1])...)
	require.NotEmpty(t, dropped)
	require.Len(t, dropped, len(slices.Compact(slices.Sorted(slices.Values(dropped)))), "no month dropped twice")
	require.Equal(t, len(dropped), dbtest.Count(t, b.pool, "SELECT count(*) FROM retention_log"))
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
	rep, err := b.at(later).MaintainPartitions(b.ctx, b.pool, service.MaintainOpts{})
	require.NoError(t, err)
	require.Contains(t, dropNames(rep), first+"/orphan")
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM pg_class WHERE relname = $1", first))
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
	cur := dbtest.MonthStart(b.now)
	first := dbtest.MonthStart(b.now.Add(-service.DefaultRetention))
	// At later the window starts at b.now: every month before the current
	// one has expired.
	later := b.now.Add(service.DefaultRetention)
	exec := func(sql string) {
		t.Helper()
		_, err := b.pool.Exec(b.ctx, sql)
		require.NoError(t, err)
	}

	// A database from before the default partition's guard, whose rows
	// of months inside the window could land there.
	b.dropGuard(t)
	// Left detached: the expired first month (dropped as an orphan) and the
	// current month with a row (attached again, after the row of its month
	// that landed in the default partition moves back into it).
	current := service.PartitionName(cur)
	b.insert(t, "u-now", b.now)
	exec("ALTER TABLE user_events DETACH PARTITION " + service.PartitionName(first))
	exec("ALTER TABLE user_events DETACH PARTITION " + current)
	b.insert(t, "u-now", cur.Add(time.Minute))
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
	far := dbtest.MonthStart(later).AddDate(0, 10, 0)
	exec(fmt.Sprintf("CREATE TABLE %s PARTITION OF user_events FOR VALUES FROM ('%s') TO ('%s')",
		odd, far.Format(time.RFC3339), far.AddDate(0, 1, 0).Format(time.RFC3339)))
	b.insert(t, "u-far", far.Add(time.Hour))

	wantDropped := []string{service.PartitionName(first) + "/orphan", "user_events_default/default"}
	for _, name := range months(first.AddDate(0, 1, 0), cur.AddDate(0, -1, 0)) {
		wantDropped = append(wantDropped, name+"/expired")
	}
	wantCreated := append([]string{service.PartitionName(gap)}, months(cur.AddDate(0, 4, 0), dbtest.MonthStart(later).AddDate(0, 3, 0))...)
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
		require.Empty(t, rep.Errors)
	}

	before := b.snapshot(t)
	plan, err := b.log.PlanPartitions(b.ctx, service.PlanOpts{Now: later})
	require.NoError(t, err)
	check(plan, true)
	for _, d := range plan.Dropped {
		require.Zero(t, d.Detach+d.Drop, "nothing was timed: nothing ran")
	}
	require.Contains(t, plan.Warnings[0], "held 1 rows of its month; would move them back into it and attach it again")
	require.Equal(t, before, b.snapshot(t), "a plan changes nothing")

	// Without Now, a plan is made at the Log's clock.
	plan, err = b.at(later).PlanPartitions(b.ctx, service.PlanOpts{})
	require.NoError(t, err)
	check(plan, true)
	require.Equal(t, before, b.snapshot(t))

	// The pass at that clock does what the plan said.
	rep, err := b.at(later).MaintainPartitions(b.ctx, b.pool, service.MaintainOpts{})
	require.NoError(t, err)
	check(rep, false)
	require.NotEqual(t, before, b.snapshot(t))
	require.Contains(t, b.partitions(t), current)
	require.Contains(t, b.partitions(t), odd)
	require.NotContains(t, b.partitions(t), service.PartitionName(first.AddDate(0, 1, 0)))
	require.Equal(t, 2, dbtest.Count(t, b.pool, "SELECT count(*) FROM "+current+" WHERE user_id = 'u-now'"))
	require.Equal(t, 2, dbtest.Count(t, b.pool, "SELECT count(*) FROM "+service.PartitionName(gap)))
	require.Equal(t, 1, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events WHERE user_id = 'u-far'"))
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events_default"))
	require.Equal(t, len(wantDropped), dbtest.Count(t, b.pool, "SELECT count(*) FROM retention_log WHERE dropped_at = $1", later),
		"every drop is logged at the Log's clock")
}

// A month beyond the months maintenance keeps partitions for has none:
// an event there is invalid (ErrNoPartition) and nothing is written.
func TestRecordIntoAMonthWithoutPartitionIsRefused(t *testing.T) {
	t.Parallel()
	b := setupMaint(t)
	beyond := dbtest.MonthStart(b.now).AddDate(0, service.DefaultPartitionsAhead+1, 0)
	log := dbtest.Must(service.New(b.pool, &service.Opts{Clock: dbtest.Clock(b.now)}))
	_, err := log.RecordUser(b.ctx, dbtest.SignIn("u-far", beyond.Add(time.Hour)))
	require.ErrorIs(t, err, service.ErrNoPartition)
	var ve *service.ValidationError
	require.ErrorAs(t, err, &ve)
	_, err = log.RecordUserMany(b.ctx, []service.EventParams{dbtest.SignIn("u-far", b.now), dbtest.SignIn("u-far", beyond.Add(time.Hour))})
	require.ErrorIs(t, err, service.ErrNoPartition)
	var be *service.BatchError
	require.ErrorAs(t, err, &be)
	require.Equal(t, 1, be.Index)
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events"), "nothing stored, not even in the default partition")

	// Keeping partitions further ahead makes it a month that must have one:
	// a pass creates it, and recording then works at once.
	further := dbtest.Must(service.New(b.pool, &service.Opts{Clock: dbtest.Clock(b.now), PartitionsAhead: service.DefaultPartitionsAhead + 1}))
	_, err = further.RecordUser(b.ctx, dbtest.SignIn("u-far", beyond.Add(time.Hour)))
	require.ErrorIs(t, err, service.ErrPartitionUnavailable)
	_, err = further.MaintainPartitions(b.ctx, b.pool, service.MaintainOpts{})
	require.NoError(t, err)
	_, err = further.RecordUser(b.ctx, dbtest.SignIn("u-far", beyond.Add(time.Hour)))
	require.NoError(t, err)
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events_default"))
}

// dropGuard removes the default partition's guard, as a database from
// before it was (whose default partition could take rows of any month).
func (b *maintBundle) dropGuard(t *testing.T) {
	t.Helper()
	for _, g := range b.guards(t) {
		_, err := b.pool.Exec(b.ctx, "ALTER TABLE user_events_default DROP CONSTRAINT "+g)
		require.NoError(t, err)
	}
}

// guards names the guard constraints on user_events_default.
func (b *maintBundle) guards(t *testing.T) []string {
	t.Helper()
	rows, err := b.pool.Query(b.ctx, `SELECT conname::text FROM pg_constraint
		WHERE conrelid = 'user_events_default'::regclass AND conname LIKE 'user\_events\_default\_guard\_%' ORDER BY 1`)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

// maintenanceJobs counts the partition-maintenance jobs in River's table.
func (b *maintBundle) maintenanceJobs(t *testing.T) int {
	t.Helper()
	return dbtest.Count(t, b.pool, "SELECT count(*) FROM river_job WHERE kind = $1", jobs.PartitionMaintenanceArgs{}.Kind())
}

// countingEnqueuer is a real jobs.Enqueuer that counts maintenance
// requests.
type countingEnqueuer struct {
	*jobs.Enqueuer
	maintenance atomic.Int64
}

func (e *countingEnqueuer) EnqueueMaintenance(ctx context.Context) error {
	e.maintenance.Add(1)
	return e.Enqueuer.EnqueueMaintenance(ctx)
}

// hookedTag is a tag withEnqueuer's Log runs a hook for.
const hookedTag = "account:password:change"

// withEnqueuer returns a Log at the bundle's clock that enqueues jobs into
// the bundle's database (with a hook on hookedTag), and its enqueuer.
func (b *maintBundle) withEnqueuer(t *testing.T) (*service.Log, *countingEnqueuer) {
	t.Helper()
	inner, err := jobs.NewEnqueuer(b.pool)
	require.NoError(t, err)
	enq := &countingEnqueuer{Enqueuer: inner}
	return dbtest.Must(service.New(b.pool, &service.Opts{Clock: dbtest.Clock(b.now), Enqueuer: enq,
		Hooks: []service.Hook{{Name: jobs.HookNotify, Tag: hookedTag}}})), enq
}

// The current month detached by hand while a writer records into it: the
// writer's cache still holds the month, but its events are refused with
// ErrPartitionUnavailable (the default partition's guard refuses them),
// never stored in user_events_default; a maintenance job is enqueued, and
// the pass attaches the month again with every acknowledged event in it
// once.
func TestRecordIntoAMonthDetachedWhileWriting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		events int // per call
		record func(log *service.Log, ctx context.Context, pool *pgxpool.Pool, p service.EventParams) error
	}{
		{"one", 1, func(log *service.Log, ctx context.Context, _ *pgxpool.Pool, p service.EventParams) error {
			_, err := log.RecordUser(ctx, p)
			return err
		}},
		{"in the caller's transaction", 1, func(log *service.Log, ctx context.Context, pool *pgxpool.Pool, p service.EventParams) error {
			return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				_, err := log.RecordUserTx(ctx, tx, p)
				return err
			})
		}},
		{"bulk", 1, func(log *service.Log, ctx context.Context, _ *pgxpool.Pool, p service.EventParams) error {
			_, err := log.RecordUserMany(ctx, []service.EventParams{p})
			return err
		}},
		{"firing a hook", 1, func(log *service.Log, ctx context.Context, _ *pgxpool.Pool, p service.EventParams) error {
			p.Tag = hookedTag // inserted with its hook's job, in a transaction
			_, err := log.RecordUser(ctx, p)
			return err
		}},
		{"bulk firing a hook", 2, func(log *service.Log, ctx context.Context, _ *pgxpool.Pool, p service.EventParams) error {
			q := p
			q.Tag = hookedTag // inserted one by one after the COPY
			_, err := log.RecordUserMany(ctx, []service.EventParams{p, q})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setupMaint(t)
			log, enq := b.withEnqueuer(t)
			current := service.PartitionName(b.now)

			var acked []string
			refused := make(chan error, 1)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					user := fmt.Sprintf("w-%d", i)
					err := tc.record(log, b.ctx, b.pool, dbtest.SignIn(user, b.now))
					if err != nil {
						select {
						case refused <- err:
						default:
						}
						continue
					}
					acked = append(acked, user)
				}
			})
			for dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events") < 20 { // the writer's cache holds the month
			}
			_, err := b.pool.Exec(b.ctx, "ALTER TABLE user_events DETACH PARTITION "+current)
			require.NoError(t, err)
			err = <-refused
			close(stop)
			wg.Wait()

			require.ErrorIs(t, err, service.ErrPartitionUnavailable)
			require.ErrorIs(t, err, service.ErrUnavailable)
			var ve *service.ValidationError
			require.False(t, errors.As(err, &ve), "not a validation error: %v", err)
			var be *service.BatchError
			require.False(t, errors.As(err, &be), "not a bad event of the batch: %v", err)
			require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events_default"), "nothing reached the default partition")
			dbtest.Eventually(t, func() bool { return b.maintenanceJobs(t) == 1 }, 10*time.Second, 10*time.Millisecond,
				"a maintenance pass was asked for")
			require.EqualValues(t, 1, enq.maintenance.Load())

			rep, err := log.MaintainPartitions(b.ctx, b.pool, service.MaintainOpts{})
			require.NoError(t, err)
			require.Equal(t, []string{current}, rep.Reattached)
			require.Contains(t, b.partitions(t), current)
			require.Positive(t, len(acked))
			require.Equal(t, len(acked)*tc.events, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events WHERE user_id = ANY($1)", acked),
				"every acknowledged event is there")
			require.Equal(t, len(acked)*tc.events, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events"), "once, and nothing else")
			_, err = log.RecordUser(b.ctx, dbtest.SignIn("after", b.now))
			require.NoError(t, err, "recording works again at once")
		})
	}
}

// A future month dropped by hand: its events are refused with
// ErrPartitionUnavailable (in the bulk path too, where an invalid event
// still goes first), a pass is asked for once however many writers are
// refused, and the pass creates it again.
func TestRecordIntoAFutureMonthDroppedByHand(t *testing.T) {
	t.Parallel()
	b := setupMaint(t)
	log, enq := b.withEnqueuer(t)
	next := dbtest.MonthStart(b.now).AddDate(0, 2, 0)
	_, err := log.RecordUser(b.ctx, dbtest.SignIn("u", next.Add(time.Hour))) // the cache holds the month
	require.NoError(t, err)
	_, err = b.pool.Exec(b.ctx, "DROP TABLE "+service.PartitionName(next))
	require.NoError(t, err)

	for i := range 10 {
		_, err = log.RecordUser(b.ctx, dbtest.SignIn(fmt.Sprintf("u-%d", i), next.Add(time.Hour)))
		require.ErrorIs(t, err, service.ErrPartitionUnavailable)
	}
	_, err = log.RecordUserMany(b.ctx, []service.EventParams{dbtest.SignIn("u", b.now), dbtest.SignIn("u", next.Add(time.Hour))})
	require.ErrorIs(t, err, service.ErrPartitionUnavailable)
	var be *service.BatchError
	require.False(t, errors.As(err, &be), "not a bad event of the batch: %v", err)
	// An invalid event is reported before the unavailable month, wherever
	// it stands: the batch can never be written as it is.
	bad := dbtest.SignIn("u", b.now)
	bad.Tag = "account:nope"
	_, err = log.RecordUserMany(b.ctx, []service.EventParams{dbtest.SignIn("u", next.Add(time.Hour)), bad})
	require.ErrorAs(t, err, &be)
	require.Equal(t, 1, be.Index)
	require.ErrorIs(t, err, service.ErrUnknownTag)
	err = pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
		_, _, err := log.RecordManyTx(b.ctx, tx, []service.EventParams{dbtest.SignIn("u", next.Add(time.Hour)), {Tag: "project:create"}})
		return err
	})
	require.ErrorAs(t, err, &be, "the other model's invalid event goes first too")
	require.Equal(t, 1, be.Index)
	require.ErrorIs(t, err, service.ErrEmptySubject)

	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events_default"))
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events"), "the drop took the one event before it")
	dbtest.Eventually(t, func() bool { return b.maintenanceJobs(t) == 1 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return enq.maintenance.Load() == 1 }, 10*time.Second, 10*time.Millisecond,
		"one request for a burst of refusals")

	rep, err := log.MaintainPartitions(b.ctx, b.pool, service.MaintainOpts{})
	require.NoError(t, err)
	require.Equal(t, []string{service.PartitionName(next)}, rep.Created)
	_, err = log.RecordUser(b.ctx, dbtest.SignIn("u", next.Add(time.Hour)))
	require.NoError(t, err)

	// Without an Enqueuer the refusal is the same, and nothing is asked for.
	_, err = b.pool.Exec(b.ctx, "DROP TABLE "+service.PartitionName(next))
	require.NoError(t, err)
	_, err = b.log.RecordUser(b.ctx, dbtest.SignIn("u", next.Add(time.Hour)))
	require.ErrorIs(t, err, service.ErrPartitionUnavailable)
}

// Only attached partitions count as writable: a month whose table is left
// detached is refused before anything is written, so the caller's
// transaction goes on unharmed.
func TestRecordIntoADetachedMonthIsRefusedBeforeWriting(t *testing.T) {
	t.Parallel()
	b := setupMaint(t)
	_, err := b.pool.Exec(b.ctx, "ALTER TABLE user_events DETACH PARTITION "+service.PartitionName(b.now))
	require.NoError(t, err)
	err = pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
		_, err := b.log.RecordUserTx(b.ctx, tx, dbtest.SignIn("u", b.now))
		require.ErrorIs(t, err, service.ErrPartitionUnavailable)
		require.Equal(t, 1, dbtest.Count(t, tx, "SELECT 1"), "the transaction is not aborted: no insert was tried")
		return nil
	})
	require.NoError(t, err)
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events"))
}

// Rows of a detached month inside the window that already sit in the
// default partition (written before the guard) are moved back into the
// month's table and the table attached again, in one go.
func TestMaintainMovesDefaultRowsBackIntoADetachedMonth(t *testing.T) {
	t.Parallel()
	b := setupMaint(t)
	current := service.PartitionName(b.now)
	b.insert(t, "u-before", b.now)
	b.dropGuard(t)
	_, err := b.pool.Exec(b.ctx, "ALTER TABLE user_events DETACH PARTITION "+current)
	require.NoError(t, err)
	for i := range 3 {
		dbtest.InsertRaw(t, b.pool, dbtest.Raw{Table: "user_events_default", Time: dbtest.MonthStart(b.now).Add(time.Duration(i) * time.Hour),
			Subject: "u-landed"})
	}

	rep, err := b.log.MaintainPartitions(b.ctx, b.pool, service.MaintainOpts{})
	require.NoError(t, err)
	require.Empty(t, rep.Errors)
	require.Equal(t, []string{current}, rep.Reattached)
	require.Empty(t, rep.Rescued, "no new partition")
	require.Contains(t, rep.Warnings[0], "held 3 rows of its month; moved them back into it and attached it again")
	require.Contains(t, b.partitions(t), current)
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events_default"))
	require.Equal(t, 4, dbtest.Count(t, b.pool, "SELECT count(*) FROM "+current))
	require.Equal(t, []string{"user_events_default_guard_" + dbtest.MonthStart(b.now.Add(-service.DefaultRetention)).Format("200601") + "_" +
		dbtest.MonthStart(b.now).AddDate(0, service.DefaultPartitionsAhead, 0).Format("200601")}, b.guards(t), "the guard is back")
}

// A step that fails (create, on a name taken by a view) does not stop the
// others: the expired months are still dropped, and the report and the
// error name the failed step.
func TestMaintainStepFailureDoesNotStopTheOthers(t *testing.T) {
	t.Parallel()
	b := setupMaint(t)
	// Two months on, mid-month: the window's first month has expired, and
	// two months beyond the ones migrate made are due (the clash takes the
	// later one), whatever day of the month the test runs on.
	later := dbtest.MonthStart(b.now).AddDate(0, 2, 14)
	clash := service.PartitionName(dbtest.MonthStart(later).AddDate(0, 3, 0))
	_, err := b.pool.Exec(b.ctx, "CREATE VIEW "+clash+" AS SELECT 1 AS x")
	require.NoError(t, err)

	rep, err := b.at(later).MaintainPartitions(b.ctx, b.pool, service.MaintainOpts{})
	require.Error(t, err)
	require.Contains(t, err.Error(), "create: create "+clash)
	var se service.StepError
	require.ErrorAs(t, err, &se)
	require.Equal(t, "create", se.Step)
	require.Len(t, rep.Errors, 1)
	require.Equal(t, "create", rep.Errors[0].Step)
	require.Contains(t, dropNames(rep), service.PartitionName(b.now.Add(-service.DefaultRetention))+"/expired", "drop_expired ran")
	require.NotContains(t, b.partitions(t), service.PartitionName(b.now.Add(-service.DefaultRetention)))
	require.NotEmpty(t, rep.Created, "the other months were created")
}

// lockWaiter returns the pid of the backend waiting for a lock on table,
// once one is.
func (b *maintBundle) lockWaiter(t *testing.T, table string) int {
	t.Helper()
	var pid int
	require.Eventually(t, func() bool {
		err := b.pool.QueryRow(b.ctx, `SELECT pid FROM pg_locks WHERE NOT granted AND relation = to_regclass($1)`, table).Scan(&pid)
		return err == nil
	}, 30*time.Second, 5*time.Millisecond, "nobody waits for %s", table)
	return pid
}

// holdMonth opens a transaction that reads table and keeps it open until
// the returned function is called (or the test ends): a reader of an old
// month.
func (b *maintBundle) holdMonth(t *testing.T, table string) (release func()) {
	t.Helper()
	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(b.ctx) })
	require.GreaterOrEqual(t, dbtest.Count(t, tx, "SELECT count(*) FROM "+table), 0)
	return func() { require.NoError(t, tx.Commit(b.ctx)) }
}

// passInBackground starts a pass of log and returns a channel that gets its
// report and error; the pass is cancelled if the test ends first.
func passInBackground(t *testing.T, log *service.Log, pool *pgxpool.Pool, opts service.MaintainOpts) <-chan passResult {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan passResult, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		rep, err := log.MaintainPartitions(ctx, pool, opts)
		done <- passResult{rep, err}
	}()
	t.Cleanup(func() { cancel(); <-finished })
	return done
}

type passResult struct {
	rep *service.MaintenanceReport
	err error
}

// A reader holding the expiring month: the pass waits for the month's own
// lock holding nothing on user_events, so writers go on; once the reader
// is done, the month is dropped.
func TestMaintainWaitsForAReaderOfTheExpiringMonthNotTheWriters(t *testing.T) {
	t.Parallel()
	b := setupMaint(t)
	first := service.PartitionName(b.now.Add(-service.DefaultRetention))
	release := b.holdMonth(t, first)

	done := passInBackground(t, b.at(b.now.Add(45*24*time.Hour)), b.pool, service.MaintainOpts{LockTimeout: time.Minute})
	pid := b.lockWaiter(t, first)
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM pg_locks WHERE pid = $1 AND relation = 'user_events'::regclass", pid),
		"the waiting pass holds no lock on user_events")
	_, err := b.log.RecordUser(b.ctx, dbtest.SignIn("u-writer", b.now))
	require.NoError(t, err, "a writer records while the pass waits")

	release()
	res := <-done
	require.NoError(t, res.err)
	require.Contains(t, dropNames(res.rep), first+"/expired")
	require.Equal(t, 1, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events WHERE user_id = 'u-writer'"))
}

// The pass's statements are bounded by its own statement_timeout: a lock
// wait longer than it is cancelled (SQLSTATE 57014) even under a longer
// lock_timeout, and the other steps still run. (One second: the other
// steps' DDL must fit in it on a loaded machine, and the held month's lock
// wait never ends by itself.)
func TestMaintainStatementTimeout(t *testing.T) {
	t.Parallel()
	b := setupMaint(t)
	first := service.PartitionName(b.now.Add(-service.DefaultRetention))
	release := b.holdMonth(t, first)
	defer release()

	rep, err := b.at(b.now.Add(45*24*time.Hour)).MaintainPartitions(b.ctx, b.pool,
		service.MaintainOpts{LockTimeout: 20 * time.Second, LockRetries: 1, StatementTimeout: time.Second})
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, pgerrcode.QueryCanceled, pgErr.Code)
	require.Len(t, rep.Errors, 1)
	require.Equal(t, "drop_expired", rep.Errors[0].Step)
	require.NotEmpty(t, rep.Created, "create ran")
	require.Contains(t, b.partitions(t), first, "nothing dropped")
}

// stallTracer blocks the first statement that starts with prefix until
// released, as a client paused inside its transaction, and gives the pid
// of its session.
type stallTracer struct {
	prefix  string
	once    sync.Once
	pid     chan uint32
	release chan struct{}
}

func (s *stallTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if strings.HasPrefix(data.SQL, s.prefix) {
		s.once.Do(func() {
			s.pid <- conn.PgConn().PID()
			<-s.release
		})
	}
	return ctx
}

func (s *stallTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// A pass whose client stalls inside its DETACH transaction (holding
// user_events' lock) is ended by the server after its
// idle_in_transaction_session_timeout: the lock is freed, the DETACH rolls
// back and nothing is lost. Settings of the pass never stay on the pooled
// connection.
func TestMaintainSessionIsBoundedWhenItsClientStalls(t *testing.T) {
	t.Parallel()
	tracer := &stallTracer{prefix: "DROP TABLE", pid: make(chan uint32, 1), release: make(chan struct{})}
	pool := dbtest.PoolWith(t, func(c *pgxpool.Config) { c.ConnConfig.Tracer = tracer })
	now := time.Now().UTC().Truncate(time.Microsecond)
	b := &maintBundle{ctx: context.Background(), pool: pool, now: now,
		log: dbtest.Must(service.New(pool, &service.Opts{Clock: dbtest.Clock(now)}))}
	first := service.PartitionName(now.Add(-service.DefaultRetention))
	b.insert(t, "u-old", now.Add(-service.DefaultRetention))

	var once sync.Once
	unstall := func() { once.Do(func() { close(tracer.release) }) }
	done := passInBackground(t, b.at(now.Add(45*24*time.Hour)), b.pool, service.MaintainOpts{IdleInTransactionTimeout: 100 * time.Millisecond})
	t.Cleanup(unstall)  // before the pass is waited for
	pid := <-tracer.pid // detached, about to drop: the client stalls here
	dbtest.Eventually(t, func() bool {
		return dbtest.Count(t, pool, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid) == 0
	}, 30*time.Second, 5*time.Millisecond, "the server ends the stalled session")
	unstall()
	require.Error(t, (<-done).err)
	require.Contains(t, b.partitions(t), first, "the DETACH rolled back")
	require.Equal(t, 1, dbtest.Count(t, pool, "SELECT count(*) FROM user_events WHERE user_id = 'u-old'"))

	// A pass that completes leaves its connection as it found it.
	small := dbtest.PoolWith(t, func(c *pgxpool.Config) { c.MaxConns = 1 })
	log := dbtest.Must(service.New(small, &service.Opts{Clock: dbtest.Clock(now.Add(45 * 24 * time.Hour))}))
	rep, err := log.MaintainPartitions(b.ctx, small, service.MaintainOpts{})
	require.NoError(t, err)
	require.NotEmpty(t, rep.Dropped)
	for _, setting := range []string{"lock_timeout", "statement_timeout", "idle_in_transaction_session_timeout"} {
		var v string
		require.NoError(t, small.QueryRow(b.ctx, "SELECT current_setting($1)", setting).Scan(&v))
		require.Equal(t, "0", v, setting)
	}
}
