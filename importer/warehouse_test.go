package importer_test

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/importer"
	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/internal/warehousetest"
	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/service"
)

// warehouseEvents is how many events the Warehouse database of
// TestWarehouseImport holds: 30,000, or AUDITLOG_IMPORT_EVENTS (`make
// import-1m` runs it with 1,000,000).
func warehouseEvents(t *testing.T) int {
	if s := os.Getenv("AUDITLOG_IMPORT_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err)
		return n
	}
	return 30_000
}

// A Warehouse database (its own schema, realistic tags, IPs and GeoIP,
// a third of the user events older than the window) imports exactly the
// in-window user events and every kept-forever event, quietly; a second
// run records nothing; a run killed at a random point and resumed ends
// with the same counts.
func TestWarehouseImport(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name := dbtest.EmptyDatabase(t)
	cfg, err := dbtest.Config(name)
	require.NoError(t, err)
	src, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	defer src.Close()
	dsn, err := dbtest.DatabaseURL(name)
	require.NoError(t, err)
	now := dbtest.Now()
	require.NoError(t, warehousetest.CreateSchema(ctx, src))
	start := time.Now()
	counts, err := warehousetest.Fill(ctx, src, warehousetest.FillOpts{Events: warehouseEvents(t), Now: now,
		Cutoff: now.Add(-service.DefaultRetention), Seed: 7})
	require.NoError(t, err)
	t.Logf("filled %d Warehouse events in %.1f s", counts.Total(), time.Since(start).Seconds())
	wantExpired := int64(counts.OldTotal("user_events"))
	wantRecorded := int64(counts.Total()) - wantExpired

	c, err := service.BuiltinCatalog("package-index")
	require.NoError(t, err)
	reg, err := c.Registry()
	require.NoError(t, err)
	newLog := func(configure func(*pgxpool.Config)) *dbtest.Fixture {
		return dbtest.NewFixture(t, dbtest.FixtureOpts{Jobs: true, Now: now, Configure: configure, Opts: service.Opts{Registry: reg,
			Hooks: []service.Hook{{Name: jobs.HookNotify, Tag: "account:login:success"}}}})
	}

	f := newLog(nil)
	start = time.Now()
	res, err := importer.Warehouse(ctx, f.Log, dsn, importer.Options{Run: "warehouse"})
	require.NoError(t, err)
	took := time.Since(start)
	got := res.Run.Counts
	t.Logf("imported %d of %d events in %.1f s (%.0f/s); expired %d; refused %d", got.Recorded, got.Read, took.Seconds(),
		float64(got.Read)/took.Seconds(), got.Expired, got.Refused)
	for _, r := range got.Refusals {
		t.Logf("refused %s %s: %s", r.Source, r.SourceID, r.Reason)
	}
	require.Zero(t, got.Refused)
	require.Equal(t, int64(counts.Total()), got.Read)
	require.Equal(t, wantRecorded, got.Recorded)
	require.Equal(t, wantExpired, got.Expired)
	for tag, n := range counts.UserOld() {
		require.Equal(t, int64(n), got.ExpiredByTag[tag], tag)
	}
	stored := func(f *dbtest.Fixture) int64 {
		return int64(f.Count(t, `SELECT (SELECT count(*) FROM user_events WHERE tag <> 'admin:import') + (SELECT count(*) FROM project_events)`))
	}
	require.Equal(t, wantRecorded, stored(f))
	require.Zero(t, f.Count(t, `SELECT count(*) FROM river_job`), "no hook or notification job")
	require.Zero(t, f.Count(t, `SELECT count(*) FROM user_events WHERE tag IN ('account:login:new_location', 'account:login:failure_burst')`),
		"no signal")
	var wantIPs int
	require.NoError(t, src.QueryRow(ctx, `SELECT (SELECT count(*) FROM user_events WHERE ip_address_id IS NOT NULL AND time >= $1)
		+ (SELECT count(*) FROM project_events WHERE ip_address_id IS NOT NULL) + (SELECT count(*) FROM file_events WHERE ip_address_id IS NOT NULL)
		+ (SELECT count(*) FROM organization_events WHERE ip_address_id IS NOT NULL) + (SELECT count(*) FROM team_events WHERE ip_address_id IS NOT NULL)`,
		now.Add(-service.DefaultRetention).UTC()).Scan(&wantIPs))
	require.Equal(t, wantIPs, f.Count(t, `SELECT count(*) FROM (SELECT ip FROM user_events WHERE tag <> 'admin:import'
		UNION ALL SELECT ip FROM project_events) e WHERE ip IS NOT NULL`), "every IP kept")
	require.Positive(t, f.Count(t, `SELECT count(*) FROM user_events WHERE location->>'country' <> ''`), "GeoIP became the location")

	again, err := importer.Warehouse(ctx, f.Log, dsn, importer.Options{Run: "warehouse"})
	require.NoError(t, err)
	require.Zero(t, again.Run.Counts.Recorded, "a second run records nothing")
	require.Equal(t, wantRecorded, again.Run.Counts.Duplicates)
	require.Equal(t, wantRecorded, stored(f))

	// Killed at a random batch, then run again.
	killCtx, kill := context.WithCancel(ctx)
	defer kill()
	batches := int(wantRecorded/2_000) + 1
	killAt := 2 + rand.IntN(batches-2) // after one batch committed at least
	var saved atomic.Int64
	k := newLog(func(c *pgxpool.Config) {
		c.ConnConfig.Tracer = &afterSaves{n: killAt, kill: func() { saved.Store(1); kill() }}
	})
	_, err = importer.Warehouse(killCtx, k.Log, dsn, importer.Options{Run: "warehouse", Batch: 2_000})
	require.Error(t, err)
	require.Equal(t, int64(1), saved.Load())
	res, err = importer.Warehouse(ctx, k.Log, dsn, importer.Options{Run: "warehouse", Batch: 2_000})
	require.NoError(t, err)
	require.Positive(t, res.Resumed)
	t.Logf("killed after batch %d of about %d; resumed from row %d", killAt, batches, res.Resumed)
	require.Equal(t, got.Recorded, res.Run.Counts.Recorded)
	require.Equal(t, got.Expired, res.Run.Counts.Expired)
	require.Equal(t, got.ExpiredByTag, res.Run.Counts.ExpiredByTag)
	require.Zero(t, res.Run.Counts.Duplicates)
	require.Equal(t, wantRecorded, stored(k))
}
