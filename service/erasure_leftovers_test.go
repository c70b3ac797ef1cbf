package service_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/service"
)

// aliceIP is the address alice used; nobody else uses it.
const aliceIP = "192.0.2.10"

// hookedErasure is a database where alice is the subject of events, the
// actor in bob's, and named as an account (person_ref) in a project's,
// each with a River hook job whose first attempt failed with an error
// quoting the event, and where an ingest client sent her events under an
// idempotency key naming her.
type hookedErasure struct {
	*dbtest.Fixture
	tok service.IngestToken
	// The events, and the hook job of each.
	own, acted, mention, bobs int64
	jobs                      map[int64]int64 // event id → hook job id
	// The ingest request sent under "signup-alice-1".
	ingestBody   []byte
	ingestEvents []service.IngestEvent
	ingested     service.IngestResult
	logs         *dbtest.SyncBuffer
}

// watchHook is the hook every account: and project: event runs here.
const watchHook = "watch"

func newHookedErasure(t *testing.T) *hookedErasure {
	t.Helper()
	b := &hookedErasure{logs: &dbtest.SyncBuffer{}, jobs: map[int64]int64{}}
	b.Fixture = dbtest.NewFixture(t, dbtest.FixtureOpts{Jobs: true, Opts: service.Opts{
		PseudonymSecret: []byte("test secret"),
		Hooks:           []service.Hook{{Name: watchHook, TagPrefix: "account:"}, {Name: watchHook, TagPrefix: "project:"}},
	}})
	b.own = b.Record(t, service.ModelUser, dbtest.SignIn("alice", b.Now.Add(-2*time.Hour))).ID
	b.acted = b.Record(t, service.ModelUser, service.EventParams{Tag: service.TagAccountEmailAdd, Subject: "bob", ActorID: "alice",
		AuthMethod: "password", IP: aliceIP, UserAgent: "Firefox/140.0", Additional: json.RawMessage(`{"email": "bob@example.com"}`)}).ID
	b.mention = b.Record(t, service.ModelProject, service.EventParams{Tag: service.TagProjectRoleAdd, Subject: "demo", ActorID: "bob",
		IP: "203.0.113.5", Additional: json.RawMessage(`{"target_user": "alice", "role": "Owner"}`)}).ID
	b.bobs = b.Record(t, service.ModelUser, service.EventParams{Tag: service.TagLoginSuccess, Subject: "bob", ActorID: "bob",
		AuthMethod: "password", IP: "203.0.113.5"}).ID

	token, err := b.Log.CreateIngestToken(b.Ctx, "billing")
	require.NoError(t, err)
	b.tok, err = b.Log.AuthenticateIngest(b.Ctx, token)
	require.NoError(t, err)
	b.ingestBody = []byte(`{"events": [alice signs in]}`)
	b.ingestEvents = []service.IngestEvent{{Tag: service.TagLoginSuccess, UserID: "alice", ActorID: "alice", AuthMethod: "password",
		IP: aliceIP, UserAgent: "curl/8", Location: &service.Location{Country: "DE", City: "Berlin"}}}
	var replayed bool
	b.ingested, replayed, err = b.Log.Ingest(b.Ctx, b.tok, "signup-alice-1", b.ingestBody, b.ingestEvents)
	require.NoError(t, err)
	require.False(t, replayed)

	for _, ev := range []int64{b.own, b.acted, b.mention, b.bobs} {
		var job int64
		require.NoError(t, b.Pool.QueryRow(b.Ctx, `SELECT id FROM river_job WHERE kind = 'auditlog_hook' AND (args->>'event_id')::bigint = $1`, ev).Scan(&job))
		b.jobs[ev] = job
	}
	// Every hook job's first attempt fails with an error quoting its
	// event, as a mail handler's might; the one of the e-mail change is
	// cancelled (a finished job River keeps). The project event's error
	// does not name alice: only its event does.
	b.runHooks(t, func(_ context.Context, e service.Event) error {
		err := fmt.Errorf("could not notify %q about %q from %s", e.UserID, e.ActorID, e.IP)
		if e.Tag == service.TagAccountEmailAdd {
			return river.JobCancel(fmt.Errorf("%w (%s)", err, e.Additional))
		}
		return err
	}, func() bool {
		return b.Count(t, `SELECT count(*) FROM river_job WHERE kind = 'auditlog_hook' AND coalesce(cardinality(errors), 0) = 0`) == 0
	})
	require.Equal(t, 5, b.Count(t, `SELECT count(*) FROM river_job WHERE kind = 'auditlog_hook'`), "four recorded events and one ingested")
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM river_job WHERE id = $1 AND state = 'cancelled'`, b.jobs[b.acted]))
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM river_job WHERE id = $1 AND errors[1]->>'error' LIKE '%"alice"%'`, b.jobs[b.own]))
	return b
}

