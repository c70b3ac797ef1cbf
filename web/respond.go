package web

// One path answers every request: an endpoint writes its answer itself
// when it succeeds, and returns its error otherwise, which fail turns into
// the answer — the same status, message, headers and counting whether the
// endpoint is a page, its JSON twin, the export, a form or ingest.

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
	Routes         = []string{"me", "project", "org", "team", "admin", "export", "erasures", "holds", "ingest", "login", "logout", "jobs", "proof", "other"}
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

// unavailable counts and logs, at warn, a request the database could not
// serve; its answer is a 503 with Retry-After.
func (h *Handler) unavailable(route string, err error) {
	h.opts.Logger.Warn("web: the database is unavailable", "route", route, "err", err)
	if h.opts.Observer != nil {
		h.opts.Observer.Unavailable(route)
	}
}

// eventRejected tells the observer about an ingested event refused here.
func (h *Handler) eventRejected(reason string) {
	if h.opts.Observer != nil {
		h.opts.Observer.Rejected(reason)
	}
}

// request is one request being answered.
type request struct {
	*http.Request
	viewer  *Viewer // nil: anonymous (or not identified)
	session string  // the identity CSRF tokens are bound to
	html    bool    // errors are answered as a page, else as JSON
	// faults: a JSON error names the event (index) and field at fault, as
	// ingest's answers do.
	faults bool
	route  string // the endpoint family, for metrics (one of Routes)
	// logArgs are added to the log of an internal error (ingest: the
	// token's name).
	logArgs []any
}

// result is what a view hands to its page template or JSON encoder.
type result struct {
	Title  string
	Viewer *Viewer
	Page   string // template name
	Data   any    // the page's own data; its JSON form is the API answer
	CSRF   string
}

// A view reads what a page shows; show answers it as the page or as JSON.
type view func(*request) (*result, error)

// An action answers a request: it writes the answer itself when it
// succeeds, or returns the error, having written nothing, for fail to
// answer.
type action func(w http.ResponseWriter, r *request) error

// act serves route with fn; html says how errors are answered until fn
// decides otherwise.
func (h *Handler) act(route string, html bool, fn action) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req := &request{Request: r, html: html, route: route}
		if err := fn(w, req); err != nil {
			h.fail(w, req, err)
		}
	}
}

func (h *Handler) page(route string, fn view) http.HandlerFunc { return h.act(route, true, h.show(fn)) }
func (h *Handler) api(route string, fn view) http.HandlerFunc  { return h.act(route, false, h.show(fn)) }

// show is the action of a view: identify the viewer, read, answer.
func (h *Handler) show(fn view) action {
	return func(w http.ResponseWriter, r *request) error {
		if err := h.identify(r); err != nil {
			return err
		}
		res, err := fn(r)
		if err != nil {
			return err
		}
		if !r.html {
			writeJSON(w, http.StatusOK, res.Data)
			return nil
		}
		return h.render(w, r, res)
	}
}

// render answers res as its HTML page, for req's viewer.
func (h *Handler) render(w http.ResponseWriter, req *request, res *result) error {
	res.Viewer = req.viewer
	if req.viewer != nil {
		res.CSRF = h.csrf(req.session)
	}
	// Rendered whole before anything is written, so a template error is a
	// clean 500, never half a page.
	var buf strings.Builder
	if err := h.pages.ExecuteTemplate(&buf, res.Page, res); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(buf.String()))
	return nil
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// httpError is an answer other than 200, with a message for people.
type httpError struct {
	status int
	msg    string
	// retryAfter, when set, is the answer's Retry-After, in seconds.
	retryAfter string
	// index and field name the event and field at fault; only answers of
	// requests with faults set show them.
	index *int
	field string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// apiError is the JSON body of an error answer.
type apiError struct {
	Error string `json:"error"`
	Index *int   `json:"index,omitempty"`
	Field string `json:"field,omitempty"`
}

// answer is the answer to err: 503 with Retry-After when the database
// cannot be reached (service.IsUnavailable, checked first: an outage is
// never the request's fault), its own for an *httpError, 400 for bad input
// the service refused (naming the event and field), 404 for ErrNotFound,
// 422 for an Idempotency-Key reused with another body, 500 (logged, not
// shown) otherwise.
func (h *Handler) answer(r *request, route string, err error) *httpError {
	var he *httpError
	var be *service.BatchError
	var ve *service.ValidationError
	switch {
	case service.IsUnavailable(err):
		h.unavailable(route, err)
		return &httpError{status: http.StatusServiceUnavailable, msg: UnavailableMessage, retryAfter: unavailableRetryAfter}
	case errors.As(err, &he):
		return he
	case errors.As(err, &be):
		return batchError(be)
	case errors.As(err, &ve):
		return &httpError{status: http.StatusBadRequest, msg: ve.Error(), field: ve.Field}
	case errors.Is(err, service.ErrNotFound):
		return &httpError{status: http.StatusNotFound, msg: err.Error()}
	case errors.Is(err, service.ErrIdempotencyConflict):
		return &httpError{status: http.StatusUnprocessableEntity, msg: err.Error()}
	}
	h.opts.Logger.Error("web: request failed", append([]any{"route", r.route, "err", err}, r.logArgs...)...)
	return &httpError{status: http.StatusInternalServerError, msg: "internal error"}
}

// batchError is the answer to a batch the service refused: 400 naming the
// event, and its field when the service says which.
func batchError(be *service.BatchError) *httpError {
	idx := be.Index
	e := &httpError{status: http.StatusBadRequest, msg: be.Err.Error(), index: &idx}
	var ve *service.ValidationError
	if errors.As(be.Err, &ve) {
		e.field = ve.Field
	}
	return e
}

// fail answers err (see answer) as an error page or as {"error": …}, and
// counts it; a 401 page also clears the session cookie.
func (h *Handler) fail(w http.ResponseWriter, r *request, err error) {
	route := r.route
	if route == "" {
		route = "other"
	}
	a := h.answer(r, route, err)
	h.refused(route, a.status)
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	if a.status == http.StatusUnauthorized && r.html {
		http.SetCookie(w, h.cookie(r.Request, "", -1))
	}
	if !r.html {
		body := apiError{Error: a.msg}
		if r.faults {
			body.Index, body.Field = a.index, a.field
		}
		writeJSON(w, a.status, body)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(a.status)
	_ = h.pages.ExecuteTemplate(w, "error", map[string]any{"Status": a.status, "StatusText": http.StatusText(a.status), "Message": a.msg})
}
