package web_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
	"github.com/auditlog/auditlog/web"
)

// outage is a database that cannot be reached, as the handler sees it.
type outage struct {
	pool *pgxpool.Pool
	// details are what no answer may hold: the port, the user, the
	// database's name.
	details []string
	// token is an ingest token that was valid before the outage (or a
	// valid-looking one).
	token string
}

// outages are the ways a database goes away: the server is down (nothing
// listens), something accepts and hangs up (a crashing server, a proxy
// without a backend), the database was dropped under a live pool.
func outages(t *testing.T) map[string]outage {
	t.Helper()
	ctx := context.Background()
	lookalike := "alin_" + strings.Repeat("A", 43)
	refusing, refusingPort := dbtest.Refusing(t)
	hangingUp, hangingUpPort := dbtest.HangingUp(t)

	gone := dbtest.Pool(t)
	token, err := dbtest.Must(service.New(gone, nil)).CreateIngestToken(ctx, "before the outage")
	require.NoError(t, err)
	cfg := gone.Config().ConnConfig
	name, port := cfg.Database, strconv.Itoa(int(cfg.Port))
	require.NoError(t, dbtest.DropDatabase(ctx, name))

	return map[string]outage{
		"nothing listens":      {dbtest.OpenPool(t, refusing), []string{":" + refusingPort, dbtest.OutageUser, dbtest.OutageDatabase}, lookalike},
		"accepts and hangs up": {dbtest.OpenPool(t, hangingUp), []string{":" + hangingUpPort, dbtest.OutageUser, dbtest.OutageDatabase}, lookalike},
		"database dropped":     {gone, []string{name, ":" + port, "user="}, token},
	}
}

// While the database cannot be reached, ingest and every view answer 503
// with Retry-After and a message holding no connection detail — never a
// 500, and never a 401 or 400 (the ingest token check needs the database
// too); the detail goes to the log, at warn. The login page, which needs
// no database, still works.
func TestOutagesAnswer503(t *testing.T) {
	t.Parallel()
	now := mustToken(t, web.Viewer{UserID: "alice"})
	admin := mustToken(t, web.Viewer{UserID: "root", Admin: true})
	for name, o := range outages(t) {
		t.Run(name, func(t *testing.T) {
			logs := &dbtest.SyncBuffer{}
			log := dbtest.Must(service.New(o.pool, nil))
			h, err := web.New(web.Options{Log: log, Secret: secret, Logger: slog.New(slog.NewTextHandler(logs, nil))})
			require.NoError(t, err)
			srv := httptest.NewServer(h)
			defer srv.Close()

			// identify: a host session that reads the database too.
			hosted, err := web.New(web.Options{Log: log, Secret: secret, Logger: slog.New(slog.NewTextHandler(logs, nil)),
				Identify: func(r *http.Request) (*web.Viewer, error) {
					var id string
					if err := o.pool.QueryRow(r.Context(), "SELECT 'alice'").Scan(&id); err != nil {
						return nil, err
					}
					return &web.Viewer{UserID: id}, nil
				}})
			require.NoError(t, err)
			hostedSrv := httptest.NewServer(hosted)
			defer hostedSrv.Close()

			ingest := `{"events": [{"tag": "account:login:success", "user_id": "alice"}]}`
			erasure := url.Values{"user_id": {"bob"}, "reason": {"asked"}}.Encode()
			hold := url.Values{"kind": {"user"}, "subject": {"bob"}, "reason": {"case 1"}}.Encode()
			for _, tc := range []struct {
				server               *httptest.Server
				method, path, bearer string
				cookie, body, ctype  string
				html                 bool
			}{
				{server: srv, method: "POST", path: "/api/v1/events", bearer: o.token, body: ingest},
				{server: srv, method: "GET", path: "/me", cookie: now, html: true},
				{server: srv, method: "GET", path: "/api/v1/me/events", bearer: now},
				{server: srv, method: "GET", path: "/projects/x", html: true},
				{server: srv, method: "GET", path: "/api/v1/projects/x/events"},
				{server: srv, method: "GET", path: "/projects/x", cookie: admin, html: true},
				{server: srv, method: "GET", path: "/admin/events", cookie: admin, html: true},
				{server: srv, method: "GET", path: "/api/v1/admin/events?user=alice", bearer: admin},
				{server: srv, method: "GET", path: "/admin/export?format=csv", cookie: admin},
				{server: srv, method: "GET", path: "/admin/erasures", cookie: admin, html: true},
				{server: srv, method: "GET", path: "/api/v1/admin/erasures", bearer: admin},
				{server: srv, method: "POST", path: "/admin/erasures", bearer: admin, body: erasure, ctype: "application/x-www-form-urlencoded"},
				{server: srv, method: "GET", path: "/admin/holds", cookie: admin, html: true},
				{server: srv, method: "GET", path: "/api/v1/admin/holds", bearer: admin},
				{server: srv, method: "POST", path: "/admin/holds", bearer: admin, body: hold, ctype: "application/x-www-form-urlencoded"},
				{server: srv, method: "GET", path: "/api/v1/checkpoints/latest"},
				{server: srv, method: "GET", path: "/api/v1/events/1/proof", bearer: now},
				{server: srv, method: "GET", path: "/api/v1/events/1/proof", bearer: admin},
				{server: hostedSrv, method: "GET", path: "/me", html: true},
				{server: hostedSrv, method: "GET", path: "/api/v1/me/events"},
			} {
				req, err := http.NewRequest(tc.method, tc.server.URL+tc.path, strings.NewReader(tc.body))
				require.NoError(t, err)
				if tc.bearer != "" {
					req.Header.Set("Authorization", "Bearer "+tc.bearer)
				}
				if tc.cookie != "" {
					req.AddCookie(&http.Cookie{Name: web.SessionCookie, Value: tc.cookie})
				}
				if tc.ctype != "" {
					req.Header.Set("Content-Type", tc.ctype)
				}
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				what := tc.method + " " + tc.path
				require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s: %s", what, body)
				secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
				require.NoError(t, err, what)
				require.Positive(t, secs, what)
				require.Empty(t, resp.Cookies(), "%s: the session is kept", what)
				if tc.html {
					require.Contains(t, resp.Header.Get("Content-Type"), "text/html", what)
					require.Contains(t, string(body), web.UnavailableMessage, what)
				} else {
					require.Contains(t, resp.Header.Get("Content-Type"), "application/json", what)
					var answer map[string]any
					require.NoError(t, json.Unmarshal(body, &answer), what)
					require.Equal(t, map[string]any{"error": web.UnavailableMessage}, answer, what)
				}
				for _, detail := range append(o.details, "127.0.0.1", "SQLSTATE", "failed to connect", "dial", "internal error") {
					require.NotContains(t, string(body), detail, what)
				}
			}

			// The log has the detail, at warn.
			logged := logs.String()
			require.Contains(t, logged, "level=WARN")
			require.Contains(t, logged, "the database is unavailable")
			require.Contains(t, logged, o.details[0])
			require.NotContains(t, logged, "level=ERROR")

			// The login page needs no database.
			resp, err := http.Get(srv.URL + "/login?token=" + url.QueryEscape(now))
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
		})
	}
}

