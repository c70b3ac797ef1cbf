package dbtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/service"
)

var now = sync.OnceValue(func() time.Time {
	real := time.Now().UTC()
	return time.Date(real.Year(), real.Month(), 15, 12, 0, 0, 0, time.UTC)
})

// Now is the tests' fixed time: noon on the 15th of the current UTC month,
// the same for the whole test process. Every database Migrate prepares
// has its month's partition, the next three and those of the retention
// window before it.
func Now() time.Time { return now() }

// Clock returns a clock (service.Opts.Clock) that always reads t.
func Clock(t time.Time) func() time.Time {
	return func() time.Time { return t }
}

// MonthStart returns the first instant of t's UTC month.
func MonthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// SignIn is the event most tests record: user signing in with a password
// at at (zero: at the Log's clock) from 192.0.2.10, in Berlin, with Firefox
// on Linux.
func SignIn(user string, at time.Time) service.EventParams {
	return service.EventParams{
		Tag: service.TagLoginSuccess, Subject: user, Time: at,
		ActorID: user, AuthMethod: "password", IP: "192.0.2.10",
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
		Location:  &service.Location{Country: "DE", City: "Berlin"},
	}
}

// Querier is what the helpers read and write with: a pool, a
// connection or a transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Count runs sql, a query of one integer (a count(*)), on q and returns
// its value; it fails tb when the query fails.
func Count(tb testing.TB, q Querier, sql string, args ...any) int {
	tb.Helper()
	var n int
	if err := q.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TableExists reports whether a relation named name (a table, a
// partition, a view) exists on q; it fails tb when the query fails.
func TableExists(tb testing.TB, q Querier, name string) bool {
	tb.Helper()
	var exists bool
	if err := q.QueryRow(context.Background(), "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil {
		tb.Fatalf("to_regclass(%s): %v", name, err)
	}
	return exists
}

// Raw is an event row written with SQL, past the API and its validation:
// a row older than the window, one in the default partition or in a
// detached monthly table, one of a tag no longer registered. Empty fields
// are NULL, or the column's default.
type Raw struct {
	// Table is user_events when empty: a table of its shape (a partition,
	// a detached month), or project_events.
	Table string
	// Time is now() when zero.
	Time time.Time
	// Tag is account:login:success when empty, and Description is then
	// "Signed in" when empty too.
	Tag string
	// Subject is the user_id, or the project_id in project_events.
	Subject                string
	ActorID, IP, UserAgent string
	// Location and Additional are JSON objects; Additional is {} when
	// empty.
	Location, Additional string
	Description          string
}

// InsertRaw writes r with one INSERT on q and returns the row's id; it
// fails tb when the insert fails.
func InsertRaw(tb testing.TB, q Querier, r Raw) int64 {
	tb.Helper()
	table, subject := r.Table, "user_id"
	if table == "" {
		table = "user_events"
	}
	if strings.HasPrefix(table, "project_events") {
		subject = "project_id"
	}
	if r.Tag == "" {
		r.Tag = service.TagLoginSuccess
		if r.Description == "" {
			r.Description = "Signed in"
		}
	}
	var at any
	if !r.Time.IsZero() {
		at = r.Time
	}
	sql := fmt.Sprintf(`INSERT INTO %s (time, tag, %s, actor_id, ip, user_agent, location, description, additional)
		VALUES (coalesce($1::timestamptz, now()), $2, $3, nullif($4, ''), nullif($5, '')::inet, nullif($6, ''),
			nullif($7, '')::jsonb, $8, coalesce(nullif($9, ''), '{}')::jsonb)
		RETURNING id`, pgx.Identifier{table}.Sanitize(), subject)
	var id int64
	err := q.QueryRow(context.Background(), sql, at, r.Tag, r.Subject, r.ActorID, r.IP, r.UserAgent,
		r.Location, r.Description, r.Additional).Scan(&id)
	if err != nil {
		tb.Fatalf("insert into %s: %v", table, err)
	}
	return id
}

// Eventually calls cond every tick until it reports true, and fails tb
// when waitFor passes first. Unlike testify's Eventually, it calls cond on
// the caller's goroutine, so cond may stop the test (require, Count).
func Eventually(tb testing.TB, cond func() bool, waitFor, tick time.Duration, msgAndArgs ...any) {
	tb.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met within %s%s", waitFor, message(msgAndArgs))
		}
		time.Sleep(tick)
	}
}

