package warehousetest_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/internal/warehousetest"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// newWarehouse returns a pool on a fresh, empty database holding
// Warehouse's schema.
func newWarehouse(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	cfg, err := dbtest.Config(dbtest.EmptyDatabase(t))
	require.NoError(t, err)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, warehousetest.CreateSchema(ctx, pool))
	return pool
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), sql, args...).Scan(&n), sql)
	return n
}

func TestFill(t *testing.T) {
	ctx := context.Background()
	pool := newWarehouse(t)
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	cutoff := now.AddDate(0, -6, 0)
	c, err := warehousetest.Fill(ctx, pool, warehousetest.FillOpts{
		Events: 20000, Users: 300, Projects: 80, Orgs: 6,
		Cutoff: cutoff, Now: now, Seed: 42,
	})
	require.NoError(t, err)
	require.Equal(t, 20000, c.Total())
	require.Zero(t, count(t, pool, "SELECT count(*) FROM pg_namespace WHERE nspname = 'warehousetest_fill'"), "working tables left behind")

	// Parents and IP addresses.
	require.Equal(t, c.Users, count(t, pool, "SELECT count(*) FROM users"))
	require.Equal(t, c.Projects, count(t, pool, "SELECT count(*) FROM projects"))
	require.Equal(t, c.Releases, count(t, pool, "SELECT count(*) FROM releases"))
	require.Equal(t, c.Files, count(t, pool, "SELECT count(*) FROM release_files"))
	require.Equal(t, c.Orgs, count(t, pool, "SELECT count(*) FROM organizations"))
	require.Equal(t, c.Teams, count(t, pool, "SELECT count(*) FROM teams"))
	require.Equal(t, c.IPAddresses, count(t, pool, "SELECT count(*) FROM ip_addresses"))
	require.Equal(t, c.BannedIPs, count(t, pool, "SELECT count(*) FROM ip_addresses WHERE is_banned"))
	require.Equal(t, c.IPsWithoutGeo, count(t, pool, "SELECT count(*) FROM ip_addresses WHERE geoip_info IS NULL"))
	require.Positive(t, count(t, pool, "SELECT count(*) FROM ip_addresses WHERE family(ip_address) = 6"))

	var userOld int
	for _, table := range warehousetest.Tables {
		require.Equal(t, c.Events[table], count(t, pool, "SELECT count(*) FROM "+table), table)
		require.Equal(t, c.NoIP[table], count(t, pool, "SELECT count(*) FROM "+table+" WHERE ip_address_id IS NULL"), table)
		require.Positive(t, c.NoIP[table], table)
		rows, err := pool.Query(ctx, "SELECT tag, count(*), count(*) FILTER (WHERE time < $1) FROM "+table+" GROUP BY tag", cutoff)
		require.NoError(t, err)
		tags, old := map[string]int{}, map[string]int{}
		for rows.Next() {
			var tag string
			var n, o int
			require.NoError(t, rows.Scan(&tag, &n, &o))
			tags[tag], old[tag] = n, o
		}
		require.NoError(t, rows.Err())
		require.Equal(t, c.Tags[table], tags, table)
		require.Equal(t, c.Old[table], old, table)
		// Nothing in the future or before Since.
		require.Zero(t, count(t, pool, "SELECT count(*) FROM "+table+" WHERE time >= $1 OR time < $2", now, c.Since), table)
		if table == "user_events" {
			for _, n := range old {
				userOld += n
			}
		}
	}
	require.Equal(t, userOld, c.OldTotal("user_events"))
	// About a third of the user events lie before the cutoff.
	require.InDelta(t, 1.0/3, float64(userOld)/float64(c.Events["user_events"]), 0.01)
	require.Equal(t, c.UserOld()["account:login:success"],
		count(t, pool, "SELECT count(*) FROM user_events WHERE tag = 'account:login:success' AND time < $1", cutoff))

	// Payloads as Warehouse writes them.
	require.Zero(t, count(t, pool, `SELECT count(*) FROM user_events WHERE tag = 'account:login:failure' AND NOT additional ? 'reason'`))
	require.Zero(t, count(t, pool, `SELECT count(*) FROM user_events WHERE tag = 'account:two_factor:method_added' AND NOT additional ? 'method'`))
	require.Zero(t, count(t, pool, `SELECT count(*) FROM file_events WHERE tag = 'file:add' AND NOT additional ?& array['filename', 'submitted_by', 'canonical_version', 'project_id']`))
	require.Zero(t, count(t, pool, `SELECT count(*) FROM file_events e JOIN release_files f ON f.id = e.source_id WHERE e.tag = 'file:add' AND e.additional->>'filename' <> f.filename`))
	require.Positive(t, count(t, pool, `SELECT count(*) FROM project_events WHERE additional->>'submitted_by' = 'OpenID created token'`))
	require.Zero(t, count(t, pool, `SELECT count(*) FROM team_events e JOIN teams t ON t.id = e.source_id WHERE e.additional->>'team_name' <> t.name`))
	// geoip_info is copied from the IP, as record_event does, and absent
	// when there is no IP.
	require.Zero(t, count(t, pool, `SELECT count(*) FROM user_events e JOIN ip_addresses i ON i.id = e.ip_address_id
		WHERE i.geoip_info IS DISTINCT FROM e.additional->'geoip_info'`))
	require.Zero(t, count(t, pool, `SELECT count(*) FROM user_events WHERE ip_address_id IS NULL AND additional ? 'geoip_info'`))
	require.Positive(t, count(t, pool, `SELECT count(*) FROM user_events WHERE additional->'geoip_info' ?& array['city', 'region', 'country_code', 'country_name', 'continent_code']`))
	require.Positive(t, count(t, pool, `SELECT count(*) FROM user_events WHERE additional->'user_agent_info'->>'installer' = 'Browser'`))

	// The same seed gives the same rows.
	var digest string
	require.NoError(t, pool.QueryRow(ctx, `SELECT md5(string_agg(id::text || tag || time::text || coalesce(additional::text, ''), ',' ORDER BY id)) FROM user_events`).Scan(&digest))
	again := newWarehouse(t)
	_, err = warehousetest.Fill(ctx, again, warehousetest.FillOpts{
		Events: 20000, Users: 300, Projects: 80, Orgs: 6, Cutoff: cutoff, Now: now, Seed: 42,
	})
	require.NoError(t, err)
	var digest2 string
	require.NoError(t, again.QueryRow(ctx, `SELECT md5(string_agg(id::text || tag || time::text || coalesce(additional::text, ''), ',' ORDER BY id)) FROM user_events`).Scan(&digest2))
	require.Equal(t, digest, digest2)
}

