package web_test

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
	"github.com/auditlog/auditlog/web"
)

// hugeCursor is a cursor of this API's shape whose time is far outside
// PostgreSQL's range.
func hugeCursor() string {
	var b [17]byte
	b[0] = 1
	binary.BigEndian.PutUint64(b[1:], uint64(9_000_000_000_000_000_000))
	binary.BigEndian.PutUint64(b[9:], 7)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// hostileReads are requests a reader could send by hand: each is a 400
// whose message names the parameter or path segment at fault, never a 500,
// never a filter dropped.
var hostileReads = []struct {
	who, path, names string
}{
	{"user", "/api/v1/me/events?cursor=" + hugeCursor(), "cursor"},
	{"user", "/me?cursor=" + hugeCursor(), "cursor"},
	{"user", "/api/v1/me/events?tag=%00", "tag"},
	{"user", "/api/v1/me/events?tag=account%3Alogin%FF", "tag"},
	{"user", "/api/v1/me/events?since=0000-01-01", "since"},
	{"user", "/api/v1/me/events?since=2026-13-45", "since"},
	{"user", "/api/v1/me/events?limit=-1", "limit"},
	{"user", "/api/v1/me/events?limit=1e3", "limit"},
	{"user", "/api/v1/me/events?lmit=5", "lmit"},
	{"user", "/api/v1/me/events?limit=5&limit=6", "limit"},
	{"user", "/api/v1/me/events?tag=%zz", "query string"},
	{"user", "/api/v1/me/events?tag=a;b", "query string"},
	{"user", "/api/v1/me/events?until=2026-01-01%0A", "until"},
	{"anonymous", "/api/v1/projects/%FF/events", "project_id"},
	{"anonymous", "/api/v1/projects/a%00b/events", "project_id"},
	{"anonymous", "/projects/%FF", "project_id"},
	{"anonymous", "/projects/" + strings.Repeat("p", 129), "project_id"},
	{"anonymous", "/projects/tinyweb?usr=alice", "usr"},
	{"admin", "/api/v1/admin/events?user=%FF", "user"},
	{"admin", "/api/v1/admin/events?actor=a%00", "actor"},
	{"admin", "/api/v1/admin/events?project=%C3%28", "project"},
	{"admin", "/api/v1/admin/events?ip=%3A%3Affff%3A1.2.3.4%2F8", "ip"},
	{"admin", "/api/v1/admin/events?ip=10.0.0.0%2F33", "ip"},
	{"admin", "/api/v1/admin/events?usr=alice", "usr"},
	{"admin", "/api/v1/admin/events?user=alice&user=bob", "user"},
	{"admin", "/admin/export?format=csv&cursor=x", "cursor"},
	{"admin", "/admin/export?format=csv&user=%FF", "user"},
	{"admin", "/api/v1/admin/erasures?user=%FF", "user"},
	{"admin", "/api/v1/admin/erasures?usr=x", "usr"},
	{"admin", "/api/v1/admin/holds?open=1", "open"},
	{"admin", "/admin/holds?placed=1&placed=2", "placed"},
	{"user", "/api/v1/events/first/proof", "first"},
	{"user", "/api/v1/events/0/proof", "not an event id"},
	{"admin", "/api/v1/events/-7/proof", "-7"},
	{"admin", "/api/v1/events/1/proof?format=pdf", "format"},
}

func TestHostileReadsAreClear400s(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	for _, tc := range hostileReads {
		status, body := b.get(t, tc.who, tc.path)
		require.Equal(t, http.StatusBadRequest, status, "%s: %s", tc.path, body)
		require.Contains(t, body, tc.names, tc.path)
	}
	// Nothing was read, so no admin read was recorded.
	p, err := b.log.UserEvents(b.ctx, "root", service.ListOpts{Tag: "admin:events:view"})
	require.NoError(t, err)
	require.Empty(t, p.Events)

	// An IPv4-mapped network of /96 or more applies exactly, and is
	// recorded as the IPv4 network it matches.
	status, body := b.get(t, "admin", "/api/v1/admin/events?ip="+url.QueryEscape("::ffff:192.0.2.0/120"))
	require.Equal(t, http.StatusOK, status)
	require.Len(t, events(t, body), 4, "the four events from 192.0.2.10")
	p, err = b.log.UserEvents(b.ctx, "root", service.ListOpts{Tag: "admin:events:view"})
	require.NoError(t, err)
	require.Len(t, p.Events, 1)
	require.JSONEq(t, `{"format": "json", "filter": {"ip": "192.0.2.0/24"}}`, string(p.Events[0].Additional))
}

// hostileIngest are event bodies a careless or hostile client could send;
// each is a 400 naming the event and field, records nothing, and never
// rewrites a value.
var hostileIngest = []struct {
	name, event, field string
}{
	{"lone surrogate in additional", `{"tag": "project:release:add", "project_id": "p", "additional": {"version": "\ud800"}}`, "additional"},
	{"number jsonb cannot store", `{"tag": "project:release:add", "project_id": "p", "additional": {"version": "1", "n": 1e131072}}`, "additional"},
	{"repeated key in additional", `{"tag": "project:release:add", "project_id": "p", "additional": {"version": "1", "version": "2"}}`, "additional"},
	{"invalid UTF-8 in an id", "{\"tag\": \"account:login:success\", \"user_id\": \"al\xffice\"}", "user_id"},
	{"lone surrogate in an id", `{"tag": "account:login:success", "user_id": "al\udc00ice"}`, "user_id"},
	{"NUL in an id", `{"tag": "account:login:success", "user_id": "a\u0000"}`, "user_id"},
	{"field name in another case", `{"TAG": "account:login:success", "user_id": "u"}`, "TAG"},
	{"field name in another case, location", `{"tag": "account:login:success", "user_id": "u", "location": {"City": "x"}}`, "location"},
	{"repeated field", `{"tag": "account:login:success", "user_id": "u", "user_id": "v"}`, "user_id"},
	{"zero time", `{"tag": "account:login:success", "user_id": "u", "time": "0001-01-01T00:00:00Z"}`, "time"},
	{"time before 1970", `{"tag": "project:create", "project_id": "p", "time": "1969-07-20T20:17:40Z"}`, "time"},
	{"time as a number", `{"tag": "account:login:success", "user_id": "u", "time": 1700000000}`, "time"},
	{"time not RFC 3339", `{"tag": "account:login:success", "user_id": "u", "time": "yesterday"}`, "time"},
	{"bool as a string", `{"tag": "account:login:success", "user_id": "u", "actor_two_factor": "yes"}`, "actor_two_factor"},
	{"id as a number", `{"tag": "account:login:success", "user_id": 7}`, "user_id"},
	{"location as a string", `{"tag": "account:login:success", "user_id": "u", "location": "Berlin"}`, "location"},
	{"unknown field", `{"tag": "account:login:success", "user_id": "u", "colour": "red"}`, "colour"},
	{"IPv4-mapped network as IP", `{"tag": "account:login:success", "user_id": "u", "ip": "::ffff:1.2.3.4/8"}`, "ip"},
	{"event not an object", `["account:login:success"]`, ""},
}

func TestHostileIngestIsA400NamingTheField(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	token, err := b.log.CreateIngestToken(b.ctx, "hostile")
	require.NoError(t, err)
	good := fmt.Sprintf(evLogin, 1)
	for _, tc := range hostileIngest {
		a := b.post(t, token, "", ingestBody(good, tc.event))
		require.Equal(t, http.StatusBadRequest, a.status, "%s: %v", tc.name, a.body)
		require.Equal(t, 1.0, a.body["index"], "%s: %v", tc.name, a.body)
		if tc.field != "" {
			require.Equal(t, tc.field, a.body["field"], "%s: %v", tc.name, a.body)
		}
	}
	require.Zero(t, b.ingested(t), "no hostile batch wrote anything")
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events WHERE strpos(user_id, chr(65533)) > 0 OR user_id = 'v'"),
		"nothing was rewritten into U+FFFD")

	// Idempotency-Key: printable ASCII only, named in the answer.
	for _, key := range []string{"clé-1", "\xff\xfe", strings.Repeat("k", 256)} {
		req, _ := http.NewRequest("POST", b.srv.URL+"/api/v1/events", strings.NewReader(ingestBody(good)))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header["Idempotency-Key"] = []string{key}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var e map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%q", key)
		require.Equal(t, "idempotency_key", e["field"], "%q: %v", key, e)
	}
	require.Zero(t, b.ingested(t))
}

