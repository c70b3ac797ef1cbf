package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
	"github.com/auditlog/auditlog/web"
)

// catalogSubjects are the subjects each path records its events about, by
// model; the Go API's events are the person's own doing (the person sees
// them as the one who acted), HTTP ingest's an admin's on their account.
var catalogSubjects = map[string]map[service.Model]string{
	"go":   {service.ModelUser: "go-alice", service.ModelProject: "go-sampleproject", service.ModelOrganization: "go-acme", service.ModelTeam: "go-acme/release"},
	"http": {service.ModelUser: "http-alice", service.ModelProject: "http-sampleproject", service.ModelOrganization: "http-acme", service.ModelTeam: "http-acme/release"},
}

// unrendered finds what a description must never show: a placeholder left
// as written, a JSON null, a Go value printed raw, the fallback.
var unrendered = regexp.MustCompile(`\{[a-z_][a-z0-9_.]*(\|[^}]*)?\}|\bnull\b|<nil>|map\[|\(unknown\)`)

// Every tag of every built-in catalog is recorded with the payload its
// source sends (the catalog's example) through the Go API and through HTTP
// ingest, then read back on every page by every audience that may see it:
// each description is a whole sentence (no raw tag, no null, no
// placeholder left, not empty), and the public and maintainers see no key
// of additional outside the public class. Retired tags are refused, and
// their stored history (written by a registry that still records them)
// renders like the rest. Run with -v for the counts.
func TestEveryCatalogTagRecordsAndRenders(t *testing.T) {
	t.Parallel()
	for _, name := range service.BuiltinCatalogs() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			everyTag(t, name)
		})
	}
}

