package jobs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/service"
)

// erasureNow is the clock of these tests: the middle of the current month,
// whose partition (like the next three and the three before) exists.
var erasureNow = func() time.Time {
	real := time.Now().UTC()
	return time.Date(real.Year(), real.Month(), 15, 12, 0, 0, 0, time.UTC)
}()

type erasureBundle struct {
	ctx  context.Context
	pool *pgxpool.Pool
	log  *service.Log
	// exported is the ids ExportSubject must return for alice.
	exported []int64
	// before holds the other people's rows as they were, to compare.
	bobUserEvents, bobProjectEvents string
}

type erasureOpts struct {
	batch     int
	pseudonym []byte
	// onQuery sees each statement the pool ran without error.
	onQuery func(sql string)
	// onConnQuery is onQuery with the connection that ran it.
	onConnQuery func(conn *pgx.Conn, sql string)
}

// erasureSetup makes a database holding alice's events in every kind of
// place — monthly partitions in and out of the window, the default
// partition, a detached table — events she acted in on bob's account and
// on projects, and bob's own events.
func erasureSetup(t *testing.T, o erasureOpts) *erasureBundle {
	t.Helper()
	ctx := context.Background()
	pool := dbtest.PoolWith(t, func(cfg *pgxpool.Config) {
		if o.onQuery != nil || o.onConnQuery != nil {
			cfg.ConnConfig.Tracer = &queryTracer{onEnd: o.onQuery, onEndConn: o.onConnQuery}
		}
	})
	enq, err := jobs.NewEnqueuer(pool)
	require.NoError(t, err)
	log := service.New(pool, &service.Opts{
		Clock: func() time.Time { return erasureNow }, Enqueuer: enq,
		ErasureBatch: o.batch, PseudonymSecret: o.pseudonym,
	})
	b := &erasureBundle{ctx: ctx, pool: pool, log: log}

	month := func(offset int) time.Time {
		return time.Date(erasureNow.Year(), erasureNow.Month()+time.Month(offset), 1, 0, 0, 0, 0, time.UTC)
	}
	record := func(p service.EventParams) int64 {
		e, err := log.RecordUser(ctx, p)
		require.NoError(t, err)
		return e.ID
	}
	// Rows outside the window, or in places the API never writes to, go
	// in with SQL, as they would have been written when they were current.
	insert := func(at time.Time, user, actor string) {
		_, err := pool.Exec(ctx, `INSERT INTO user_events (time, tag, user_id, actor_id, ip, user_agent, location, description)
			VALUES ($1, 'account:login:success', $2, $3, '198.51.100.7', 'Firefox', '{"country": "FR"}', 'Signed in')`,
			at, user, actor)
		require.NoError(t, err)
	}
	alice := func(at time.Time) service.EventParams {
		return service.EventParams{
			Tag: "account:login:success", Subject: "alice", ActorID: "alice", Time: at, AuthMethod: "password",
			IP: "192.0.2.10", UserAgent: "Mozilla/5.0 Firefox/140.0", Location: &service.Location{Country: "DE", City: "Berlin"},
		}
	}
	for i := range 3 { // this month
		b.exported = append(b.exported, record(alice(erasureNow.Add(-time.Duration(i+1)*time.Hour))))
	}
	for i := range 2 { // last month
		b.exported = append(b.exported, record(alice(month(-1).Add(time.Duration(i+3)*24*time.Hour))))
	}
	insert(month(-3).Add(time.Hour), "alice", "alice") // its partition is kept, the row is past the window
	insert(month(-8), "alice", "alice")                // no partition: the default one
	detached := service.PartitionName(month(-10))      // left detached by a retention pass that crashed
	_, err = pool.Exec(ctx, fmt.Sprintf("CREATE TABLE %s PARTITION OF user_events FOR VALUES FROM ('%s') TO ('%s')",
		detached, month(-10).Format(time.RFC3339), month(-9).Format(time.RFC3339)))
	require.NoError(t, err)
	insert(month(-10).Add(time.Hour), "alice", "alice")
	_, err = pool.Exec(ctx, "ALTER TABLE user_events DETACH PARTITION "+detached)
	require.NoError(t, err)

	// Bob: his own sign-in, and alice (an admin) adding his email address.
	record(service.EventParams{Tag: "account:login:success", Subject: "bob", ActorID: "bob", IP: "203.0.113.5",
		UserAgent: "curl/8", Location: &service.Location{Country: "US"}})
	record(service.EventParams{Tag: "account:email:add", Subject: "bob", ActorID: "alice", AuthMethod: "webauthn",
		IP: "192.0.2.10", UserAgent: "Mozilla/5.0 Firefox/140.0", Additional: json.RawMessage(`{"email": "bob@example.com", "verified": false}`)})
	insert(month(-8).Add(time.Hour), "bob", "bob") // bob's row in the default partition too

	project := func(p service.EventParams) int64 {
		e, err := log.RecordProject(ctx, p)
		require.NoError(t, err)
		return e.ID
	}
	b.exported = append(b.exported,
		project(service.EventParams{Tag: "project:release:add", Subject: "demo", ActorID: "alice", AuthMethod: "api_token",
			TokenID: "ci-upload", IP: "192.0.2.10", UserAgent: "twine/6", Location: &service.Location{Country: "DE"},
			Additional: json.RawMessage(`{"version": "1.0"}`)}),
		project(service.EventParams{Tag: "project:role:invite", Subject: "demo", ActorID: "alice", IP: "192.0.2.10",
			Additional: json.RawMessage(`{"target_user": "carol", "role": "Maintainer", "email": "carol@example.com"}`)}),
		project(service.EventParams{Tag: "project:release:yank", Subject: "other", ActorID: "alice", UserAgent: "browser",
			Additional: json.RawMessage(`{"version": "0.9"}`)}),
	)
	project(service.EventParams{Tag: "project:release:add", Subject: "demo", ActorID: "bob", IP: "203.0.113.5",
		UserAgent: "twine/6", Additional: json.RawMessage(`{"version": "1.1"}`)})
	project(service.EventParams{Tag: "project:role:invite", Subject: "demo", ActorID: "bob",
		Additional: json.RawMessage(`{"target_user": "dan", "role": "Owner", "email": "dan@example.com"}`)})

	b.bobUserEvents = b.dump(t, "SELECT * FROM user_events WHERE user_id = 'bob' AND actor_id = 'bob' ORDER BY id")
	b.bobProjectEvents = b.dump(t, "SELECT * FROM project_events WHERE actor_id = 'bob' ORDER BY id")
	return b
}

