// Package web serves auditlog's three views — a person's security history,
// a project's history, the admin console — as HTML pages and their JSON
// twins, with access control, on the standard library's net/http and
// html/template.
//
// Identity comes one of two ways: a host service that mounts the handler
// supplies Options.Identify (its own session decides the Viewer), or
// standalone (`auditlog serve`) viewer tokens signed under the secret are
// taken from an Authorization: Bearer header or from the session cookie
// that /login?token=… sets.
package web

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/auditlog/auditlog/service"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Limits on what a request may ask for; past them the answer is a 400.
const (
	PageSize       = 50   // events on a page unless ?limit= asks for fewer or more
	MaxPageLimit   = 200  // the most ?limit= may ask for
	MaxFilterBytes = 256  // the longest a filter value may be
	exportPage     = 1000 // events per query while an export streams
)

// SessionCookie is the cookie /login sets: the viewer token itself,
// HttpOnly and SameSite=Strict.
const SessionCookie = "auditlog_session"

// Options configures the handler.
type Options struct {
	// Log reads and records events; required.
	Log *service.Log
	// Secret verifies viewer tokens and signs CSRF tokens; at least
	// service.MinSecretBytes long; required.
	Secret []byte
	// Identify, when set, maps a request to its Viewer (nil for the
	// anonymous public) from the host service's own session; tokens and
	// cookies are then ignored. An error answers 401.
	Identify func(*http.Request) (*service.Viewer, error)
	// SecureCookies marks the session cookie Secure (serve behind TLS).
	SecureCookies bool
	Logger        *slog.Logger
	// IngestConcurrency caps the ingest requests one ingest token may have
	// in progress at once; past it the answer is 429 with Retry-After.
	// Zero means DefaultIngestConcurrency.
	IngestConcurrency int
	// WriteTimeout is the server's WriteTimeout, when it has one: the
	// streaming export then extends its write deadline by this much before
	// each page. Zero leaves write deadlines alone.
	WriteTimeout time.Duration
}

// Handler serves the views.
type Handler struct {
	opts  Options
	log   *service.Log
	pages *template.Template
	mux   *http.ServeMux
	// ingestSlots counts ingest requests in progress per token (limits.go).
	ingestSlots tokenSlots
}

// New returns the handler with every route mounted at the root.
func New(opts Options) (*Handler, error) {
	if opts.Log == nil {
		return nil, errors.New("web: Options.Log is required")
	}
	if len(opts.Secret) < service.MinSecretBytes {
		return nil, fmt.Errorf("web: the secret must be at least %d bytes", service.MinSecretBytes)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := opts.checkLimits(); err != nil {
		return nil, err
	}
	pages, err := template.New("").Funcs(template.FuncMap{
		"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
		"iso":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"dash": func(s string) string {
			if s == "" {
				return "–"
			}
			return s
		},
	}).ParseFS(assets, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("web: templates: %w", err)
	}
	h := &Handler{opts: opts, log: opts.Log, pages: pages, mux: http.NewServeMux()}
	static, _ := fs.Sub(assets, "static")
	h.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	h.mux.HandleFunc("GET /{$}", h.home)
	h.mux.HandleFunc("GET /login", h.login)
	h.mux.HandleFunc("POST /logout", h.logout)
	h.mux.HandleFunc("GET /me", h.page(h.me))
	h.mux.HandleFunc("GET /api/v1/me/events", h.api(h.me))
	h.mux.HandleFunc("GET /projects/{id}", h.page(h.project))
	h.mux.HandleFunc("GET /api/v1/projects/{id}/events", h.api(h.project))
	h.mux.HandleFunc("GET /admin/events", h.page(h.adminEvents))
	h.mux.HandleFunc("GET /api/v1/admin/events", h.api(h.adminEvents))
	h.mux.HandleFunc("GET /admin/export", h.adminExport)
	h.mux.HandleFunc("GET /admin/erasures", h.page(h.erasures))
	h.mux.HandleFunc("GET /api/v1/admin/erasures", h.api(h.erasures))
	h.mux.HandleFunc("POST /admin/erasures", h.requestErasure)
	h.mux.HandleFunc("POST /api/v1/events", h.ingest)
	return h, nil
}

// ServeHTTP implements http.Handler, with the headers every answer gets.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer") // /login?token=… must not leak
	hdr.Set("Cache-Control", "no-store")
	h.mux.ServeHTTP(w, r)
}

// httpError is an answer other than 200, with a message for people.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// request is one authenticated request being answered.
type request struct {
	*http.Request
	viewer  *service.Viewer // nil: anonymous
	session string          // the identity CSRF tokens are bound to
	html    bool
}

