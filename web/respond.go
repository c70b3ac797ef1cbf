package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/auditlog/auditlog/service"
)

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