// The 400 names the first bad event in body order, whatever layer finds
// it: the JSON decoder, the model check or the service's validation.
func TestIngestNamesTheFirstBadEventInBodyOrder(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	token, err := b.log.CreateIngestToken(b.ctx, "order")
	require.NoError(t, err)
	var (
		good        = fmt.Sprintf(evLogin, 1)
		release     = fmt.Sprintf(evRelease, 2)
		badProject  = `{"tag": "project:release:add", "project_id": "p", "auth_method": "Pass Word"}` // the service finds it
		badIP       = `{"tag": "account:login:success", "user_id": "u", "ip": "999.1.1.1"}`           // the service finds it
		undecodable = `{"tag": "account:login:success", "user_id": 5}`                                // the decoder finds it
		wrongField  = `{"tag": "project:create", "user_id": "u"}`                                     // the model check finds it
		cutShort    = `{"tag": "account:login:success", "user_id": "u"`                               // malformed JSON from here on
	)
	for _, tc := range []struct {
		events []string
		index  float64
		field  string
	}{
		{[]string{good, badProject, undecodable}, 1, "auth_method"},
		{[]string{good, undecodable, badProject}, 1, "user_id"},
		{[]string{release, badIP, badProject}, 1, "ip"},
		{[]string{badProject, badIP}, 0, "auth_method"},
		{[]string{good, wrongField, badIP}, 1, "user_id"},
		{[]string{badIP, wrongField}, 0, "ip"},
		{[]string{good, release, badIP, cutShort}, 2, "ip"},
	} {
		a := b.post(t, token, "", ingestBody(tc.events...))
		require.Equal(t, http.StatusBadRequest, a.status, "%v", a.body)
		require.Equal(t, tc.index, a.body["index"], "%v: %v", tc.events, a.body)
		require.Equal(t, tc.field, a.body["field"], "%v: %v", tc.events, a.body)
	}
	require.Zero(t, b.ingested(t))
}

