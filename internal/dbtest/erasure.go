package dbtest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/service"
)

// ErasureOpts configures NewErasure.
type ErasureOpts struct {
	// Batch is the Log's ErasureBatch.
	Batch int
	// Pseudonym is the Log's PseudonymSecret.
	Pseudonym []byte
	// OnQuery sees the SQL of each statement the pool ran without error.
	OnQuery func(sql string)
	// OnConnQuery is OnQuery with the connection that ran it.
	OnConnQuery func(conn *pgx.Conn, sql string)
}

// Erasure is the fixture of the erasure tests (of the service and of its
// River worker): a database holding alice's events in every kind of place
// — monthly partitions in and out of the window, the default partition, a
// detached table — events she acted in on bob's account and on projects,
// and bob's own events. Its Log enqueues River jobs.
type Erasure struct {
	*Fixture
	// Exported is the ids ExportSubject must return for alice.
	Exported []int64
	// Detached is the monthly table of ten months back, left detached by
	// a retention pass that crashed, with one of alice's rows.
	Detached string
	// bob's rows as they were, to compare.
	bobUserEvents, bobProjectEvents string
}

// NewErasure makes the erasure fixture.
func NewErasure(tb testing.TB, o ErasureOpts) *Erasure {
	tb.Helper()
	f := NewFixture(tb, FixtureOpts{
		Jobs: true,
		Opts: service.Opts{ErasureBatch: o.Batch, PseudonymSecret: o.Pseudonym},
		Configure: func(cfg *pgxpool.Config) {
			if o.OnQuery != nil || o.OnConnQuery != nil {
				cfg.ConnConfig.Tracer = &queryTracer{onEnd: o.OnQuery, onEndConn: o.OnConnQuery}
			}
		},
	})
	month := func(offset int) time.Time { return MonthStart(f.Now).AddDate(0, offset, 0) }
	b := &Erasure{Fixture: f, Detached: service.PartitionName(month(-10))}
	record := func(model service.Model, p service.EventParams) int64 {
		tb.Helper()
		return f.Record(tb, model, p).ID
	}
	// Rows outside the window, or in places the API never writes to, go
	// in with SQL, as they would have been written when they were current.
	insert := func(at time.Time, user, actor string) {
		tb.Helper()
		InsertRaw(tb, f.Pool, Raw{Time: at, Subject: user, ActorID: actor, IP: "198.51.100.7", UserAgent: "Firefox",
			Location: `{"country": "FR"}`})
	}
	for i := range 3 { // this month
		b.Exported = append(b.Exported, record(service.ModelUser, SignIn("alice", f.Now.Add(-time.Duration(i+1)*time.Hour))))
	}
	for i := range 2 { // last month
		b.Exported = append(b.Exported, record(service.ModelUser, SignIn("alice", month(-1).Add(time.Duration(i+3)*24*time.Hour))))
	}
	insert(month(-3).Add(time.Hour), "alice", "alice") // its partition is kept, the row is past the window
	insert(month(-8), "alice", "alice")                // no partition: the default one
	_, err := f.Pool.Exec(f.Ctx, fmt.Sprintf("CREATE TABLE %s PARTITION OF user_events FOR VALUES FROM ('%s') TO ('%s')",
		b.Detached, month(-10).Format(time.RFC3339), month(-9).Format(time.RFC3339)))
	require.NoError(tb, err)
	insert(month(-10).Add(time.Hour), "alice", "alice")
	_, err = f.Pool.Exec(f.Ctx, "ALTER TABLE user_events DETACH PARTITION "+b.Detached)
	require.NoError(tb, err)

	// Bob: his own sign-in, and alice (an admin) adding his email address.
	record(service.ModelUser, service.EventParams{Tag: service.TagLoginSuccess, Subject: "bob", ActorID: "bob", IP: "203.0.113.5",
		UserAgent: "curl/8", Location: &service.Location{Country: "US"}})
	record(service.ModelUser, service.EventParams{Tag: "account:email:add", Subject: "bob", ActorID: "alice", AuthMethod: "webauthn",
		IP: "192.0.2.10", UserAgent: "Mozilla/5.0 Firefox/140.0", Additional: json.RawMessage(`{"email": "bob@example.com", "verified": false}`)})
	insert(month(-8).Add(time.Hour), "bob", "bob") // bob's row in the default partition too

	b.Exported = append(b.Exported,
		record(service.ModelProject, service.EventParams{Tag: "project:release:add", Subject: "demo", ActorID: "alice", AuthMethod: "api_token",
			TokenID: "ci-upload", IP: "192.0.2.10", UserAgent: "twine/6", Location: &service.Location{Country: "DE"},
			Additional: json.RawMessage(`{"version": "1.0"}`)}),
		record(service.ModelProject, service.EventParams{Tag: "project:role:invite", Subject: "demo", ActorID: "alice", IP: "192.0.2.10",
			Additional: json.RawMessage(`{"target_user": "carol", "role": "Maintainer", "email": "carol@example.com"}`)}),
		record(service.ModelProject, service.EventParams{Tag: "project:release:yank", Subject: "other", ActorID: "alice", UserAgent: "browser",
			Additional: json.RawMessage(`{"version": "0.9"}`)}),
	)
	record(service.ModelProject, service.EventParams{Tag: "project:release:add", Subject: "demo", ActorID: "bob", IP: "203.0.113.5",
		UserAgent: "twine/6", Additional: json.RawMessage(`{"version": "1.1"}`)})
	record(service.ModelProject, service.EventParams{Tag: "project:role:invite", Subject: "demo", ActorID: "bob",
		Additional: json.RawMessage(`{"target_user": "dan", "role": "Owner", "email": "dan@example.com"}`)})

	b.bobUserEvents = b.dump(tb, "SELECT * FROM user_events WHERE user_id = 'bob' AND actor_id = 'bob' ORDER BY id")
	b.bobProjectEvents = b.dump(tb, "SELECT * FROM project_events WHERE actor_id = 'bob' ORDER BY id")
	return b
}