// runHooks runs a River client working the hook jobs (and the erasure
// job) with handler until done reports true, then stops it.
func (b *hookedErasure) runHooks(t *testing.T, handler jobs.HookHandler, done func() bool, retry ...int64) {
	t.Helper()
	workers := river.NewWorkers()
	river.AddWorker(workers, &jobs.HookWorker{Events: b.Log, Handlers: map[string]jobs.HookHandler{watchHook: handler},
		Logger: slog.New(slog.NewTextHandler(b.logs, nil))})
	river.AddWorker(workers, &jobs.ErasureWorker{Eraser: b.Log, Logger: slog.New(slog.DiscardHandler)})
	client, err := river.NewClient(riverpgxv5.New(b.Pool), &river.Config{
		Queues: map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 4}}, Workers: workers,
		FetchCooldown: 20 * time.Millisecond, FetchPollInterval: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	require.NoError(t, client.Start(b.Ctx))
	for _, id := range retry {
		_, err := client.JobRetry(b.Ctx, id)
		require.NoError(t, err)
	}
	dbtest.Eventually(t, done, 30*time.Second, 50*time.Millisecond, "the hook jobs did not get there")
	stop, cancel := context.WithTimeout(b.Ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, client.Stop(stop))
}

// requireNamedNowhere checks that no row of any table but
// erasure_requests holds alice's id, address or e-mail address.
func (b *hookedErasure) requireNamedNowhere(t *testing.T) {
	t.Helper()
	rows, err := b.Pool.Query(b.Ctx, `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'erasure_requests'`)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Contains(t, tables, "river_job")
	require.Contains(t, tables, "ingest_requests")
	for _, table := range tables {
		var found []string
		rows, err := b.Pool.Query(b.Ctx, fmt.Sprintf(`SELECT r::text FROM %s r WHERE r::text ~ '(^|[^[:alnum:]])(alice|192\.0\.2\.10)($|[^[:alnum:]])'`,
			pgx.Identifier{table}.Sanitize()))
		require.NoError(t, err)
		found, err = pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		require.Empty(t, found, "%s still names alice", table)
	}
}