// Stored text cannot rewrite the page around it: bidi overrides and other
// invisible control characters show as their code point, and links built
// from a subject escape it.
func TestPagesRenderControlCharactersInert(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	const rlo = "\u202e"
	_, err := b.log.RecordProject(b.ctx, service.EventParams{Tag: "project:release:add", Subject: "tinyweb",
		ActorID: "mallory" + rlo + "gnp.exe", TokenID: "tok" + "\u2066" + "en",
		Additional: json.RawMessage(`{"version": "1.0` + rlo + `evil"}`)})
	require.NoError(t, err)
	for _, who := range []string{"anonymous", "maintainer", "admin"} {
		_, page := b.get(t, who, "/projects/tinyweb")
		require.NotContains(t, page, rlo, who)
		require.NotContains(t, page, "\u2066", who)
		require.Contains(t, page, "Released version 1.0[U&#43;202E]evil", who)
	}
	_, page := b.get(t, "admin", "/admin/events")
	require.NotContains(t, page, rlo)
	require.Contains(t, page, "mallory[U&#43;202E]gnp.exe")
	_, body := b.get(t, "admin", "/api/v1/admin/events")
	require.Contains(t, body, `"actor_id":"mallory`+rlo+`gnp.exe"`, "the JSON API keeps the data as stored")

	// A project id holding "/", "?" and "#": the next-page link keeps it
	// one path segment.
	odd := "a/b?c#d"
	batch := make([]service.EventParams, service.DefaultPageSize+2)
	for i := range batch {
		batch[i] = service.EventParams{Tag: "project:create", Subject: odd, Time: time.Now().Add(-time.Duration(i+1) * time.Minute)}
	}
	_, err = b.log.RecordProjectMany(b.ctx, batch)
	require.NoError(t, err)
	status, page := b.get(t, "anonymous", "/projects/"+url.PathEscape(odd))
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, page, `href="/projects/a%2Fb%3Fc%23d?cursor=`)
	b.tokens["odd"] = mustToken(t, web.Viewer{UserID: "odd", Maintains: []string{odd}})
	_, page = b.get(t, "odd", "/me")
	require.Contains(t, page, `href="/projects/a%2Fb%3Fc%23d"`, "the nav link escapes the project id")
}
