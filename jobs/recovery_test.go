package jobs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/service"
)

// The defaults make every job kind's timeout shorter than River's rescue
// delay (so no attempt is rescued while it runs), and the rescue delay
// short enough for a killed worker's jobs to run again within minutes;
// options that break the order are refused with a typed error.
func TestOptsTimeoutsAreBelowTheRescueDelay(t *testing.T) {
	t.Parallel()
	require.NoError(t, jobs.Opts{}.Validate())
	cfg := jobs.NewConfig(service.New(nil, nil), jobs.Opts{})
	require.Equal(t, jobs.DefaultRescueAfter, cfg.RescueStuckJobsAfter)
	require.LessOrEqual(t, jobs.DefaultRescueAfter, 5*time.Minute)
	for name, d := range map[string]time.Duration{
		"maintenance": jobs.DefaultMaintenanceTimeout,
		"erasure":     (&jobs.ErasureWorker{}).Timeout(nil),
		"hook":        (&jobs.HookWorker{}).Timeout(nil),
		"client":      cfg.JobTimeout,
	} {
		require.Less(t, d, jobs.DefaultRescueAfter, name)
	}
	require.Less(t, jobs.DefaultErasureBudget+service.DefaultErasureStatementTimeout, jobs.DefaultErasureTimeout,
		"an attempt hands over before River cuts it off, even in the middle of a batch")
	require.Equal(t, 3*time.Second, (&jobs.ErasureWorker{AttemptTimeout: 3 * time.Second}).Timeout(nil))
	require.Equal(t, 3*time.Second, (&jobs.HookWorker{AttemptTimeout: 3 * time.Second}).Timeout(nil))

	for _, tc := range []struct {
		opts jobs.Opts
		want string
	}{
		{jobs.Opts{RescueAfter: 4 * time.Minute}, "the maintenance timeout (4m0s) is not shorter than the rescue delay (4m0s)"},
		{jobs.Opts{RescueAfter: time.Minute, MaintenanceTimeout: time.Second, ErasureTimeout: time.Minute}, "the erasure timeout (1m0s)"},
		{jobs.Opts{RescueAfter: time.Minute, MaintenanceTimeout: time.Second, ErasureTimeout: 2 * time.Second, ErasureBudget: time.Second},
			"the hook timeout (1m0s)"},
		{jobs.Opts{ErasureBudget: 5 * time.Minute}, "the erasure budget (5m0s) is not shorter than the erasure timeout (4m0s)"},
	} {
		err := tc.opts.Validate()
		require.ErrorIs(t, err, jobs.ErrTimeouts)
		require.Contains(t, err.Error(), tc.want)
		_, err = jobs.NewClient(nil, service.New(nil, nil), tc.opts)
		require.ErrorIs(t, err, jobs.ErrTimeouts, "NewClient refuses it too")
	}
}

// A rescued erasure is retried within minutes whatever its attempt: the
// backoff is River's attempt⁴ seconds, capped.
func TestErasureRetryDelayIsCapped(t *testing.T) {
	t.Parallel()
	w := &jobs.ErasureWorker{}
	for errs, want := range map[int]time.Duration{0: time.Second, 2: 81 * time.Second, 4: jobs.ErasureMaxRetryDelay, 20: jobs.ErasureMaxRetryDelay} {
		job := &river.Job[jobs.ErasureArgs]{JobRow: &rivertype.JobRow{Errors: make([]rivertype.AttemptError, errs)}}
		before := time.Now()
		next := w.NextRetry(job)
		require.False(t, next.Before(before.Add(want)), "%d errors", errs)
		require.False(t, next.After(time.Now().Add(want)), "%d errors", errs)
	}
	require.Less(t, jobs.DefaultRescueAfter+30*time.Second+jobs.ErasureMaxRetryDelay, 10*time.Minute)

	// The attempts still ride out more than an hour of failures.
	require.Equal(t, jobs.ErasureMaxAttempts, jobs.ErasureArgs{}.InsertOpts().MaxAttempts)
	var span time.Duration
	for errs := range jobs.ErasureMaxAttempts - 1 {
		job := &river.Job[jobs.ErasureArgs]{JobRow: &rivertype.JobRow{Errors: make([]rivertype.AttemptError, errs)}}
		span += time.Until(w.NextRetry(job))
	}
	require.Greater(t, span, time.Hour)
}