// dump renders the rows of sql as JSON, to compare before and after.
func (b *erasureBundle) dump(t *testing.T, sql string) string {
	t.Helper()
	var out string
	require.NoError(t, b.pool.QueryRow(b.ctx, "SELECT coalesce(json_agg(r)::text, '') FROM ("+sql+") r").Scan(&out))
	require.NotEmpty(t, out, sql)
	return out
}

func (b *erasureBundle) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(b.ctx, sql, args...).Scan(&n))
	return n
}

// requireErased checks, beyond VerifyErasure, what the person and others
// see: alice's events are gone from everywhere, the events she acted in
// are kept without personal fields, and bob's data is untouched.
func (b *erasureBundle) requireErased(t *testing.T, id int64, actor string) {
	t.Helper()
	v, err := b.log.VerifyErasure(b.ctx, id)
	require.NoError(t, err)
	require.True(t, v.Clean, "problems: %v", v.Problems)
	require.Empty(t, v.Problems)

	require.Zero(t, b.count(t, "SELECT count(*) FROM user_events WHERE user_id = 'alice'"))
	require.Zero(t, b.count(t, "SELECT count(*) FROM user_events_default WHERE user_id = 'alice'"))
	require.Zero(t, b.count(t, "SELECT count(*) FROM "+service.PartitionName(
		time.Date(erasureNow.Year(), erasureNow.Month()-10, 1, 0, 0, 0, 0, time.UTC))+" WHERE user_id = 'alice'"))

	// The events she acted in stay, without IP, user agent, location or
	// personal keys; the other keys stay.
	require.Equal(t, 3, b.count(t, "SELECT count(*) FROM project_events WHERE actor_id = $1", actor))
	require.Zero(t, b.count(t, `SELECT count(*) FROM project_events WHERE actor_id = $1
		AND (ip IS NOT NULL OR user_agent IS NOT NULL OR location IS NOT NULL)`, actor))
	var invite string
	require.NoError(t, b.pool.QueryRow(b.ctx, "SELECT additional::text FROM project_events WHERE actor_id = $1 AND tag = 'project:role:invite'", actor).Scan(&invite))
	require.JSONEq(t, `{"target_user": "carol", "role": "Maintainer"}`, invite)
	var bobEmail string
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT additional::text FROM user_events
		WHERE user_id = 'bob' AND actor_id = $1 AND ip IS NULL AND user_agent IS NULL AND location IS NULL`, actor).Scan(&bobEmail))
	require.JSONEq(t, `{"verified": false}`, bobEmail)

	// Bob's own rows are exactly as they were.
	require.Equal(t, b.bobUserEvents, b.dump(t, "SELECT * FROM user_events WHERE user_id = 'bob' AND actor_id = 'bob' ORDER BY id"))
	require.Equal(t, b.bobProjectEvents, b.dump(t, "SELECT * FROM project_events WHERE actor_id = 'bob' ORDER BY id"))
	require.Equal(t, 3, b.count(t, "SELECT count(*) FROM user_events WHERE user_id = 'bob'"))
	require.Equal(t, 5, b.count(t, "SELECT count(*) FROM project_events"))
}

// A running River client carries out the request; the request records
// what was removed from which table, and verification finds it clean.
func TestErasureJobRemovesEverything(t *testing.T) {
	t.Parallel()
	b := erasureSetup(t, erasureOpts{batch: 2})

	req, created, err := b.log.RequestErasure(b.ctx, service.ErasureParams{UserID: "alice", Reason: "account deleted", RequestedBy: "admin-1"})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, service.ErasurePending, req.Status)
	v, err := b.log.VerifyErasure(b.ctx, req.ID)
	require.NoError(t, err)
	require.False(t, v.Clean, "nothing is erased before the job runs")
	require.Equal(t, int64(8), v.UserEventsLeft)
	require.Equal(t, int64(1), v.ActedUserEventsPersonal)
	require.Equal(t, int64(3), v.ProjectEventsPersonal)

	workers := river.NewWorkers()
	river.AddWorker(workers, &jobs.ErasureWorker{Eraser: b.log})
	job := runFirstJob(t, b.pool, workers)
	require.Equal(t, "auditlog_erasure", job.Kind)
	require.JSONEq(t, fmt.Sprintf(`{"request_id": %d}`, req.ID), string(job.EncodedArgs), "the job carries no personal data")

	b.requireErased(t, req.ID, "alice")
	got, err := b.log.ErasureRequest(b.ctx, req.ID)
	require.NoError(t, err)
	require.Equal(t, service.ErasureDone, got.Status)
	require.NotNil(t, got.StartedAt)
	require.NotNil(t, got.CompletedAt)
	require.Empty(t, got.Error)
	require.Equal(t, int64(8), got.UserEventsDeleted)
	require.Equal(t, int64(1), got.UserEventsScrubbed)
	require.Equal(t, int64(3), got.ProjectEventsScrubbed)
	month := func(offset int) string {
		return service.PartitionName(time.Date(erasureNow.Year(), erasureNow.Month()+time.Month(offset), 1, 0, 0, 0, 0, time.UTC))
	}
	require.Equal(t, map[string]int64{
		month(0): 3, month(-1): 2, month(-3): 1, "user_events_default": 1, month(-10): 1,
		month(0) + ":scrubbed": 1, "project_events:scrubbed": 3,
	}, got.Counts)
}

// The request and its job commit together or not at all.
func TestErasureRequestIsAtomic(t *testing.T) {
	t.Parallel()
	b := erasureSetup(t, erasureOpts{})

	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	req, created, err := b.log.RequestErasureTx(b.ctx, tx, service.ErasureParams{UserID: "alice", Reason: "ticket 42"})
	require.NoError(t, err)
	require.True(t, created)
	job := rivertest.RequireInsertedTx[*riverpgxv5.Driver](b.ctx, t, tx, &jobs.ErasureArgs{}, nil)
	require.Equal(t, req.ID, job.Args.RequestID)
	require.NoError(t, tx.Rollback(b.ctx))
	require.Zero(t, b.count(t, "SELECT count(*) FROM erasure_requests"))
	require.Zero(t, b.count(t, "SELECT count(*) FROM river_job"))

	tx, err = b.pool.Begin(b.ctx)
	require.NoError(t, err)
	req, created, err = b.log.RequestErasureTx(b.ctx, tx, service.ErasureParams{UserID: "alice", Reason: "ticket 42"})
	require.NoError(t, err)
	require.True(t, created)
	require.NoError(t, tx.Commit(b.ctx))
	require.Equal(t, 1, b.count(t, "SELECT count(*) FROM erasure_requests WHERE id = $1", req.ID))
	require.Equal(t, 1, b.count(t, "SELECT count(*) FROM river_job WHERE kind = 'auditlog_erasure' AND (args->>'request_id')::bigint = $1", req.ID))
}

// A second request while one is open returns the first and enqueues
// nothing; once done, a new request is a new one.
func TestErasureDuplicateRequestsCollapse(t *testing.T) {
	t.Parallel()
	b := erasureSetup(t, erasureOpts{})
	first, created, err := b.log.RequestErasure(b.ctx, service.ErasureParams{UserID: "alice", Reason: "one"})
	require.NoError(t, err)
	require.True(t, created)
	second, created, err := b.log.RequestErasure(b.ctx, service.ErasureParams{UserID: "alice", Reason: "two"})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, first.ID, second.ID)
	require.Equal(t, "one", second.Reason)
	require.Equal(t, 1, b.count(t, "SELECT count(*) FROM erasure_requests"))
	require.Equal(t, 1, b.count(t, "SELECT count(*) FROM river_job WHERE kind = 'auditlog_erasure'"))

	_, err = b.log.RunErasure(b.ctx, first.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	third, created, err := b.log.RequestErasure(b.ctx, service.ErasureParams{UserID: "alice", Reason: "three"})
	require.NoError(t, err)
	require.True(t, created)
	require.NotEqual(t, first.ID, third.ID)
}

// Bad requests are refused with a typed error and store nothing.
func TestErasureRequestValidation(t *testing.T) {
	t.Parallel()
	b := erasureSetup(t, erasureOpts{})
	for _, tc := range []struct {
		p     service.ErasureParams
		field string
		err   error
	}{
		{service.ErasureParams{Reason: "x"}, "user_id", service.ErrEmptySubject},
		{service.ErasureParams{UserID: "alice"}, "reason", service.ErrEmptyReason},
		{service.ErasureParams{UserID: strings.Repeat("a", 200), Reason: "x"}, "user_id", service.ErrTooLong},
		{service.ErasureParams{UserID: "alice", Reason: "a\x00b"}, "reason", service.ErrInvalidText},
	} {
		_, _, err := b.log.RequestErasure(b.ctx, tc.p)
		require.ErrorIs(t, err, tc.err)
		var ve *service.ValidationError
		require.ErrorAs(t, err, &ve)
		require.Equal(t, tc.field, ve.Field)
	}
	require.Zero(t, b.count(t, "SELECT count(*) FROM erasure_requests"))
	_, _, err := service.New(b.pool, nil).RequestErasure(b.ctx, service.ErasureParams{UserID: "alice", Reason: "x"})
	require.ErrorIs(t, err, service.ErrNoEnqueuer)
}

// An attempt killed after its first batch leaves the request retrying
// with its error and exact counts; the retry finishes the job, and a run
// after success changes nothing and reports zero rows.
func TestErasureResumesAfterKillAndIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx, kill := context.WithCancel(context.Background())
	var sawCount, killed atomic.Bool
	b := erasureSetup(t, erasureOpts{batch: 1, onQuery: func(sql string) {
		switch {
		case strings.Contains(sql, "name: ErasureRequestAddCount"):
			sawCount.Store(true)
		case sql == "commit" && sawCount.Load() && killed.CompareAndSwap(false, true):
			kill() // the first batch has committed
		}
	}})
	req, _, err := b.log.RequestErasure(b.ctx, service.ErasureParams{UserID: "alice", Reason: "resume"})
	require.NoError(t, err)

	_, err = b.log.RunErasure(ctx, req.ID, service.RunErasureOpts{})
	require.ErrorIs(t, err, context.Canceled)
	got, err := b.log.ErasureRequest(b.ctx, req.ID)
	require.NoError(t, err)
	require.Equal(t, service.ErasureRetrying, got.Status)
	require.Contains(t, got.Error, "context canceled")
	require.Equal(t, int64(1), got.UserEventsDeleted, "exactly the committed batch is counted")
	require.Equal(t, 7, b.count(t, "SELECT count(*) FROM user_events WHERE user_id = 'alice'")+
		b.count(t, "SELECT count(*) FROM "+service.PartitionName(time.Date(erasureNow.Year(), erasureNow.Month()-10, 1, 0, 0, 0, 0, time.UTC))+" WHERE user_id = 'alice'"))

	rep, err := b.log.RunErasure(b.ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	require.Equal(t, int64(7+1+3), rep.Rows())
	require.Equal(t, service.ErasureDone, rep.Request.Status)
	require.Equal(t, int64(8), rep.Request.UserEventsDeleted)
	require.Equal(t, 2, rep.Request.Attempts)
	require.Empty(t, rep.Request.Error)
	b.requireErased(t, req.ID, "alice")

	again, err := b.log.RunErasure(b.ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	require.Zero(t, again.Rows())
	require.Empty(t, again.Counts)
	require.Equal(t, rep.Request, again.Request, "a run after success changes nothing")
}

// A failure on the last attempt leaves the request failed, with its error.
func TestErasureFinalFailureIsVisible(t *testing.T) {
	t.Parallel()
	b := erasureSetup(t, erasureOpts{})
	req, _, err := b.log.RequestErasure(b.ctx, service.ErasureParams{UserID: "alice", Reason: "x"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(b.ctx)
	cancel()
	_, err = b.log.RunErasure(ctx, req.ID, service.RunErasureOpts{FinalAttempt: true})
	require.Error(t, err)
	got, err := b.log.ErasureRequest(b.ctx, req.ID)
	require.NoError(t, err)
	require.Equal(t, service.ErasureFailed, got.Status)
	require.NotEmpty(t, got.Error)
	_, err = b.log.RunErasure(b.ctx, req.ID, service.RunErasureOpts{})
	require.ErrorIs(t, err, service.ErrErasureFailed, "a failed request is final")
	got, err = b.log.ErasureRequest(b.ctx, req.ID)
	require.NoError(t, err)
	require.Equal(t, service.ErasureFailed, got.Status)
	_, err = b.log.RunErasure(b.ctx, 999999, service.RunErasureOpts{})
	require.ErrorIs(t, err, service.ErrNotFound)
}

// Events recorded while the job runs are erased too: here, after the
// first sweep has passed every user-event table.
func TestErasureCoversEventsWrittenDuringTheJob(t *testing.T) {
	t.Parallel()
	var b *erasureBundle
	var sawProject, wrote atomic.Bool
	b = erasureSetup(t, erasureOpts{onQuery: func(sql string) {
		switch {
		case strings.Contains(sql, "UPDATE project_events"):
			sawProject.Store(true)
		case sql == "commit" && sawProject.Load() && wrote.CompareAndSwap(false, true):
			_, err := b.log.RecordUser(context.Background(), service.EventParams{
				Tag: "account:login:success", Subject: "alice", ActorID: "alice", IP: "192.0.2.99"})
			if err != nil {
				t.Error(err)
			}
			_, err = b.log.RecordProject(context.Background(), service.EventParams{
				Tag: "project:release:add", Subject: "late", ActorID: "alice", IP: "192.0.2.99",
				Additional: json.RawMessage(`{"version": "2.0"}`)})
			if err != nil {
				t.Error(err)
			}
		}
	}})
	req, _, err := b.log.RequestErasure(b.ctx, service.ErasureParams{UserID: "alice", Reason: "x"})
	require.NoError(t, err)
	rep, err := b.log.RunErasure(b.ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	require.True(t, wrote.Load(), "the events were written during the job")
	require.Equal(t, int64(9), rep.Request.UserEventsDeleted)
	require.Equal(t, int64(4), rep.Request.ProjectEventsScrubbed)
	v, err := b.log.VerifyErasure(b.ctx, req.ID)
	require.NoError(t, err)
	require.True(t, v.Clean, "problems: %v", v.Problems)
	require.Equal(t, 4, b.count(t, "SELECT count(*) FROM project_events WHERE actor_id = 'alice'"))
}

// With a pseudonym secret, the events alice acted in name a stable
// pseudonym instead of her id.
func TestErasurePseudonymisesActor(t *testing.T) {
	t.Parallel()
	b := erasureSetup(t, erasureOpts{pseudonym: []byte("test secret")})
	pseudonym := b.log.Pseudonym("alice")
	require.Regexp(t, `^anon:[0-9a-f]{32}$`, pseudonym)
	require.Equal(t, pseudonym, b.log.Pseudonym("alice"), "stable")
	require.NotEqual(t, pseudonym, b.log.Pseudonym("bob"))

	req, _, err := b.log.RequestErasure(b.ctx, service.ErasureParams{UserID: "alice", Reason: "x"})
	require.NoError(t, err)
	_, err = b.log.RunErasure(b.ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	b.requireErased(t, req.ID, pseudonym)
	require.Zero(t, b.count(t, "SELECT count(*) FROM project_events WHERE actor_id = 'alice'"))
	require.Zero(t, b.count(t, "SELECT count(*) FROM user_events WHERE actor_id = 'alice'"))
}

// Verification is not fooled: an event that escaped (written back by
// hand after the erasure) makes it unclean, and says where.
func TestVerifyErasureFindsLeftovers(t *testing.T) {
	t.Parallel()
	b := erasureSetup(t, erasureOpts{})
	req, _, err := b.log.RequestErasure(b.ctx, service.ErasureParams{UserID: "alice", Reason: "x"})
	require.NoError(t, err)
	_, err = b.log.RunErasure(b.ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	_, err = b.pool.Exec(b.ctx, `INSERT INTO user_events_default (time, tag, user_id, description)
		VALUES ('2001-01-01', 'account:create', 'alice', 'Account created')`)
	require.NoError(t, err)
	_, err = b.pool.Exec(b.ctx, `UPDATE project_events SET additional = additional || '{"email": "a@example.com"}'
		WHERE actor_id = 'alice' AND tag = 'project:role:invite'`)
	require.NoError(t, err)
	v, err := b.log.VerifyErasure(b.ctx, req.ID)
	require.NoError(t, err)
	require.False(t, v.Clean)
	require.Equal(t, int64(1), v.UserEventsLeft)
	require.Equal(t, int64(1), v.ProjectEventsPersonal)
	require.Len(t, v.Problems, 2)
	require.Contains(t, v.Problems[0], "user_events_default")
}

// The subject access export holds exactly alice's user events inside the
// window and the project events she acted in, with every field.
func TestExportSubject(t *testing.T) {
	t.Parallel()
	b := erasureSetup(t, erasureOpts{})
	var buf bytes.Buffer
	n, err := b.log.ExportSubject(b.ctx, "alice", &buf)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	require.Len(t, lines, n)
	var ids []int64
	for _, line := range lines {
		var e service.Event
		require.NoError(t, json.Unmarshal([]byte(line), &e))
		ids = append(ids, e.ID)
		if e.Model == service.ModelUser {
			require.Equal(t, "alice", e.UserID)
			require.Equal(t, "192.0.2.10", e.IP.String())
			require.NotEmpty(t, e.UserAgent)
			require.Equal(t, "DE", e.Location.Country)
		} else {
			require.Equal(t, "alice", e.ActorID)
		}
	}
	slices.Sort(ids)
	want := slices.Clone(b.exported)
	slices.Sort(want)
	require.Equal(t, want, ids)
	require.Contains(t, buf.String(), `"email":"carol@example.com"`, "personal keys are the person's own data here")

	_, err = b.log.ExportSubject(b.ctx, "", &buf)
	require.ErrorIs(t, err, service.ErrEmptySubject)
}

// rivertest runs the worker alone on a request.
func TestErasureWorker(t *testing.T) {
	t.Parallel()
	b := erasureSetup(t, erasureOpts{})
	req, _, err := b.log.RequestErasure(b.ctx, service.ErasureParams{UserID: "alice", Reason: "x"})
	require.NoError(t, err)
	w := rivertest.NewWorker(t, riverpgxv5.New(b.pool), &river.Config{}, &jobs.ErasureWorker{Eraser: b.log})
	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	defer tx.Rollback(b.ctx)
	res, err := w.Work(b.ctx, t, tx, jobs.ErasureArgs{RequestID: req.ID}, nil)
	require.NoError(t, err)
	require.Equal(t, river.EventKindJobCompleted, res.EventKind)
	b.requireErased(t, req.ID, "alice")
}

// queryTracer calls onEnd (and onEndConn, with the connection) with the
// SQL of each statement that succeeded.
type queryTracer struct {
	onEnd     func(sql string)
	onEndConn func(conn *pgx.Conn, sql string)
}

type sqlKey struct{}

func (q *queryTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, sqlKey{}, data.SQL)
}

func (q *queryTracer) TraceQueryEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryEndData) {
	sql, ok := ctx.Value(sqlKey{}).(string)
	if !ok || data.Err != nil {
		return
	}
	if q.onEnd != nil {
		q.onEnd(sql)
	}
	if q.onEndConn != nil {
		q.onEndConn(conn, sql)
	}
}

// runFirstJob starts a River client with workers on pool and waits for its
// first job to finish, which must complete; the client stops with the test.
func runFirstJob(t *testing.T, pool *pgxpool.Pool, workers *river.Workers) *rivertype.JobRow {
	t.Helper()
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Queues: map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 2}}, Workers: workers,
		FetchCooldown: 20 * time.Millisecond, FetchPollInterval: 50 * time.Millisecond, // a snoozed job runs again at once
	})
	require.NoError(t, err)
	events, cancel := client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed)
	defer cancel()
	require.NoError(t, client.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, client.Stop(context.Background())) })
	select {
	case ev := <-events:
		require.Equal(t, river.EventKindJobCompleted, ev.Kind, "job errors: %v", ev.Job.Errors)
		return ev.Job
	case <-time.After(30 * time.Second):
		t.Fatal("no job finished")
		return nil
	}
}
