package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/internal/warehousetest"
)

// import reads a JSON Lines file: it prints what it recorded, expired per
// tag and refused with the source id; a second run records nothing;
// --strict imports nothing from an input with a bad event; and the
// hostile cases are usage errors naming the flag.
func TestImportCommand(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	now := time.Now().UTC()
	lines := []string{
		fmt.Sprintf(`{"source": "old", "source_id": "1", "tag": "account:login:success", "user_id": "alice", "time": %q}`, now.Add(-time.Hour).Format(time.RFC3339)),
		fmt.Sprintf(`{"source": "old", "source_id": "2", "tag": "account:login:success", "user_id": "alice", "time": %q}`, now.AddDate(0, -8, 0).Format(time.RFC3339)),
		fmt.Sprintf(`{"source": "old", "source_id": "3", "tag": "project:release:add", "project_id": "demo", "additional": {"canonical_version": "1.0"}, "time": %q}`, now.AddDate(-2, 0, 0).Format(time.RFC3339)),
		fmt.Sprintf(`{"source": "old", "source_id": "4", "tag": "nope:nope", "user_id": "alice", "time": %q}`, now.Format(time.RFC3339)),
	}
	path := filepath.Join(t.TempDir(), "history.jsonl")
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600))

	_, stderr, err := b.cliAll(t, "import", "--strict", path)
	require.Error(t, err)
	require.Equal(t, 1, exitCode(err), "%s %v", stderr, err)
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM import_keys"), "--strict: nothing written")

	out := b.mustCLI(t, "import", path)
	require.Contains(t, out, "read 4 events: imported 2, duplicates 0, expired 1")
	require.Contains(t, out, "refused 1")
	require.Contains(t, out, "expired account:login:success: 1")
	require.Contains(t, out, "refused old 4 (tag):")
	out = b.mustCLI(t, "import", path)
	require.Contains(t, out, "imported 0, duplicates 2", "a second run records nothing")
	require.Equal(t, 1, dbtest.Count(t, b.pool, "SELECT count(*) FROM project_events"))

	for _, args := range [][]string{{"import"}, {"import", "a", "b"}, {"import", filepath.Dir(path)}, {"import", path + ".missing"},
		{"import", "--batch", "0", path}, {"import", "--warehouse-dsn", "postgres://x/y", path},
		{"import", "--warehouse-dsn", "postgres://x/y", "--source", "s"}} {
		_, stderr, err := b.cliAll(t, args...)
		require.Equal(t, 2, exitCode(err), "%v: %s", args, stderr)
	}
}

// import --warehouse-dsn reads a Warehouse database: what it imported,
// and the expired user events per tag.
func TestImportFromWarehouse(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	name := dbtest.EmptyDatabase(t)
	cfg, err := dbtest.Config(name)
	require.NoError(t, err)
	src, err := pgxpool.NewWithConfig(b.ctx, cfg)
	require.NoError(t, err)
	defer src.Close()
	require.NoError(t, warehousetest.CreateSchema(b.ctx, src))
	counts, err := warehousetest.Fill(b.ctx, src, warehousetest.FillOpts{Events: 2_000, Seed: 3})
	require.NoError(t, err)
	dsn, err := dbtest.DatabaseURL(name)
	require.NoError(t, err)
	out := b.mustCLI(t, "import", "--warehouse-dsn", dsn)
	expired := counts.OldTotal("user_events")
	require.Contains(t, out, fmt.Sprintf("read %d events: imported %d, duplicates 0, expired %d", counts.Total(), counts.Total()-expired, expired))
	out = b.mustCLI(t, "import", "--warehouse-dsn", dsn)
	require.Contains(t, out, fmt.Sprintf("imported 0, duplicates %d", counts.Total()-expired))
}
