package ops_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/ops"
	"github.com/auditlog/auditlog/service"
	"github.com/auditlog/auditlog/web"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	return rec.Body.String()
}

// After activity, /metrics has a series for each kind of it.
func TestMetricsAfterActivity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	metrics := ops.NewMetrics()
	enq, err := jobs.NewEnqueuer(pool)
	require.NoError(t, err)
	now := time.Now().UTC()
	log := dbtest.Must(service.New(pool, &service.Opts{Observer: metrics, Enqueuer: enq, Hooks: jobs.DefaultHooks(),
		Clock: dbtest.Clock(now)}))
	metrics.Init(log, ops.Labels{Hooks: []string{jobs.HookNotify}, Routes: web.Routes, RefusalReasons: web.RefusalReasons,
		Rejections: web.EventRejections})

	// Every counter exists at zero before its first event.
	before := scrape(t, metrics.Handler())
	for _, series := range []string{
		`auditlog_events_recorded_total{model="user",tag="account:login:success"} 0`,
		`auditlog_events_recorded_total{model="project",tag="project:release:add"} 0`,
		`auditlog_events_rejected_total{reason="unknown tag"} 0`,
		`auditlog_events_rejected_total{reason="malformed JSON"} 0`,
		`auditlog_retention_drops_total{reason="expired"} 0`,
		`auditlog_erasure_duration_seconds_count{result="failed"} 0`,
		`auditlog_hook_jobs_total{hook="notify",result="failed"} 0`,
		`auditlog_http_refused_total{reason="bad_request",route="ingest"} 0`,
		`auditlog_http_refused_total{reason="forbidden",route="jobs"} 0`,
	} {
		require.Contains(t, before, series)
	}
	require.Contains(t, before, "auditlog_default_partition_rows 0")
	require.Contains(t, before, `auditlog_partitions{state="attached"}`)

	_, err = log.RecordUser(ctx, service.EventParams{Tag: "account:login:success", Subject: "u"})
	require.NoError(t, err)
	_, err = log.RecordProjectMany(ctx, []service.EventParams{
		{Tag: "project:release:add", Subject: "p", Additional: json.RawMessage(`{"version": "1"}`)},
		{Tag: "project:release:add", Subject: "p", Additional: json.RawMessage(`{"version": "2"}`)},
	})
	require.NoError(t, err)
	_, err = log.RecordUser(ctx, service.EventParams{Tag: "no:such:tag", Subject: "u"})
	require.Error(t, err)
	_, err = log.RecordUser(ctx, service.EventParams{Tag: "account:login:success", Subject: "u", IP: "nope"})
	require.Error(t, err)
	ne, err := log.RecordUser(ctx, service.EventParams{Tag: service.TagLoginNewLocation, Subject: "u", IP: "192.0.2.1"})
	require.NoError(t, err)

	req, _, err := log.RequestErasure(ctx, service.ErasureParams{UserID: "gone", Reason: "test"})
	require.NoError(t, err)
	_, err = log.RunErasure(ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)

	w := rivertest.NewWorker(t, riverpgxv5.New(pool), &river.Config{}, &jobs.HookWorker{Events: log, Observer: metrics,
		Handlers: map[string]jobs.HookHandler{jobs.HookNotify: jobs.NotifyHandler(jobs.LogNotifier{})}})
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = w.Work(ctx, t, tx, jobs.HookArgs{Hook: jobs.HookNotify, Model: ne.Model, EventID: ne.ID, Time: ne.Time}, nil)
	require.NoError(t, err)

	// Last: a pass five months on drops the months the events are in.
	later := dbtest.Must(service.New(pool, &service.Opts{Observer: metrics, Clock: dbtest.Clock(now.AddDate(0, 5, 0))}))
	rep, err := later.MaintainPartitions(ctx, pool, service.MaintainOpts{})
	require.NoError(t, err)
	require.NotEmpty(t, rep.Dropped)

	after := scrape(t, metrics.Handler())
	for _, series := range []string{
		`auditlog_events_recorded_total{model="user",tag="account:login:success"} 1`,
		`auditlog_events_recorded_total{model="project",tag="project:release:add"} 2`,
		`auditlog_events_rejected_total{reason="unknown tag"} 1`,
		`auditlog_events_rejected_total{reason="invalid IP address"} 1`,
		`auditlog_erasure_duration_seconds_count{result="done"} 1`,
		`auditlog_retention_drops_total{reason="expired"} ` + itoa(len(rep.Dropped)),
		`auditlog_hook_jobs_total{hook="notify",result="done"} 1`,
		`auditlog_default_partition_rows 0`,
	} {
		require.Contains(t, after, series)
	}
	require.NotContains(t, after, "192.0.2.1", "no personal data in metrics")
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// /readyz is 200 on a migrated database with next month's partition, and
// 503 naming the failed check otherwise; /healthz is always 200.
func TestReadyz(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	log := dbtest.Must(service.New(pool, nil))
	ready := func() (int, map[string]any) {
		rec := httptest.NewRecorder()
		ops.Readyz(pool, log)(rec, httptest.NewRequest("GET", "/readyz", nil))
		var body map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		return rec.Code, body
	}
	code, body := ready()
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, true, body["ready"])

	now := time.Now().UTC()
	next := service.PartitionName(time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC))
	_, err := pool.Exec(ctx, "DROP TABLE "+next)
	require.NoError(t, err)
	log.ForgetPartitions()
	code, body = ready()
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body["checks"].(map[string]any)["next_month_partition"], next)

	_, err = log.EnsurePartitions(ctx, pool, 3)
	require.NoError(t, err)
	code, _ = ready()
	require.Equal(t, http.StatusOK, code)

	_, err = pool.Exec(ctx, "DELETE FROM goose_db_version WHERE version_id = (SELECT max(version_id) FROM goose_db_version)")
	require.NoError(t, err)
	code, body = ready()
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body["checks"].(map[string]any)["migrations"], "migrate up")

	rec := httptest.NewRecorder()
	ops.Healthz(rec, httptest.NewRequest("GET", "/healthz", nil))
	b, _ := io.ReadAll(rec.Body)
	require.Equal(t, http.StatusOK, rec.Code)
	require.True(t, strings.HasPrefix(string(b), "ok"))
}

