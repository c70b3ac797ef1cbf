package web_test

import (
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/web"
)

// requestErasure sends the admin's erasure form for user and returns the
// id in the redirect's ?created=.
func requestErasure(t *testing.T, b *webBundle, user string) int64 {
	t.Helper()
	_, page := b.get(t, "admin", "/admin/erasures")
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	require.Len(t, m, 2)
	form := url.Values{"user_id": {user}, "reason": {"ticket 7"}, "csrf": {m[1]}}
	req, err := http.NewRequest("POST", b.srv.URL+"/admin/erasures", strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: web.SessionCookie, Value: b.tokens["admin"]})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	loc, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(t, err)
	require.Equal(t, "/admin/erasures", loc.Path)
	id, err := strconv.ParseInt(loc.Query().Get("created"), 10, 64)
	require.NoError(t, err)
	return id
}

// notice returns the text of the page's notices (created, no-events), or
// "".
func notice(page string) string {
	var out []string
	tags := regexp.MustCompile(`<[^>]*>`)
	for _, m := range regexp.MustCompile(`(?s)<p class="(?:notice|alert)" id="(?:created|no-events)">(.*?)</p>`).FindAllStringSubmatch(page, -1) {
		out = append(out, html.UnescapeString(tags.ReplaceAllString(m[1], "")))
	}
	return strings.Join(out, "\n")
}

// A stuck request is marked on the page and in the JSON twin; requesting
// the erasure again replaces it, and the notice says which request it
// replaced and why.
func TestErasuresShowStuckRequests(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	first := requestErasure(t, b, "bob")
	_, page := b.get(t, "admin", "/admin/erasures?created="+strconv.FormatInt(first, 10))
	require.Contains(t, notice(page), "Erasure request "+strconv.FormatInt(first, 10)+" for bob is stored (pending)")
	require.NotContains(t, notice(page), "Warning")
	require.NotContains(t, page, "stuck")

	_, err := b.pool.Exec(b.ctx, `UPDATE river_job SET state = 'cancelled', finalized_at = now()
		WHERE kind = 'auditlog_erasure' AND (args->>'request_id')::bigint = $1`, first)
	require.NoError(t, err)
	_, page = b.get(t, "admin", "/admin/erasures")
	require.Contains(t, page, `<tr class="status-pending stuck">`)
	require.Contains(t, page, "(stuck: job cancelled)")
	require.Contains(t, page, "request this erasure again to start afresh")
	status, body := b.get(t, "admin", "/api/v1/admin/erasures")
	require.Equal(t, http.StatusOK, status)
	var list struct {
		Requests []map[string]any `json:"requests"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &list))
	require.Len(t, list.Requests, 1)
	require.Equal(t, true, list.Requests[0]["stuck"])
	require.Equal(t, "cancelled", list.Requests[0]["job_state"])
	require.Equal(t, true, list.Requests[0]["events_found"])

	second := requestErasure(t, b, "bob")
	require.NotEqual(t, first, second, "a new request, not the dead one")
	_, page = b.get(t, "admin", "/admin/erasures?created="+strconv.FormatInt(second, 10))
	n := notice(page)
	require.Contains(t, n, "Erasure request "+strconv.FormatInt(second, 10)+" for bob is stored (pending)")
	require.Contains(t, n, "It replaces request "+strconv.FormatInt(first, 10)+", which was stuck: its River job was cancelled")
	require.NotContains(t, page, "(stuck:", "the old request is failed, the new one live")
	status, body = b.get(t, "admin", "/api/v1/admin/erasures")
	require.Equal(t, http.StatusOK, status)
	require.NoError(t, json.Unmarshal([]byte(body), &list))
	require.Len(t, list.Requests, 2)
	require.Equal(t, float64(first), list.Requests[0]["supersedes"])
	require.Equal(t, "failed", list.Requests[1]["status"])
}

// An erasure for an id no event names is stored, and the notice warns.
func TestErasureOfUnknownIDWarns(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	id := requestErasure(t, b, "nobdy")
	_, page := b.get(t, "admin", "/admin/erasures?created="+strconv.FormatInt(id, 10))
	require.Contains(t, notice(page), "Warning: no event names nobdy; check the id — the request is stored.")
	require.Equal(t, 1, dbtest.Count(t, b.pool, "SELECT count(*) FROM erasure_requests WHERE user_id = 'nobdy' AND NOT events_found"))
}

// The notice shows only for the canonical id of a stored request, built
// from that request; the parameter itself is never echoed.
func TestErasuresCreatedNoticeOnlyForStoredRequests(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	id := strconv.FormatInt(requestErasure(t, b, "bob"), 10)
	for _, created := range []string{
		"<script>alert(1)</script>", "999999", "0", "-" + id, "+" + id, "0" + id, id + "x", id + " ", "1e3",
		"99999999999999999999", "",
	} {
		status, page := b.get(t, "admin", "/admin/erasures?created="+url.QueryEscape(created))
		require.Equal(t, http.StatusOK, status, created)
		require.Empty(t, notice(page), "created=%q", created)
		require.NotContains(t, page, "<script>alert", created)
		require.NotContains(t, page, "alert(1)", created)
	}
	_, page := b.get(t, "admin", "/admin/erasures?created="+id)
	require.Contains(t, notice(page), "Erasure request "+id+" for bob")
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
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM erasure_requests"))
	require.Equal(t, http.StatusSeeOther, post("admin", m[1]))
	require.Equal(t, 1, dbtest.Count(t, b.pool, "SELECT count(*) FROM erasure_requests WHERE user_id = 'bob' AND requested_by = 'root'"))
	_, page = b.get(t, "admin", "/admin/erasures")
	require.Contains(t, page, "ticket 7")
	require.Contains(t, page, "pending")
}
