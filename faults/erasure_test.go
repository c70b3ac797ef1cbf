package faults

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/faulttest"
)

const victim = "faults-victim"

// victimData gives the person to erase rows user events over the last 60
// days (with an IP and a user agent), and makes them the actor of other
// accounts' user events and of project events, which erasure scrubs but
// keeps. It returns how many events they acted in, per table.
func victimData(t *testing.T, db *faulttest.Database, rows int) (actedUser, actedProject int64) {
	t.Helper()
	fill(t, db, victim, time.Now().Add(-60*24*time.Hour), 59*24*time.Hour, rows)
	db.MustExec(t, `INSERT INTO user_events (time, tag, user_id, actor_id, ip, user_agent, description)
		SELECT now() - make_interval(mins => g), 'account:password:change', 'faults-acted-' || (g % 50), $1,
		       '198.51.100.7', 'faults-agent/1.0', 'Changed the password'
		FROM generate_series(1, 1000) g`, victim)
	db.MustExec(t, `INSERT INTO project_events (time, tag, project_id, actor_id, ip, user_agent, description)
		SELECT now() - make_interval(mins => g), 'project:create', 'faults-project-' || (g % 20), $1,
		       '198.51.100.7', 'faults-agent/1.0', 'Created the project'
		FROM generate_series(1, 2000) g`, victim)
	return actedCounts(t, db)
}

// actedCounts counts the events the person acted in that must survive
// their erasure (scrubbed, not deleted).
func actedCounts(t *testing.T, db *faulttest.Database) (user, project int64) {
	t.Helper()
	return db.Int(t, "SELECT count(*) FROM user_events WHERE actor_id = $1 AND user_id <> $1", victim),
		db.Int(t, "SELECT count(*) FROM project_events WHERE actor_id = $1", victim)
}

// erasureState reads the request's status and user events deleted so far.
func erasureState(t *testing.T, db *faulttest.Database, id int64) (status string, deleted int64, errText string) {
	t.Helper()
	var e *string
	require.NoError(t, db.Pool.QueryRow(context.Background(),
		"SELECT status, user_events_deleted, error FROM erasure_requests WHERE id = $1", id).Scan(&status, &deleted, &e))
	if e != nil {
		errText = *e
	}
	return status, deleted, errText
}

// requestErasure asks for the person's erasure with `auditlog erase`.
func requestErasure(t *testing.T, env []string, reason string) int64 {
	t.Helper()
	id, err := strconv.ParseInt(faulttest.MustRun(t, env, "erase", "--user", victim, "--reason", reason), 10, 64)
	require.NoError(t, err)
	return id
}

// awaitErasure waits until request id is done; a failed request, or an
// attempt that failed (retrying) when failedAttempts is false, fails the
// test at once.
func awaitErasure(t *testing.T, db *faulttest.Database, id int64, failedAttempts bool) (time.Duration, map[string]bool) {
	t.Helper()
	seen := map[string]bool{}
	took := faulttest.Eventually(t, faulttest.Deadline(), 20*time.Millisecond, fmt.Sprintf("erasure request %d done", id), func() (bool, error) {
		status, _, errText := erasureState(t, db, id)
		seen[status] = true
		switch {
		case status == "failed":
			return false, fmt.Errorf("the request failed: %s", errText)
		case status == "retrying" && !failedAttempts:
			return false, fmt.Errorf("an attempt failed: %s", errText)
		}
		return status == "done", nil
	})
	return took, seen
}

// checkErased runs `auditlog erasures --verify` and checks that the
// events the person acted in are all still there.
func checkErased(t *testing.T, db *faulttest.Database, env []string, id, actedUser, actedProject int64) {
	t.Helper()
	out, errOut, err := faulttest.Run(t, env, "erasures", "--verify", strconv.FormatInt(id, 10))
	require.NoError(t, err, "erasures --verify: %s%s", out, errOut)
	require.Contains(t, out, "clean:")
	require.Zero(t, db.Int(t, "SELECT count(*) FROM user_events WHERE user_id = $1", victim))
	u, p := actedCounts(t, db)
	require.Equal(t, actedUser, u, "other accounts' events the person acted in are scrubbed, not deleted")
	require.Equal(t, actedProject, p, "project events the person acted in are scrubbed, not deleted")
}