// A database that answers but refuses a statement is not an outage: a
// constraint violation during ingest and a missing table under a view
// are 500s without Retry-After, and a bad request is still a 400.
func TestStatementErrorsAreNot503(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	token, err := b.log.CreateIngestToken(b.ctx, "constraint")
	require.NoError(t, err)
	_, err = b.pool.Exec(b.ctx, "CREATE UNIQUE INDEX one_event_per_project ON project_events (project_id) WHERE project_id = 'solo'")
	require.NoError(t, err)

	do := func(method, path, bearer, body string) (*http.Response, string) {
		req, err := http.NewRequest(method, b.srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp, string(out)
	}
	twice := `{"events": [{"tag": "project:create", "project_id": "solo"}, {"tag": "project:create", "project_id": "solo"}]}`
	resp, body := do("POST", "/api/v1/events", token, twice)
	require.Equal(t, http.StatusInternalServerError, resp.StatusCode, body)
	require.Empty(t, resp.Header.Get("Retry-After"))

	resp, body = do("GET", "/api/v1/me/events?limit=0", b.tokens["user"], "")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, body)

	_, err = b.pool.Exec(b.ctx, "ALTER TABLE project_events RENAME TO project_events_moved")
	require.NoError(t, err)
	resp, body = do("GET", "/api/v1/projects/tinyweb/events", "", "")
	require.Equal(t, http.StatusInternalServerError, resp.StatusCode, body)
	require.Empty(t, resp.Header.Get("Retry-After"))
}

// A session that dies in the middle of an ingest (the server ends it, as
// on a shutdown or a crash) is a 503 too, after the token was accepted,
// and nothing of the batch is recorded.
func TestSessionEndingMidIngestIs503(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	token, err := b.log.CreateIngestToken(b.ctx, "doomed")
	require.NoError(t, err)
	_, err = b.pool.Exec(b.ctx, `CREATE FUNCTION end_session() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$;
		CREATE TRIGGER end_session BEFORE INSERT ON project_events FOR EACH ROW
		WHEN (NEW.project_id = 'doomed') EXECUTE FUNCTION end_session()`)
	require.NoError(t, err)
	count := func() int {
		return dbtest.Count(t, b.pool, "SELECT (SELECT count(*) FROM user_events WHERE user_id = 'alice') + (SELECT count(*) FROM project_events WHERE project_id = 'doomed')")
	}
	before := count()
	for _, key := range []string{"", "retry-me"} {
		req, err := http.NewRequest("POST", b.srv.URL+"/api/v1/events",
			strings.NewReader(`{"events": [{"tag": "account:login:success", "user_id": "alice"}, {"tag": "project:create", "project_id": "doomed"}]}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s", body)
		require.NotEmpty(t, resp.Header.Get("Retry-After"))
		require.JSONEq(t, `{"error": "`+web.UnavailableMessage+`"}`, string(body))
	}
	require.Equal(t, before, count(), "nothing of the batch was recorded")
}