// result is what a view hands to its page template or JSON encoder.
type result struct {
	Title  string
	Viewer *service.Viewer
	Page   string // template name
	Data   any    // the page's own data; its JSON form is the API answer
	CSRF   string
}

type view func(*request) (*result, error)

// identify finds the request's viewer. A token that is present but bad is
// an error (401), never a fall back to anonymous.
func (h *Handler) identify(r *http.Request) (*service.Viewer, string, error) {
	if h.opts.Identify != nil {
		v, err := h.opts.Identify(r)
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
	v, err := service.ParseViewerToken(h.opts.Secret, token, h.log.Now())
	if err != nil {
		return nil, "", errorf(http.StatusUnauthorized, "%v: sign in again with a new login link", err)
	}
	return &v, token, nil
}

func (h *Handler) page(fn view) http.HandlerFunc { return h.serve(fn, true) }
func (h *Handler) api(fn view) http.HandlerFunc  { return h.serve(fn, false) }

func (h *Handler) serve(fn view, html bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		viewer, session, err := h.identify(r)
		req := &request{Request: r, viewer: viewer, session: session, html: html}
		var res *result
		if err == nil {
			res, err = fn(req)
		}
		if err != nil {
			h.fail(w, req, err)
			return
		}
		if !html {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(res.Data)
			return
		}
		res.Viewer = viewer
		if viewer != nil {
			res.CSRF = h.csrf(session)
		}
		// Rendered whole before anything is written, so a template error
		// is a clean 500, never half a page.
		var buf strings.Builder
		if err := h.pages.ExecuteTemplate(&buf, res.Page, res); err != nil {
			h.fail(w, req, err)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(buf.String()))
	}
}

// fail answers an error: its own status for an *httpError, 400 for bad
// input the service refused, 500 (logged, not shown) otherwise.
func (h *Handler) fail(w http.ResponseWriter, r *request, err error) {
	status, msg := http.StatusInternalServerError, "internal error"
	var he *httpError
	var ve *service.ValidationError
	switch {
	case errors.As(err, &he):
		status, msg = he.status, he.msg
	case errors.As(err, &ve):
		status, msg = http.StatusBadRequest, ve.Error()
	case errors.Is(err, service.ErrNotFound):
		status, msg = http.StatusNotFound, err.Error()
	default:
		h.opts.Logger.Error("web: request failed", "path", r.URL.Path, "err", err)
	}
	if status == http.StatusUnauthorized && r.html {
		http.SetCookie(w, h.cookie("", -1))
	}
	if !r.html {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = h.pages.ExecuteTemplate(w, "error", map[string]any{"Status": status, "StatusText": http.StatusText(status), "Message": msg})
}

func (h *Handler) cookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: SessionCookie, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: h.opts.SecureCookies, SameSite: http.SameSiteStrictMode}
}

