package web_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/service"
	"github.com/auditlog/auditlog/web"
)

// Every default tag renders as its description, never as the raw tag.
func TestEveryDefaultTagRendersAsText(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	placeholder := regexp.MustCompile(`\{([a-z_]+)(?:\|[^}]*)?\}`)
	tags := service.DefaultTags()
	payload := map[string]json.RawMessage{}
	for _, spec := range tags {
		add := map[string]string{}
		for _, m := range placeholder.FindAllStringSubmatch(spec.Description, -1) {
			add[m[1]] = "x"
		}
		raw, _ := json.Marshal(add)
		payload[spec.Tag] = raw
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
	b.tokens["tagger"] = mustToken(t, web.Viewer{UserID: "tagger", Maintains: []string{"tagproj"}})
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
		desc, err := b.log.Registry().Describe(spec.Tag, payload[spec.Tag])
		require.NoError(t, err)
		require.NotContains(t, desc, "{", spec.Tag)
		require.NotContains(t, desc, "(unknown)", spec.Tag)
		require.Contains(t, page, template(desc), spec.Tag)
	}
}

// template escapes s as html/template writes text.
func template(s string) string {
	return strings.NewReplacer("'", "&#39;", "&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;").Replace(s)
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

// Deny by default: each audience sees the keys of additional their class
// allows, and a key the catalog does not know only admins and the person
// the event is about see.
func TestKeyClassesDecideWhoSeesAKey(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	keys := map[string]service.KeyClass{"note": service.KeyPublic, "author": service.KeyPersonRef,
		"contact": service.KeyPersonal, "reviewer": service.KeyHiddenFromSubject}
	require.NoError(t, b.log.Registry().Register(
		service.TagSpec{Tag: "project:note:add", Model: service.ModelProject, Description: "Added a note by {author}", Keys: keys},
		service.TagSpec{Tag: "account:note:add", Model: service.ModelUser, Description: "Added a note", Keys: keys}))
	payload := json.RawMessage(`{"note": "n", "author": "gina", "contact": "gina@example.com", "reviewer": "root", "extra": "x"}`)
	_, err := b.log.RecordProject(b.ctx, service.EventParams{Tag: "project:note:add", Subject: "tinyweb", ActorID: "erin", Additional: payload})
	require.NoError(t, err)
	for _, actor := range []string{"alice", "root"} { // alice herself (owner), then an admin on her account (actedOn)
		_, err := b.log.RecordUser(b.ctx, service.EventParams{Tag: "account:note:add", Subject: "alice", ActorID: actor, Additional: payload})
		require.NoError(t, err)
	}
	seen := func(identity, path, tag string) [][]string {
		t.Helper()
		status, body := b.get(t, identity, path)
		require.Equal(t, http.StatusOK, status, body)
		var out [][]string
		for _, e := range events(t, body) {
			if e["tag"] != tag {
				continue
			}
			var got []string
			add, _ := e["additional"].(map[string]any)
			for _, k := range []string{"note", "author", "contact", "reviewer", "extra"} {
				if _, ok := add[k]; ok {
					got = append(got, k)
				}
			}
			out = append(out, got)
		}
		require.NotEmpty(t, out, "%s sees the %s event", identity, tag)
		return out
	}
	project := "/api/v1/projects/tinyweb/events"
	require.Equal(t, [][]string{{"note"}}, seen("anonymous", project, "project:note:add"), "the public")
	require.Equal(t, [][]string{{"note"}}, seen("other maintainer", project, "project:note:add"), "another project's maintainer is the public here")
	require.Equal(t, [][]string{{"note"}}, seen("maintainer", project, "project:note:add"), "maintainers: public keys only (the description names the author)")
	require.Equal(t, [][]string{{"note", "author", "contact", "reviewer", "extra"}}, seen("admin", project, "project:note:add"), "admins")
	for who, want := range map[string]string{"anonymous": "Added a note by someone", "other maintainer": "Added a note by someone",
		"maintainer": "Added a note by gina", "admin": "Added a note by gina"} {
		_, body := b.get(t, who, project)
		require.Contains(t, body, want, "%s reads the description", who)
		if who == "anonymous" {
			require.NotContains(t, body, "gina", "no account the event names reaches the public")
		}
	}
	require.Equal(t, [][]string{{"note", "author", "contact", "extra"}, {"note", "author", "contact", "extra"}},
		seen("user", "/api/v1/me/events", "account:note:add"), "the person: all but what is kept from them, whoever acted")
	require.Equal(t, [][]string{{"note", "author", "contact", "reviewer", "extra"}, {"note", "author", "contact", "reviewer", "extra"}},
		seen("admin", "/api/v1/admin/events?user=alice", "account:note:add"), "admins see everything")
}

// An event whose request was someone else's ("redact_ip": true, as
// Warehouse sends when an admin or a task acts) shows the person it is
// about no address, network, location or device; admins see them.
func TestRedactIPHidesTheRequestFromThePerson(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	_, err := b.log.RecordUser(b.ctx, service.EventParams{Tag: "account:email:add", Subject: "alice", ActorID: "alice",
		IP: "203.0.113.99", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0", Location: &service.Location{Country: "IS"},
		Additional: json.RawMessage(`{"email": "alice@admin-added.example", "redact_ip": true}`)})
	require.NoError(t, err)
	find := func(identity, path string) map[string]any {
		t.Helper()
		_, body := b.get(t, identity, path)
		for _, e := range events(t, body) {
			if add, _ := e["additional"].(map[string]any); add["redact_ip"] == true {
				return e
			}
		}
		t.Fatalf("%s: no redacted event on %s", identity, path)
		return nil
	}
	mine := find("user", "/api/v1/me/events")
	for _, k := range []string{"ip", "network", "location", "device", "user_agent"} {
		require.NotContains(t, mine, k, "the person does not see the request's %s", k)
	}
	require.Equal(t, "alice", mine["actor_id"])
	admin := find("admin", "/api/v1/admin/events?user=alice")
	require.Equal(t, "203.0.113.99", admin["ip"])
	require.NotNil(t, admin["location"])
}
