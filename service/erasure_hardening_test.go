package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

// Each way River UI (or River's cleaner, or a crash) can leave an open
// request without a live job: the request shows as stuck, and a new
// request for the person fails it with the reason and starts afresh
// instead of returning the dead one.
func TestErasureStuckRequestIsSuperseded(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, state, reason string
		kill                func(t *testing.T, b *dbtest.Erasure, jobID int64)
	}{
		{"cancelled in River UI", "cancelled", "its River job was cancelled", func(t *testing.T, b *dbtest.Erasure, id int64) {
			_, err := b.Pool.Exec(b.Ctx, "UPDATE river_job SET state = 'cancelled', finalized_at = now() WHERE id = $1", id)
			require.NoError(t, err)
		}},
		{"cancelled by River's client", "cancelled", "its River job was cancelled", func(t *testing.T, b *dbtest.Erasure, id int64) {
			client, err := river.NewClient(riverpgxv5.New(b.Pool), &river.Config{})
			require.NoError(t, err)
			_, err = client.JobCancel(b.Ctx, id)
			require.NoError(t, err)
		}},
		{"discarded", "discarded", "its River job was discarded", func(t *testing.T, b *dbtest.Erasure, id int64) {
			_, err := b.Pool.Exec(b.Ctx, "UPDATE river_job SET state = 'discarded', finalized_at = now() WHERE id = $1", id)
			require.NoError(t, err)
		}},
		{"deleted", "deleted", "its River job was deleted", func(t *testing.T, b *dbtest.Erasure, id int64) {
			_, err := b.Pool.Exec(b.Ctx, "DELETE FROM river_job WHERE id = $1", id)
			require.NoError(t, err)
		}},
		{"completed without finishing", "completed", "its River job completed without finishing the request", func(t *testing.T, b *dbtest.Erasure, id int64) {
			_, err := b.Pool.Exec(b.Ctx, "UPDATE river_job SET state = 'completed', finalized_at = now() WHERE id = $1", id)
			require.NoError(t, err)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := dbtest.NewErasure(t, dbtest.ErasureOpts{})
			first, created, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "one"})
			require.NoError(t, err)
			require.True(t, created)
			require.Equal(t, "available", first.JobState)
			require.False(t, first.Stuck)
			require.Zero(t, first.Supersedes)
			var jobID int64
			require.NoError(t, b.Pool.QueryRow(b.Ctx, `SELECT id FROM river_job
				WHERE kind = 'auditlog_erasure' AND (args->>'request_id')::bigint = $1`, first.ID).Scan(&jobID))

			tc.kill(t, b, jobID)
			got, err := b.Log.ErasureRequest(b.Ctx, first.ID)
			require.NoError(t, err)
			require.Equal(t, service.ErasurePending, got.Status)
			require.True(t, got.Stuck)
			require.Equal(t, tc.state, got.JobState)
			list, err := b.Log.ErasureRequests(b.Ctx, "alice", 0)
			require.NoError(t, err)
			require.Len(t, list, 1)
			require.True(t, list[0].Stuck, "the list marks it too")

			second, created, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "two"})
			require.NoError(t, err)
			require.True(t, created, "a stuck request is not returned as the open one")
			require.NotEqual(t, first.ID, second.ID)
			require.Equal(t, first.ID, second.Supersedes)
			require.Equal(t, "two", second.Reason)
			require.Equal(t, service.ErasurePending, second.Status)
			require.Equal(t, "available", second.JobState)
			require.False(t, second.Stuck)
			require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM river_job WHERE kind = 'auditlog_erasure' AND (args->>'request_id')::bigint = $1", second.ID))

			old, err := b.Log.ErasureRequest(b.Ctx, first.ID)
			require.NoError(t, err)
			require.Equal(t, service.ErasureFailed, old.Status)
			require.Equal(t, fmt.Sprintf("%s; superseded by request %d", tc.reason, second.ID), old.Error)
			require.False(t, old.Stuck, "a failed request is closed, not stuck")
			_, err = b.Log.RunErasure(b.Ctx, first.ID, service.RunErasureOpts{})
			require.ErrorIs(t, err, service.ErrErasureFailed, "the superseded request never runs")

			third, created, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "three"})
			require.NoError(t, err)
			require.False(t, created, "the new request is open and live")
			require.Equal(t, second.ID, third.ID)

			rep, err := b.Log.RunErasure(b.Ctx, second.ID, service.RunErasureOpts{})
			require.NoError(t, err)
			require.Equal(t, service.ErasureDone, rep.Request.Status)
			b.RequireErased(t, second.ID, "alice")
		})
	}
}