// A worker killed in the middle of an erasure leaves its job running and
// the request running (its failure is never recorded). Another worker's
// River client rescues the job after the rescue delay (short here, through
// the option) and the erasure completes with exact counts.
func TestKilledErasureIsRescuedAndCompletes(t *testing.T) {
	t.Parallel()
	ctx, kill := context.WithCancel(context.Background())
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{Batch: 1, OnQuery: dbtest.AfterFirstBatch(kill)})
	req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "killed"})
	require.NoError(t, err)
	_, err = b.Log.RunErasure(ctx, req.ID, service.RunErasureOpts{})
	require.ErrorIs(t, err, context.Canceled)
	// What kill -9 leaves: the job running since its attempt began, the
	// request running, one batch committed and counted.
	_, err = b.Pool.Exec(b.Ctx, `UPDATE river_job SET state = 'running', attempt = 1,
		attempted_at = now() - interval '30 seconds', attempted_by = ARRAY['killed-worker'] WHERE kind = 'auditlog_erasure'`)
	require.NoError(t, err)
	_, err = b.Pool.Exec(b.Ctx, "UPDATE erasure_requests SET status = 'running', error = NULL WHERE id = $1", req.ID)
	require.NoError(t, err)
	got, err := b.Log.ErasureRequest(b.Ctx, req.ID)
	require.NoError(t, err)
	require.Equal(t, int64(1), got.UserEventsDeleted)
	require.Equal(t, "running", got.JobState)

	opts := jobs.Opts{
		RescueAfter: 10 * time.Second, MaintenanceTimeout: 5 * time.Second, ErasureTimeout: 5 * time.Second,
		ErasureBudget: 4 * time.Second, HookTimeout: 5 * time.Second,
	}
	require.NoError(t, opts.Validate())
	cfg := jobs.NewConfig(b.Log, opts)
	require.Equal(t, 10*time.Second, cfg.RescueStuckJobsAfter)
	cfg.PeriodicJobs = nil // no maintenance pass: it would drop the expired rows of alice's before the erasure counts them
	client, err := river.NewClient(riverpgxv5.New(b.Pool), cfg)
	require.NoError(t, err)
	require.NoError(t, client.Start(b.Ctx))
	t.Cleanup(func() { require.NoError(t, client.Stop(context.Background())) })

	deadline := time.Now().Add(90 * time.Second)
	for {
		got, err = b.Log.ErasureRequest(b.Ctx, req.ID)
		require.NoError(t, err)
		if got.Status == service.ErasureDone {
			break
		}
		require.NotEqual(t, service.ErasureFailed, got.Status)
		require.True(t, time.Now().Before(deadline), "the killed erasure was not rescued (status %s, job %s)", got.Status, got.JobState)
		time.Sleep(100 * time.Millisecond)
	}
	require.Equal(t, int64(8), got.UserEventsDeleted, "exact: the killed attempt's batch once, the rest by the rescued one")
	require.Equal(t, int64(1), got.UserEventsScrubbed)
	require.Equal(t, int64(3), got.ProjectEventsScrubbed)
	require.Equal(t, 2, got.Attempts)
	b.RequireErased(t, req.ID, "alice")
	var state string
	var errs []byte
	require.NoError(t, b.Pool.QueryRow(b.Ctx, "SELECT state, to_jsonb(errors)::text FROM river_job WHERE kind = 'auditlog_erasure'").Scan(&state, &errs))
	require.Contains(t, string(errs), "Stuck job rescued")
	require.Eventually(t, func() bool {
		require.NoError(t, b.Pool.QueryRow(b.Ctx, "SELECT state FROM river_job WHERE kind = 'auditlog_erasure'").Scan(&state))
		return state == "completed"
	}, 30*time.Second, 50*time.Millisecond)
}