// csrf is the form token bound to a session: an HMAC of it under the
// secret, so it cannot be made without the secret nor reused elsewhere.
func (h *Handler) csrf(session string) string {
	mac := hmac.New(sha256.New, h.opts.Secret)
	mac.Write([]byte("csrf\x00" + session))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func (h *Handler) home(w http.ResponseWriter, r *http.Request) {
	viewer, _, err := h.identify(r)
	if err == nil && viewer != nil {
		http.Redirect(w, r, "/me", http.StatusSeeOther)
		return
	}
	h.serve(func(*request) (*result, error) {
		return &result{Title: "auditlog", Page: "home"}, nil
	}, true)(w, r)
}

// login turns a viewer token into the session cookie and sends the viewer
// to ?next= when it is a path on this server, else to their history
// (admins to the console).
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("token")
	v, err := service.ParseViewerToken(h.opts.Secret, token, h.log.Now())
	if err != nil {
		h.fail(w, &request{Request: r, html: true}, errorf(http.StatusUnauthorized, "%v: ask for a new login link", err))
		return
	}
	http.SetCookie(w, h.cookie(token, 0))
	to := "/me"
	if v.Admin {
		to = "/admin/events"
	}
	if next := r.URL.Query().Get("next"); localPath(next) {
		to = next
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// localPath reports whether next is a path on this server and nothing a
// browser could read as another host: no scheme or host, no backslash or
// control character (browsers drop tabs and newlines, so "/\t/evil" would
// become "//evil"), and not "//".
func localPath(next string) bool {
	if next == "" || len(next) > 1024 || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") {
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

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, h.cookie("", -1))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// listOpts reads the shared filters: tag, tag_prefix, since, until,
// cursor, limit.
func listOpts(r *request) (service.ListOpts, error) {
	q := r.URL.Query()
	for k, vs := range q {
		for _, v := range vs {
			if len(v) > MaxFilterBytes {
				return service.ListOpts{}, errorf(http.StatusBadRequest, "%s is longer than %d bytes", k, MaxFilterBytes)
			}
		}
	}
	o := service.ListOpts{Tag: q.Get("tag"), TagPrefix: q.Get("tag_prefix"), Cursor: q.Get("cursor"), Limit: PageSize}
	var err error
	if o.Since, err = parseTime("since", q.Get("since")); err != nil {
		return o, err
	}
	if o.Until, err = parseTime("until", q.Get("until")); err != nil {
		return o, err
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageLimit {
			return o, errorf(http.StatusBadRequest, "limit must be a number from 1 to %d", MaxPageLimit)
		}
		o.Limit = n
	}
	return o, nil
}

func parseTime(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errorf(http.StatusBadRequest, "%s: %q is not a time (RFC 3339 or YYYY-MM-DD)", name, s)
}

// eventsPage is the data of every event list, and the JSON answer.
type eventsPage struct {
	Events     []viewEvent `json:"events"`
	NextCursor string      `json:"next_cursor,omitempty"`
	// NextURL is the next page's link with the same filters (pages only).
	NextURL string `json:"-"`
	// For the security history.
	RetentionDays      int        `json:"retention_days,omitempty"`
	FailedSinceSuccess *int64     `json:"failed_logins_since_success,omitempty"`
	Failed             int64      `json:"-"`
	ProjectID          string     `json:"project_id,omitempty"`
	Maintainer         bool       `json:"-"`
	Filter             filterForm `json:"-"`
	// The admin export links for the same filters.
	ExportCSV, ExportJSONL template.URL `json:"-"`
}

type filterForm struct {
	User, Project, Actor, Tag, TagPrefix, IP, Since, Until string
}

func (h *Handler) eventsPage(r *request, p *service.Page, aud func(*service.Event) audience) *eventsPage {
	out := &eventsPage{Events: make([]viewEvent, len(p.Events)), NextCursor: p.NextCursor}
	for i := range p.Events {
		out.Events[i] = present(&p.Events[i], aud(&p.Events[i]), h.log.Registry())
	}
	if p.NextCursor != "" {
		q := r.URL.Query()
		q.Set("cursor", p.NextCursor)
		out.NextURL = r.URL.Path + "?" + q.Encode()
	}
	q := r.URL.Query()
	q.Del("cursor")
	q.Set("format", "csv")
	out.ExportCSV = template.URL("/admin/export?" + q.Encode()) // built by url.Values: safe as a URL
	q.Set("format", "jsonl")
	out.ExportJSONL = template.URL("/admin/export?" + q.Encode())
	out.Filter = filterForm{User: q.Get("user"), Project: q.Get("project"), Actor: q.Get("actor"), Tag: q.Get("tag"),
		TagPrefix: q.Get("tag_prefix"), IP: q.Get("ip"), Since: q.Get("since"), Until: q.Get("until")}
	return out
}

func (h *Handler) me(r *request) (*result, error) {
	if r.viewer == nil {
		return nil, errorf(http.StatusUnauthorized, "sign in to see your security history")
	}
	opts, err := listOpts(r)
	if err != nil {
		return nil, err
	}
	p, err := h.log.UserEvents(r.Context(), r.viewer.UserID, opts)
	if err != nil {
		return nil, err
	}
	failed, err := h.log.FailedLoginsSinceSuccess(r.Context(), r.viewer.UserID)
	if err != nil {
		return nil, err
	}
	data := h.eventsPage(r, p, subjectView)
	data.RetentionDays = int(h.log.Retention().Hours() / 24)
	data.FailedSinceSuccess, data.Failed = &failed, failed
	return &result{Title: "Your security history", Page: "me", Data: data}, nil
}

func (h *Handler) project(r *request) (*result, error) {
	id := r.PathValue("id")
	if id == "" || len(id) > service.MaxIDBytes {
		return nil, errorf(http.StatusBadRequest, "a project id is 1 to %d bytes", service.MaxIDBytes)
	}
	opts, err := listOpts(r)
	if err != nil {
		return nil, err
	}
	p, err := h.log.ProjectEvents(r.Context(), id, opts)
	if err != nil {
		return nil, err
	}
	aud := public
	if r.viewer.MaintainerOf(id) {
		aud = maintainer
	}
	if r.viewer != nil && r.viewer.Admin {
		// An admin sees everything here too, so the read is recorded as
		// on the console.
		aud = owner
		if err := h.recordRead(r.Context(), r, "project"); err != nil {
			return nil, err
		}
	}
	data := h.eventsPage(r, p, func(*service.Event) audience { return aud })
	data.ProjectID, data.Maintainer = id, aud != public
	return &result{Title: "History of " + id, Page: "project", Data: data}, nil
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

func adminFilter(r *request) (service.Filter, error) {
	opts, err := listOpts(r)
	if err != nil {
		return service.Filter{}, err
	}
	q := r.URL.Query()
	return service.Filter{UserID: q.Get("user"), ProjectID: q.Get("project"), ActorID: q.Get("actor"),
		IP: q.Get("ip"), ListOpts: opts}, nil
}

// recordRead records an admin's read as an event in their own history
// (admin:events:view): who looked, with which filter, in which form. The
// read is refused when it cannot be recorded.
func (h *Handler) recordRead(ctx context.Context, r *request, format string) error {
	q := r.URL.Query()
	q.Del("cursor")
	add, err := json.Marshal(map[string]string{"filter": q.Encode(), "format": format})
	if err != nil {
		return err
	}
	_, err = h.log.RecordUser(ctx, service.EventParams{
		Tag: "admin:events:view", Subject: r.viewer.UserID, ActorID: r.viewer.UserID,
		IP: clientIP(r.Request), UserAgent: truncate(r.UserAgent(), service.MaxUserAgentBytes), Additional: add,
	})
	if err != nil {
		return fmt.Errorf("record the admin read: %w", err)
	}
	return nil
}

func (h *Handler) adminEvents(r *request) (*result, error) {
	if err := admin(r); err != nil {
		return nil, err
	}
	f, err := adminFilter(r)
	if err != nil {
		return nil, err
	}
	p, err := h.log.Events(r.Context(), f)
	if err != nil {
		return nil, err
	}
	format := "json"
	if r.html {
		format = "html"
	}
	if err := h.recordRead(r.Context(), r, format); err != nil {
		return nil, err
	}
	data := h.eventsPage(r, p, func(*service.Event) audience { return owner })
	return &result{Title: "Admin console", Page: "admin", Data: data}, nil
}

// erasuresPage is the erasure list, and its JSON answer.
type erasuresPage struct {
	Requests []service.ErasureRequest `json:"requests"`
	Created  string                   `json:"-"`
}

func (h *Handler) erasures(r *request) (*result, error) {
	if err := admin(r); err != nil {
		return nil, err
	}
	reqs, err := h.log.ErasureRequests(r.Context(), r.URL.Query().Get("user"), 200)
	if err != nil {
		return nil, err
	}
	return &result{Title: "Erasure requests", Page: "erasures",
		Data: &erasuresPage{Requests: reqs, Created: r.URL.Query().Get("created")}}, nil
}

// requestErasure opens an erasure request from the admin form (CSRF token
// required) or from a Bearer-authenticated client.
func (h *Handler) requestErasure(w http.ResponseWriter, r *http.Request) {
	viewer, session, err := h.identify(r)
	// Only a request that authenticated with a Bearer token skips CSRF: no
	// cookie was involved.
	bearer := h.opts.Identify == nil && strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ")
	req := &request{Request: r, viewer: viewer, session: session, html: !bearer}
	if err == nil {
		err = admin(req)
	}
	if err == nil {
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if perr := r.ParseForm(); perr != nil {
			err = errorf(http.StatusBadRequest, "bad form: %v", perr)
		}
	}
	if err == nil && req.html && !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(h.csrf(session))) {
		err = errorf(http.StatusForbidden, "the form's CSRF token is missing or wrong: reload the page")
	}
	if err == nil && r.PostFormValue("user_id") == viewer.UserID {
		err = errorf(http.StatusForbidden, "an administrator's own erasure must be requested by another administrator")
	}
	var er service.ErasureRequest
	if err == nil {
		er, _, err = h.log.RequestErasure(r.Context(), service.ErasureParams{
			UserID: r.PostFormValue("user_id"), Reason: r.PostFormValue("reason"), RequestedBy: viewer.UserID,
		})
	}
	if err != nil {
		h.fail(w, req, err)
		return
	}
	if !req.html {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(er)
		return
	}
	http.Redirect(w, r, "/admin/erasures?created="+strconv.FormatInt(er.ID, 10), http.StatusSeeOther)
}

// clientIP is the request's remote address. Behind a proxy the host
// should use Identify and its own notion of the client.
func clientIP(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	return strings.Trim(host, "[]")
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
