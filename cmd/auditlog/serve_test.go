package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/web"
)

const testSecret = "a secret for the CLI tests, long enough"

// serve runs, the token command mints links that work against it, and it
// stops gracefully.
func TestServeAndToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	b.mustCLI(t, "demo")
	env := b.serveEnv(nil)
	base, stop := b.startServe(t, env)

	var out strings.Builder
	require.NoError(t, run(b.ctx, []string{"token", "--user", "root", "--admin", "--ttl", "10m"}, env, &out, io.Discard))
	token := strings.TrimSpace(out.String())
	v, err := web.ParseViewerToken([]byte(testSecret), token, time.Now())
	require.NoError(t, err)
	require.Equal(t, web.Viewer{UserID: "root", Admin: true}, v)

	out.Reset()
	require.NoError(t, run(b.ctx, []string{"token", "--user", "erin", "--maintains", "tinyweb", "--login-url", base}, env, &out, io.Discard))
	link := strings.TrimSpace(out.String())
	require.True(t, strings.HasPrefix(link, base+"/login?token="), link)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	client := &http.Client{Jar: jar}
	resp, err := client.Get(link)
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(page), "This link signs you in as <b>erin</b>")
	resp, err = client.PostForm(base+"/login", url.Values{"token": {strings.TrimPrefix(link, base+"/login?token=")}})
	require.NoError(t, err)
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(page), "Your security history")
	resp, err = client.Get(base + "/projects/tinyweb")
	require.NoError(t, err)
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(page), "You maintain this project")

	// An organization's owner sees its history and its teams' as a
	// maintainer sees a project's; the public sees who acted nowhere.
	out.Reset()
	require.NoError(t, run(b.ctx, []string{"token", "--user", "alice", "--owns", "acme"}, env, &out, io.Discard))
	owner := strings.TrimSpace(out.String())
	v, err = web.ParseViewerToken([]byte(testSecret), owner, time.Now())
	require.NoError(t, err)
	require.Equal(t, []string{"acme"}, v.Owns)
	for _, path := range []string{"/api/v1/orgs/acme/events", "/api/v1/orgs/acme/teams/release/events"} {
		for _, bearer := range []string{owner, ""} {
			req, _ := http.NewRequest("GET", base+path, nil)
			if bearer != "" {
				req.Header.Set("Authorization", "Bearer "+bearer)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			var got struct {
				Events []map[string]any `json:"events"`
			}
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode, path)
			require.NotEmpty(t, got.Events, path)
			for _, e := range got.Events {
				_, named := e["actor_id"]
				require.Equal(t, bearer != "", named, "%s: the actor is shown to owners only: %v", path, e)
				if bearer == "" {
					require.NotContains(t, e["description"], "alice", "%s: the public description names no account", path)
				}
			}
		}
	}

	req, _ := http.NewRequest("GET", base+"/api/v1/admin/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// /metrics, /healthz, /readyz answer; River UI is for admins only.
	for path, want := range map[string]int{"/metrics": 200, "/healthz": 200, "/readyz": 200, "/admin/jobs/": 401} {
		resp, err := http.Get(base + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, want, resp.StatusCode, path)
	}
	for who, want := range map[string]int{token: 200, erinToken(t, env): 403} {
		req, _ := http.NewRequest("GET", base+"/admin/jobs/", nil)
		req.Header.Set("Authorization", "Bearer "+who)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, want, resp.StatusCode)
		if want == 200 {
			require.Contains(t, string(body), "<html")
		}
	}

	// An ingest token records events through the API; they show in the
	// admin console.
	out.Reset()
	require.NoError(t, run(b.ctx, []string{"token", "--ingest", "crm"}, env, &out, io.Discard))
	ingest := strings.TrimSpace(out.String())
	req, _ = http.NewRequest("POST", base+"/api/v1/events", strings.NewReader(
		`{"events": [{"tag": "account:password:change", "user_id": "zed", "actor_id": "crm-bot", "ip": "192.0.2.44"}]}`))
	req.Header.Set("Authorization", "Bearer "+ingest)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	req, _ = http.NewRequest("GET", base+"/api/v1/admin/events?actor=crm-bot", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(page), `"user_id":"zed"`)
	out.Reset()
	require.NoError(t, run(b.ctx, []string{"token", "--revoke-ingest", "crm"}, env, &out, io.Discard))
	out.Reset()
	require.NoError(t, run(b.ctx, []string{"token", "--list-ingest"}, env, &out, io.Discard))
	require.Contains(t, out.String(), "crm\tcreated")
	require.Contains(t, out.String(), "revoked")

	require.NoError(t, stop())

	err = run(b.ctx, []string{"token", "--user", "x"}, func(string) string { return "" }, io.Discard, io.Discard)
	require.Equal(t, 2, exitCode(err), "no secret: %v", err)
}

