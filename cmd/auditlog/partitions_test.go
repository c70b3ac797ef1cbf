package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

// catalog dumps what partition maintenance may change: the user_events*
// relations and whether each is a partition, the rows and retention_log.
func (b *cliBundle) catalog(t *testing.T) []string {
	t.Helper()
	return append(b.strings(t, `SELECT format('%s oid=%s partition=%s', relname, oid, relispartition) FROM pg_class
		WHERE relname LIKE 'user\_events%' ORDER BY relname`),
		b.strings(t, "SELECT format('%s %s', tableoid::regclass, e) FROM user_events e ORDER BY id")...)
}

func TestPartitionsListAndMaintain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	now := time.Now().UTC()
	current := service.PartitionName(now)

	out := b.mustCLI(t, "partitions")
	require.Contains(t, out, "DROPPABLE FROM")
	require.Contains(t, out, current)
	require.Contains(t, out, service.PartitionName(now.AddDate(0, 3, 1-now.Day())))
	require.Contains(t, out, "user_events_default")

	// Seven months on, the current month would be dropped and three
	// months after that created: the plan says so and changes nothing.
	b.mustCLI(t, "record", "--tag", "account:login:success", "--subject", "u-1")
	before := b.catalog(t)
	later := now.AddDate(0, 7, 0)
	out = b.mustCLI(t, "partitions", "plan", "--now", later.Format("2006-01-02"))
	require.Contains(t, out, "would drop "+current+" ")
	require.Contains(t, out, "would create "+service.PartitionName(later.AddDate(0, 3, 1-later.Day())))
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Contains(t, lines[len(lines)-1], "nothing was changed")
	require.Equal(t, before, b.catalog(t))
	require.Empty(t, b.strings(t, "SELECT partition_name FROM retention_log"))

	// At the real clock, with nothing to do, the plan says so.
	out = b.mustCLI(t, "partitions", "plan")
	require.Contains(t, out, "nothing to do")
	require.Equal(t, before, b.catalog(t))

	// The real pass runs at the real clock: it fills a missing month and
	// drops a month that has expired by that clock.
	gap := service.PartitionName(now.AddDate(0, 2, 1-now.Day()))
	_, err := b.pool.Exec(b.ctx, "DROP TABLE "+gap)
	require.NoError(t, err)
	old := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).Add(-service.DefaultRetention).AddDate(0, -2, 0)
	old = time.Date(old.Year(), old.Month(), 1, 0, 0, 0, 0, time.UTC)
	_, err = b.pool.Exec(b.ctx, fmt.Sprintf("CREATE TABLE %s PARTITION OF user_events FOR VALUES FROM ('%s') TO ('%s')",
		service.PartitionName(old), old.Format(time.RFC3339), old.AddDate(0, 1, 0).Format(time.RFC3339)))
	require.NoError(t, err)
	start := time.Now()
	out = b.mustCLI(t, "partitions", "maintain")
	end := time.Now()
	require.Contains(t, out, "dropped "+service.PartitionName(old)+" ")
	require.Contains(t, out, "created "+gap)
	require.NotContains(t, out, "dropped "+current)

	out = b.mustCLI(t, "partitions")
	require.Contains(t, out, current)
	require.Contains(t, out, gap)
	require.NotContains(t, out, service.PartitionName(old))
	var name, reason string
	var droppedAt time.Time
	require.NoError(t, b.pool.QueryRow(b.ctx, "SELECT partition_name, reason, dropped_at FROM retention_log").Scan(&name, &reason, &droppedAt))
	require.Equal(t, service.PartitionName(old), name)
	require.Equal(t, "expired", reason)
	require.False(t, droppedAt.Before(start.Truncate(time.Microsecond)) || droppedAt.After(end), "dated by the real clock: %s", droppedAt)

	out = b.mustCLI(t, "partitions", "maintain")
	require.Contains(t, out, "nothing to do")
}

// A real pass never runs at an invented clock: --now is refused as a
// usage error before anything is read or changed.
func TestPartitionsMaintainRefusesNow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	b.mustCLI(t, "record", "--tag", "account:login:success", "--subject", "u-1")
	current := service.PartitionName(time.Now())
	later := time.Now().UTC().AddDate(0, 7, 0).Format("2006-01-02")
	before := b.catalog(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"partitions", "maintain", "--now", later}, "partitions plan --now " + later},
		{[]string{"partitions", "maintain", "-now=" + later}, "partitions plan --now " + later},
		{[]string{"partitions", "maintain", "--now="}, "partitions plan --now T"},
		{[]string{"partitions", "--now", later}, "partitions plan --now " + later},
	} {
		args := tc.args
		_, err := b.cli(t, args...)
		var ue *usageError
		require.True(t, errors.As(err, &ue), "%v: %v", args, err)
		require.Equal(t, 2, exitCode(err))
		require.Contains(t, err.Error(), tc.want)
		require.Equal(t, before, b.catalog(t), "%v changed nothing", args)
		require.Contains(t, b.strings(t, "SELECT tableoid::regclass::text FROM user_events"), current)
		require.Empty(t, b.strings(t, "SELECT partition_name FROM retention_log"))
	}
	_, err := b.cli(t, "partitions", "plan", "--now", "next tuesday")
	require.Equal(t, 2, exitCode(err))
}

func TestWorkerRunsMaintenanceAndStops(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	now := time.Now().UTC()
	missing := service.PartitionName(now.AddDate(0, 2, 1-now.Day()))
	_, err := b.pool.Exec(b.ctx, "DROP TABLE "+missing)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		var stderr strings.Builder
		errc <- run(ctx, []string{"worker", "--database-url", b.url}, func(string) string { return "" }, &strings.Builder{}, &stderr)
	}()
	// The pass at start recreates the missing month.
	dbtest.Eventually(t, func() bool { return dbtest.TableExists(t, b.pool, missing) }, 30*time.Second, 50*time.Millisecond,
		"the worker did not create %s", missing)
	cancel() // as SIGTERM does in main
	select {
	case err := <-errc:
		require.NoError(t, err)
	case <-time.After(40 * time.Second):
		t.Fatal("worker did not stop")
	}
}

// --ahead also tells recording which months must have a partition: a month
// beyond the last one is refused as invalid (ErrNoPartition, exit 2),
// unless --ahead keeps a partition for it, when its absence is
// ErrPartitionUnavailable (retry after the pass it asks for).
func TestRecordKnowsTheMonthsAhead(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	now := time.Now().UTC()
	beyond := time.Date(now.Year(), now.Month()+service.DefaultPartitionsAhead+1, 1, 12, 0, 0, 0, time.UTC).Format(time.RFC3339)
	rec := []string{"record", "--tag", "account:login:success", "--subject", "u-1", "--time", beyond}
	_, err := b.cli(t, rec...)
	require.ErrorIs(t, err, service.ErrNoPartition)
	_, err = b.cli(t, append(rec, "--ahead", fmt.Sprint(service.DefaultPartitionsAhead+1))...)
	require.ErrorIs(t, err, service.ErrPartitionUnavailable)
	require.Empty(t, b.strings(t, "SELECT id::text FROM user_events"))
}