// Two attempts of one request at once: the second finds the first holding
// the request's lock and ends at once, changing and recording nothing; the
// first finishes with exact counts.
func TestErasureAttemptsNeverOverlap(t *testing.T) {
	t.Parallel()
	var armed, sawCount, paused atomic.Bool
	g := newGate()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{Batch: 1, OnQuery: func(sql string) {
		if !armed.Load() {
			return
		}
		switch {
		case strings.Contains(sql, "name: ErasureRequestAddCount"):
			sawCount.Store(true)
		case sql == "commit" && sawCount.Load() && paused.CompareAndSwap(false, true):
			g.wait() // the first attempt has committed a batch, and waits
		}
	}})
	t.Cleanup(g.open)
	req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "twice"})
	require.NoError(t, err)
	armed.Store(true)
	first := make(chan error, 1)
	go func() {
		_, err := b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{})
		first <- err
	}()
	<-g.reached
	row := "SELECT row_to_json(r)::text FROM erasure_requests r WHERE id = $1"
	var before, after string
	require.NoError(t, b.Pool.QueryRow(b.Ctx, row, req.ID).Scan(&before))

	rep, err := b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{})
	require.ErrorIs(t, err, service.ErrErasureBusy)
	require.Zero(t, rep.Rows())
	require.NoError(t, b.Pool.QueryRow(b.Ctx, row, req.ID).Scan(&after))
	require.Equal(t, before, after, "the second attempt touched nothing, not even its attempt count")
	require.Equal(t, 7, b.AliceLeft(t), "only the first attempt's batch is gone")

	g.open()
	require.NoError(t, <-first)
	got, err := b.Log.ErasureRequest(b.Ctx, req.ID)
	require.NoError(t, err)
	require.Equal(t, service.ErasureDone, got.Status)
	require.Equal(t, 1, got.Attempts)
	require.Equal(t, int64(8), got.UserEventsDeleted)
	require.Equal(t, int64(1), got.UserEventsScrubbed)
	require.Equal(t, int64(3), got.ProjectEventsScrubbed)
	b.RequireErased(t, req.ID, "alice")

	// The lock went with the attempt: the next one runs.
	again, err := b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	require.Zero(t, again.Rows())
}

// An attempt whose connection was lost (its lock went with it) while a
// new attempt has started since records its failure without overwriting
// the newer attempt's status; the newer one finishes with exact counts.
func TestStaleAttemptFailureLeavesTheNewerAttempt(t *testing.T) {
	t.Parallel()
	var armed atomic.Bool
	var firstPID atomic.Uint32
	var counted sync.Map // pid → an AddCount ran on it
	var secondPaused atomic.Bool
	firstGate, secondGate := newGate(), newGate()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{Batch: 1, OnConnQuery: func(conn *pgx.Conn, sql string) {
		if !armed.Load() {
			return
		}
		pid := conn.PgConn().PID()
		if strings.Contains(sql, "name: ErasureRequestAddCount") {
			counted.Store(pid, true)
		}
		if _, ok := counted.Load(pid); !ok || sql != "commit" {
			return
		}
		switch {
		case firstPID.CompareAndSwap(0, pid):
			firstGate.wait()
		case pid != firstPID.Load() && secondPaused.CompareAndSwap(false, true):
			secondGate.wait()
		}
	}})
	t.Cleanup(firstGate.open)
	t.Cleanup(secondGate.open)
	req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "lost"})
	require.NoError(t, err)
	armed.Store(true)
	first := make(chan error, 1)
	go func() {
		_, err := b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{})
		first <- err
	}()
	<-firstGate.reached
	var terminated bool
	require.NoError(t, b.Pool.QueryRow(b.Ctx, "SELECT pg_terminate_backend($1, 10000)", int32(firstPID.Load())).Scan(&terminated))
	require.True(t, terminated, "the first attempt's session, and its lock, are gone")
	second := make(chan error, 1)
	go func() {
		_, err := b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{})
		second <- err
	}()
	<-secondGate.reached
	firstGate.open()
	require.Error(t, <-first, "the first attempt lost its connection")
	got, err := b.Log.ErasureRequest(b.Ctx, req.ID)
	require.NoError(t, err)
	require.Equal(t, service.ErasureRunning, got.Status, "the second attempt is running: the first's failure is not written over it")
	require.Empty(t, got.Error)
	require.Equal(t, 2, got.Attempts)

	secondGate.open()
	require.NoError(t, <-second)
	got, err = b.Log.ErasureRequest(b.Ctx, req.ID)
	require.NoError(t, err)
	require.Equal(t, service.ErasureDone, got.Status)
	require.Equal(t, int64(8), got.UserEventsDeleted)
	require.Equal(t, int64(1), got.UserEventsScrubbed)
	require.Equal(t, int64(3), got.ProjectEventsScrubbed)
	b.RequireErased(t, req.ID, "alice")
}