// A live job in any of River's live states keeps the request: a second
// request returns it.
func TestErasureLiveRequestIsKept(t *testing.T) {
	t.Parallel()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{})
	first, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "one"})
	require.NoError(t, err)
	for _, state := range []string{"running", "retryable", "scheduled", "pending", "available"} {
		_, err := b.Pool.Exec(b.Ctx, "UPDATE river_job SET state = $1 WHERE kind = 'auditlog_erasure'", state)
		require.NoError(t, err)
		got, created, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "again"})
		require.NoError(t, err)
		require.False(t, created, state)
		require.Equal(t, first.ID, got.ID, state)
		require.Equal(t, state, got.JobState)
		require.False(t, got.Stuck, state)
	}
	require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM erasure_requests"))
}

// A request records whether any event named the person when it was made;
// one for an id nothing names is stored all the same.
func TestErasureRequestRecordsWhetherEventsExist(t *testing.T) {
	t.Parallel()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{})
	_, err := b.Pool.Exec(b.Ctx, `INSERT INTO `+b.Detached+` (time, tag, user_id, actor_id, description)
		SELECT time, tag, 'dora', 'dora', description FROM `+b.Detached+` LIMIT 1`)
	require.NoError(t, err)
	_, err = b.Log.RecordProject(b.Ctx, service.EventParams{Tag: "project:release:add", Subject: "demo", ActorID: "pat",
		Additional: json.RawMessage(`{"version": "3.0"}`)})
	require.NoError(t, err)
	_, err = b.Log.RecordUser(b.Ctx, service.EventParams{Tag: "account:email:add", Subject: "bob", ActorID: "sam",
		Additional: json.RawMessage(`{"email": "bob@example.com"}`)})
	require.NoError(t, err)
	for _, tc := range []struct {
		user  string
		found bool
	}{
		{"alice", true},
		{"dora", true},   // only in a detached monthly table
		{"pat", true},    // only acted in a project event
		{"sam", true},    // only acted in another account's user event
		{"alcie", false}, // a typo
	} {
		req, created, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: tc.user, Reason: "x"})
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, tc.found, req.EventsFound, tc.user)
		got, err := b.Log.ErasureRequest(b.Ctx, req.ID)
		require.NoError(t, err)
		require.Equal(t, tc.found, got.EventsFound, "stored: %s", tc.user)
	}
	require.Equal(t, 5, b.Count(t, "SELECT count(*) FROM river_job WHERE kind = 'auditlog_erasure'"))
}

// adminRead is one admin:events:view event of these tests.
type adminRead struct {
	name   string
	filter string // the additional "filter" object
	// erased lists the filter keys that name alice (or her network) and
	// must be replaced.
	erased []string
}

var adminReads = []adminRead{
	{"user", `{"user": "alice", "tag_prefix": "account:"}`, []string{"user"}},
	{"actor", `{"actor": "alice", "since": "2026-01-01"}`, []string{"actor"}},
	{"her address", `{"ip": "192.0.2.10/32"}`, []string{"ip"}},
	{"her /24, seen only in old tables", `{"ip": "198.51.100.0/24", "tag": "account:login:success"}`, []string{"ip"}},
	{"her IPv6 /48", `{"ip": "2001:db8:1::/48"}`, []string{"ip"}},
	{"user and address", `{"user": "alice", "ip": "192.0.2.10/32"}`, []string{"user", "ip"}},
	{"a /8 holding her address", `{"ip": "192.0.0.0/8"}`, nil},
	{"an IPv6 /32 holding her address", `{"ip": "2001:db8::/32"}`, nil},
	{"bob", `{"user": "bob", "ip": "203.0.113.5/32"}`, nil},
	{"not a network", `{"user": "bob", "ip": "not an address"}`, nil},
}

// recordAdminReads records adminReads as root's reads, one more in the
// default partition (an old month), and alice's IPv6 sign-in; it returns
// the id of each read by name.
func recordAdminReads(t *testing.T, b *dbtest.Erasure) map[string]int64 {
	t.Helper()
	ids := map[string]int64{}
	for _, r := range adminReads {
		e, err := b.Log.RecordUser(b.Ctx, service.EventParams{Tag: "admin:events:view", Subject: "root", ActorID: "root",
			IP: "203.0.113.200", Additional: json.RawMessage(`{"format": "html", "filter": ` + r.filter + `}`)})
		require.NoError(t, err)
		ids[r.name] = e.ID
	}
	dbtest.InsertRaw(t, b.Pool, dbtest.Raw{Time: dbtest.MonthStart(b.Now).AddDate(0, -8, 1), Tag: "admin:events:view",
		Subject: "root", ActorID: "root", Description: "Looked at events", Additional: `{"format": "csv", "filter": {"actor": "alice"}}`})
	_, err := b.Log.RecordUser(b.Ctx, service.EventParams{Tag: "account:login:success", Subject: "alice", ActorID: "alice",
		IP: "2001:db8:1::5"})
	require.NoError(t, err)
	return ids
}

