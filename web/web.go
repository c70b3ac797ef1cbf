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
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
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
	// SecureCookies marks the session cookie Secure even when a request
	// did not come over TLS itself (serve behind a TLS-terminating
	// proxy); a request that came over TLS always gets a Secure cookie.
	SecureCookies bool
	Logger        *slog.Logger
	// Observer counts refused requests and events (metrics); none when nil.
	Observer Observer
	// IngestConcurrency caps the ingest requests one ingest token may have
	// in progress at once; past it the answer is 429 with Retry-After.
	// Zero means DefaultIngestConcurrency.
	IngestConcurrency int
	// WriteTimeout is the server's WriteTimeout, when it has one: the
	// streaming export then extends its write deadline by this much before
	// each page. Zero leaves write deadlines alone.
	WriteTimeout time.Duration
}

// Observer is told what the web layer refuses; ops.Metrics implements it.
// Labels are fixed words, never request data.
type Observer interface {
	// Refused is called for every answer with a 4xx status: route is the
	// endpoint family (one of Routes), reason one of RefusalReasons.
	Refused(route, reason string)
	// Rejected is called for an ingested event refused before the service
	// saw it (malformed JSON), as service.Observer's Rejected is for the
	// events the service refuses.
	Rejected(reason string)
	// Unavailable is called for every 503 answered because the database
	// could not be reached; route is one of Routes.
	Unavailable(route string)
}

// Routes are the endpoint families Observer.Refused names, and
// RefusalReasons its reasons.
var (
	Routes         = []string{"me", "project", "admin", "export", "erasures", "ingest", "login", "logout", "jobs", "other"}
	RefusalReasons = []string{"bad_request", "unauthorized", "forbidden", "not_found", "too_large", "conflict", "too_many_requests", "other"}
	// EventRejections are the reasons Observer.Rejected is called with.
	EventRejections = []string{"malformed JSON"}
)

// refusalReason maps a 4xx status to one of RefusalReasons.
func refusalReason(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusRequestEntityTooLarge, http.StatusRequestHeaderFieldsTooLarge:
		return "too_large"
	case http.StatusConflict, http.StatusUnprocessableEntity:
		return "conflict"
	case http.StatusTooManyRequests:
		return "too_many_requests"
	default:
		return "other"
	}
}

// refused tells the observer about a 4xx answer on route.
func (h *Handler) refused(route string, status int) {
	if h.opts.Observer != nil && status >= 400 && status < 500 {
		h.opts.Observer.Refused(route, refusalReason(status))
	}
}

// UnavailableMessage is the error of every answer given while the
// database cannot be reached: a 503 with Retry-After, which carries no
// detail of the connection (those go to the log).
const UnavailableMessage = "the database is unavailable; retry in a few seconds"

// unavailableRetryAfter is the Retry-After, in seconds, of those answers.
const unavailableRetryAfter = "5"

// unavailable answers a request the database could not serve: 503 with
// Retry-After, counted by route, the error logged at warn.
func (h *Handler) unavailable(w http.ResponseWriter, route string, err error) {
	h.opts.Logger.Warn("web: the database is unavailable", "route", route, "err", err)
	if h.opts.Observer != nil {
		h.opts.Observer.Unavailable(route)
	}
	w.Header().Set("Retry-After", unavailableRetryAfter)
}

// eventRejected tells the observer about an ingested event refused here.
func (h *Handler) eventRejected(reason string) {
	if h.opts.Observer != nil {
		h.opts.Observer.Rejected(reason)
	}
}

// Handler serves the views.
type Handler struct {
	opts  Options
	log   *service.Log
	pages *template.Template
	mux   *http.ServeMux
	// origins refuses cross-site browser requests to the session routes.
	origins *http.CrossOriginProtection
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
			return inert(s)
		},
		"t":       inert,
		"pathseg": url.PathEscape,
	}).ParseFS(assets, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("web: templates: %w", err)
	}
	h := &Handler{opts: opts, log: opts.Log, pages: pages, mux: http.NewServeMux(), origins: http.NewCrossOriginProtection()}
	static, _ := fs.Sub(assets, "static")
	h.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	h.mux.HandleFunc("GET /{$}", h.home)
	h.mux.HandleFunc("GET /login", h.loginPage)
	h.mux.HandleFunc("POST /login", h.login)
	h.mux.HandleFunc("POST /logout", h.logout)
	h.mux.HandleFunc("GET /me", h.page("me", h.me))
	h.mux.HandleFunc("GET /api/v1/me/events", h.api("me", h.me))
	h.mux.HandleFunc("GET /projects/{id}", h.page("project", h.project))
	h.mux.HandleFunc("GET /api/v1/projects/{id}/events", h.api("project", h.project))
	h.mux.HandleFunc("GET /admin/events", h.page("admin", h.adminEvents))
	h.mux.HandleFunc("GET /api/v1/admin/events", h.api("admin", h.adminEvents))
	h.mux.HandleFunc("GET /admin/export", h.adminExport)
	h.mux.HandleFunc("GET /admin/erasures", h.page("erasures", h.erasures))
	h.mux.HandleFunc("GET /api/v1/admin/erasures", h.api("erasures", h.erasures))
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
	route   string // the endpoint family, for metrics (one of Routes)
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
	v, err := service.ParseViewerToken(h.opts.Secret, token, h.log.Now())
	if err != nil {
		return nil, "", errorf(http.StatusUnauthorized, "%v: sign in again with a new login link", err)
	}
	return &v, token, nil
}

