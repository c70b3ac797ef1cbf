package faults

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/faulttest"
	"github.com/auditlog/auditlog/jobs"
)

// TestFaultTwoPassesFourWriters runs two maintenance passes at once
// (`auditlog partitions maintain` twice) over expired months full of rows
// and events left in user_events_default, while four writers record one
// event at a time into the current month through the Go API. Writers may
// see no error but a typed retryable one (retried); both passes exit 0;
// each expired month is dropped and logged once; the default partition's
// rows are moved into a partition of their own; every acknowledged event
// and every in-window event from before is present exactly once.
// Recovery: from the passes' start to both done. The note gives the
// longest insert before the passes too.
func TestFaultTwoPassesFourWriters(t *testing.T) {
	ctx := faulttest.Context(t)
	faulttest.Binary(t) // built before the passes are timed
	db := faulttest.NewDatabase(t)
	log := newLog(t, db)
	baseline := recordBaseline(t, log, "faults-base", faulttest.Scale(1000, 10_000))
	var expired []string
	for back := range faulttest.Scale(1, 3) {
		expired = append(expired, expiredMonth(t, db, back, faulttest.Scale(30_000, 400_000)))
	}
	// Events of a month far ahead, which has no partition: they are in
	// user_events_default, and a pass must move them out, not lose them.
	far := faulttest.MonthStart(time.Now()).AddDate(0, 8, 0)
	db.MustExec(t, `INSERT INTO user_events (time, tag, user_id, actor_id, description)
		SELECT $1::timestamptz + make_interval(mins => g), 'account:password:change', 'faults-far',
		       'faults-base-far-' || lpad(g::text, 6, '0'), 'Changed the password'
		FROM generate_series(1, 100) g`, far)
	for i := 1; i <= 100; i++ {
		baseline.Ack(time.Now(), fmt.Sprintf("faults-base-far-%06d", i))
	}
	require.EqualValues(t, 100, db.Int(t, "SELECT count(*) FROM user_events_default"))
	env := db.Env()

	at := time.Now().UTC().Truncate(time.Microsecond)
	quiet := faulttest.NewLedger()
	w := faulttest.StartWriters(4, "faults-quiet", quiet, faulttest.GoUserWriter(log, "faults-writer", at, nil), nil)
	sleep(faulttest.Scale(time.Second, 5*time.Second))
	w.Stop(faulttest.Deadline())

	ledger := faulttest.NewLedger()
	writers := faulttest.StartWriters(4, "faults-writer", ledger, faulttest.GoUserWriter(log, "faults-writer", at, nil), nil)
	defer writers.Stop(faulttest.Deadline())
	sleep(faulttest.Scale(500*time.Millisecond, 2*time.Second))

	start := time.Now()
	var wg sync.WaitGroup
	outs := make([]string, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var errOut string
			outs[i], errOut, errs[i] = faulttest.Run(t, env, "partitions", "maintain")
			outs[i] += errOut
		}()
	}
	wg.Wait()
	passes := time.Since(start)
	db.AfterFault()
	sleep(faulttest.Scale(500*time.Millisecond, 2*time.Second))
	writers.Stop(faulttest.Deadline())

	for i := range 2 {
		require.NoError(t, errs[i], "pass %d: %s", i+1, outs[i])
		t.Logf("pass %d:\n%s", i+1, outs[i])
	}
	for _, name := range expired {
		exists, _, err := faulttest.PartitionState(ctx, db.Pool, name)
		require.NoError(t, err)
		require.False(t, exists, "%s has expired: dropped", name)
		require.EqualValues(t, 1, db.Int(t, "SELECT count(*) FROM retention_log WHERE partition_name = $1", name),
			"%s: one retention_log row", name)
	}
	require.Zero(t, db.Int(t, "SELECT count(*) FROM user_events_default"), "the default partition's rows moved out")

	o := countAfterFault(ctx, t, db, ledger, baseline)
	o.figure(t, db, ledger, baseline, "two passes, four writers", passes,
		fmt.Sprintf("recovery: both passes' run (%d expired months of %d rows, 100 rows in the default partition); longest insert without maintenance %s; attempts: %s",
			len(expired), faulttest.Scale(30_000, 400_000), quiet.LongestAttempt().Round(time.Millisecond), ledger.Summary())).Report(t)

	o.requireClean(t, db, "in-window events from before the passes")
}

// holdDropKey is the advisory lock the sql_drop event trigger of
// TestFaultWorkerKilledMidDrop waits for.
const holdDropKey = 0x66617574 // "faut"

