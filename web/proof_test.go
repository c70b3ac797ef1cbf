package web_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/service"
	"github.com/auditlog/auditlog/web"
)

// integrityBundle is webSetup with an integrity key.
type integrityBundle struct {
	*webBundle
	key *service.IntegrityKey
}

func integritySetup(t *testing.T) *integrityBundle {
	t.Helper()
	file, _, err := service.GenerateIntegrityKey("web.test")
	require.NoError(t, err)
	key, err := service.ParseIntegrityKey(file)
	require.NoError(t, err)
	c, err := service.BuiltinCatalog("package-index") // organizations and teams too
	require.NoError(t, err)
	reg, err := c.Registry()
	require.NoError(t, err)
	return &integrityBundle{webBundle: webSetupOpts(t, service.Opts{Integrity: key, Registry: reg}), key: key}
}

// eventID is the id of the newest event of the subject with tag.
func (b *webBundle) eventID(t *testing.T, table, column, subject, tag string) int64 {
	t.Helper()
	var id int64
	require.NoError(t, b.pool.QueryRow(b.ctx, "SELECT max(id) FROM "+table+" WHERE "+column+" = $1 AND tag = $2", subject, tag).Scan(&id))
	require.Positive(t, id, "%s %s", subject, tag)
	return id
}

// GET /api/v1/checkpoints/latest is public: 404 before the first
// checkpoint (and on a log without a key), then the newest signed note as
// text/plain, which opens with the verifier key.
func TestLatestCheckpointIsPublic(t *testing.T) {
	t.Parallel()
	b := integritySetup(t)
	get := func(who string) (*http.Response, string) {
		req, err := http.NewRequest("GET", b.srv.URL+"/api/v1/checkpoints/latest", nil)
		require.NoError(t, err)
		if tok := b.tokens[who]; tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, string(body)
	}
	resp, body := get("anonymous")
	require.Equal(t, http.StatusNotFound, resp.StatusCode, body)
	require.Contains(t, body, "no checkpoint yet")

	first, err := b.log.Checkpoint(b.ctx)
	require.NoError(t, err)
	for _, who := range []string{"anonymous", "user", "admin"} {
		resp, body = get(who)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", who, body)
		require.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"), who)
		require.Equal(t, first.Checkpoint.Note, body, who)
	}
	v, err := service.NewCheckpointVerifier(b.key.VerifierKey)
	require.NoError(t, err)
	cp, err := service.OpenCheckpoint([]byte(body), v)
	require.NoError(t, err)
	require.Equal(t, first.Checkpoint.Trees, cp.Trees)
	require.NotContains(t, body, "alice", "no personal data in a checkpoint")

	// The newest one, once there are more.
	b.recordSignIn(t, "carol")
	second, err := b.log.Checkpoint(b.ctx)
	require.NoError(t, err)
	_, body = get("anonymous")
	require.Equal(t, second.Checkpoint.Note, body)

	// A log without a key has none.
	plain := webSetup(t)
	status, body := plain.get(t, "anonymous", "/api/v1/checkpoints/latest")
	require.Equal(t, http.StatusNotFound, status, body)
}

func (b *webBundle) recordSignIn(t *testing.T, user string) service.Event {
	t.Helper()
	e, err := b.log.RecordUser(b.ctx, service.EventParams{Tag: service.TagLoginSuccess, Subject: user, ActorID: user, IP: "192.0.2.10"})
	require.NoError(t, err)
	return e
}