// serveEnv is the environment serve runs with: the test's database, the
// test secret, and extra.
func (b *cliBundle) serveEnv(extra map[string]string) env {
	return func(k string) string {
		switch k {
		case "DATABASE_URL":
			return b.url
		case "AUDITLOG_SECRET":
			return testSecret
		}
		return extra[k]
	}
}

// startServe runs serve on a free port with args and returns its base URL
// and the function that stops it gracefully (also called at cleanup).
func (b *cliBundle) startServe(t *testing.T, getenv env, args ...string) (base string, stop func() error) {
	t.Helper()
	var stdout dbtest.SyncBuffer
	ctx, cancel := context.WithCancel(b.ctx)
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...), getenv, &stdout, io.Discard)
	}()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(40 * time.Second):
				err = errors.New("serve did not stop")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	deadline := time.Now().Add(20 * time.Second)
	for base == "" {
		select {
		case err := <-errc:
			errc <- err // for stop
			t.Fatalf("serve stopped: %v", err)
		default:
		}
		require.True(t, time.Now().Before(deadline), "serve did not start: %q", stdout.String())
		if m := regexp.MustCompile(`serving on (http://\S+)`).FindStringSubmatch(stdout.String()); m != nil {
			base = m[1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	return base, stop
}

func erinToken(t *testing.T, env func(string) string) string {
	t.Helper()
	var out strings.Builder
	require.NoError(t, run(context.Background(), []string{"token", "--user", "erin", "--maintains", "tinyweb"}, env, &out, io.Discard))
	return strings.TrimSpace(out.String())
}

// rawRequest sends raw on a new connection to base and returns everything
// the server answers until it closes the connection. A server that keeps
// the connection open for 20 seconds fails the test.
func rawRequest(t *testing.T, base, raw string) string {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(20*time.Second)))
	_, err = io.WriteString(conn, raw)
	require.NoError(t, err)
	answer, err := io.ReadAll(conn)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server still holds the connection: %q", answer)
	return string(answer)
}

// serve's HTTP server drops a client that stalls in the middle of its body
// once the read timeout is over (and frees its ingest slot), and answers
// 431 to request headers over 64 KiB.
func TestServeLimits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	ingest := strings.TrimSpace(b.mustCLI(t, "token", "--ingest", "slow"))
	base, _ := b.startServe(t, b.serveEnv(map[string]string{"AUDITLOG_WRITE_TIMEOUT": "5s"}),
		"--no-worker", "--read-timeout", "1s", "--ingest-concurrency", "1")

	// Headers, then 12 bytes of a 1,000-byte body, then nothing.
	answer := rawRequest(t, base, "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+ingest+
		"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"events\": [")
	require.True(t, strings.HasPrefix(answer, "HTTP/1.1 400 "), answer)
	require.Contains(t, answer, "reading the body")
	// The token's one slot is free again.
	req, _ := http.NewRequest("POST", base+"/api/v1/events", strings.NewReader(
		`{"events": [{"tag": "account:password:change", "user_id": "zed"}]}`))
	req.Header.Set("Authorization", "Bearer "+ingest)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	big := strings.Repeat("a", 100<<10)
	answer = rawRequest(t, base, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: "+big+"\r\n\r\n")
	require.True(t, strings.HasPrefix(answer, "HTTP/1.1 431 "), "%.200s", answer)
	// Headers under the limit are served.
	answer = rawRequest(t, base, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: "+big[:32<<10]+"\r\n\r\n")
	require.True(t, strings.HasPrefix(answer, "HTTP/1.1 200 "), "%.200s", answer)
}

// The limits are positive durations and counts, from flags or the
// environment; anything else is a usage error before anything starts.
func TestServeLimitFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--read-timeout", "0s"}, nil, `--read-timeout: "0s" is not a positive duration`},
		{[]string{"--read-timeout", "-1s"}, nil, `--read-timeout: "-1s" is not a positive duration`},
		{[]string{"--write-timeout", "soon"}, nil, `--write-timeout: "soon" is not a positive duration`},
		{nil, map[string]string{"AUDITLOG_WRITE_TIMEOUT": "60"}, `--write-timeout: "60" is not a positive duration`},
		{nil, map[string]string{"AUDITLOG_READ_TIMEOUT": "0"}, `--read-timeout: "0" is not a positive duration`},
		{[]string{"--ingest-concurrency", "0"}, nil, `--ingest-concurrency: "0" is not a positive number`},
		{nil, map[string]string{"AUDITLOG_INGEST_CONCURRENCY": "many"}, `--ingest-concurrency: "many" is not a positive number`},
	} {
		getenv := func(k string) string {
			if k == "AUDITLOG_SECRET" {
				return testSecret
			}
			return tc.env[k]
		}
		err := run(context.Background(), append([]string{"serve"}, tc.args...), getenv, io.Discard, io.Discard)
		require.Equal(t, 2, exitCode(err), "%v %v: %v", tc.args, tc.env, err)
		require.ErrorContains(t, err, tc.want)
	}
	l, err := parseServerLimits("2s", "3s", "5")
	require.NoError(t, err)
	srv := newHTTPServer(http.NotFoundHandler(), l)
	require.Equal(t, []any{time.Second * 2, time.Second * 2, time.Second * 3, 2 * time.Minute, 64 << 10},
		[]any{srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes})
	l, err = parseServerLimits(defaultReadTimeout.String(), defaultWriteTimeout.String(), "4")
	require.NoError(t, err)
	srv = newHTTPServer(http.NotFoundHandler(), l)
	require.Equal(t, []any{10 * time.Second, 30 * time.Second, 60 * time.Second},
		[]any{srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout})
}

