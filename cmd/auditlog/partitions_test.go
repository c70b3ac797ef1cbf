package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/service"
)

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

	later := now.AddDate(0, 7, 0)
	out = b.mustCLI(t, "partitions", "maintain", "--now", later.Format("2006-01-02"))
	require.Contains(t, out, "dropped "+current+" ")
	require.Contains(t, out, "created "+service.PartitionName(later.AddDate(0, 3, 1-later.Day())))

	out = b.mustCLI(t, "partitions")
	require.NotContains(t, out, current)
	require.Equal(t, []string{"expired"}, b.strings(t, "SELECT DISTINCT reason FROM retention_log"))

	out = b.mustCLI(t, "partitions", "maintain", "--now", later.Format("2006-01-02"))
	require.Contains(t, out, "nothing to do")
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
	deadline := time.Now().Add(30 * time.Second)
	for {
		var exists bool
		require.NoError(t, b.pool.QueryRow(b.ctx, "SELECT to_regclass($1) IS NOT NULL", missing).Scan(&exists))
		if exists {
			break
		}
		require.True(t, time.Now().Before(deadline), "the worker did not create %s", missing)
		time.Sleep(50 * time.Millisecond)
	}
	cancel() // as SIGTERM does in main
	select {
	case err := <-errc:
		require.NoError(t, err)
	case <-time.After(40 * time.Second):
		t.Fatal("worker did not stop")
	}
}