// The web layer's refusals are counted too: each 4xx answer by route and
// reason, and events refused before the service saw them.
func TestWebRefusalsAreCounted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	metrics := ops.NewMetrics()
	log := dbtest.Must(service.New(pool, &service.Opts{Observer: metrics}))
	metrics.Init(log, ops.Labels{Routes: web.Routes, RefusalReasons: web.RefusalReasons, Rejections: web.EventRejections})
	secret := []byte("a secret for the metrics test")
	h, err := web.New(web.Options{Log: log, Secret: secret, Observer: metrics})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()
	token, err := log.CreateIngestToken(ctx, "m")
	require.NoError(t, err)
	do := func(method, path, bearer, body string) int {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	user, err := web.MintViewerToken(secret, web.Viewer{UserID: "u"}, time.Now(), time.Hour)
	require.NoError(t, err)
	require.Equal(t, 400, do("POST", "/api/v1/events", token, `{"events": [{"tag": "account:login:success", "user_id": 5}]}`))
	require.Equal(t, 400, do("POST", "/api/v1/events", token, `{"events": [{"tag": "no:such:tag", "user_id": "u"}]}`))
	require.Equal(t, 401, do("POST", "/api/v1/events", "alin_nope", `{}`))
	require.Equal(t, 403, do("GET", "/api/v1/admin/events", user, ""))
	require.Equal(t, 400, do("GET", "/api/v1/me/events?limit=0", user, ""))
	require.Equal(t, 401, do("GET", "/me", "", ""))

	after := scrape(t, metrics.Handler())
	for _, series := range []string{
		`auditlog_http_refused_total{reason="bad_request",route="ingest"} 2`,
		`auditlog_http_refused_total{reason="unauthorized",route="ingest"} 1`,
		`auditlog_http_refused_total{reason="forbidden",route="admin"} 1`,
		`auditlog_http_refused_total{reason="bad_request",route="me"} 1`,
		`auditlog_http_refused_total{reason="unauthorized",route="me"} 1`,
		`auditlog_events_rejected_total{reason="malformed JSON"} 1`,
		`auditlog_events_rejected_total{reason="unknown tag"} 1`,
	} {
		require.Contains(t, after, series)
	}
}

