package faults

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/internal/faulttest"
	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/service"
)

func TestMain(m *testing.M) {
	code := dbtest.Main(m)
	faulttest.Cleanup()
	os.Exit(code)
}

// secret signs serve's viewer tokens; the scenarios use ingest tokens only.
const secret = "faults-secret-faults-secret-0123456789"

// retention is the window every scenario runs with (the default).
const retention = service.DefaultRetention

// newLog returns a Log over db as a Go host would build one to record
// events: the default options and River's insert-only enqueuer, so that
// it can ask the workers for a maintenance pass.
func newLog(t *testing.T, db *faulttest.Database) *service.Log {
	t.Helper()
	cfg := db.Pool.Config()
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	enq, err := jobs.NewEnqueuer(pool)
	require.NoError(t, err)
	return dbtest.Must(service.New(pool, &service.Opts{Enqueuer: enq}))
}

// recordBaseline records n user events of other people through the Go
// API, spread over the last 60 days (inside the window), under markers
// prefix-NNNNNN, and returns their ledger: events that existed before the
// fault and must survive it.
func recordBaseline(t *testing.T, log *service.Log, prefix string, n int) *faulttest.Ledger {
	t.Helper()
	now := time.Now()
	ledger := faulttest.NewLedger()
	var markers []string
	ps := make([]service.EventParams, 0, 1000)
	flush := func() {
		if len(ps) == 0 {
			return
		}
		_, err := log.RecordUserMany(context.Background(), ps)
		require.NoError(t, err)
		ledger.Ack(time.Now(), markers...)
		ps, markers = ps[:0], markers[:0]
	}
	for i := range n {
		m := fmt.Sprintf("%s-%06d", prefix, i)
		ps = append(ps, service.EventParams{
			Tag: "account:password:change", Subject: fmt.Sprintf("faults-other-%03d", i%100), ActorID: m,
			Time: now.Add(-time.Duration(i%60)*24*time.Hour - time.Duration(i)*time.Second),
		})
		markers = append(markers, m)
		if len(ps) == cap(ps) {
			flush()
		}
	}
	flush()
	return ledger
}

// outcome is what a scenario counts by SQL after its fault.
type outcome struct {
	tally    faulttest.Tally // the writers' acknowledged events
	failures int             // writer errors other than typed retryable refusals
	samples  []string        // some of those errors
	wrongly  int             // baseline events that are gone
}

// countAfterFault counts the writers' events (markers faults-writer…)
// against ledger and the events from before the fault (faults-base…)
// against baseline.
func countAfterFault(ctx context.Context, t *testing.T, db *faulttest.Database, ledger, baseline *faulttest.Ledger) outcome {
	t.Helper()
	present, err := faulttest.CountMarkers(ctx, db.Pool, "faults-writer")
	require.NoError(t, err)
	o := outcome{tally: ledger.Tally(present, nil), wrongly: wronglyDeleted(t, db, baseline, "faults-base", nil)}
	o.failures, o.samples = ledger.Failures()
	return o
}

// figure is the scenario's figure with o's counts.
func (o outcome) figure(t *testing.T, db *faulttest.Database, ledger, baseline *faulttest.Ledger, scenario string, recovered time.Duration, note string) faulttest.Figure {
	return faulttest.Figure{
		Scenario: scenario, Acknowledged: o.tally.Acknowledged + baseline.Acked(), Lost: o.tally.Lost,
		Duplicated: o.tally.Duplicated, WronglyDeleted: o.wrongly, HumanSteps: db.HumanSteps(t),
		Recover: recovered, LongestInsert: ledger.LongestAttempt(), Note: note,
	}
}

// requireClean fails the scenario unless nothing was lost, doubled or
// wrongly deleted, the writers saw only typed retryable refusals, and no
// human step was taken; survivors says which baseline events had to
// survive.
func (o outcome) requireClean(t *testing.T, db *faulttest.Database, survivors string) {
	t.Helper()
	require.Zero(t, o.failures, "writers may see typed retryable refusals only: %v", o.samples)
	require.Zero(t, o.tally.Lost, "every acknowledged event present: %v", o.tally.Samples)
	require.Zero(t, o.tally.Duplicated, "no event twice: %v", o.tally.Samples)
	require.Zero(t, o.wrongly, "%s are all there", survivors)
	require.Zero(t, db.HumanSteps(t))
}