// TestFaultWorkerKilledMidDrop kills `auditlog worker` with SIGKILL while
// a maintenance pass of River's (the job the hourly schedule inserts) is
// dropping a big expired month: its DROP TABLE has run and not committed.
// To stop the pass there, an event trigger set up before (on sql_drop, for
// that month only) waits for an advisory lock the test holds; the test
// sees the pass wait, kills the worker, lets go, and starts the worker
// again, as a supervisor would. Whatever the kill left (the month still
// attached, when the pass detaches and drops in one transaction, or
// detached), the start-up pass must drop it although the dead pass's job
// is still marked running (the rescue delay is longer than the wait), and
// log it in retention_log exactly once; in-window events, old and written
// meanwhile, are all there. Recovery: from the restart to the table gone.
func TestFaultWorkerKilledMidDrop(t *testing.T) {
	faulttest.RequireHeavy(t)
	ctx := faulttest.Context(t)
	db := faulttest.NewDatabase(t)
	log := newLog(t, db)
	baseline := recordBaseline(t, log, "faults-base", 20_000)

	// The restarted worker's River rescue is longer than the wait below:
	// only a start-up pass that runs beside the dead one can recover here.
	deadline := faulttest.Deadline()
	rescue := faulttest.RescueAfter(t, deadline+time.Minute)
	require.Greater(t, rescue, deadline, "the rescue must not come within the wait")
	env := serveEnv(db, "AUDITLOG_RESCUE_AFTER="+rescue.String())
	worker := faulttest.Start(t, env, "worker")
	awaitStartupPass(t, db) // nothing has expired yet

	const rows = 1_000_000
	month := expiredMonth(t, db, 0, rows)
	db.MustExec(t, fmt.Sprintf(`CREATE FUNCTION faults_hold_drop() RETURNS event_trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() WHERE object_type = 'table' AND object_name = '%s') THEN
				PERFORM pg_advisory_xact_lock_shared(%d);
			END IF;
		END $$`, month, holdDropKey))
	db.MustExec(t, "CREATE EVENT TRIGGER faults_hold_drop ON sql_drop EXECUTE FUNCTION faults_hold_drop()")
	at := time.Now().UTC().Truncate(time.Microsecond)
	ledger := faulttest.NewLedger()
	writers := faulttest.StartWriters(2, "faults-writer", ledger, faulttest.GoUserWriter(log, "faults-writer", at, nil), nil)
	defer writers.Stop(faulttest.Deadline())

	hold, err := db.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer hold.Release()
	_, err = hold.Exec(ctx, "SELECT pg_advisory_lock($1)", holdDropKey)
	require.NoError(t, err)
	// A pass as the hourly schedule starts one: a River job.
	inserter, err := river.NewClient(riverpgxv5.New(db.Pool), &river.Config{})
	require.NoError(t, err)
	_, err = inserter.Insert(ctx, jobs.PartitionMaintenanceArgs{}, nil)
	require.NoError(t, err)
	faulttest.Eventually(t, time.Minute, 2*time.Millisecond, "the pass dropping "+month, func() (bool, error) {
		return db.Int(t, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted`, holdDropKey) > 0, nil
	})
	worker.Kill()
	var deadJob int64
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT id FROM river_job
		WHERE kind = 'auditlog_partition_maintenance' AND state = 'running'`).Scan(&deadJob),
		"the killed pass is a River job, still marked running")
	_, err = hold.Exec(ctx, "SELECT pg_advisory_unlock($1)", holdDropKey)
	require.NoError(t, err)
	hold.Release()
	db.AfterFault()
	// The dead pass's session ends once it finds its client gone: its
	// transaction, which had not committed, rolls back.
	faulttest.Eventually(t, time.Minute, 20*time.Millisecond, "the killed pass's session to end", func() (bool, error) {
		return db.Int(t, `SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = $1`, month) == 0, nil
	})
	exists, attached, err := faulttest.PartitionState(ctx, db.Pool, month)
	require.NoError(t, err)
	left := "the month gone (the killed pass's drop had committed)"
	switch {
	case exists && attached:
		left = "the month attached (its detach rolled back with the drop)"
	case exists:
		left = "the month detached"
	}

	worker.Restart()
	var recovered time.Duration
	if exists {
		recovered = faulttest.Eventually(t, deadline, 10*time.Millisecond, month+" dropped after the restart", func() (bool, error) {
			exists, _, err := faulttest.PartitionState(ctx, db.Pool, month)
			return !exists, err
		})
	}
	faulttest.Eventually(t, time.Minute, 20*time.Millisecond, "its drop logged", func() (bool, error) {
		return db.Int(t, "SELECT count(*) FROM retention_log WHERE partition_name = $1", month) > 0, nil
	})
	sleep(2 * time.Second)
	writers.Stop(faulttest.Deadline())

	logged := db.Int(t, "SELECT count(*) FROM retention_log WHERE partition_name = $1", month)
	var deadState string
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT state FROM river_job WHERE id = $1", deadJob).Scan(&deadState))
	o := countAfterFault(ctx, t, db, ledger, baseline)
	o.figure(t, db, ledger, baseline, "worker killed mid-drop", recovered,
		fmt.Sprintf("the kill left %s; recovery: from the restart to the expired month (%d rows) dropped by the start-up pass, the dead pass's River job still %s (rescue delay %s); retention_log rows for it: %d; attempts: %s",
			left, rows, deadState, rescue, logged, ledger.Summary())).Report(t)

	require.EqualValues(t, 1, logged, "the drop is logged exactly once")
	o.requireClean(t, db, "in-window events")
	require.False(t, worker.Exited(), "the restarted worker keeps running")
}
