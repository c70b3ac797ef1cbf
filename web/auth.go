package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/auditlog/auditlog/service"
)

// SessionCookie is the cookie /login sets: the viewer token itself,
// HttpOnly and SameSite=Strict.
const SessionCookie = "auditlog_session"

// identify finds the request's viewer and session. A token that is
// present but bad is an error (401), never a fall back to anonymous.
func (h *Handler) identify(r *request) error {
	var err error
	r.viewer, r.session, err = h.viewerOf(r.Request)
	return err
}

// viewerOf is the viewer r names (nil: anonymous) and the session CSRF
// tokens are bound to.
func (h *Handler) viewerOf(r *http.Request) (*Viewer, string, error) {
	if h.opts.Identify != nil {
		v, err := h.opts.Identify(r)
		if service.IsUnavailable(err) {
			return nil, "", err // a 503: the session may be fine
		}
		if err != nil {
			return nil, "", errorf(http.StatusUnauthorized, "not signed in: %v", err)
		}
		if v.Anonymous() {
			return nil, "", nil
		}
		return v, "user:" + v.UserID, nil
	}
	token := ""
	if auth := r.Header.Get("Authorization"); auth != "" {
		var ok bool
		if token, ok = strings.CutPrefix(auth, "Bearer "); !ok {
			return nil, "", errorf(http.StatusUnauthorized, "the Authorization header must be a Bearer token")
		}
	} else if c, err := r.Cookie(SessionCookie); err == nil {
		token = c.Value
	}
	if token == "" {
		return nil, "", nil
	}
	v, err := ParseViewerToken(h.opts.Secret, token, h.log.Now())
	if err != nil {
		return nil, "", errorf(http.StatusUnauthorized, "%v: sign in again with a new login link", err)
	}
	return &v, token, nil
}

// cookie is the session cookie: HttpOnly, SameSite=Strict, and Secure when
// the request came over TLS or Options.SecureCookies says TLS ends before us.
func (h *Handler) cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: SessionCookie, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: h.opts.SecureCookies || r.TLS != nil, SameSite: http.SameSiteStrictMode}
}

// csrf is the form token bound to a session: an HMAC of it under the
// secret, so it cannot be made without the secret nor reused elsewhere.
func (h *Handler) csrf(session string) string {
	mac := hmac.New(sha256.New, h.opts.Secret)
	mac.Write([]byte("csrf\x00" + session))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// admin checks that the request comes from an administrator.
func admin(r *request) error {
	if r.viewer == nil {
		return errorf(http.StatusUnauthorized, "sign in as an administrator")
	}
	if !r.viewer.Admin {
		return errorf(http.StatusForbidden, "administrators only")
	}
	return nil
}

// bearer reports whether r authenticates with a Bearer token: no ambient
// credential (cookie) is involved, so it needs no CSRF proof. With
// Options.Identify the host's session decides, and it never does.
func (h *Handler) bearer(r *http.Request) bool {
	return h.opts.Identify == nil && strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ")
}

// home sends a signed-in viewer to their history and shows the others how
// to sign in.
func (h *Handler) home(w http.ResponseWriter, r *request) error {
	if err := h.identify(r); err != nil {
		return err
	}
	if r.viewer != nil {
		http.Redirect(w, r.Request, "/me", http.StatusSeeOther)
		return nil
	}
	return h.render(w, r, &result{Title: "auditlog", Page: "home"})
}

// loginPage answers a login link (/login?token=…[&next=/path]): it checks
// the token and shows a page with a button that signs in. Following a link
// never signs a browser in by itself, so a link planted on another site
// cannot sign a visitor into someone else's identity.
func (h *Handler) loginPage(w http.ResponseWriter, r *request) error {
	q, err := strictQuery(r.Request, "token", "next")
	if err != nil {
		return err
	}
	v, err := ParseViewerToken(h.opts.Secret, q.Get("token"), h.log.Now())
	if err != nil {
		return errorf(http.StatusUnauthorized, "%v: ask for a new login link", err)
	}
	next := q.Get("next")
	if !localPath(next) {
		next = ""
	}
	// Whoever the browser is signed in as now does not matter here.
	return h.render(w, r, &result{Title: "Sign in", Page: "login",
		Data: map[string]any{"Token": q.Get("token"), "Next": next, "As": v}})
}

// login is the sign-in button's POST: it turns the viewer token into the
// session cookie and sends the viewer to next when it is a path on this
// server, else to their history (admins to the console). Only a same-origin
// form may post it (a cross-site form would sign the visitor into the
// token's identity).
func (h *Handler) login(w http.ResponseWriter, r *request) error {
	if err := h.sameOrigin(r.Request); err != nil {
		return err
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		return errorf(http.StatusBadRequest, "bad form")
	}
	token := r.PostForm.Get("token")
	v, err := ParseViewerToken(h.opts.Secret, token, h.log.Now())
	if err != nil {
		return errorf(http.StatusUnauthorized, "%v: ask for a new login link", err)
	}
	http.SetCookie(w, h.cookie(r.Request, token, 0))
	to := "/me"
	if v.Admin {
		to = "/admin/events"
	}
	if next := r.PostForm.Get("next"); localPath(next) {
		to = next
	}
	http.Redirect(w, r.Request, to, http.StatusSeeOther)
	return nil
}

// sameOrigin refuses a browser request sent from another site: the
// browser's Sec-Fetch-Site or Origin header must name this site (requests
// carrying neither are not from a browser's cross-site form).
func (h *Handler) sameOrigin(r *http.Request) error {
	if err := h.origins.Check(r); err != nil {
		return errorf(http.StatusForbidden, "this form must be sent from this site")
	}
	return nil
}

// localPath reports whether next is a path on this server and nothing a
// browser could read as another host: no scheme or host, no backslash or
// control character (browsers drop tabs and newlines, so "/\t/evil" would
// become "//evil"), and not "//".
func localPath(next string) bool {
	if next == "" || len(next) > 1024 || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || !utf8.ValidString(next) {
		return false
	}
	for i := 0; i < len(next); i++ {
		if c := next[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
	}
	u, err := url.Parse(next)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil
}

// logout ends the session: a same-origin POST carrying the session's CSRF
// token (the sign-out button sends it), so another site cannot sign a
// visitor out. A session that is no longer valid is simply cleared.
func (h *Handler) logout(w http.ResponseWriter, r *request) error {
	if err := h.sameOrigin(r.Request); err != nil {
		return err
	}
	if session := h.liveSession(r.Request); session != "" {
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if err := r.ParseForm(); err != nil || !hmac.Equal([]byte(r.PostForm.Get("csrf")), []byte(h.csrf(session))) {
			return errorf(http.StatusForbidden, "the sign-out form's CSRF token is missing or wrong: reload the page")
		}
	}
	http.SetCookie(w, h.cookie(r.Request, "", -1))
	http.Redirect(w, r.Request, "/", http.StatusSeeOther)
	return nil
}

// liveSession is the session cookie's token when it names a viewer now,
// else "".
func (h *Handler) liveSession(r *http.Request) string {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return ""
	}
	if _, err := ParseViewerToken(h.opts.Secret, c.Value, h.log.Now()); err != nil {
		return ""
	}
	return c.Value
}