// dump renders the rows of sql as JSON, to compare before and after.
func (b *Erasure) dump(tb testing.TB, sql string) string {
	tb.Helper()
	var out string
	require.NoError(tb, b.Pool.QueryRow(b.Ctx, "SELECT coalesce(json_agg(r)::text, '') FROM ("+sql+") r").Scan(&out))
	require.NotEmpty(tb, out, sql)
	return out
}

// RequireErased checks, beyond VerifyErasure of request id, what the
// person and others see: alice's events are gone from everywhere, the
// events she acted in are kept without personal fields and name actor
// (alice, or her pseudonym), and bob's data is untouched.
func (b *Erasure) RequireErased(tb testing.TB, id int64, actor string) {
	tb.Helper()
	v, err := b.Log.VerifyErasure(b.Ctx, id)
	require.NoError(tb, err)
	require.True(tb, v.Clean, "problems: %v", v.Problems)
	require.Empty(tb, v.Problems)

	require.Zero(tb, b.Count(tb, "SELECT count(*) FROM user_events WHERE user_id = 'alice'"))
	require.Zero(tb, b.Count(tb, "SELECT count(*) FROM user_events_default WHERE user_id = 'alice'"))
	require.Zero(tb, b.Count(tb, "SELECT count(*) FROM "+b.Detached+" WHERE user_id = 'alice'"))

	// The events she acted in stay, without IP, user agent, location or
	// personal keys; the other keys stay.
	require.Equal(tb, 3, b.Count(tb, "SELECT count(*) FROM project_events WHERE actor_id = $1", actor))
	require.Zero(tb, b.Count(tb, `SELECT count(*) FROM project_events WHERE actor_id = $1
		AND (ip IS NOT NULL OR user_agent IS NOT NULL OR location IS NOT NULL)`, actor))
	var invite string
	require.NoError(tb, b.Pool.QueryRow(b.Ctx, "SELECT additional::text FROM project_events WHERE actor_id = $1 AND tag = 'project:role:invite'", actor).Scan(&invite))
	require.JSONEq(tb, `{"target_user": "carol", "role": "Maintainer"}`, invite)
	var bobEmail string
	require.NoError(tb, b.Pool.QueryRow(b.Ctx, `SELECT additional::text FROM user_events
		WHERE user_id = 'bob' AND actor_id = $1 AND ip IS NULL AND user_agent IS NULL AND location IS NULL`, actor).Scan(&bobEmail))
	require.JSONEq(tb, `{"verified": false}`, bobEmail)

	// Bob's own rows are exactly as they were.
	require.Equal(tb, b.bobUserEvents, b.dump(tb, "SELECT * FROM user_events WHERE user_id = 'bob' AND actor_id = 'bob' ORDER BY id"))
	require.Equal(tb, b.bobProjectEvents, b.dump(tb, "SELECT * FROM project_events WHERE actor_id = 'bob' ORDER BY id"))
	require.Equal(tb, 3, b.Count(tb, "SELECT count(*) FROM user_events WHERE user_id = 'bob'"))
	require.Equal(tb, 5, b.Count(tb, "SELECT count(*) FROM project_events"))
}

