package importer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/importer"
	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/service"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// history is a JSON Lines input and what importing it must do.
type history struct {
	lines    []string
	recorded int64 // valid, in the window or kept forever, once each
	expired  map[string]int64
	refused  int64
	dups     int64
}

func (h *history) add(v map[string]any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	h.lines = append(h.lines, string(b))
}

func (h *history) input() func() (io.ReadCloser, error) {
	text := strings.Join(h.lines, "\n") + "\n"
	return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(text)), nil }
}

// newHistory makes n sign-ins inside the window (each from a new
// network, which would fire a new-location signal if recorded live), as
// many outside it, project events of years ago, and the bad lines.
func newHistory(now time.Time, n int) *history {
	h := &history{expired: map[string]int64{}}
	for i := range n {
		h.add(map[string]any{"source": "old-db", "source_id": fmt.Sprintf("u-%d", i), "tag": "account:login:success",
			"user_id": fmt.Sprintf("user-%d", i%7), "actor_id": fmt.Sprintf("user-%d", i%7), "auth_method": "password",
			"ip": fmt.Sprintf("10.%d.%d.9", i%200, i/200), "location": map[string]string{"country": "DE", "city": "Berlin"},
			"time": now.Add(-time.Duration(i+1) * time.Hour).Format(time.RFC3339Nano)})
		h.recorded++
		tag := "account:login:failure"
		if i%3 == 0 {
			tag = "account:password:change"
		}
		h.add(map[string]any{"source": "old-db", "source_id": fmt.Sprintf("x-%d", i), "tag": tag, "user_id": "user-1",
			"additional": map[string]string{"reason": "bad password"},
			"time":       now.Add(-service.DefaultRetention - time.Duration(i+1)*time.Hour).Format(time.RFC3339Nano)})
		h.expired[tag]++
		h.add(map[string]any{"source": "old-db", "source_id": fmt.Sprintf("p-%d", i), "tag": "project:release:add",
			"project_id": "sampleproject", "actor_id": "user-2", "additional": map[string]string{"version": fmt.Sprintf("1.%d", i)},
			"time": now.AddDate(-3, 0, -i).Format(time.RFC3339Nano)})
		h.recorded++
	}
	h.add(map[string]any{"source": "old-db", "source_id": "u-0", "tag": "account:login:success", "user_id": "user-0",
		"time": now.Add(-time.Hour).Format(time.RFC3339Nano)}) // the same source event again
	h.dups++
	h.add(map[string]any{"source": "old-db", "source_id": "bad-1", "tag": "account:no_such_thing", "user_id": "user-1",
		"time": now.Format(time.RFC3339Nano)})
	h.add(map[string]any{"source": "old-db", "tag": "account:login:success", "user_id": "user-1", "time": now.Format(time.RFC3339Nano)})
	h.lines = append(h.lines, `{"source": "old-db", "source_id": "bad-3", "tag": `, "")
	h.refused += 3
	return h
}

type importBundle struct {
	*dbtest.Fixture
}

// newImportBundle is a Log that would fire every signal and a hook on
// sign-ins if it recorded them live.
func newImportBundle(t *testing.T) *importBundle {
	t.Helper()
	f := dbtest.NewFixture(t, dbtest.FixtureOpts{Jobs: true, Opts: service.Opts{
		Hooks: []service.Hook{{Name: jobs.HookNotify, Tag: "account:login:success"}},
	}})
	return &importBundle{Fixture: f}
}

func (b *importBundle) run(t *testing.T, ctx context.Context, h *history, opts importer.Options) (*importer.Result, error) {
	t.Helper()
	if opts.Run == "" {
		opts.Run = "test"
	}
	if opts.Batch == 0 {
		opts.Batch = 16
	}
	return importer.JSONL(ctx, b.Log, h.input(), opts)
}

// The options' zero values take the defaults: a batch of DefaultBatch,
// the summary by DefaultBy.
func TestJSONLDefaults(t *testing.T) {
	t.Parallel()
	b := newImportBundle(t)
	h := newHistory(b.Now, 5)
	res, err := importer.JSONL(b.Ctx, b.Log, h.input(), importer.Options{Run: "defaults"})
	require.NoError(t, err)
	require.Equal(t, h.recorded, res.Run.Counts.Recorded)
	require.Equal(t, int64(len(h.lines)), res.Run.Position, "every line read, the blank one too")
	summary, err := b.Log.UserEvents(b.Ctx, importer.DefaultBy, service.ListOpts{Tag: service.TagAdminImport})
	require.NoError(t, err)
	require.Len(t, summary.Events, 1)
}

func (b *importBundle) events(t *testing.T) int {
	return b.Count(t, `SELECT (SELECT count(*) FROM user_events WHERE tag <> 'admin:import') + (SELECT count(*) FROM project_events)`)
}