// wronglyDeleted counts the baseline events that are gone, leaving out
// those keep reports false for (nil: none left out).
func wronglyDeleted(t *testing.T, db *faulttest.Database, baseline *faulttest.Ledger, prefix string, keep func(string) bool) int {
	t.Helper()
	present, err := faulttest.CountMarkers(context.Background(), db.Pool, prefix)
	require.NoError(t, err)
	tally := baseline.Tally(present, keep)
	if tally.Lost > 0 || tally.Duplicated > 0 {
		t.Logf("baseline: %s: %s", tally, strings.Join(tally.Samples, "; "))
	}
	return tally.Lost + tally.Duplicated
}

// expiredMonth creates, by hand, the partition of the month back + 1
// months before the one the retention window starts in (so it has left
// the window: a pass must drop it) and fills it with rows events, and
// returns its name.
func expiredMonth(t *testing.T, db *faulttest.Database, back, rows int) string {
	t.Helper()
	start := faulttest.MonthStart(time.Now().Add(-retention)).AddDate(0, -1-back, 0)
	end := start.AddDate(0, 1, 0)
	name := faulttest.Partition(start)
	db.MustExec(t, fmt.Sprintf(`CREATE TABLE %s PARTITION OF user_events FOR VALUES FROM ('%s') TO ('%s')`,
		name, start.Format(time.RFC3339), end.Format(time.RFC3339)))
	fill(t, db, "faults-expired", start, end.Sub(start), rows)
	return name
}

// fill inserts rows events of user by SQL, dated from start over span,
// with an IP and a user agent (personal data an erasure must remove).
func fill(t *testing.T, db *faulttest.Database, user string, start time.Time, span time.Duration, rows int) {
	t.Helper()
	for done := 0; done < rows; done += 100_000 {
		db.MustExec(t, `INSERT INTO user_events (time, tag, user_id, ip, user_agent, description)
			SELECT $1::timestamptz + make_interval(secs => (g::bigint * 7919) % $2::bigint), 'account:login:success', $3,
			       ('192.0.2.' || (g % 250 + 1))::inet, 'faults-agent/1.0', 'Signed in'
			FROM generate_series($4::int, $5::int - 1) g`,
			start, int64(span.Seconds()), user, done, min(done+100_000, rows))
	}
	db.MustExec(t, "ANALYZE user_events")
}

// trapDefault records every row that reaches user_events_default in
// faults_default_hits (a row trigger, set up before the fault), so a
// scenario can say that no event reached it even if a pass moved it out
// again.
func trapDefault(t *testing.T, db *faulttest.Database) {
	t.Helper()
	db.MustExec(t, `CREATE TABLE faults_default_hits (actor_id text, time timestamptz, at timestamptz NOT NULL DEFAULT clock_timestamp())`)
	db.MustExec(t, `CREATE FUNCTION faults_default_hit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO faults_default_hits (actor_id, time) VALUES (NEW.actor_id, NEW.time); RETURN NULL; END $$`)
	db.MustExec(t, `CREATE TRIGGER faults_default_hit AFTER INSERT ON user_events_default
		FOR EACH ROW EXECUTE FUNCTION faults_default_hit()`)
}

// defaultHits counts the rows that reached user_events_default.
func defaultHits(t *testing.T, db *faulttest.Database) int64 {
	t.Helper()
	return db.Int(t, "SELECT count(*) FROM faults_default_hits")
}

// serve starts `auditlog serve` (with its workers) on db and returns it,
// its base URL and an ingest token per name.
func serve(t *testing.T, db *faulttest.Database, env []string, tokens ...string) (*faulttest.Proc, string, []string) {
	t.Helper()
	var toks []string
	for _, name := range tokens {
		toks = append(toks, faulttest.MustRun(t, env, "token", "--ingest", name))
	}
	p := faulttest.Start(t, env, "serve", "--addr", "127.0.0.1:0")
	return p, p.WaitOutput(faulttest.ServeURL, time.Minute), toks
}

// awaitStartupPass waits (at most 30 s) until a maintenance pass of the
// workers just started has completed, so the fault meets a settled
// service; it only logs when none is seen.
func awaitStartupPass(t *testing.T, db *faulttest.Database) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if db.Int(t, `SELECT count(*) FROM river_job WHERE kind = 'auditlog_partition_maintenance' AND state = 'completed'`) > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Log("no completed maintenance job seen within 30 s of start; going on")
}

// serveEnv is the environment of serve and worker on db.
func serveEnv(db *faulttest.Database, vars ...string) []string {
	return db.Env(append([]string{"AUDITLOG_SECRET=" + secret, "AUDITLOG_LOG_LEVEL=info"}, vars...)...)
}

// sleep waits d, the writers' time to write before or after a fault.
func sleep(d time.Duration) { time.Sleep(d) }
