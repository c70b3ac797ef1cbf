package web_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/web"
)

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
	long := mustToken(t, web.Viewer{UserID: "busy", Maintains: many})
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

// The session cookie is Secure whenever the request came over TLS, even
// without --secure-cookies (Options.SecureCookies).
func TestSessionCookieIsSecureOverTLS(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	h, err := web.New(web.Options{Log: b.log, Secret: secret})
	require.NoError(t, err)
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, err := http.NewRequest("POST", srv.URL+"/login", strings.NewReader(url.Values{"token": {b.tokens["user"]}}.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Origin", srv.URL)
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	c := resp.Cookies()
	require.Len(t, c, 1)
	require.Equal(t, web.SessionCookie, c[0].Name)
	require.True(t, c[0].Secure, "set over TLS")
	require.True(t, c[0].HttpOnly)
}