// An import records exactly the in-window and kept-forever events, once,
// quietly; counts the expired per tag and lists the refused with their
// source ids; a second run records nothing.
func TestJSONLImportsExactlyOnce(t *testing.T) {
	t.Parallel()
	b := newImportBundle(t)
	h := newHistory(b.Now, 40)
	res, err := b.run(t, b.Ctx, h, importer.Options{})
	require.NoError(t, err)
	c := res.Run.Counts
	require.Equal(t, int64(len(h.lines)-1), c.Read, "every line but the blank one")
	require.Equal(t, h.recorded, c.Recorded)
	require.Equal(t, h.dups, c.Duplicates)
	require.Equal(t, h.refused, c.Refused)
	require.Equal(t, h.expired, c.ExpiredByTag)
	require.Equal(t, int(h.recorded), b.events(t))
	var reasons []string
	for _, r := range c.Refusals {
		reasons = append(reasons, r.SourceID+" "+r.Field+": "+r.Reason)
	}
	require.Len(t, reasons, 3)
	require.Contains(t, reasons[0], "bad-1 tag")
	require.Contains(t, reasons[1], "source_id")
	require.Contains(t, reasons[2], "line 124")

	require.Zero(t, b.Count(t, `SELECT count(*) FROM river_job`), "no hook job, no notification")
	require.Zero(t, b.Count(t, `SELECT count(*) FROM user_events WHERE tag LIKE 'account:login:%' AND tag <> 'account:login:success'`),
		"no signal fired")
	summary, err := b.Log.UserEvents(b.Ctx, importer.DefaultBy, service.ListOpts{Tag: service.TagAdminImport})
	require.NoError(t, err)
	require.Len(t, summary.Events, 1)
	require.Contains(t, string(summary.Events[0].Additional), fmt.Sprintf(`"recorded": %d`, h.recorded))

	again, err := b.run(t, b.Ctx, h, importer.Options{})
	require.NoError(t, err)
	require.Zero(t, again.Run.Counts.Recorded, "a second run records nothing")
	require.Equal(t, h.recorded+h.dups, again.Run.Counts.Duplicates)
	require.Equal(t, int(h.recorded), b.events(t))

	// An erased person's imported events do not come back with a rerun.
	req, _, err := b.Log.RequestErasure(b.Ctx, service.ErasureParams{UserID: "user-0", Reason: "asked"})
	require.NoError(t, err)
	_, err = b.Log.RunErasure(b.Ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	erased := b.Count(t, `SELECT count(*) FROM user_events WHERE user_id = 'user-0'`)
	require.Zero(t, erased)
	_, err = b.run(t, b.Ctx, h, importer.Options{})
	require.NoError(t, err)
	require.Zero(t, b.Count(t, `SELECT count(*) FROM user_events WHERE user_id = 'user-0'`), "not brought back")
}

// A run killed after some batches and run again ends with the same events
// and the same counts as one that was never killed.
func TestJSONLResumesAKilledRun(t *testing.T) {
	t.Parallel()
	ctx, kill := context.WithCancel(context.Background())
	defer kill()
	saves := &afterSaves{n: 3, kill: kill}
	b := &importBundle{Fixture: dbtest.NewFixture(t, dbtest.FixtureOpts{Jobs: true,
		Configure: func(c *pgxpool.Config) { c.ConnConfig.Tracer = saves }})}
	h := newHistory(b.Now, 40)
	_, err := b.run(t, ctx, h, importer.Options{})
	require.ErrorIs(t, err, context.Canceled)
	partial := b.events(t)
	require.Positive(t, partial)
	require.Less(t, partial, int(h.recorded))

	res, err := b.run(t, b.Ctx, h, importer.Options{})
	require.NoError(t, err)
	require.Positive(t, res.Resumed)
	c := res.Run.Counts
	require.Equal(t, h.recorded, c.Recorded)
	require.Equal(t, h.dups, c.Duplicates)
	require.Equal(t, h.refused, c.Refused)
	require.Equal(t, h.expired, c.ExpiredByTag)
	require.Equal(t, int(h.recorded), b.events(t))
}

// afterSaves is a pgx tracer that calls kill when the n-th batch of an
// import has saved its run, before it commits: the process dies there.
type afterSaves struct {
	mu   sync.Mutex
	n    int
	kill func()
}

type querySQL struct{}

func (a *afterSaves) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, querySQL{}, data.SQL)
}

func (a *afterSaves) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	sql, _ := ctx.Value(querySQL{}).(string)
	if data.Err != nil || !strings.Contains(sql, "-- name: ImportRunSave") {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n--; a.n == 0 {
		a.kill() // before the batch commits: it is lost and done again

	}
}

// --strict refuses the whole input before anything is written when any
// event would be refused; without a bad event it imports.
func TestJSONLStrict(t *testing.T) {
	t.Parallel()
	b := newImportBundle(t)
	h := newHistory(b.Now, 10)
	res, err := b.run(t, b.Ctx, h, importer.Options{Strict: true})
	require.ErrorIs(t, err, importer.ErrStrict)
	require.Equal(t, h.refused, res.Check.Refused)
	require.Zero(t, b.Count(t, `SELECT (SELECT count(*) FROM user_events) + (SELECT count(*) FROM project_events) + (SELECT count(*) FROM import_keys)`))

	h.lines = h.lines[:len(h.lines)-5] // the bad ones and the duplicate
	res, err = b.run(t, b.Ctx, h, importer.Options{Strict: true, Run: "clean"})
	require.NoError(t, err)
	require.Equal(t, h.recorded, res.Run.Counts.Recorded)
}

// A line over MaxLineBytes is refused by number without being kept.
func TestJSONLRefusesAnOverlongLine(t *testing.T) {
	t.Parallel()
	b := newImportBundle(t)
	h := newHistory(b.Now, 1)
	h.lines = append([]string{`{"source": "x", "additional": "` + strings.Repeat("a", importer.MaxLineBytes+10) + `"}`}, h.lines[:3]...)
	res, err := b.run(t, b.Ctx, h, importer.Options{})
	require.NoError(t, err)
	require.Equal(t, int64(1), res.Run.Counts.Refused)
	require.Contains(t, res.Run.Counts.Refusals[0].Reason, "line too long")
	require.Equal(t, "line 1", res.Run.Counts.Refusals[0].SourceID)
	require.Equal(t, int64(2), res.Run.Counts.Recorded)
}
