package faulttest

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/internal/dbtest"
)

// Database is a scenario's own migrated database on the shared test
// server (a clone of dbtest's template), dropped when the test ends, and
// the test's administrative access to it. Every statement the test runs
// through Exec after AfterFault counts as a human step: the scenarios
// only read once the fault is in, so their figure shows 0.
type Database struct {
	Name string
	// URL is the DATABASE_URL for auditlog subprocesses.
	URL  string
	Pool *pgxpool.Pool

	mu         sync.Mutex
	afterFault bool
	human      []string
}

// NewDatabase creates a scenario's database.
func NewDatabase(tb testing.TB) *Database {
	tb.Helper()
	ctx := context.Background()
	name, err := dbtest.CreateDatabase(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	url, err := dbtest.DatabaseURL(name)
	if err != nil {
		tb.Fatal(err)
	}
	cfg, err := dbtest.Config(name)
	if err != nil {
		tb.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		pool.Close()
		if err := dbtest.DropDatabase(context.Background(), name); err != nil {
			tb.Errorf("drop %s: %v", name, err)
		}
	})
	return &Database{Name: name, URL: url, Pool: pool}
}

// Exec runs a statement that changes something: setup before the fault,
// the fault itself, or, after AfterFault, a human step (counted).
func (d *Database) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	d.mu.Lock()
	if d.afterFault {
		d.human = append(d.human, sql)
	}
	d.mu.Unlock()
	return d.Pool.Exec(ctx, sql, args...)
}

// MustExec is Exec that fails tb on an error.
func (d *Database) MustExec(tb testing.TB, sql string, args ...any) pgconn.CommandTag {
	tb.Helper()
	tag, err := d.Exec(context.Background(), sql, args...)
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return tag
}

// Query runs a read; reads are never human steps.
func (d *Database) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return d.Pool.Query(ctx, sql, args...)
}

// Int runs a read returning one integer, failing tb on an error.
func (d *Database) Int(tb testing.TB, sql string, args ...any) int64 {
	tb.Helper()
	var n int64
	if err := d.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return n
}

// AfterFault marks the end of the fault: from now on every Exec counts
// as a human step.
func (d *Database) AfterFault() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.afterFault = true
}

// HumanSteps returns how many statements changed the database after the
// fault, and logs them.
func (d *Database) HumanSteps(tb testing.TB) int {
	tb.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.human {
		tb.Logf("human step after the fault: %s", s)
	}
	return len(d.human)
}

// Env returns the environment of an auditlog subprocess on this database:
// Env with DATABASE_URL and vars.
func (d *Database) Env(vars ...string) []string {
	return Env(append([]string{"DATABASE_URL=" + d.URL}, vars...)...)
}

// PartitionState reports whether table exists and whether it is attached
// to user_events.
func PartitionState(ctx context.Context, q Querier, table string) (exists, attached bool, err error) {
	rows, err := q.Query(ctx, `SELECT c.relispartition FROM pg_class c
		WHERE c.relname = $1 AND c.relnamespace = 'public'::regnamespace`, table)
	if err != nil {
		return false, false, fmt.Errorf("partition state: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		exists = true
		if err := rows.Scan(&attached); err != nil {
			return false, false, err
		}
	}
	return exists, attached, rows.Err()
}