func message(msgAndArgs []any) string {
	if len(msgAndArgs) == 0 {
		return ""
	}
	if format, ok := msgAndArgs[0].(string); ok {
		return ": " + fmt.Sprintf(format, msgAndArgs[1:]...)
	}
	return ": " + fmt.Sprint(msgAndArgs...)
}

// SyncBuffer is an io.Writer whose text may be read while other
// goroutines write to it: a server's log, a command's output.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// Fixture is what a test of the service, the jobs or the CLI starts
// from: a fresh migrated database of its own and a Log over it whose
// clock reads Now.
type Fixture struct {
	Ctx  context.Context
	Pool *pgxpool.Pool
	Log  *service.Log
	Now  time.Time
}

// FixtureOpts configures NewFixture; the zero value gives a Log with the
// default options at Now().
type FixtureOpts struct {
	// Opts are the Log's options; a nil Clock reads Now.
	Opts service.Opts
	// Now is the fixture's time; Now() when zero.
	Now time.Time
	// Jobs gives the Log River's insert-only enqueuer on the fixture's
	// database (jobs.NewEnqueuer), as a host that runs the workers has.
	Jobs bool
	// Configure, when set, changes the pool's configuration first (a
	// query tracer, a connection limit).
	Configure func(*pgxpool.Config)
}

// NewFixture makes a fixture; its database is dropped when the test ends.
func NewFixture(tb testing.TB, o FixtureOpts) *Fixture {
	tb.Helper()
	pool := PoolWith(tb, o.Configure)
	f := &Fixture{Ctx: context.Background(), Pool: pool, Now: o.Now}
	if f.Now.IsZero() {
		f.Now = Now()
	}
	opts := o.Opts
	if opts.Clock == nil {
		opts.Clock = Clock(f.Now)
	}
	if o.Jobs {
		enq, err := jobs.NewEnqueuer(pool)
		if err != nil {
			tb.Fatal(err)
		}
		opts.Enqueuer = enq
	}
	f.Log = Must(service.New(pool, &opts))
	return f
}

// Record records p as an event of model through the fixture's Log and
// returns it; it fails tb when the Log refuses it.
func (f *Fixture) Record(tb testing.TB, model service.Model, p service.EventParams) service.Event {
	tb.Helper()
	e, err := f.Log.Record(f.Ctx, model, p)
	if err != nil {
		tb.Fatalf("record %s: %v", p.Tag, err)
	}
	return e
}

// Count is Count on the fixture's pool.
func (f *Fixture) Count(tb testing.TB, sql string, args ...any) int {
	tb.Helper()
	return Count(tb, f.Pool, sql, args...)
}

// Must returns v, and panics when err is set: for a constructor whose
// arguments a test fixes (service.New with static options), where an
// error is a mistake in the test itself.
func Must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// WriteFile writes text to a file named name in a directory of the
// test's own and returns its path.
func WriteFile(tb testing.TB, name, text string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// Tamper runs sql as a superuser would behind the service's back: in a
// transaction with session_replication_role = replica, so no trigger
// fires (neither the append-only rules nor the integrity log's change
// records). It fails tb when sql fails.
func Tamper(tb testing.TB, pool *pgxpool.Pool, sql string, args ...any) {
	tb.Helper()
	err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(context.Background(), "SET LOCAL session_replication_role = replica"); err != nil {
			return err
		}
		_, err := tx.Exec(context.Background(), sql, args...)
		return err
	})
	if err != nil {
		tb.Fatalf("tamper: %s: %v", sql, err)
	}
}