func everyTag(t *testing.T, name string) {
	c, err := service.BuiltinCatalog(name)
	require.NoError(t, err)
	reg, err := c.Registry()
	require.NoError(t, err)
	f := dbtest.NewFixture(t, dbtest.FixtureOpts{Opts: service.Opts{Registry: reg, Clock: time.Now}})
	ctx := f.Ctx
	// History of retired tags, as an import of old events would write it.
	historical, err := c.Registry()
	require.NoError(t, err)
	history := dbtest.Must(service.New(f.Pool, &service.Opts{Registry: historical, Clock: time.Now}))
	names := map[string]string{}
	h, err := web.New(web.Options{Log: f.Log, Secret: secret, DisplayNames: func(_ context.Context, accounts []string) (map[string]string, error) {
		out := map[string]string{}
		for _, a := range accounts {
			out[a] = "Name of " + a
			names[a] = out[a]
		}
		return out, nil
	}})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	tags := reg.Tags()
	var recordable, retired []service.TagSpec
	for _, spec := range tags {
		require.NotNil(t, spec.Example, "%s: every built-in tag has an example payload", spec.Tag)
		if spec.Retired {
			retired = append(retired, spec)
		} else {
			recordable = append(recordable, spec)
		}
	}
	when := time.Now().Add(-time.Minute)

	// The Go API, one event at a time.
	acceptedGo := 0
	for _, spec := range recordable {
		_, err := f.Log.Record(ctx, spec.Model, service.EventParams{Tag: spec.Tag, Subject: catalogSubjects["go"][spec.Model],
			Time: when, ActorID: "go-alice", AuthMethod: "password", IP: "192.0.2.10", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
			Additional: spec.Example})
		if !assertNoError(t, err, "Go API: %s", spec.Tag) {
			continue
		}
		acceptedGo++
	}
	// HTTP ingest, one batch of every tag, as a service not written in Go
	// would send it.
	token, err := f.Log.CreateIngestToken(ctx, "catalog-"+name)
	require.NoError(t, err)
	var batch []map[string]any
	for _, spec := range recordable {
		batch = append(batch, map[string]any{"tag": spec.Tag, spec.Model.SubjectField(): catalogSubjects["http"][spec.Model],
			"time": when.Format(time.RFC3339Nano), "actor_id": "http-root", "auth_method": "api_token", "ip": "2001:db8::10",
			"user_agent": "warehouse/1.0", "additional": spec.Example})
	}
	body, err := json.Marshal(map[string]any{"events": batch})
	require.NoError(t, err)
	req, err := http.NewRequest("POST", srv.URL+"/api/v1/events", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var answer service.IngestResult
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&answer))
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	acceptedHTTP := int(answer.Recorded)

	// Retired tags are refused, their history shown.
	for _, spec := range retired {
		_, err := f.Log.Record(ctx, spec.Model, service.EventParams{Tag: spec.Tag, Subject: catalogSubjects["go"][spec.Model], Additional: spec.Example})
		require.ErrorIs(t, err, service.ErrRetiredTag, spec.Tag)
	}
	for _, spec := range retired {
		require.NoError(t, historical.Replace(service.TagSpec{Tag: spec.Tag, Model: spec.Model, Description: spec.Description, Keys: spec.Keys}))
		_, err := history.Record(ctx, spec.Model, service.EventParams{Tag: spec.Tag, Subject: catalogSubjects["go"][spec.Model],
			Time: when, ActorID: "go-alice", Additional: spec.Example})
		require.NoError(t, err, "history of %s", spec.Tag)
	}

	// Read everything back, by every audience.
	viewer := func(v web.Viewer) string {
		tok, err := web.MintViewerToken(secret, v, time.Now(), time.Hour)
		require.NoError(t, err)
		return tok
	}
	manager := viewer(web.Viewer{UserID: "erin", Maintains: []string{"go-sampleproject", "http-sampleproject"}, Owns: []string{"go-acme", "http-acme"}})
	admin := viewer(web.Viewer{UserID: "root", Admin: true})
	type reading struct{ audience, path, token string }
	var readings []reading
	for path, subjects := range catalogSubjects {
		_ = path
		readings = append(readings, reading{"the person", "/api/v1/me/events", viewer(web.Viewer{UserID: subjects[service.ModelUser]})},
			reading{"admin", "/api/v1/admin/events?user=" + url.QueryEscape(subjects[service.ModelUser]), admin})
		org, team, _ := service.SplitTeamSubject(subjects[service.ModelTeam])
		for _, p := range []struct{ page, filter string }{
			{"/api/v1/projects/" + subjects[service.ModelProject] + "/events", "project=" + subjects[service.ModelProject]},
			{"/api/v1/orgs/" + org + "/events", "org=" + org},
			{"/api/v1/orgs/" + org + "/teams/" + team + "/events", "team=" + url.QueryEscape(subjects[service.ModelTeam])},
		} {
			readings = append(readings, reading{"public", p.page, ""}, reading{"maintainer", p.page, manager},
				reading{"admin", "/api/v1/admin/events?" + p.filter, admin})
		}
	}
	type seen struct{ events, bad int }
	byAudience := map[string]*seen{}
	renderedTags := map[string]map[string]bool{} // tag → audiences it rendered for
	named := 0                                   // maintainers' descriptions with display names
	for _, r := range readings {
		events := readAll(t, srv.URL, r.path, r.token)
		s := byAudience[r.audience]
		if s == nil {
			s = &seen{}
			byAudience[r.audience] = s
		}
		for _, e := range events {
			tag, _ := e["tag"].(string)
			desc, _ := e["description"].(string)
			s.events++
			ok := true
			switch {
			case strings.TrimSpace(desc) == "":
				ok = false
				t.Errorf("%s on %s: %s has an empty description", r.audience, r.path, tag)
			case strings.Contains(desc, tag):
				ok = false
				t.Errorf("%s on %s: %s shows its raw tag: %q", r.audience, r.path, tag, desc)
			case unrendered.MatchString(desc):
				ok = false
				t.Errorf("%s on %s: %s is not rendered whole: %q", r.audience, r.path, tag, desc)
			}
			if r.audience == "public" || r.audience == "maintainer" {
				add, _ := e["additional"].(map[string]any)
				for k := range add {
					if class, known := reg.KeyClass(tag, k); !known || class != service.KeyPublic {
						ok = false
						t.Errorf("%s on %s: %s shows key %q (%s)", r.audience, r.path, tag, k, class)
					}
				}
			}
			if r.audience == "public" {
				for account := range names {
					if regexp.MustCompile(`\b` + regexp.QuoteMeta(account) + `\b`).MatchString(desc) {
						ok = false
						t.Errorf("public on %s: %s names %s: %q", r.path, tag, account, desc)
					}
				}
			}
			if r.audience == "maintainer" && strings.Contains(desc, "Name of ") {
				named++
			}
			if !ok {
				s.bad++
				continue
			}
			if renderedTags[tag] == nil {
				renderedTags[tag] = map[string]bool{}
			}
			renderedTags[tag][r.audience] = true
		}
	}
	// Every tag rendered for every audience of its model.
	wholly := 0
	for _, spec := range tags {
		want := []string{"public", "maintainer", "admin"}
		if spec.Model == service.ModelUser {
			want = []string{"the person", "admin"}
		}
		all := true
		for _, a := range want {
			if !renderedTags[spec.Tag][a] {
				all = false
				t.Errorf("%s: not rendered for %s", spec.Tag, a)
			}
		}
		if all {
			wholly++
		}
	}
	require.Equal(t, len(recordable), acceptedGo, "Go API")
	require.Equal(t, len(recordable), acceptedHTTP, "HTTP ingest")
	require.NotEmpty(t, names, "display names were asked for")
	require.Positive(t, named, "maintainers read the accounts an event names by their display names")
	t.Logf("catalog %s: %d tags (%d recordable, %d retired); accepted with their source's payload: Go API %d/%d (%.0f%%), HTTP ingest %d/%d (%.0f%%); rendered whole for every audience: %d/%d tags (%.0f%%)",
		name, len(tags), len(recordable), len(retired), acceptedGo, len(recordable), percent(acceptedGo, len(recordable)),
		acceptedHTTP, len(recordable), percent(acceptedHTTP, len(recordable)), wholly, len(tags), percent(wholly, len(tags)))
	for _, a := range []string{"public", "maintainer", "the person", "admin"} {
		s := byAudience[a]
		t.Logf("catalog %s: %-10s %4d events read, %d not rendered whole or showing a key outside its class", name, a, s.events, s.bad)
	}
}

func percent(n, of int) float64 { return 100 * float64(n) / float64(max(of, 1)) }

func assertNoError(t *testing.T, err error, format string, args ...any) bool {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v", fmt.Sprintf(format, args...), err)
		return false
	}
	return true
}

// readAll reads every page of path (an event list of the JSON API) with
// token as Bearer ("" for the public).
func readAll(t *testing.T, base, path, token string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	next := path + sep + "limit=" + fmt.Sprint(web.MaxPageLimit)
	for {
		req, err := http.NewRequest("GET", base+next, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var page struct {
			Events     []map[string]any `json:"events"`
			NextCursor string           `json:"next_cursor"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&page))
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		out = append(out, page.Events...)
		if page.NextCursor == "" {
			return out
		}
		next = path + sep + "limit=" + fmt.Sprint(web.MaxPageLimit) + "&cursor=" + page.NextCursor
	}
}