// requireAdminReadsErased checks each admin read's filter: alice's id and
// networks are replaced by want, the other keys and reads are untouched.
func requireAdminReadsErased(t *testing.T, b *dbtest.Erasure, ids map[string]int64, want string) {
	t.Helper()
	for _, r := range adminReads {
		var got string
		require.NoError(t, b.Pool.QueryRow(b.Ctx, "SELECT additional->>'filter' FROM user_events WHERE id = $1", ids[r.name]).Scan(&got))
		var filter map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.filter), &filter))
		for _, k := range r.erased {
			filter[k] = want
		}
		wantJSON, _ := json.Marshal(filter)
		require.JSONEq(t, string(wantJSON), got, r.name)
	}
	require.Zero(t, b.Count(t, `SELECT count(*) FROM user_events WHERE tag = 'admin:events:view'
		AND additional::text LIKE ANY (ARRAY['%alice%', '%192.0.2.10/%', '%198.51.100.0/24%', '%2001:db8:1::/48%'])`))
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM user_events_default WHERE tag = 'admin:events:view'
		AND additional = jsonb_build_object('format', 'csv', 'filter', jsonb_build_object('actor', $1::text))`, want))
}

// When alice is erased, the admin reads whose filter named her — as user,
// as actor, or by a narrow network she used — name the pseudonym (with a
// secret) or "[erased]" instead; a broad network and other people's reads
// stay; verification is clean, and finds a read naming her added later.
func TestErasureScrubsAdminReads(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		secret []byte
	}{{"without a secret", nil}, {"with a pseudonym secret", []byte("test secret")}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := dbtest.NewErasure(t, dbtest.ErasureOpts{Batch: 2, Pseudonym: tc.secret})
			ids := recordAdminReads(t, b)
			want := "[erased]"
			if tc.secret != nil {
				want = b.Log.Pseudonym("alice")
			}
			req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "x"})
			require.NoError(t, err)
			v, err := b.Log.VerifyErasure(b.Ctx, req.ID)
			require.NoError(t, err)
			require.Equal(t, int64(4), v.AdminReadsLeft, "user, actor, user and address, the old one")

			rep, err := b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{})
			require.NoError(t, err)
			requireAdminReadsErased(t, b, ids, want)
			require.Equal(t, int64(7), rep.Request.AdminReadsScrubbed)
			month := service.PartitionName(b.Now)
			require.Equal(t, int64(6), rep.Request.Counts[month+":admin_reads"])
			require.Equal(t, int64(1), rep.Request.Counts["user_events_default:admin_reads"])
			actor := "alice"
			if tc.secret != nil {
				actor = want
			}
			b.RequireErased(t, req.ID, actor)

			again, err := b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{})
			require.NoError(t, err)
			require.Zero(t, again.Rows(), "nothing is left to scrub")

			// A read naming her that escaped (written back by hand).
			escaped := dbtest.InsertRaw(t, b.Pool, dbtest.Raw{Table: b.Detached, Time: dbtest.MonthStart(b.Now).AddDate(0, -10, 2),
				Tag: "admin:events:view", Subject: "root", ActorID: "root", Description: "Looked at events",
				Additional: `{"filter": {"user": "alice"}}`})
			v, err = b.Log.VerifyErasure(b.Ctx, req.ID)
			require.NoError(t, err)
			require.False(t, v.Clean)
			require.Equal(t, int64(1), v.AdminReadsLeft)
			require.Equal(t, []string{fmt.Sprintf("%s holds 1 admin reads whose filter names the person: event %d (additional.filter.user)",
				b.Detached, escaped)}, v.Problems)
			require.Equal(t, []service.Leftover{{Table: b.Detached, ID: strconv.FormatInt(escaped, 10), Key: "additional.filter.user"}}, v.Leftovers)
		})
	}
}

// An attempt killed after its first batch — of admin reads, or of the
// deletion that follows them — is resumed by the next and ends clean; once
// deletion has started, every admin read on her network was already
// scrubbed, although her addresses are gone with her events.
func TestErasureOfAdminReadsResumesAfterKill(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, marker string // the batch statement after whose commit the attempt dies
	}{
		{"after the first admin read", "SET additional = jsonb_set"},
		{"after the first deletion", `DELETE FROM "user_events`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, kill := context.WithCancel(context.Background())
			var step atomic.Int32 // 1: saw the statement, 2: saw its count
			b := dbtest.NewErasure(t, dbtest.ErasureOpts{Batch: 1, OnQuery: func(sql string) {
				switch {
				case step.Load() == 0 && strings.Contains(sql, tc.marker):
					step.Store(1)
				case step.Load() == 1 && strings.Contains(sql, "name: ErasureRequestAddCount"):
					step.Store(2)
				case step.Load() == 2 && sql == "commit":
					step.Store(3)
					kill()
				}
			}})
			ids := recordAdminReads(t, b)
			req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "x"})
			require.NoError(t, err)

			_, err = b.Log.RunErasure(ctx, req.ID, service.RunErasureOpts{})
			require.ErrorIs(t, err, context.Canceled)
			got, err := b.Log.ErasureRequest(b.Ctx, req.ID)
			require.NoError(t, err)
			require.Equal(t, service.ErasureRetrying, got.Status)
			if strings.HasPrefix(tc.marker, "DELETE") {
				require.Equal(t, int64(7), got.AdminReadsScrubbed, "every admin read was scrubbed before any deletion")
				require.Equal(t, int64(1), got.UserEventsDeleted)
				requireAdminReadsErased(t, b, ids, "[erased]")
			} else {
				require.Equal(t, int64(1), got.AdminReadsScrubbed)
				require.Zero(t, got.UserEventsDeleted)
			}

			rep, err := b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{})
			require.NoError(t, err)
			require.Equal(t, int64(7), rep.Request.AdminReadsScrubbed)
			requireAdminReadsErased(t, b, ids, "[erased]")
			b.RequireErased(t, req.ID, "alice")
		})
	}
}