// An attempt that has used its time budget while making progress stops
// between two batches with ErrErasureYielded: its batches are committed
// and counted, the request stays running without an error, and the next
// attempt continues; the last one finishes with exact counts.
func TestErasureYieldsWhenItsBudgetIsUsed(t *testing.T) {
	t.Parallel()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{Batch: 2})
	req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "budget"})
	require.NoError(t, err)
	var yields int
	var changed int64
	for {
		// Any batch takes longer than a nanosecond: every attempt does one.
		rep, err := b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{Budget: time.Nanosecond})
		changed += rep.Rows()
		if errors.Is(err, service.ErrErasureYielded) {
			yields++
			require.Positive(t, rep.Rows(), "an attempt hands over only after progress")
			require.Equal(t, service.ErasureRunning, rep.Request.Status)
			require.Empty(t, rep.Request.Error)
			require.Less(t, yields, 100)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, service.ErasureDone, rep.Request.Status)
		break
	}
	// Batches of 2 that change rows: 2 in this month's partition, one in
	// each of 4 other tables, 1 scrub, 2 of project events. Each attempt
	// runs one, then hands over; the last finds nothing left.
	require.Equal(t, 9, yields)
	require.Equal(t, int64(8+1+3), changed)
	got, err := b.Log.ErasureRequest(b.Ctx, req.ID)
	require.NoError(t, err)
	require.Equal(t, int64(8), got.UserEventsDeleted)
	require.Equal(t, int64(1), got.UserEventsScrubbed)
	require.Equal(t, int64(3), got.ProjectEventsScrubbed)
	require.Equal(t, yields+1, got.Attempts)
	b.RequireErased(t, req.ID, "alice")
}

// Through River: each attempt that used its budget is snoozed, which does
// not count as an attempt, and the job completes on its first attempt
// with no error recorded.
func TestErasureJobSnoozesAtItsBudget(t *testing.T) {
	t.Parallel()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{Batch: 2})
	req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "budget"})
	require.NoError(t, err)
	workers := river.NewWorkers()
	river.AddWorker(workers, &jobs.ErasureWorker{Eraser: b.Log, Budget: time.Nanosecond})
	job := runFirstJob(t, b.Pool, workers)
	require.Equal(t, 1, job.Attempt)
	require.Empty(t, job.Errors)
	var meta struct {
		Snoozes int                `json:"snoozes"`
		Output  jobs.ErasureOutput `json:"output"`
	}
	require.NoError(t, json.Unmarshal(job.Metadata, &meta))
	require.Equal(t, 9, meta.Snoozes, "as many as the attempts that handed over in TestErasureYieldsWhenItsBudgetIsUsed")
	require.Equal(t, jobs.ErasureOutput{BatchSize: 2, Outcome: "done"}, meta.Output, "the last attempt found nothing left")
	got, err := b.Log.ErasureRequest(b.Ctx, req.ID)
	require.NoError(t, err)
	require.Equal(t, service.ErasureDone, got.Status)
	require.Equal(t, int64(8), got.UserEventsDeleted)
	b.RequireErased(t, req.ID, "alice")
}