// GET /api/v1/events/{id}/proof against every kind of viewer: the person
// has the proofs of their own user events, a subject's managers those of
// its events, admins every proof (each recorded as an admin read), nobody
// else any — the public included. Refusals are the same 404 as for an
// event that does not exist or that no checkpoint covers yet, so the
// answer tells nothing of someone else's events.
func TestProofAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	b := integritySetup(t)
	b.tokens["owner"] = mustToken(t, web.Viewer{UserID: "gina", Owns: []string{"acme"}})
	org, err := b.log.RecordOrganization(b.ctx, service.EventParams{Tag: "organization:create", Subject: "acme", ActorID: "gina",
		Additional: json.RawMessage(`{"organization_name": "acme", "created_by_user_id": "gina"}`)})
	require.NoError(t, err)
	team, err := b.log.RecordTeam(b.ctx, service.EventParams{Tag: "team:create", Subject: service.TeamSubject("acme", "release"), ActorID: "gina",
		Additional: json.RawMessage(`{"team_name": "release", "created_by_user_id": "gina"}`)})
	require.NoError(t, err)
	_, err = b.log.Checkpoint(b.ctx)
	require.NoError(t, err)
	ids := map[string]int64{
		"alice's sign-in":  b.eventID(t, "user_events", "user_id", "alice", service.TagLoginSuccess),
		"alice's e-mail":   b.eventID(t, "user_events", "user_id", "alice", "account:email:add"),
		"bob's sign-in":    b.eventID(t, "user_events", "user_id", "bob", service.TagLoginSuccess),
		"tinyweb release":  b.eventID(t, "project_events", "project_id", "tinyweb", "project:release:add"),
		"fastjson release": b.eventID(t, "project_events", "project_id", "fastjson", "project:release:add"),
		"acme created":     org.ID,
		"team created":     team.ID,
	}
	uncovered := b.recordSignIn(t, "alice") // after the checkpoint
	ids["not covered"], ids["no such event"], ids["a huge id"] = uncovered.ID, uncovered.ID+1000, 1<<63-1
	ok, none := http.StatusOK, http.StatusNotFound
	who := append(append([]string{}, identities...), "owner")
	// allowed[event] are the identities that get the proof; everyone else
	// gets 404 (tampered and expired tokens 401).
	allowed := map[string][]string{
		"alice's sign-in":  {"user", "admin"},
		"alice's e-mail":   {"user", "admin"},
		"bob's sign-in":    {"other user", "admin"},
		"tinyweb release":  {"maintainer", "admin"},
		"fastjson release": {"other maintainer", "admin"},
		"acme created":     {"owner", "admin"},
		"team created":     {"owner", "admin"},
	}
	v, err := service.NewCheckpointVerifier(b.key.VerifierKey)
	require.NoError(t, err)
	adminProofs := 0
	var refusal string
	for event, id := range ids {
		path := "/api/v1/events/" + strconv.FormatInt(id, 10) + "/proof"
		for _, w := range who {
			status, body := b.get(t, w, path)
			want := none
			for _, a := range allowed[event] {
				if a == w {
					want = ok
				}
			}
			if w == "tampered" || w == "expired" {
				want = http.StatusUnauthorized
			}
			require.Equal(t, want, status, "%s as %s: %s", event, w, body)
			switch status {
			case ok:
				var p service.InclusionProof
				require.NoError(t, json.Unmarshal([]byte(body), &p), body)
				require.Equal(t, id, p.EventID)
				require.NoError(t, service.VerifyInclusion(&p, v), "%s as %s", event, w)
				for _, personal := range []string{"192.0.2.10", "198.51.100.20", "alice@example.com", "Berlin", "Firefox"} {
					require.NotContains(t, body, personal, "%s as %s", event, w)
				}
				if w == "admin" {
					adminProofs++
				}
			case none:
				// One refusal for all: only the id differs.
				got := strings.ReplaceAll(body, strconv.FormatInt(id, 10), "ID")
				if refusal == "" {
					refusal = got
				}
				require.Equal(t, refusal, got, "%s as %s", event, w)
			}
		}
	}
	require.Contains(t, refusal, "no proof of event ID")

	// Each proof an admin got is an admin read in their own history,
	// naming the event; nobody else's proofs are.
	p, err := b.log.UserEvents(b.ctx, "root", service.ListOpts{Tag: service.TagAdminEventsView})
	require.NoError(t, err)
	require.Len(t, p.Events, adminProofs)
	require.Equal(t, 7, adminProofs)
	reads := map[string]bool{}
	for _, e := range p.Events {
		var add struct {
			Format string            `json:"format"`
			Filter map[string]string `json:"filter"`
		}
		require.NoError(t, json.Unmarshal(e.Additional, &add))
		require.Equal(t, "proof", add.Format)
		reads[add.Filter["event"]] = true
	}
	require.True(t, reads[strconv.FormatInt(ids["alice's sign-in"], 10)])
	require.True(t, reads[strconv.FormatInt(ids["tinyweb release"], 10)])
	for _, u := range []string{"alice", "bob", "erin", "frank", "gina"} {
		p, err := b.log.UserEvents(b.ctx, u, service.ListOpts{Tag: service.TagAdminEventsView})
		require.NoError(t, err)
		require.Empty(t, p.Events, u)
	}

	// Once a checkpoint covers it, alice's newer sign-in is hers to prove.
	_, err = b.log.Checkpoint(b.ctx)
	require.NoError(t, err)
	status, body := b.get(t, "user", "/api/v1/events/"+strconv.FormatInt(uncovered.ID, 10)+"/proof")
	require.Equal(t, ok, status, body)

	// Erased events have no proof, for anyone.
	req, _, err := b.log.RequestErasure(b.ctx, service.ErasureParams{UserID: "bob", Reason: "asked"})
	require.NoError(t, err)
	_, err = b.log.RunErasure(b.ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	for _, w := range []string{"other user", "admin"} {
		status, body = b.get(t, w, "/api/v1/events/"+strconv.FormatInt(ids["bob's sign-in"], 10)+"/proof")
		require.Equal(t, none, status, "%s: %s", w, body)
	}

	// Malformed ids are 400s.
	for _, bad := range []string{"abc", "0", "-1", "01", "1e3", "99999999999999999999"} {
		status, body := b.get(t, "user", "/api/v1/events/"+bad+"/proof")
		require.Equal(t, http.StatusBadRequest, status, "%s: %s", bad, body)
		require.Contains(t, body, "not an event id")
	}
	status, body = b.get(t, "user", "/api/v1/events/1/proof?limit=1")
	require.Equal(t, http.StatusBadRequest, status, body)
}

