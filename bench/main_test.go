// Package bench holds auditlog's benchmarks. Each compares auditlog with a
// baseline run in the same process, on the same rows and the same table,
// and reports the ratio with b.ReportMetric. Run them with `make bench`.
package bench

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/internal/dbtest"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// mustExec returns a function that runs a statement on pool and stops the
// benchmark when it fails.
func mustExec(b *testing.B, pool *pgxpool.Pool) func(sql string, args ...any) {
	return func(sql string, args ...any) {
		b.Helper()
		if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
			b.Fatalf("%s: %v", sql, err)
		}
	}
}

// warehouseTableSQL creates the baseline of the retention and erasure
// benchmarks: Warehouse's shape (one unpartitioned table with a uuid
// primary key) holding the same columns as user_events.
const warehouseTableSQL = `CREATE TABLE warehouse_user_events (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(), time timestamptz NOT NULL DEFAULT now(),
	tag text NOT NULL, user_id text NOT NULL, actor_id text, auth_method text, token_id text,
	actor_two_factor boolean, ip inet, user_agent text, location jsonb, description text NOT NULL,
	additional jsonb NOT NULL DEFAULT '{}')`

// warehouseCopySQL fills warehouse_user_events with user_events' rows in
// [$1, $2).
const warehouseCopySQL = `INSERT INTO warehouse_user_events (time, tag, user_id, actor_id, auth_method, token_id,
		actor_two_factor, ip, user_agent, location, description, additional)
	SELECT time, tag, user_id, actor_id, auth_method, token_id, actor_two_factor, ip, user_agent,
		location, description, additional
	FROM user_events WHERE time >= $1 AND time < $2`