// gate holds the goroutine that calls wait until the test opens it; a
// test opens its gates in a cleanup registered after the database's, so
// a failing test never leaves a connection blocked in a query tracer.
type gate struct {
	reached, opened       chan struct{}
	reachOnce, openedOnce sync.Once
}

func newGate() *gate { return &gate{reached: make(chan struct{}), opened: make(chan struct{})} }

func (g *gate) wait() {
	g.reachOnce.Do(func() { close(g.reached) })
	<-g.opened
}

func (g *gate) open() { g.openedOnce.Do(func() { close(g.opened) }) }

// fakeEraser answers RunErasure with a fixed outcome and keeps the
// options it was given.
type fakeEraser struct {
	rep  *service.ErasureReport
	err  error
	opts service.RunErasureOpts
}

func (f *fakeEraser) RunErasure(_ context.Context, _ int64, opts service.RunErasureOpts) (*service.ErasureReport, error) {
	f.opts = opts
	return f.rep, f.err
}

// The worker snoozes an attempt that used its budget (at once) or found
// another attempt working, records the batch size it ended at as the
// job's output, starts from the previous attempt's batch size, and passes
// its budget and statement timeout.
func TestErasureWorkerOutcomes(t *testing.T) {
	t.Parallel()
	pool := dbtest.Pool(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		err     error
		kind    river.EventKind
		outcome string
	}{
		{"used its budget", fmt.Errorf("erasure 1: %w", service.ErrErasureYielded), river.EventKindJobSnoozed, "continues"},
		{"another attempt works", fmt.Errorf("erasure 1: %w", service.ErrErasureBusy), river.EventKindJobSnoozed, ""},
		{"failed", errors.New("erasure 1: boom"), river.EventKindJobFailed, "failed"},
		{"done", nil, river.EventKindJobCompleted, "done"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeEraser{rep: &service.ErasureReport{BatchSize: 3, Counts: map[string]int64{"project_events:scrubbed": 7}}, err: tc.err}
			w := rivertest.NewWorker(t, riverpgxv5.New(pool), &river.Config{},
				&jobs.ErasureWorker{Eraser: f, Budget: time.Minute, StatementTimeout: 2 * time.Second})
			tx, err := pool.Begin(ctx)
			require.NoError(t, err)
			defer tx.Rollback(ctx)
			res, err := w.Work(ctx, t, tx, jobs.ErasureArgs{RequestID: 1},
				&river.InsertOpts{Metadata: []byte(`{"output": {"batch_size": 5, "rows_changed": 9, "outcome": "failed"}}`)})
			if tc.kind == river.EventKindJobFailed {
				require.Error(t, err)
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tc.kind, res.EventKind)
			require.Equal(t, service.RunErasureOpts{Budget: time.Minute, Batch: 5, StatementTimeout: 2 * time.Second}, f.opts)
			var meta struct {
				Output jobs.ErasureOutput `json:"output"`
			}
			require.NoError(t, json.Unmarshal(res.Job.Metadata, &meta))
			want := jobs.ErasureOutput{BatchSize: 3, RowsChanged: 7, Outcome: tc.outcome}
			if tc.outcome == "" {
				want = jobs.ErasureOutput{BatchSize: 5, RowsChanged: 9, Outcome: "failed"} // untouched
			}
			require.Equal(t, want, meta.Output)
			if tc.kind == river.EventKindJobSnoozed {
				require.Equal(t, 0, res.Job.Attempt, "a snooze is not an attempt")
			}
		})
	}
}