// River UI under /admin/jobs: a state-changing call made with the session
// cookie needs a same-origin proof and a JSON call (a Bearer client needs
// neither), and every answer carries the security headers, River UI's own
// included.
func TestJobsUICSRFAndHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	var jobs []string // erasure jobs, left available: serve runs no worker
	for _, user := range []string{"bob", "carol", "dave"} {
		b.mustCLI(t, "erase", "--user", user, "--reason", "test")
	}
	jobs = b.strings(t, "SELECT id::text FROM river_job ORDER BY id")
	require.Len(t, jobs, 3)
	env := b.serveEnv(nil)
	base, _ := b.startServe(t, env, "--no-worker")
	var out strings.Builder
	require.NoError(t, run(b.ctx, []string{"token", "--user", "root", "--admin"}, env, &out, io.Discard))
	admin := strings.TrimSpace(out.String())
	state := func(id string) string {
		return b.strings(t, "SELECT state::text FROM river_job WHERE id = "+id)[0]
	}

	type call struct {
		name    string
		bearer  bool
		headers map[string]string
		token   string // admin's unless set
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(c call, method, path, body string) (*http.Response, string) {
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		require.NoError(t, err)
		token := cmp.Or(c.token, admin)
		if c.bearer {
			req.Header.Set("Authorization", "Bearer "+token)
		} else {
			req.AddCookie(&http.Cookie{Name: web.SessionCookie, Value: token})
		}
		for k, v := range c.headers {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(raw)
	}
	cancelJob := func(c call, id string) (*http.Response, string) {
		return do(c, "POST", "/admin/jobs/api/jobs/cancel", `{"ids": ["`+id+`"]}`)
	}
	checkHeaders := func(resp *http.Response, what string) {
		t.Helper()
		require.Equal(t, web.JobsUIContentSecurityPolicy, resp.Header.Get("Content-Security-Policy"), what)
		require.Contains(t, resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'", what)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), what)
		require.Equal(t, "no-store", resp.Header.Get("Cache-Control"), what)
		require.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"), what)
	}

	json := "application/json"
	for _, c := range []call{
		{name: "no Origin, no Sec-Fetch-Site", headers: map[string]string{"Content-Type": json}},
		{name: "a cross-site Origin", headers: map[string]string{"Content-Type": json, "Origin": "http://evil.example"}},
		{name: "Origin null", headers: map[string]string{"Content-Type": json, "Origin": "null"}},
		{name: "Origin of another port", headers: map[string]string{"Content-Type": json, "Origin": base[:strings.LastIndex(base, ":")] + ":1"}},
		{name: "Origin over https", headers: map[string]string{"Content-Type": json, "Origin": strings.Replace(base, "http:", "https:", 1)}},
		{name: "Sec-Fetch-Site cross-site", headers: map[string]string{"Content-Type": json, "Sec-Fetch-Site": "cross-site", "Origin": base}},
		{name: "Sec-Fetch-Site same-site", headers: map[string]string{"Content-Type": json, "Sec-Fetch-Site": "same-site"}},
		{name: "a form, same origin", headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Accept": json, "Sec-Fetch-Site": "same-origin"}},
		{name: "a multipart form, same origin", headers: map[string]string{"Content-Type": "multipart/form-data; boundary=x", "Origin": base}},
		{name: "text/plain without Accept JSON, same origin", headers: map[string]string{"Content-Type": "text/plain", "Origin": base}},
	} {
		resp, body := cancelJob(c, jobs[0])
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "%s: %s", c.name, body)
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"), c.name)
		require.Contains(t, body, `"error"`, c.name)
		checkHeaders(resp, c.name)
		require.Equal(t, "available", state(jobs[0]), c.name)
	}

	// What River UI's own front end sends passes: JSON (a queue's
	// concurrency), or its JSON as text/plain, fetch's default, with
	// Accept: application/json (cancel, retry, delete). A Bearer client
	// needs no proof.
	for i, c := range []call{
		{name: "same origin, JSON", headers: map[string]string{"Content-Type": json, "Sec-Fetch-Site": "same-origin"}},
		{name: "River UI's own call", headers: map[string]string{"Content-Type": "text/plain;charset=UTF-8", "Accept": json, "Origin": base}},
		{name: "Bearer", bearer: true, headers: map[string]string{"Content-Type": "text/plain"}},
	} {
		resp, body := cancelJob(c, jobs[i])
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", c.name, body)
		checkHeaders(resp, c.name)
		require.Equal(t, "cancelled", state(jobs[i]), c.name)
	}

	// Reads need no proof; every page, asset and API answer carries the
	// headers, also where River UI's file server drops Cache-Control (a
	// deep link is first a 404 of its file server).
	cookie := call{name: "cookie"}
	for _, path := range []string{"/admin/jobs/", "/admin/jobs/jobs?state=cancelled", "/admin/jobs/favicon.ico", "/admin/jobs/api/jobs?state=cancelled", "/admin/jobs"} {
		resp, body := do(cookie, "GET", path, "")
		require.Contains(t, []int{http.StatusOK, http.StatusMovedPermanently}, resp.StatusCode, "%s: %.200s", path, body)
		checkHeaders(resp, path)
	}
	_, page := do(cookie, "GET", "/admin/jobs/jobs", "")
	require.Contains(t, page, `<script type="module"`)
	require.Contains(t, page, `id="config__json"`, "River UI's page as it was read for the policy")
	erin := erinToken(t, env)
	for _, c := range []call{{name: "erin's cookie", token: erin}, {name: "erin's Bearer", token: erin, bearer: true}} {
		resp, _ := do(c, "GET", "/admin/jobs/", "")
		require.Equal(t, http.StatusForbidden, resp.StatusCode, c.name)
		checkHeaders(resp, c.name)
		resp, _ = cancelJob(call{name: c.name, token: erin, bearer: c.bearer, headers: map[string]string{"Content-Type": json, "Sec-Fetch-Site": "same-origin"}}, jobs[0])
		require.Equal(t, http.StatusForbidden, resp.StatusCode, c.name)
	}
}

// The split-role set-up: serve's views and ingest connect as a member of
// auditlog_writer (DATABASE_URL), its workers and the CLI's erase as the
// owner (AUDITLOG_ADMIN_DATABASE_URL). Recording, ingest, the views,
// retention's pass at start and an erasure all work; the writer can
// rewrite nothing.
func TestServeWithSplitRoles(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	role := fmt.Sprintf("auditlog_test_web_%d", time.Now().UnixNano())
	_, err := b.pool.Exec(b.ctx, fmt.Sprintf("CREATE ROLE %s LOGIN IN ROLE auditlog_writer", role))
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = b.pool.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	u, err := url.Parse(b.url)
	require.NoError(t, err)
	u.User = url.User(role)
	writerURL := u.String()

	owner := map[string]string{"AUDITLOG_ADMIN_DATABASE_URL": b.url}
	env := func(k string) string {
		switch k {
		case "DATABASE_URL":
			return writerURL
		case "AUDITLOG_SECRET":
			return testSecret
		}
		return owner[k]
	}
	base, stop := b.startServe(t, env)
	var out strings.Builder
	require.NoError(t, run(b.ctx, []string{"token", "--ingest", "svc"}, env, &out, io.Discard), "the owner makes ingest tokens")
	ingest := strings.TrimSpace(out.String())
	req, _ := http.NewRequest("POST", base+"/api/v1/events", strings.NewReader(`{"events": [
		{"tag": "account:login:success", "user_id": "olga", "actor_id": "olga", "ip": "192.0.2.44"},
		{"tag": "project:create", "project_id": "lamp", "actor_id": "olga", "additional": {"created_by": "olga"}}]}`))
	req.Header.Set("Authorization", "Bearer "+ingest)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	resp, err = http.Get(base + "/api/v1/projects/lamp/events")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	writer, err := pgx.Connect(b.ctx, writerURL)
	require.NoError(t, err)
	defer writer.Close(context.Background())
	_, err = writer.Exec(b.ctx, "DELETE FROM project_events")
	require.ErrorContains(t, err, "permission denied", "the writer rewrites nothing")

	stdout, err := b.cliEnv(t, owner, "erase", "--user", "olga", "--reason", "asked")
	require.NoError(t, err)
	id := strings.TrimSpace(stdout)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(b.mustCLI(t, "erasures", "--user", "olga"), " done ") {
		require.True(t, time.Now().Before(deadline), "serve's owner workers did not carry the erasure out")
		time.Sleep(100 * time.Millisecond)
	}
	verified, err := b.cliEnv(t, owner, "erasures", "--verify", id)
	require.NoError(t, err, verified)
	require.NoError(t, stop())
}