// A person whose id is "[erased]" itself: the admin reads naming them
// already say "[erased]" (their network is still replaced), and the
// erasure ends (it does not rewrite its own output forever) clean.
func TestErasureOfTheReplacementIDEnds(t *testing.T) {
	t.Parallel()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{})
	_, err := b.Log.RecordUser(b.Ctx, service.EventParams{Tag: "account:login:success", Subject: "[erased]", ActorID: "[erased]", IP: "192.0.2.77"})
	require.NoError(t, err)
	_, err = b.Log.RecordUser(b.Ctx, service.EventParams{Tag: "admin:events:view", Subject: "root", ActorID: "root",
		Additional: json.RawMessage(`{"format": "html", "filter": {"user": "[erased]", "ip": "192.0.2.77/32"}}`)})
	require.NoError(t, err)
	req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "[erased]", Reason: "x"})
	require.NoError(t, err)
	rep, err := b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	require.Equal(t, int64(1), rep.Request.AdminReadsScrubbed)
	require.Equal(t, int64(1), rep.Request.UserEventsDeleted)
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM user_events WHERE tag = 'admin:events:view'
		AND additional->'filter' = '{"user": "[erased]", "ip": "[erased]"}'`))
	v, err := b.Log.VerifyErasure(b.Ctx, req.ID)
	require.NoError(t, err)
	require.True(t, v.Clean, "problems: %v", v.Problems)
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
	first := runInBackground(b, req.ID)
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
	got := b.RequireDone(t, req.ID, "alice")
	require.Equal(t, 1, got.Attempts)

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
	first := runInBackground(b, req.ID)
	<-firstGate.reached
	var terminated bool
	require.NoError(t, b.Pool.QueryRow(b.Ctx, "SELECT pg_terminate_backend($1, 10000)", int32(firstPID.Load())).Scan(&terminated))
	require.True(t, terminated, "the first attempt's session, and its lock, are gone")
	second := runInBackground(b, req.ID)
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
	b.RequireDone(t, req.ID, "alice")
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
	got := b.RequireDone(t, req.ID, "alice")
	require.Equal(t, yields+1, got.Attempts)
}

// runInBackground starts an attempt of request id on a goroutine of its
// own and returns the channel that gets its error.
func runInBackground(b *dbtest.Erasure, id int64) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := b.Log.RunErasure(b.Ctx, id, service.RunErasureOpts{})
		done <- err
	}()
	return done
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
	log := dbtest.Must(service.New(b.Pool, &service.Opts{Clock: dbtest.Clock(b.Now), ErasureBatch: 16,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}))
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
