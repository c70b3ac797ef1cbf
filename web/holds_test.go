package web_test

import (
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
	"github.com/auditlog/auditlog/web"
)

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf is the CSRF token of who's session, from a page they may see.
func csrfOf(t *testing.T, b *webBundle, who, path string) string {
	t.Helper()
	status, page := b.get(t, who, path)
	require.Equal(t, http.StatusOK, status, page)
	m := csrfField.FindStringSubmatch(page)
	require.Len(t, m, 2)
	return m[1]
}

// postForm sends form to path with who's session cookie (or, when bearer,
// their token as a Bearer header) and returns the status, the redirect's
// location and the body.
func postForm(t *testing.T, b *webBundle, who, path string, form url.Values, bearer bool) (status int, location, body string) {
	t.Helper()
	req, err := http.NewRequest("POST", b.srv.URL+path, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if bearer {
		req.Header.Set("Authorization", "Bearer "+b.tokens[who])
	} else {
		req.AddCookie(&http.Cookie{Name: web.SessionCookie, Value: b.tokens[who]})
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header.Get("Location"), string(raw)
}

// holdNotice is the text of the holds page's notice, or "".
func holdNotice(page string) string {
	m := regexp.MustCompile(`(?s)<p class="notice" id="notice">(.*?)</p>`).FindStringSubmatch(page)
	if m == nil {
		return ""
	}
	return html.UnescapeString(regexp.MustCompile(`<[^>]*>`).ReplaceAllString(m[1], ""))
}

// redirectID is the id a redirect to /admin/holds?param=ID names.
func redirectID(t *testing.T, location, param string) int64 {
	t.Helper()
	loc, err := url.Parse(location)
	require.NoError(t, err)
	require.Equal(t, "/admin/holds", loc.Path)
	id, err := strconv.ParseInt(loc.Query().Get(param), 10, 64)
	require.NoError(t, err, location)
	return id
}

type holdsList struct {
	Holds      []service.Hold `json:"holds"`
	HeldEvents int64          `json:"held_events"`
}

func listHolds(t *testing.T, b *webBundle) holdsList {
	t.Helper()
	status, body := b.get(t, "admin", "/api/v1/admin/holds")
	require.Equal(t, http.StatusOK, status, body)
	var l holdsList
	require.NoError(t, json.Unmarshal([]byte(body), &l))
	return l
}

// An admin places a hold from the form: it blocks the person's erasure
// request, which the erasures page shows with the hold; placing it again
// returns the open hold; releasing it puts the request back to pending;
// releasing it again, or a hold that does not exist, is refused.
func TestHoldPlaceAndReleaseViaForm(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	erasure := strconv.FormatInt(requestErasure(t, b, "bob"), 10)
	csrf := csrfOf(t, b, "admin", "/admin/holds")
	until := time.Now().UTC().AddDate(0, 6, 0).Format(time.DateOnly)

	status, loc, body := postForm(t, b, "admin", "/admin/holds", url.Values{"kind": {"user"}, "subject": {"bob"},
		"reason": {"case 9"}, "until": {until}, "csrf": {csrf}}, false)
	require.Equal(t, http.StatusSeeOther, status, body)
	id := redirectID(t, loc, "placed")
	ids := strconv.FormatInt(id, 10)
	_, page := b.get(t, "admin", loc)
	require.Equal(t, "Hold "+ids+" on user bob is placed, until "+until+" 00:00 UTC.", holdNotice(page))
	require.Contains(t, page, `<tr id="hold-`+ids+`" class="hold-open">`)
	require.Contains(t, page, `action="/admin/holds/`+ids+`/release"`)
	require.Contains(t, page, "0 user events are kept past their month by holds.")
	require.Contains(t, page, `<a href="/admin/holds">Legal holds</a>`, "the admin nav links the page")

	_, page = b.get(t, "admin", "/admin/erasures")
	require.Contains(t, page, `<tr class="status-blocked">`)
	require.Contains(t, page, `blocked <span class="blocked">(hold <a href="/admin/holds#hold-`+ids+`">`+ids+`</a>)</span>`)
	_, body = b.get(t, "admin", "/api/v1/admin/erasures")
	require.Contains(t, body, `"status":"blocked"`)
	require.Contains(t, body, `"blocked_by":`+ids)

	status, loc, _ = postForm(t, b, "admin", "/admin/holds", url.Values{"kind": {"user"}, "subject": {"bob"},
		"reason": {"another case"}, "csrf": {csrf}}, false)
	require.Equal(t, http.StatusSeeOther, status)
	require.Equal(t, id, redirectID(t, loc, "existing"))
	_, page = b.get(t, "admin", loc)
	require.Contains(t, holdNotice(page), "user bob already has the open hold "+ids+", placed by root on ")
	require.Contains(t, holdNotice(page), "nothing was changed")

	l := listHolds(t, b)
	require.Len(t, l.Holds, 1)
	require.Equal(t, service.ModelUser, l.Holds[0].Kind)
	require.Equal(t, "bob", l.Holds[0].SubjectID)
	require.Equal(t, "case 9", l.Holds[0].Reason)
	require.Equal(t, "root", l.Holds[0].PlacedBy, "the admin who sent the form places it")
	require.Equal(t, until, l.Holds[0].Until.Format(time.DateOnly))
	require.Zero(t, l.HeldEvents)

	status, loc, body = postForm(t, b, "admin", "/admin/holds/"+ids+"/release", url.Values{"csrf": {csrf}}, false)
	require.Equal(t, http.StatusSeeOther, status, body)
	require.Equal(t, id, redirectID(t, loc, "released"))
	_, page = b.get(t, "admin", loc)
	require.Contains(t, holdNotice(page), "Hold "+ids+" on user bob is released")
	require.Contains(t, page, `<tr id="hold-`+ids+`" class="hold-released">`)
	require.NotContains(t, page, `action="/admin/holds/`+ids+`/release"`)
	require.Equal(t, 1, dbtest.Count(t, b.pool, "SELECT count(*) FROM legal_holds WHERE released_by = 'root'"))
	_, page = b.get(t, "admin", "/admin/erasures")
	require.Contains(t, page, `<tr class="status-pending">`)
	require.NotContains(t, page, "(hold ")
	require.Equal(t, 1, dbtest.Count(t, b.pool, "SELECT count(*) FROM erasure_requests WHERE status = 'pending' AND id = "+erasure))

	status, _, body = postForm(t, b, "admin", "/admin/holds/"+ids+"/release", url.Values{"csrf": {csrf}}, false)
	require.Equal(t, http.StatusConflict, status)
	require.Contains(t, body, "hold "+ids+" was released already")
	for _, bad := range []string{"99999", "abc", "0", "-1"} {
		status, _, _ = postForm(t, b, "admin", "/admin/holds/"+bad+"/release", url.Values{"csrf": {csrf}}, false)
		require.Equal(t, http.StatusNotFound, status, bad)
	}
}

// Both forms need the session's CSRF token and an administrator; a Bearer
// client needs no token and gets JSON.
func TestHoldFormsCSRFAndAdmin(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	place := url.Values{"kind": {"project"}, "subject": {"tinyweb"}, "reason": {"case 3"}}
	with := func(v url.Values, csrf string) url.Values {
		out := url.Values{}
		for k, vs := range v {
			out[k] = vs
		}
		if csrf != "" {
			out.Set("csrf", csrf)
		}
		return out
	}
	for _, csrf := range []string{"", "forged"} {
		status, _, _ := postForm(t, b, "admin", "/admin/holds", with(place, csrf), false)
		require.Equal(t, http.StatusForbidden, status, "csrf %q", csrf)
	}
	userCSRF := csrfOf(t, b, "user", "/me")
	status, _, _ := postForm(t, b, "user", "/admin/holds", with(place, userCSRF), false)
	require.Equal(t, http.StatusForbidden, status, "not an admin")
	status, _, _ = postForm(t, b, "anonymous", "/admin/holds", place, false)
	require.Equal(t, http.StatusUnauthorized, status)
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM legal_holds"))

	// A Bearer client: JSON, 201 for a new hold, 200 for the open one.
	status, _, body := postForm(t, b, "admin", "/admin/holds", place, true)
	require.Equal(t, http.StatusCreated, status, body)
	var placed struct {
		Hold    service.Hold `json:"hold"`
		Created bool         `json:"created"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &placed))
	require.True(t, placed.Created)
	require.Equal(t, service.ModelProject, placed.Hold.Kind)
	status, _, body = postForm(t, b, "admin", "/admin/holds", place, true)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, `"created":false`)
	release := "/admin/holds/" + strconv.FormatInt(placed.Hold.ID, 10) + "/release"

	for _, csrf := range []string{"", "forged"} {
		status, _, _ := postForm(t, b, "admin", release, with(url.Values{}, csrf), false)
		require.Equal(t, http.StatusForbidden, status, "csrf %q", csrf)
	}
	status, _, _ = postForm(t, b, "user", release, with(url.Values{}, userCSRF), false)
	require.Equal(t, http.StatusForbidden, status)
	require.Equal(t, 1, dbtest.Count(t, b.pool, "SELECT count(*) FROM legal_holds WHERE released_at IS NULL"), "still open")
	status, _, body = postForm(t, b, "admin", release, url.Values{}, true)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, `"resumed":[]`)
	require.Contains(t, body, `"released_by":"root"`)

	// A hold on an administrator is released by another one.
	csrf := csrfOf(t, b, "admin", "/admin/holds")
	status, loc, _ := postForm(t, b, "admin", "/admin/holds", url.Values{"kind": {"user"}, "subject": {"root"},
		"reason": {"internal review"}, "csrf": {csrf}}, false)
	require.Equal(t, http.StatusSeeOther, status)
	own := strconv.FormatInt(redirectID(t, loc, "placed"), 10)
	status, _, body = postForm(t, b, "admin", "/admin/holds/"+own+"/release", url.Values{"csrf": {csrf}}, false)
	require.Equal(t, http.StatusForbidden, status)
	require.Contains(t, body, "released by another administrator")
}

// A form the service refuses is a 400 naming the form's field; nothing is
// placed.
func TestHoldFormFieldErrors(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	csrf := csrfOf(t, b, "admin", "/admin/holds")
	for _, tc := range []struct {
		form  url.Values
		names string
	}{
		{url.Values{"kind": {"team"}, "subject": {"acme/core"}, "reason": {"r"}}, "kind: "},
		{url.Values{"subject": {"bob"}, "reason": {"r"}}, "kind: "},
		{url.Values{"kind": {"user"}, "reason": {"r"}}, "subject: "},
		{url.Values{"kind": {"organization"}, "subject": {"a\x00b"}, "reason": {"r"}}, "subject: "},
		{url.Values{"kind": {"user"}, "subject": {"bob"}}, "reason: "},
		{url.Values{"kind": {"user"}, "subject": {"bob"}, "reason": {strings.Repeat("r", 5000)}}, "reason: "},
		{url.Values{"kind": {"user"}, "subject": {"bob"}, "reason": {"r"}, "until": {"soon"}}, "until: "},
		{url.Values{"kind": {"user"}, "subject": {"bob"}, "reason": {"r"}, "until": {"2001-01-01"}}, "until: "},
	} {
		form := url.Values{"csrf": {csrf}}
		for k, vs := range tc.form {
			form[k] = vs
		}
		status, _, body := postForm(t, b, "admin", "/admin/holds", form, false)
		require.Equal(t, http.StatusBadRequest, status, "%v: %s", tc.form, body)
		require.Contains(t, html.UnescapeString(body), tc.names, "%v", tc.form)
		status, _, body = postForm(t, b, "admin", "/admin/holds", tc.form, true)
		require.Equal(t, http.StatusBadRequest, status, "%v: %s", tc.form, body)
		var answer map[string]any
		require.NoError(t, json.Unmarshal([]byte(body), &answer))
		require.True(t, strings.HasPrefix(answer["error"].(string), tc.names), "%v: %s", tc.form, body)
	}
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM legal_holds"))
}

// A user event a hold keeps past its month is marked held in the admin
// console and its JSON twin, and counted on the holds page.
func TestAdminEventsMarkHeldEvents(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	_, err := b.pool.Exec(b.ctx, `INSERT INTO held_user_events
		SELECT (jsonb_populate_record(NULL::held_user_events, to_jsonb(u) || jsonb_build_object(
			'id', u.id + 1000000, 'time', u.time - interval '200 days', 'tag', 'account:login:failure'))).*
		FROM user_events u WHERE u.user_id = 'bob' AND u.tag = 'account:login:success'`)
	require.NoError(t, err)
	require.Equal(t, 1, dbtest.Count(t, b.pool, "SELECT count(*) FROM held_user_events"))

	status, body := b.get(t, "admin", "/api/v1/admin/events?user=bob")
	require.Equal(t, http.StatusOK, status, body)
	evs := events(t, body)
	require.Len(t, evs, 2)
	require.NotContains(t, evs[0], "held", "the live event is not held")
	require.Equal(t, true, evs[1]["held"])
	require.Equal(t, "account:login:failure", evs[1]["tag"])

	_, page := b.get(t, "admin", "/admin/events?user=bob")
	require.Equal(t, 1, strings.Count(page, `<tr class="held">`))
	require.Contains(t, page, `<span class="held" title="A legal hold keeps this event past its month">held</span>`)
	require.Equal(t, int64(1), listHolds(t, b).HeldEvents)
	_, page = b.get(t, "admin", "/admin/holds")
	require.Contains(t, page, "1 user event is kept past its month by holds.")

	// The person's own history never says so.
	_, body = b.get(t, "other user", "/api/v1/me/events")
	require.NotContains(t, body, "held")
}
