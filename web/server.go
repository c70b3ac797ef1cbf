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
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/auditlog/auditlog/service"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Log is what the handler uses of *service.Log, which implements it: one
// small interface per concern, each declared beside the handlers that use
// it.
type Log interface {
	EventReader
	ReadRecorder
	ErasureRequester
	HoldKeeper
	Ingester
}

var _ Log = (*service.Log)(nil)

// EventReader is what every view reads: the event lists, the registry
// that describes events, the retention and the clock (which also judges
// viewer tokens).
type EventReader interface {
	Now() time.Time
	Registry() *service.Registry
	Retention() time.Duration
	UserEvents(ctx context.Context, userID string, opts service.ListOpts) (*service.Page, error)
	FailedLoginsSinceSuccess(ctx context.Context, userID string) (int64, error)
	SubjectEvents(ctx context.Context, model service.Model, id string, opts service.ListOpts) (*service.Page, error)
	Events(ctx context.Context, f service.Filter) (*service.Page, error)
	LatestCheckpoint(ctx context.Context) (*service.Checkpoint, error)
	// Integrity, ProveEvent and EventAt serve the events' inclusion
	// proofs (proof.go).
	Integrity() bool
	ProveEvent(ctx context.Context, id int64) (*service.InclusionProof, error)
	EventAt(ctx context.Context, model service.Model, at time.Time, id int64) (service.Event, error)
}

// Options configures the handler.
type Options struct {
	// Log reads and records events (a *service.Log); required.
	Log Log
	// Secret verifies viewer tokens and signs CSRF tokens; at least
	// MinSecretBytes long; required.
	Secret []byte
	// Identify, when set, maps a request to its Viewer (nil for the
	// anonymous public) from the host service's own session; tokens and
	// cookies are then ignored. An error answers 401.
	Identify func(*http.Request) (*Viewer, error)
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
	// DisplayNames, when set, resolves the accounts descriptions name
	// (person_ref keys: user ids, usernames) to the names the host shows
	// for them, once per page for every audience allowed to see accounts;
	// an id it leaves out is shown as stored. Without it descriptions show
	// the stored values. The public never sees them ("someone").
	DisplayNames func(ctx context.Context, accounts []string) (map[string]string, error)
	// WriteTimeout is the server's WriteTimeout, when it has one: the
	// streaming export then extends its write deadline by this much before
	// each page. Zero leaves write deadlines alone.
	WriteTimeout time.Duration
}

// Handler serves the views.
type Handler struct {
	opts  Options
	log   Log
	pages *template.Template
	mux   *http.ServeMux
	// origins refuses cross-site browser requests to the session routes.
	origins *http.CrossOriginProtection
	// ingestSlots counts ingest requests in progress per token (limits.go).
	ingestSlots tokenSlots
}

// New returns the handler with every route mounted at the root.
func New(opts Options) (*Handler, error) {
	if l, ok := opts.Log.(*service.Log); opts.Log == nil || (ok && l == nil) {
		return nil, errors.New("web: Options.Log is required")
	}
	if len(opts.Secret) < MinSecretBytes {
		return nil, fmt.Errorf("web: the secret must be at least %d bytes", MinSecretBytes)
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
	h.mux.HandleFunc("GET /{$}", h.act("other", true, h.home))
	h.mux.HandleFunc("GET /login", h.act("login", true, h.loginPage))
	h.mux.HandleFunc("POST /login", h.act("login", true, h.login))
	h.mux.HandleFunc("POST /logout", h.act("logout", true, h.logout))
	h.mux.HandleFunc("GET /me", h.page("me", h.me))
	h.mux.HandleFunc("GET /api/v1/me/events", h.api("me", h.me))
	h.mux.HandleFunc("GET /projects/{id}", h.page("project", h.subject(service.ModelProject)))
	h.mux.HandleFunc("GET /api/v1/projects/{id}/events", h.api("project", h.subject(service.ModelProject)))
	h.mux.HandleFunc("GET /orgs/{id}", h.page("org", h.subject(service.ModelOrganization)))
	h.mux.HandleFunc("GET /api/v1/orgs/{id}/events", h.api("org", h.subject(service.ModelOrganization)))
	h.mux.HandleFunc("GET /orgs/{org}/teams/{team}", h.page("team", h.subject(service.ModelTeam)))
	h.mux.HandleFunc("GET /api/v1/orgs/{org}/teams/{team}/events", h.api("team", h.subject(service.ModelTeam)))
	h.mux.HandleFunc("GET /admin/events", h.page("admin", h.adminEvents))
	h.mux.HandleFunc("GET /api/v1/admin/events", h.api("admin", h.adminEvents))
	h.mux.HandleFunc("GET /admin/export", h.act("export", false, h.adminExport))
	h.mux.HandleFunc("GET /admin/erasures", h.page("erasures", h.erasures))
	h.mux.HandleFunc("GET /api/v1/admin/erasures", h.api("erasures", h.erasures))
	h.mux.HandleFunc("POST /admin/erasures", h.act("erasures", true, h.requestErasure))
	h.mux.HandleFunc("GET /admin/holds", h.page("holds", h.holds))
	h.mux.HandleFunc("GET /api/v1/admin/holds", h.api("holds", h.holds))
	h.mux.HandleFunc("POST /admin/holds", h.act("holds", true, h.placeHold))
	h.mux.HandleFunc("POST /admin/holds/{id}/release", h.act("holds", true, h.releaseHold))
	h.mux.HandleFunc("POST /api/v1/events", h.act("ingest", false, h.ingest))
	h.mux.HandleFunc("GET /api/v1/checkpoints/latest", h.act("other", false, h.latestCheckpoint))
	h.mux.HandleFunc("GET /api/v1/events/{id}/proof", h.act("proof", false, h.eventProof))
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