// slowUpdates makes every UPDATE of project_events sleep far past any
// statement timeout once the transaction has updated more than after rows
// (a counter local to the transaction), and records the statement and lock
// timeouts and the client connection check interval in force at each row
// in timeouts_seen.
func slowUpdates(t *testing.T, b *dbtest.Erasure, after int) {
	t.Helper()
	_, err := b.Pool.Exec(b.Ctx, fmt.Sprintf(`
		CREATE TABLE timeouts_seen (statement_timeout text, lock_timeout text, check_interval text, pid integer);
		CREATE FUNCTION slow_update() RETURNS trigger LANGUAGE plpgsql AS $$
		DECLARE n int := coalesce(nullif(current_setting('auditlog_test.rows', true), ''), '0')::int + 1;
		BEGIN
			PERFORM set_config('auditlog_test.rows', n::text, true);
			INSERT INTO timeouts_seen VALUES (current_setting('statement_timeout'), current_setting('lock_timeout'),
			current_setting('client_connection_check_interval'), pg_backend_pid());
			IF n > %d THEN PERFORM pg_sleep(600); END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER slow_update BEFORE UPDATE ON project_events FOR EACH ROW EXECUTE FUNCTION slow_update();`, after))
	require.NoError(t, err)
}

// moreProjectEvents records n more project events alice acted in.
func moreProjectEvents(t *testing.T, b *dbtest.Erasure, n int) {
	t.Helper()
	ps := make([]service.EventParams, n)
	for i := range ps {
		ps[i] = service.EventParams{Tag: "project:release:add", Subject: "many", ActorID: "alice", IP: "192.0.2.10",
			Additional: json.RawMessage(fmt.Sprintf(`{"version": "3.%d"}`, i))}
	}
	_, err := b.Log.RecordProjectMany(b.Ctx, ps)
	require.NoError(t, err)
}

// A batch statement that runs out of the statement timeout is rolled back
// and run again with half the batch, without failing the attempt: here
// updates of more than 3 rows in one transaction never end, so batches of
// 16 become 8, 4, then 2, which pass. The erasure completes with exact
// counts, reports and logs the batch size it ended at, and the request
// never fails.
func TestErasureHalvesBatchesThatTimeOut(t *testing.T) {
	t.Parallel()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{})
	moreProjectEvents(t, b, 20)
	slowUpdates(t, b, 3)
	var logs bytes.Buffer
	log := service.New(b.Pool, &service.Opts{Clock: dbtest.Clock(b.Now), ErasureBatch: 16,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "slow"})
	require.NoError(t, err)

	rep, err := log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{StatementTimeout: time.Second})
	require.NoError(t, err)
	require.Equal(t, 2, rep.BatchSize)
	require.Equal(t, service.ErasureDone, rep.Request.Status)
	require.Empty(t, rep.Request.Error)
	require.Equal(t, 1, rep.Request.Attempts)
	require.Equal(t, int64(8), rep.Request.UserEventsDeleted)
	require.Equal(t, int64(1), rep.Request.UserEventsScrubbed)
	require.Equal(t, int64(23), rep.Request.ProjectEventsScrubbed)
	require.Equal(t, int64(23), rep.Counts["project_events:scrubbed"])
	for _, step := range []string{"from=16 to=8", "from=8 to=4", "from=4 to=2"} {
		require.Contains(t, logs.String(), "msg=\"erasure batch ran out of its statement timeout; halving the batch\" request="+fmt.Sprint(req.ID)+
			" table=project_events:scrubbed "+step+" statement_timeout=1s")
	}
	require.Equal(t, 3, strings.Count(logs.String(), "halving the batch"))
	require.NotContains(t, logs.String(), "alice", "the log never names the person")
	require.Zero(t, b.Count(t, `SELECT count(*) FROM project_events WHERE actor_id = 'alice' AND ip IS NOT NULL`))
	v, err := b.Log.VerifyErasure(b.Ctx, req.ID)
	require.NoError(t, err)
	require.True(t, v.Clean, "problems: %v", v.Problems)
}