// /readyz on a database that cannot be reached is a 503 naming the failed
// check with a few words of cause, and nothing of the connection (host,
// port, user, database name, the driver's text): it is unauthenticated.
// The whole error goes to the log, at warn.
func TestReadyzHidesConnectionDetails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	refusing, refusingPort := dbtest.Refusing(t)
	hangingUp, hangingUpPort := dbtest.HangingUp(t)
	gone := dbtest.Pool(t)
	cfg := gone.Config().ConnConfig
	goneName, gonePort := cfg.Database, strconv.Itoa(int(cfg.Port))
	require.NoError(t, dbtest.DropDatabase(ctx, goneName))
	gone.Reset()
	for _, tc := range []struct {
		name    string
		pool    *pgxpool.Pool
		cause   string
		details []string
	}{
		{"nothing listens", dbtest.OpenPool(t, refusing), "connection refused", []string{refusingPort, dbtest.OutageUser, dbtest.OutageDatabase}},
		{"accepts and hangs up", dbtest.OpenPool(t, hangingUp), "connection closed by the server", []string{hangingUpPort, dbtest.OutageUser, dbtest.OutageDatabase}},
		{"database dropped", gone, "the database does not exist", []string{goneName, gonePort, cfg.User}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := dbtest.Must(service.New(tc.pool, &service.Opts{Logger: slog.New(slog.NewTextHandler(&logs, nil))}))
			rec := httptest.NewRecorder()
			ops.Readyz(tc.pool, log)(rec, httptest.NewRequest("GET", "/readyz", nil))
			require.Equal(t, http.StatusServiceUnavailable, rec.Code)
			var body struct {
				Ready  bool              `json:"ready"`
				Checks map[string]string `json:"checks"`
			}
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			require.False(t, body.Ready)
			require.Equal(t, map[string]string{"database": tc.cause}, body.Checks)
			for _, detail := range append(tc.details, "127.0.0.1", "failed to connect", "dial", "SQLSTATE") {
				require.NotContains(t, rec.Body.String(), detail)
			}
			line := logs.String()
			require.Contains(t, line, "level=WARN")
			require.Contains(t, line, "check=database")
			require.Contains(t, line, tc.details[0], "the log has the detail")
		})
	}
}

// Answers given because the database is down are counted by route in
// auditlog_http_unavailable_total (at zero from the start), not as 4xx
// refusals, and /metrics still answers while the database is down.
func TestOutagesAreCounted(t *testing.T) {
	t.Parallel()
	url, _ := dbtest.Refusing(t)
	pool := dbtest.OpenPool(t, url)
	metrics := ops.NewMetrics()
	log := dbtest.Must(service.New(pool, &service.Opts{Observer: metrics}))
	metrics.Init(log, ops.Labels{Routes: web.Routes, RefusalReasons: web.RefusalReasons, Rejections: web.EventRejections})
	secret := []byte("a secret for the metrics test")
	h, err := web.New(web.Options{Log: log, Secret: secret, Observer: metrics, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()

	before := scrape(t, metrics.Handler())
	for _, route := range web.Routes {
		require.Contains(t, before, `auditlog_http_unavailable_total{route="`+route+`"} 0`)
	}
	user, err := web.MintViewerToken(secret, web.Viewer{UserID: "u"}, time.Now(), time.Hour)
	require.NoError(t, err)
	for _, path := range []string{"/api/v1/events", "/api/v1/me/events", "/api/v1/me/events"} {
		method := "GET"
		if path == "/api/v1/events" {
			method = "POST"
		}
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(`{"events": [{"tag": "account:login:success", "user_id": "u"}]}`))
		req.Header.Set("Authorization", "Bearer "+map[string]string{"POST": "alin_" + strings.Repeat("A", 43), "GET": user}[method])
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, path)
	}
	after := scrape(t, metrics.Handler())
	for _, series := range []string{
		`auditlog_http_unavailable_total{route="ingest"} 1`,
		`auditlog_http_unavailable_total{route="me"} 2`,
		`auditlog_http_unavailable_total{route="admin"} 0`,
		`auditlog_http_refused_total{reason="unauthorized",route="ingest"} 0`,
		`auditlog_http_refused_total{reason="other",route="me"} 0`,
	} {
		require.Contains(t, after, series)
	}
}