// The erasure leaves nothing anywhere that names alice or holds her data
// but the request itself: no event, no hook job's arguments or recorded
// errors, no idempotency key. The hook jobs' arguments never held her
// data (an event's key only); the errors their attempts recorded for
// events that named her are erased, in a pending job and in a finished
// one, while bob's job keeps his. The pending jobs then run harmlessly: the
// one of her deleted event completes without calling the handler, the one
// of the project event that named her sees the pseudonym.
func TestErasureClearsHookJobs(t *testing.T) {
	t.Parallel()
	b := newHookedErasure(t)
	var bobErrors string
	require.NoError(t, b.Pool.QueryRow(b.Ctx, `SELECT errors::text FROM river_job WHERE id = $1`, b.jobs[b.bobs]).Scan(&bobErrors))
	require.Contains(t, bobErrors, "203.0.113.5")
	var args []string
	rows, err := b.Pool.Query(b.Ctx, `SELECT DISTINCT k FROM river_job, jsonb_object_keys(args) k WHERE kind = 'auditlog_hook' ORDER BY k`)
	require.NoError(t, err)
	args, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"event_id", "hook", "model", "time"}, args, "a hook job's arguments are its event's key, nothing of its content")

	req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "account deleted"})
	require.NoError(t, err)
	v, err := b.Log.VerifyErasure(b.Ctx, req.ID)
	require.NoError(t, err)
	require.EqualValues(t, 4, v.HookJobsLeft, "her sign-ins (recorded and ingested), the e-mail change she made, the project naming her")
	require.EqualValues(t, 1, v.IdempotencyKeysLeft)
	require.Contains(t, v.Leftovers, service.Leftover{Table: "river_job", ID: strconv.FormatInt(b.jobs[b.mention], 10), Key: "errors[0]"})
	require.Contains(t, v.Leftovers, service.Leftover{Table: "ingest_requests", ID: fmt.Sprintf("%d/signup-alice-1", b.tok.ID), Key: "key"})

	rep, err := b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	require.EqualValues(t, 4, rep.Counts["river_job:hook_jobs"])
	require.EqualValues(t, 1, rep.Counts["ingest_requests:keys"])
	v, err = b.Log.VerifyErasure(b.Ctx, req.ID)
	require.NoError(t, err)
	require.True(t, v.Clean, "problems: %v", v.Problems)
	require.Empty(t, v.Leftovers)
	require.Zero(t, v.HookJobsLeft)
	require.Zero(t, v.IdempotencyKeysLeft)
	b.requireNamedNowhere(t)

	// Each erased attempt keeps when it was and which; bob's are his.
	var erased []string
	rows, err = b.Pool.Query(b.Ctx, `SELECT a->>'attempt' || ' ' || (a->>'at' IS NOT NULL) || ' ' || (a->>'error') || ' ' || (a->>'trace')
		FROM river_job j, unnest(j.errors) a WHERE j.id = ANY($1) ORDER BY j.id`,
		[]int64{b.jobs[b.own], b.jobs[b.acted], b.jobs[b.mention]})
	require.NoError(t, err)
	erased, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.NotEmpty(t, erased)
	for _, e := range erased {
		require.Regexp(t, `^\d+ true \[erased\] $`, e)
	}
	var after string
	require.NoError(t, b.Pool.QueryRow(b.Ctx, `SELECT errors::text FROM river_job WHERE id = $1`, b.jobs[b.bobs]).Scan(&after))
	require.Equal(t, bobErrors, after, "bob's job is his own")
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM river_job WHERE id = $1 AND state = 'cancelled'`, b.jobs[b.acted]), "a finished job stays finished")

	// The jobs still to run are left to run, and run harmlessly.
	var mu sync.Mutex
	var seen []service.Event
	var pending []int64
	rows, err = b.Pool.Query(b.Ctx, `SELECT id FROM river_job WHERE kind = 'auditlog_hook' AND state IN ('retryable', 'available') ORDER BY id`)
	require.NoError(t, err)
	pending, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	require.Len(t, pending, 4, "her two sign-ins, the project event, bob's sign-in")
	b.runHooks(t, func(_ context.Context, e service.Event) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, e)
		return nil
	}, func() bool {
		return b.Count(t, `SELECT count(*) FROM river_job WHERE state NOT IN ('completed', 'cancelled')`) == 0
	}, pending...)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seen, 2, "the handler never saw alice's own events: they are gone")
	byID := map[int64]service.Event{}
	for _, e := range seen {
		byID[e.ID] = e
	}
	require.Equal(t, "bob", byID[b.bobs].UserID)
	require.JSONEq(t, fmt.Sprintf(`{"target_user": %q, "role": "Owner"}`, b.Log.Pseudonym("alice")), string(byID[b.mention].Additional))
	require.Equal(t, 2, strings.Count(b.logs.String(), "hook skipped: its event is gone"))
	require.NotContains(t, b.logs.String(), "alice", "the worker's log never names her")
	b.requireNamedNowhere(t)
	v, err = b.Log.VerifyErasure(b.Ctx, req.ID)
	require.NoError(t, err)
	require.True(t, v.Clean, "problems: %v", v.Problems)
}

// Verification names each thing left by table, row and key: here a name
// and a personal value written back by hand (as a superuser would) into
// an event's additional, a hook job's arguments and errors, and an
// idempotency key's answer. Running the erasure again clears what it
// wrote. The list is capped, and says how many more rows it leaves out.
func TestVerifyErasureNamesEachLeftover(t *testing.T) {
	t.Parallel()
	b := newHookedErasure(t)
	req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "x"})
	require.NoError(t, err)
	_, err = b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)

	exec := func(sql string, args ...any) {
		t.Helper()
		// As a superuser behind the service's back: no trigger fires.
		tx, err := b.Pool.Begin(b.Ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(b.Ctx) }()
		_, err = tx.Exec(b.Ctx, "SET LOCAL session_replication_role = replica")
		require.NoError(t, err)
		tag, err := tx.Exec(b.Ctx, sql, args...)
		require.NoError(t, err)
		require.EqualValues(t, 1, tag.RowsAffected(), sql)
		require.NoError(t, tx.Commit(b.Ctx))
	}
	exec(`UPDATE project_events SET additional = additional || '{"target_user": "alice"}' WHERE id = $1`, b.mention)
	exec(`UPDATE user_events SET additional = additional || '{"email": "alice@example.com"}' WHERE id = $1`, b.acted)
	bobsJob := b.jobs[b.bobs]
	exec(`UPDATE river_job SET args = args || '{"subject": "alice"}' WHERE id = $1`, bobsJob)
	exec(`UPDATE river_job SET errors = array_append(errors, '{"at": "2026-01-01T00:00:00Z", "attempt": 9, "error": "mail to alice bounced", "trace": ""}')
		WHERE id = $1`, bobsJob)
	exec(`UPDATE ingest_requests SET response = response || '{"note": "alice"}' WHERE token_id = $1`, b.tok.ID)
	var key string
	require.NoError(t, b.Pool.QueryRow(b.Ctx, `SELECT key FROM ingest_requests WHERE token_id = $1`, b.tok.ID).Scan(&key))
	var errorsIndex int
	require.NoError(t, b.Pool.QueryRow(b.Ctx, `SELECT cardinality(errors) - 1 FROM river_job WHERE id = $1`, bobsJob).Scan(&errorsIndex))

	v, err := b.Log.VerifyErasure(b.Ctx, req.ID)
	require.NoError(t, err)
	require.False(t, v.Clean)
	month := service.PartitionName(b.Now)
	mention := strconv.FormatInt(b.mention, 10)
	acted := strconv.FormatInt(b.acted, 10)
	job := strconv.FormatInt(bobsJob, 10)
	errorsKey := fmt.Sprintf("errors[%d]", errorsIndex)
	require.Equal(t, []service.Leftover{
		{Table: month, ID: acted, Key: "additional.email"},
		{Table: "project_events", ID: mention, Key: "additional.target_user"},
		{Table: "river_job", ID: job, Key: "args.subject"},
		{Table: "river_job", ID: job, Key: errorsKey},
		{Table: "ingest_requests", ID: fmt.Sprintf("%d/%s", b.tok.ID, key), Key: "response.note"},
	}, v.Leftovers)
	require.Equal(t, []string{
		month + " holds 1 events the person acted in with personal fields: event " + acted + " (additional.email)",
		"project_events holds 1 events naming the person as an account (person_ref keys): event " + mention + " (additional.target_user)",
		"river_job holds 1 hook jobs naming the person: job " + job + " (args.subject), job " + job + " (" + errorsKey + ")",
		fmt.Sprintf("ingest_requests holds 1 idempotency keys naming the person: token %d key %q (response.note)", b.tok.ID, key),
	}, v.Problems)
	require.EqualValues(t, 1, v.ActedUserEventsPersonal)
	require.EqualValues(t, 1, v.MentionsLeft)
	require.EqualValues(t, 1, v.HookJobsLeft)
	require.EqualValues(t, 1, v.IdempotencyKeysLeft)
	require.Zero(t, v.LeftoversMore)

	// The cap: 150 of her own events in the default partition.
	_, err = b.Pool.Exec(b.Ctx, `INSERT INTO user_events_default (time, tag, user_id, description)
		SELECT '2001-01-01'::timestamptz + n * interval '1 second', 'account:create', 'alice', 'Account created' FROM generate_series(1, 150) n`)
	require.NoError(t, err)
	v, err = b.Log.VerifyErasure(b.Ctx, req.ID)
	require.NoError(t, err)
	require.EqualValues(t, 150, v.UserEventsLeft)
	require.Len(t, v.Leftovers, service.MaxLeftovers)
	require.EqualValues(t, 150-service.MaxLeftovers+4, v.LeftoversMore, "50 of her events, and the four rows found after the list was full")
	require.Regexp(t, `^user_events_default holds 150 of the person's user events: event \d+ \(user_id\), .* and 50 more$`, v.Problems[0])
	require.Equal(t, "river_job holds 1 hook jobs naming the person and 1 more", v.Problems[3])

	// The erasure, run again, clears what was written back.
	_, err = b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	v, err = b.Log.VerifyErasure(b.Ctx, req.ID)
	require.NoError(t, err)
	require.True(t, v.Clean, "problems: %v", v.Problems)
	b.requireNamedNowhere(t)
	var args string
	require.NoError(t, b.Pool.QueryRow(b.Ctx, `SELECT args->>'subject' FROM river_job WHERE id = $1`, bobsJob).Scan(&args))
	require.Equal(t, b.Log.Pseudonym("alice"), args)
}