// Only when a batch of one row times out does the attempt fail: the
// request is retrying with the error, what committed before stays
// counted, and the next attempt (the table no longer slow) finishes.
func TestErasureFailsWhenOneRowTimesOut(t *testing.T) {
	t.Parallel()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{Batch: 4})
	slowUpdates(t, b, 0)
	req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "slow"})
	require.NoError(t, err)
	rep, err := b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{StatementTimeout: 300 * time.Millisecond})
	require.Error(t, err)
	require.Contains(t, err.Error(), "project_events:scrubbed: even a batch of one row ran out of the statement timeout (300ms)")
	require.Contains(t, err.Error(), "SQLSTATE 57014")
	require.Equal(t, 1, rep.BatchSize)
	require.Equal(t, service.ErasureRetrying, rep.Request.Status)
	require.Contains(t, rep.Request.Error, "statement timeout")
	require.Equal(t, int64(8), rep.Request.UserEventsDeleted, "the batches before stay committed and counted")
	require.Zero(t, rep.Request.ProjectEventsScrubbed)

	_, err = b.Pool.Exec(b.Ctx, "DROP TRIGGER slow_update ON project_events")
	require.NoError(t, err)
	rep, err = b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{Batch: rep.BatchSize})
	require.NoError(t, err)
	require.Equal(t, 1, rep.BatchSize)
	require.Equal(t, int64(3), rep.Request.ProjectEventsScrubbed)
	require.Equal(t, service.ErasureDone, rep.Request.Status)
	b.RequireErased(t, req.ID, "alice")
}

// The erasure runs under its own statement and lock timeouts, not the
// database's or the role's (set here to a minute and two), and leaves
// none of its own on the pooled connections it used.
func TestErasureSetsItsOwnTimeouts(t *testing.T) {
	t.Parallel()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{})
	slowUpdates(t, b, 1000)
	var name string
	require.NoError(t, b.Pool.QueryRow(b.Ctx, "SELECT current_database()").Scan(&name))
	_, err := b.Pool.Exec(b.Ctx, fmt.Sprintf("ALTER DATABASE %s SET statement_timeout = '1min'", pgx.Identifier{name}.Sanitize()))
	require.NoError(t, err)
	_, err = b.Pool.Exec(b.Ctx, fmt.Sprintf("ALTER DATABASE %s SET lock_timeout = '2min'", pgx.Identifier{name}.Sanitize()))
	require.NoError(t, err)
	b.Pool.Reset() // new connections take the database's settings
	// settings returns the timeouts of each idle pooled connection by its
	// backend's pid.
	settings := func() map[uint32]string {
		seen := map[uint32]string{}
		for _, c := range b.Pool.AcquireAllIdle(b.Ctx) {
			var st, lt string
			require.NoError(t, c.QueryRow(b.Ctx, `SELECT current_setting('statement_timeout'), current_setting('lock_timeout')
				|| ' ' || current_setting('client_connection_check_interval')`).Scan(&st, &lt))
			seen[c.Conn().PgConn().PID()] = st + " " + lt
			c.Release()
		}
		return seen
	}
	var st string
	require.NoError(t, b.Pool.QueryRow(b.Ctx, "SHOW statement_timeout").Scan(&st))
	require.Equal(t, "1min", st)

	req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "x"})
	require.NoError(t, err)
	_, err = b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	var seen []string
	rows, err := b.Pool.Query(b.Ctx, "SELECT DISTINCT statement_timeout || ' ' || lock_timeout || ' ' || check_interval FROM timeouts_seen")
	require.NoError(t, err)
	seen, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"10s 5s 1s"}, seen,
		"the erasure's own: service.DefaultErasureStatementTimeout, DefaultErasureLockTimeout, a 1 s check that its client is alive")
	var pid uint32
	require.NoError(t, b.Pool.QueryRow(b.Ctx, "SELECT DISTINCT pid FROM timeouts_seen").Scan(&pid))
	after := settings()
	require.Contains(t, after, pid, "the erasure's connection is back in the pool")
	for p, s := range after {
		require.Equal(t, "1min 2min 0", s, "pooled connection %d has the database's settings back", p)
	}
	b.RequireErased(t, req.ID, "alice")
}