// The pages and their JSON twins link each event to its proof for those
// who may have it: the person on their history, managers and admins on a
// subject's; never the public, and nobody when the log has no key.
func TestProofLinks(t *testing.T) {
	t.Parallel()
	b := integritySetup(t)
	var covered int64 // the newest event the checkpoint covers
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT greatest((SELECT max(id) FROM user_events), (SELECT max(id) FROM project_events))`).Scan(&covered))
	_, err := b.log.Checkpoint(b.ctx)
	require.NoError(t, err)
	proofURLs := func(body string) []string {
		var urls []string
		for _, e := range events(t, body) {
			u, _ := e["proof_url"].(string)
			urls = append(urls, u)
		}
		return urls
	}
	for _, tc := range []struct {
		who, path string
		links     bool
	}{
		{"user", "/api/v1/me/events", true},
		{"maintainer", "/api/v1/projects/tinyweb/events", true},
		{"admin", "/api/v1/projects/tinyweb/events", true},
		{"admin", "/api/v1/admin/events", true},
		{"anonymous", "/api/v1/projects/tinyweb/events", false},
		{"user", "/api/v1/projects/tinyweb/events", false},
		{"other maintainer", "/api/v1/projects/tinyweb/events", false},
	} {
		status, body := b.get(t, tc.who, tc.path)
		require.Equal(t, http.StatusOK, status, body)
		urls := proofURLs(body)
		require.NotEmpty(t, urls)
		for i, e := range events(t, body) {
			if !tc.links {
				require.Empty(t, urls[i], "%s as %s", tc.path, tc.who)
				continue
			}
			// Every event has its link; those the checkpoint covers
			// their proof (the admin's reads recorded since do not).
			id := int64(e["id"].(float64))
			require.Equal(t, "/api/v1/events/"+strconv.FormatInt(id, 10)+"/proof", urls[i], "%s as %s", tc.path, tc.who)
			want := http.StatusOK
			if id > covered {
				want = http.StatusNotFound
			}
			status, proof := b.get(t, tc.who, urls[i])
			require.Equal(t, want, status, "%s as %s: %s", urls[i], tc.who, proof)
		}
	}
	for _, tc := range []struct {
		who, path string
		links     bool
	}{
		{"user", "/me", true},
		{"maintainer", "/projects/tinyweb", true},
		{"admin", "/admin/events", true},
		{"anonymous", "/projects/tinyweb", false},
		{"user", "/projects/tinyweb", false},
	} {
		status, page := b.get(t, tc.who, tc.path)
		require.Equal(t, http.StatusOK, status, page)
		if tc.links {
			require.Contains(t, page, `<th>Proof</th>`, "%s as %s", tc.path, tc.who)
			require.Regexp(t, `<a class="proof" href="/api/v1/events/\d+/proof"`, page, "%s as %s", tc.path, tc.who)
		} else {
			require.NotContains(t, page, "/proof", "%s as %s", tc.path, tc.who)
			require.NotContains(t, page, `<th>Proof</th>`, "%s as %s", tc.path, tc.who)
		}
	}

	// Without a key: no link, no proof.
	plain := webSetup(t)
	_, body := plain.get(t, "user", "/api/v1/me/events")
	require.NotContains(t, body, "proof_url")
	_, page := plain.get(t, "user", "/me")
	require.NotContains(t, page, "/proof")
	first := events(t, body)[0]["id"].(float64)
	status, _ := plain.get(t, "user", "/api/v1/events/"+strconv.FormatFloat(first, 'f', -1, 64)+"/proof")
	require.Equal(t, http.StatusNotFound, status)
}
