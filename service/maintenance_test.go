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

	// 200 days later by the pass's clock: everything ending before
	// later − 90 days is dropped, and three months after later are made.
	later := b.now.Add(200 * 24 * time.Hour)
	rep, err := b.log.MaintainPartitions(b.ctx, service.MaintainOpts{Now: later})
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
	rep, err = b.log.MaintainPartitions(b.ctx, service.MaintainOpts{Now: later})
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
	rep, err := b.log.MaintainPartitions(b.ctx, service.MaintainOpts{Now: later})
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
	rep, err := b.log.MaintainPartitions(b.ctx, service.MaintainOpts{Now: b.now.Add(40 * 24 * time.Hour)})
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
	later := b.now.Add(60 * 24 * time.Hour)
	reps := make([]*service.MaintenanceReport, 2)
	var wg sync.WaitGroup
	for i := range reps {
		wg.Go(func() {
			var err error
			reps[i], err = b.log.MaintainPartitions(b.ctx, service.MaintainOpts{Now: later})
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
	rep, err := b.log.MaintainPartitions(b.ctx, service.MaintainOpts{Now: later})
	require.NoError(t, err)
	require.Contains(t, dropNames(rep), first+"/orphan")
	require.Zero(t, count(t, b.pool, "SELECT count(*) FROM pg_class WHERE relname = $1", first))
	require.Contains(t, b.partitions(t), current, "an in-window month is attached again")
	require.NotEmpty(t, rep.Warnings)
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