func TestFillRejects(t *testing.T) {
	pool := newWarehouse(t)
	now := time.Now()
	_, err := warehousetest.Fill(context.Background(), pool, warehousetest.FillOpts{Events: 10, Now: now, Cutoff: now.Add(time.Hour)})
	require.Error(t, err)
	_, err = warehousetest.Fill(context.Background(), pool, warehousetest.FillOpts{})
	require.Error(t, err)
}

// TestFill1M times a million-event fill; run it with WAREHOUSE_FILL_1M=1
// (and WAREHOUSE_FILL_WORKERS=N for other than two connections).
func TestFill1M(t *testing.T) {
	if os.Getenv("WAREHOUSE_FILL_1M") == "" {
		t.Skip("set WAREHOUSE_FILL_1M=1 to time a 1,000,000-event fill")
	}
	pool := newWarehouse(t)
	start := time.Now()
	o := warehousetest.FillOpts{Events: 1_000_000, Seed: 1, Workers: 2}
	if w, err := strconv.Atoi(os.Getenv("WAREHOUSE_FILL_WORKERS")); err == nil {
		o.Workers = w
	}
	c, err := warehousetest.Fill(context.Background(), pool, o)
	require.NoError(t, err)
	t.Logf("filled %d events (%d users, %d projects, %d files, %d IPs) with %d workers in %s",
		c.Total(), c.Users, c.Projects, c.Files, c.IPAddresses, o.Workers,
		time.Since(start).Round(time.Millisecond))
	require.Equal(t, 1_000_000, count(t, pool, `SELECT (SELECT count(*) FROM user_events) + (SELECT count(*) FROM project_events)
		+ (SELECT count(*) FROM file_events) + (SELECT count(*) FROM organization_events) + (SELECT count(*) FROM team_events)`))
}