// Request requests alice's erasure with p (whose UserID is alice when
// empty) and checks that it is a new pending request with nothing erased
// yet.
func (b *Erasure) Request(tb testing.TB, p service.ErasureParams) service.ErasureRequest {
	tb.Helper()
	if p.UserID == "" {
		p.UserID = "alice"
	}
	req, created, err := b.Log.RequestErasure(b.Ctx, p)
	require.NoError(tb, err)
	require.True(tb, created)
	require.Equal(tb, service.ErasurePending, req.Status)
	v, err := b.Log.VerifyErasure(b.Ctx, req.ID)
	require.NoError(tb, err)
	require.False(tb, v.Clean, "nothing is erased before the request runs")
	return req
}

// RequireDone checks that request id is done, without an error, having
// deleted alice's 8 user events and scrubbed the 1 user event and the 3
// project events she acted in, and that RequireErased holds for actor; it
// returns the request.
func (b *Erasure) RequireDone(tb testing.TB, id int64, actor string) service.ErasureRequest {
	tb.Helper()
	got, err := b.Log.ErasureRequest(b.Ctx, id)
	require.NoError(tb, err)
	require.Equal(tb, service.ErasureDone, got.Status)
	require.NotNil(tb, got.StartedAt)
	require.NotNil(tb, got.CompletedAt)
	require.Empty(tb, got.Error)
	require.Equal(tb, int64(8), got.UserEventsDeleted)
	require.Equal(tb, int64(1), got.UserEventsScrubbed)
	require.Equal(tb, int64(3), got.ProjectEventsScrubbed)
	b.RequireErased(tb, id, actor)
	return got
}

// WantCounts is what an erasure of alice records it removed, table by
// table: her user events in each place, the user event and the project
// events she acted in, scrubbed.
func (b *Erasure) WantCounts() map[string]int64 {
	month := func(offset int) string { return service.PartitionName(MonthStart(b.Now).AddDate(0, offset, 0)) }
	return map[string]int64{
		month(0): 3, month(-1): 2, month(-3): 1, "user_events_default": 1, b.Detached: 1,
		month(0) + ":scrubbed": 1, "project_events:scrubbed": 3,
	}
}

// KilledAfterFirstBatch makes the fixture with batches of one row,
// requests alice's erasure and runs an attempt that is killed (its
// context cancelled) once its first batch has committed; it returns the
// request as the attempt left it.
func KilledAfterFirstBatch(tb testing.TB, reason string) (*Erasure, service.ErasureRequest) {
	tb.Helper()
	ctx, kill := context.WithCancel(context.Background())
	defer kill()
	b := NewErasure(tb, ErasureOpts{Batch: 1, OnQuery: afterFirstBatch(kill)})
	req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "alice", Reason: reason})
	require.NoError(tb, err)
	_, err = b.Log.RunErasure(ctx, req.ID, service.RunErasureOpts{})
	require.ErrorIs(tb, err, context.Canceled)
	got, err := b.Log.ErasureRequest(b.Ctx, req.ID)
	require.NoError(tb, err)
	return b, got
}

// AliceLeft counts alice's user events still stored: in user_events and
// in the detached table.
func (b *Erasure) AliceLeft(tb testing.TB) int {
	tb.Helper()
	return b.Count(tb, "SELECT count(*) FROM user_events WHERE user_id = 'alice'") +
		b.Count(tb, "SELECT count(*) FROM "+b.Detached+" WHERE user_id = 'alice'")
}

// afterFirstBatch returns an ErasureOpts.OnQuery that calls f once, when
// an erasure's first batch has committed (after its count was recorded):
// give it a context's cancel to kill the attempt there.
func afterFirstBatch(f func()) func(sql string) {
	var sawCount, fired atomic.Bool
	return func(sql string) {
		switch {
		case strings.Contains(sql, "name: ErasureRequestAddCount"):
			sawCount.Store(true)
		case sql == "commit" && sawCount.Load() && fired.CompareAndSwap(false, true):
			f()
		}
	}
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
