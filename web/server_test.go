package web_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
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
	return webSetupOpts(t, service.Opts{})
}

// webSetupOpts is webSetup with the Log's options (an integrity key).
func webSetupOpts(t *testing.T, opts service.Opts) *webBundle {
	t.Helper()
	// The real clock: the tests mint tokens and date events by time.Now.
	opts.Clock = time.Now
	f := dbtest.NewFixture(t, dbtest.FixtureOpts{Opts: opts, Jobs: true})
	h, err := web.New(web.Options{Log: f.Log, Secret: secret})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	b := &webBundle{ctx: f.Ctx, pool: f.Pool, log: f.Log, srv: srv, tokens: map[string]string{"anonymous": ""}}
	mint := func(v web.Viewer, now time.Time) string {
		tok, err := web.MintViewerToken(secret, v, now, time.Hour)
		require.NoError(t, err)
		return tok
	}
	now := time.Now()
	b.tokens["user"] = mint(web.Viewer{UserID: "alice"}, now)
	b.tokens["other user"] = mint(web.Viewer{UserID: "bob"}, now)
	b.tokens["maintainer"] = mint(web.Viewer{UserID: "erin", Maintains: []string{"tinyweb"}}, now)
	b.tokens["other maintainer"] = mint(web.Viewer{UserID: "frank", Maintains: []string{"fastjson"}}, now)
	b.tokens["admin"] = mint(web.Viewer{UserID: "root", Admin: true}, now)
	good := b.tokens["user"]
	forged, _ := json.Marshal(map[string]any{"k": "viewer", "sub": "alice", "adm": true, "exp": now.Add(time.Hour).Unix()})
	b.tokens["tampered"] = "alv1." + base64.RawURLEncoding.EncodeToString(forged) + "." + strings.Split(good, ".")[2] // admin claims, alice's signature
	b.tokens["expired"] = mint(web.Viewer{UserID: "alice"}, now.Add(-2*time.Hour))

	for _, u := range []string{"alice", "bob", "erin"} {
		f.Record(t, service.ModelUser, dbtest.SignIn(u, time.Time{}))
	}
	f.Record(t, service.ModelUser, service.EventParams{Tag: "account:email:add", Subject: "alice", ActorID: "alice",
		IP: "192.0.2.10", Additional: json.RawMessage(`{"email": "alice@example.com"}`)})
	f.Record(t, service.ModelProject, service.EventParams{Tag: "project:release:add", Subject: "tinyweb", ActorID: "erin",
		AuthMethod: "trusted_publisher", TokenID: "github:erin/tinyweb/release.yml", IP: "198.51.100.20", UserAgent: "twine/6.0",
		Location: &service.Location{Country: "NL"}, Additional: json.RawMessage(`{"version": "1.0.0"}`)})
	f.Record(t, service.ModelProject, service.EventParams{Tag: "project:role:invite", Subject: "tinyweb", ActorID: "erin",
		IP: "198.51.100.20", Additional: json.RawMessage(`{"target_user": "gina", "role": "Maintainer", "email": "gina@example.com"}`)})
	f.Record(t, service.ModelProject, service.EventParams{Tag: "project:release:add", Subject: "fastjson", ActorID: "frank",
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
		{"/admin/holds", adminOnly},
		{"/api/v1/admin/holds", adminOnly},
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
		require.NotContains(t, body, "gina", "the account an invitation names is not the public's to see")
		require.Contains(t, body, "Invited someone to the Maintainer role")
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
	require.Contains(t, body, "Invited gina to the Maintainer role", "maintainers see whom their project invited")
	_, body = b.get(t, "admin", "/api/v1/projects/tinyweb/events")
	require.Contains(t, body, `"ip":"198.51.100.20"`)
	require.Contains(t, body, "gina@example.com")
	_, body = b.get(t, "maintainer", "/api/v1/projects/fastjson/events")
	require.NotContains(t, body, "ci-upload", "a maintainer of tinyweb sees nothing private of fastjson")
	require.NotContains(t, body, "frank")
}

func mustToken(t *testing.T, v web.Viewer) string {
	t.Helper()
	tok, err := web.MintViewerToken(secret, v, time.Now(), time.Hour)
	require.NoError(t, err)
	return tok
}