func (h *Handler) page(route string, fn view) http.HandlerFunc { return h.serve(route, fn, true) }
func (h *Handler) api(route string, fn view) http.HandlerFunc  { return h.serve(route, fn, false) }

func (h *Handler) serve(route string, fn view, html bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		viewer, session, err := h.identify(r)
		req := &request{Request: r, viewer: viewer, session: session, html: html, route: route}
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
		h.render(w, req, res)
	}
}

// render answers res as its HTML page, for req's viewer.
func (h *Handler) render(w http.ResponseWriter, req *request, res *result) {
	res.Viewer = req.viewer
	if req.viewer != nil {
		res.CSRF = h.csrf(req.session)
	}
	// Rendered whole before anything is written, so a template error is a
	// clean 500, never half a page.
	var buf strings.Builder
	if err := h.pages.ExecuteTemplate(&buf, res.Page, res); err != nil {
		h.fail(w, req, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(buf.String()))
}

// fail answers an error: 503 with Retry-After when the database cannot
// be reached (service.IsUnavailable, checked first), its own status for an
// *httpError, 400 for bad input the service refused, 404 for ErrNotFound,
// 500 (logged, not shown) otherwise.
func (h *Handler) fail(w http.ResponseWriter, r *request, err error) {
	status, msg := http.StatusInternalServerError, "internal error"
	route := r.route
	if route == "" {
		route = "other"
	}
	var he *httpError
	var ve *service.ValidationError
	switch {
	case service.IsUnavailable(err): // before the 4xx: an outage is never the request's fault
		status, msg = http.StatusServiceUnavailable, UnavailableMessage
		h.unavailable(w, route, err)
	case errors.As(err, &he):
		status, msg = he.status, he.msg
	case errors.As(err, &ve):
		status, msg = http.StatusBadRequest, ve.Error()
	case errors.Is(err, service.ErrNotFound):
		status, msg = http.StatusNotFound, err.Error()
	default:
		h.opts.Logger.Error("web: request failed", "route", r.route, "err", err)
	}
	h.refused(route, status)
	if status == http.StatusUnauthorized && r.html {
		http.SetCookie(w, h.cookie(r.Request, "", -1))
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

func (h *Handler) home(w http.ResponseWriter, r *http.Request) {
	viewer, _, err := h.identify(r)
	if err == nil && viewer != nil {
		http.Redirect(w, r, "/me", http.StatusSeeOther)
		return
	}
	h.serve("other", func(*request) (*result, error) {
		return &result{Title: "auditlog", Page: "home"}, nil
	}, true)(w, r)
}

// loginPage answers a login link (/login?token=…[&next=/path]): it checks
// the token and shows a page with a button that signs in. Following a link
// never signs a browser in by itself, so a link planted on another site
// cannot sign a visitor into someone else's identity.
func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	req := &request{Request: r, html: true, route: "login"}
	q, err := strictQuery(r, "token", "next")
	if err != nil {
		h.fail(w, req, err)
		return
	}
	v, err := service.ParseViewerToken(h.opts.Secret, q.Get("token"), h.log.Now())
	if err != nil {
		h.fail(w, req, errorf(http.StatusUnauthorized, "%v: ask for a new login link", err))
		return
	}
	next := q.Get("next")
	if !localPath(next) {
		next = ""
	}
	// Whoever the browser is signed in as now does not matter here.
	h.render(w, req, &result{Title: "Sign in", Page: "login",
		Data: map[string]any{"Token": q.Get("token"), "Next": next, "As": v}})
}

// login is the sign-in button's POST: it turns the viewer token into the
// session cookie and sends the viewer to next when it is a path on this
// server, else to their history (admins to the console). Only a same-origin
// form may post it (a cross-site form would sign the visitor into the
// token's identity).
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	req := &request{Request: r, html: true, route: "login"}
	if err := h.sameOrigin(r); err != nil {
		h.fail(w, req, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		h.fail(w, req, errorf(http.StatusBadRequest, "bad form"))
		return
	}
	token := r.PostForm.Get("token")
	v, err := service.ParseViewerToken(h.opts.Secret, token, h.log.Now())
	if err != nil {
		h.fail(w, req, errorf(http.StatusUnauthorized, "%v: ask for a new login link", err))
		return
	}
	http.SetCookie(w, h.cookie(r, token, 0))
	to := "/me"
	if v.Admin {
		to = "/admin/events"
	}
	if next := r.PostForm.Get("next"); localPath(next) {
		to = next
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
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
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	req := &request{Request: r, html: true, route: "logout"}
	if err := h.sameOrigin(r); err != nil {
		h.fail(w, req, err)
		return
	}
	if c, err := r.Cookie(SessionCookie); err == nil {
		if _, perr := service.ParseViewerToken(h.opts.Secret, c.Value, h.log.Now()); perr == nil {
			r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
			if err := r.ParseForm(); err != nil || !hmac.Equal([]byte(r.PostForm.Get("csrf")), []byte(h.csrf(c.Value))) {
				h.fail(w, req, errorf(http.StatusForbidden, "the sign-out form's CSRF token is missing or wrong: reload the page"))
				return
			}
		}
	}
	http.SetCookie(w, h.cookie(r, "", -1))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// strictQuery parses the query string, allowing only the keys in allowed,
// each at most once, each value at most MaxFilterBytes of printable UTF-8
// text: a filter that would not apply exactly is refused, never dropped.
func strictQuery(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "the query string is malformed")
	}
	for k, vs := range q {
		if !slices.Contains(allowed, k) {
			return nil, errorf(http.StatusBadRequest, "%s: unknown parameter (this page takes %s)", strconv.Quote(k), strings.Join(allowed, ", "))
		}
		if len(vs) > 1 {
			return nil, errorf(http.StatusBadRequest, "%s: given more than once", k)
		}
		v := vs[0]
		max := MaxFilterBytes
		if n, ok := longParams[k]; ok {
			max = n
		}
		switch {
		case len(v) > max:
			return nil, errorf(http.StatusBadRequest, "%s: longer than %d bytes", k, max)
		case !utf8.ValidString(v):
			return nil, errorf(http.StatusBadRequest, "%s: not valid UTF-8", k)
		case strings.IndexFunc(v, unicode.IsControl) >= 0:
			return nil, errorf(http.StatusBadRequest, "%s: holds a control character", k)
		}
	}
	return q, nil
}

// longParams are the parameters that may be longer than a filter: a
// viewer token names every project its holder maintains.
var longParams = map[string]int{"token": 8192, "next": 1024}

// listKeys are the query parameters every event list takes.
var listKeys = []string{"tag", "tag_prefix", "since", "until", "cursor", "limit"}

// listOpts reads the shared filters from q: tag, tag_prefix, since,
// until, cursor, limit. The service checks the rest.
func listOpts(q url.Values) (service.ListOpts, error) {
	o := service.ListOpts{Tag: q.Get("tag"), TagPrefix: q.Get("tag_prefix"), Cursor: q.Get("cursor"), Limit: PageSize}
	for _, t := range [...]struct {
		field string
		to    *time.Time
	}{{"since", &o.Since}, {"until", &o.Until}} {
		if s := q.Get(t.field); s != "" {
			v, err := service.ParseTime(t.field, s)
			if err != nil {
				return o, err
			}
			*t.to = v
		}
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageLimit {
			return o, errorf(http.StatusBadRequest, "limit: must be a number from 1 to %d", MaxPageLimit)
		}
		o.Limit = n
	}
	return o, o.Validate()
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

func (h *Handler) eventsPage(r *request, q url.Values, p *service.Page, aud func(*service.Event) audience) *eventsPage {
	out := &eventsPage{Events: make([]viewEvent, len(p.Events)), NextCursor: p.NextCursor}
	for i := range p.Events {
		out.Events[i] = present(&p.Events[i], aud(&p.Events[i]), h.log.Registry())
	}
	q = maps.Clone(q)
	if p.NextCursor != "" {
		q.Set("cursor", p.NextCursor)
		// The escaped path: a subject may hold "/" or "?".
		out.NextURL = r.URL.EscapedPath() + "?" + q.Encode()
	}
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
	q, err := strictQuery(r.Request, listKeys...)
	if err != nil {
		return nil, err
	}
	opts, err := listOpts(q)
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
	data := h.eventsPage(r, q, p, subjectView)
	data.RetentionDays = int(h.log.Retention().Hours() / 24)
	data.FailedSinceSuccess, data.Failed = &failed, failed
	return &result{Title: "Your security history", Page: "me", Data: data}, nil
}

func (h *Handler) project(r *request) (*result, error) {
	id := r.PathValue("id")
	q, err := strictQuery(r.Request, listKeys...)
	if err != nil {
		return nil, err
	}
	opts, err := listOpts(q)
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
		if err := h.recordRead(r.Context(), r, "project", service.Filter{ProjectID: id, ListOpts: opts}); err != nil {
			return nil, err
		}
	}
	data := h.eventsPage(r, q, p, func(*service.Event) audience { return aud })
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

// adminKeys are the admin console's query parameters.
var adminKeys = append([]string{"user", "project", "actor", "ip"}, listKeys...)

// adminFilter reads the admin filters from q; the service validates them.
func adminFilter(q url.Values) (service.Filter, error) {
	opts, err := listOpts(q)
	if err != nil {
		return service.Filter{}, err
	}
	f := service.Filter{UserID: q.Get("user"), ProjectID: q.Get("project"), ActorID: q.Get("actor"),
		IP: q.Get("ip"), ListOpts: opts}
	return f, f.Validate()
}

// appliedFilter is f as the read applies it, for the admin:events:view
// record: only the filters set, the network masked to what it matches,
// times in RFC 3339 UTC. Paging (cursor, limit) is not a filter.
func appliedFilter(f service.Filter) map[string]string {
	m := map[string]string{}
	for k, v := range map[string]string{"user": f.UserID, "project": f.ProjectID, "actor": f.ActorID,
		"tag": f.Tag, "tag_prefix": f.TagPrefix} {
		if v != "" {
			m[k] = v
		}
	}
	if f.IP != "" {
		if p, err := service.ParseNetwork(f.IP); err == nil {
			m["ip"] = p.String()
		}
	}
	if !f.Since.IsZero() {
		m["since"] = f.Since.UTC().Format(time.RFC3339Nano)
	}
	if !f.Until.IsZero() {
		m["until"] = f.Until.UTC().Format(time.RFC3339Nano)
	}
	return m
}

// recordRead records an admin's read as an event in their own history
// (admin:events:view): who looked, with which filter as applied, in which
// form. The read is refused when it cannot be recorded.
func (h *Handler) recordRead(ctx context.Context, r *request, format string, f service.Filter) error {
	add, err := json.Marshal(map[string]any{"filter": appliedFilter(f), "format": format})
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
	q, err := strictQuery(r.Request, adminKeys...)
	if err != nil {
		return nil, err
	}
	f, err := adminFilter(q)
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
	if err := h.recordRead(r.Context(), r, format, f); err != nil {
		return nil, err
	}
	data := h.eventsPage(r, q, p, func(*service.Event) audience { return owner })
	return &result{Title: "Admin console", Page: "admin", Data: data}, nil
}

// erasuresPage is the erasure list, and its JSON answer.
type erasuresPage struct {
	Requests []service.ErasureRequest `json:"requests"`
	// Created is the request ?created= names after the form was sent,
	// read back from the database; nil when the parameter is not the id
	// of a stored request.
	Created *service.ErasureRequest `json:"-"`
	// Superseded is the stuck request Created replaced, if any.
	Superseded *service.ErasureRequest `json:"-"`
}

func (h *Handler) erasures(r *request) (*result, error) {
	if err := admin(r); err != nil {
		return nil, err
	}
	q, err := strictQuery(r.Request, "user", "created")
	if err != nil {
		return nil, err
	}
	reqs, err := h.log.ErasureRequests(r.Context(), q.Get("user"), 200)
	if err != nil {
		return nil, err
	}
	data := &erasuresPage{Requests: reqs}
	if r.html {
		// The notice is built from the stored request only, never from the
		// parameter: anything but a canonical id of an existing request
		// shows none.
		if id, ok := requestID(q.Get("created")); ok {
			if er, err := h.log.ErasureRequest(r.Context(), id); err == nil {
				data.Created = &er
			} else if !errors.Is(err, service.ErrNotFound) {
				return nil, err
			}
		}
		if data.Created != nil && data.Created.Supersedes != 0 {
			if old, err := h.log.ErasureRequest(r.Context(), data.Created.Supersedes); err == nil {
				data.Superseded = &old
			} else if !errors.Is(err, service.ErrNotFound) {
				return nil, err
			}
		}
	}
	return &result{Title: "Erasure requests", Page: "erasures", Data: data}, nil
}

// requestID parses s as an erasure request id: a positive decimal number
// written the canonical way (no sign, no leading zero).
func requestID(s string) (int64, bool) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != s {
		return 0, false
	}
	return id, true
}

// requestErasure opens an erasure request from the admin form (CSRF token
// required) or from a Bearer-authenticated client.
func (h *Handler) requestErasure(w http.ResponseWriter, r *http.Request) {
	viewer, session, err := h.identify(r)
	// Only a request that authenticated with a Bearer token skips CSRF: no
	// cookie was involved.
	bearer := h.opts.Identify == nil && strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ")
	req := &request{Request: r, viewer: viewer, session: session, html: !bearer, route: "erasures"}
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