// erasedKey is the key an erasure rewrites an idempotency key naming the
// erased person to.
func erasedKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return "erased:sha256:" + hex.EncodeToString(h[:])
}

// An idempotency key that names the erased person is rewritten, not
// deleted: a retry of the request after the erasure still replays its
// answer and records nothing, so her events do not come back. The
// answers are counts, never personal data. A key erased once and kept
// past its 24 hours gives way to the same key used again, whose request
// is new.
func TestErasureKeepsIdempotencyReplays(t *testing.T) {
	t.Parallel()
	b := ingestSetup(t, dbtest.FixtureOpts{Jobs: true})
	alice := []service.IngestEvent{ingestLogin("alice", aliceIP), ingestRelease("p-1", "1.0")}
	alice[1].ActorID = "alice"
	bob := []service.IngestEvent{ingestLogin("bob", "203.0.113.5")}
	sent := map[string][]service.IngestEvent{"signup-alice-1": alice, "k-2": alice, "bob-1": bob}
	answers := map[string]service.IngestResult{}
	for key, events := range sent {
		res, replayed, err := b.Log.Ingest(b.Ctx, b.tok, key, []byte("body of "+key), events)
		require.NoError(t, err)
		require.False(t, replayed)
		answers[key] = res
	}

	// The stored answers are counts only, and so is every field of the
	// type they are made from.
	for i, f := range reflect.VisibleFields(reflect.TypeFor[service.IngestResult]()) {
		require.Equal(t, reflect.Int64, f.Type.Kind(), "field %d (%s) of an answer is a count", i, f.Name)
	}
	require.Zero(t, b.Count(t, `SELECT count(*) FROM ingest_requests, jsonb_each(response) a WHERE jsonb_typeof(a.value) <> 'number'`))
	require.Equal(t, 3, b.Count(t, `SELECT count(*) FROM ingest_requests WHERE response ?& ARRAY['recorded', 'user_events', 'project_events']`))

	req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "x"})
	require.NoError(t, err)
	v, err := b.Log.VerifyErasure(b.Ctx, req.ID)
	require.NoError(t, err)
	require.EqualValues(t, 1, v.IdempotencyKeysLeft, "the key that names her; the opaque one does not")
	_, err = b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	v, err = b.Log.VerifyErasure(b.Ctx, req.ID)
	require.NoError(t, err)
	require.True(t, v.Clean, "problems: %v", v.Problems)
	keys := func() []string {
		rows, err := b.Pool.Query(b.Ctx, `SELECT key FROM ingest_requests ORDER BY key`)
		require.NoError(t, err)
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return out
	}
	require.Equal(t, []string{"bob-1", erasedKey("signup-alice-1"), "k-2"}, keys())
	storedBefore := b.stored(t)

	for key, events := range sent {
		res, replayed, err := b.Log.Ingest(b.Ctx, b.tok, key, []byte("body of "+key), events)
		require.NoError(t, err)
		require.True(t, replayed, key)
		require.Equal(t, answers[key], res, key)
	}
	_, _, err = b.Log.Ingest(b.Ctx, b.tok, "signup-alice-1", []byte("another body"), alice)
	require.ErrorIs(t, err, service.ErrIdempotencyConflict)
	require.Equal(t, storedBefore, b.stored(t), "a retry after the erasure records nothing")
	require.Zero(t, b.Count(t, "SELECT count(*) FROM user_events WHERE user_id = 'alice'"))
	require.Equal(t, []string{"bob-1", erasedKey("signup-alice-1"), "k-2"}, keys(), "a replay's claim is rolled back")

	// Past the keep time the key is free again: the same key and body
	// record anew, and erasing her again rewrites it over the expired row.
	_, err = b.Pool.Exec(b.Ctx, `UPDATE ingest_requests SET created_at = created_at - interval '25 hours' WHERE key = $1`, erasedKey("signup-alice-1"))
	require.NoError(t, err)
	_, replayed, err := b.Log.Ingest(b.Ctx, b.tok, "signup-alice-1", []byte("body of signup-alice-1"), alice)
	require.NoError(t, err)
	require.False(t, replayed)
	require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM user_events WHERE user_id = 'alice'"))
	again, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: "sent again"})
	require.NoError(t, err)
	rep, err := b.Log.RunErasure(b.Ctx, again.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	require.EqualValues(t, 2, rep.Counts["ingest_requests:keys"], "the expired row deleted, the key rewritten")
	v, err = b.Log.VerifyErasure(b.Ctx, again.ID)
	require.NoError(t, err)
	require.True(t, v.Clean, "problems: %v", v.Problems)
	require.Equal(t, []string{"bob-1", erasedKey("signup-alice-1"), "k-2"}, keys())
	_, replayed, err = b.Log.Ingest(b.Ctx, b.tok, "signup-alice-1", []byte("body of signup-alice-1"), alice)
	require.NoError(t, err)
	require.True(t, replayed)
}