// TestFaultWorkerKilledMidErasure kills `auditlog worker` with SIGKILL in
// the middle of an erasure of a person with 300,000 events (the request
// running, some batches committed), and starts it again, as a supervisor
// would, with River's rescue delay at 15 s (AUDITLOG_RESCUE_AFTER; or just
// over the longest job timeout, if the worker refuses 15 s). The
// erasure must resume and finish by itself with exact counts,
// `auditlog erasures --verify` must find it clean, and no one else's
// events may be touched: two writers record other people's events
// throughout, and 20,000 earlier events of others stay. Recovery: from
// the restart to the request done.
func TestFaultWorkerKilledMidErasure(t *testing.T) {
	faulttest.RequireHeavy(t)
	ctx := faulttest.Context(t)
	db := faulttest.NewDatabase(t)
	log := newLog(t, db)
	baseline := recordBaseline(t, log, "faults-base", 20_000)
	const rows = 300_000
	actedUser, actedProject := victimData(t, db, rows)
	rescue := faulttest.RescueAfter(t, 15*time.Second)
	env := serveEnv(db, "AUDITLOG_RESCUE_AFTER="+rescue.String())

	ledger := faulttest.NewLedger()
	writers := faulttest.StartWriters(2, "faults-writer", ledger, faulttest.GoUserWriter(log, "faults-writer", time.Time{}, nil), nil)
	defer writers.Stop(faulttest.Deadline())

	id := requestErasure(t, env, "faults: worker killed mid-erasure")
	worker := faulttest.Start(t, env, "worker")
	var atKill int64
	faulttest.Eventually(t, time.Minute, 5*time.Millisecond, "the erasure running with batches committed", func() (bool, error) {
		status, deleted, _ := erasureState(t, db, id)
		if status == "done" {
			return false, fmt.Errorf("the erasure finished before the kill: give the person more events")
		}
		atKill = deleted
		return status == "running" && deleted > 0, nil
	})
	worker.Kill()
	db.AfterFault()
	status, deleted, _ := erasureState(t, db, id)
	require.Equal(t, "running", status, "the killed attempt leaves the request running")
	require.Less(t, deleted, int64(rows), "killed mid-erasure")

	worker.Restart()
	recovered, seen := awaitErasure(t, db, id, true)
	writers.Stop(faulttest.Deadline())
	checkErased(t, db, env, id, actedUser, actedProject)
	_, deleted, _ = erasureState(t, db, id)
	attempts := db.Int(t, "SELECT attempts FROM erasure_requests WHERE id = $1", id)

	o := countAfterFault(ctx, t, db, ledger, baseline)
	o.figure(t, db, ledger, baseline, "worker killed mid-erasure", recovered,
		fmt.Sprintf("recovery: from the restart (AUDITLOG_RESCUE_AFTER=%s) to the request done; killed after %d of %d user events were deleted; %d attempts; statuses seen after the restart: %v; verify clean",
			rescue, atKill, rows, attempts, keys(seen))).Report(t)

	require.EqualValues(t, rows, deleted, "the request's count is exact across the kill")
	o.requireClean(t, db, "other people's events")
}

// TestFaultTightStatementTimeout erases a person while the database's
// statement_timeout is 20 ms (ALTER DATABASE … SET statement_timeout,
// which every new session of the worker inherits; one 10,000-row batch of
// the erasure takes several times that): the erasure must adapt and
// finish, with no attempt failing, `auditlog erasures --verify` clean and
// the events the person acted in kept. Recovery: from the worker's start
// to the request done.
func TestFaultTightStatementTimeout(t *testing.T) {
	db := faulttest.NewDatabase(t)
	log := newLog(t, db)
	baseline := recordBaseline(t, log, "faults-base", faulttest.Scale(1000, 20_000))
	rows := faulttest.Scale(30_000, 300_000)
	actedUser, actedProject := victimData(t, db, rows)
	env := serveEnv(db)
	id := requestErasure(t, env, "faults: tight statement_timeout")

	db.MustExec(t, fmt.Sprintf("ALTER DATABASE %q SET statement_timeout = '20ms'", db.Name))
	db.AfterFault()
	faulttest.Start(t, env, "worker")
	took, seen := awaitErasure(t, db, id, false)
	checkErased(t, db, env, id, actedUser, actedProject)
	_, deleted, _ := erasureState(t, db, id)
	attempts := db.Int(t, "SELECT attempts FROM erasure_requests WHERE id = $1", id)
	wrongly := wronglyDeleted(t, db, baseline, "faults-base", nil)
	faulttest.Figure{
		Scenario: "tight statement_timeout", Acknowledged: baseline.Acked(), WronglyDeleted: wrongly,
		HumanSteps: db.HumanSteps(t), Recover: took,
		Note: fmt.Sprintf("statement_timeout 20ms on the database; recovery: from the worker's start to the request done (%d user events deleted, %d attempt(s), statuses seen: %v); verify clean",
			deleted, attempts, keys(seen)),
	}.Report(t)

	require.EqualValues(t, rows, deleted)
	require.Zero(t, wrongly, "other people's events are all there")
	require.Zero(t, db.HumanSteps(t))
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for _, s := range []string{"pending", "running", "retrying", "done", "failed"} {
		if m[s] {
			out = append(out, s)
		}
	}
	return out
}
