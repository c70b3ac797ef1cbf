package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/auditlog/auditlog/service"
)

// MaxIngestBytes caps an ingest request's body: 1,000 events with their
// additional data at its 16 KiB limit, and room for the rest.
const MaxIngestBytes = 20 << 20

// ingestEvent is one event as POST /api/v1/events takes it: the field
// names the read API returns. The tag decides the model, and with it
// whether user_id or project_id is the subject. id, model, description,
// network and device are what the read API adds; they are accepted so a
// read event can be sent back, and ignored (descriptions come from the
// tag registry).
type ingestEvent struct {
	Tag            string            `json:"tag"`
	Time           *time.Time        `json:"time"`
	UserID         string            `json:"user_id"`
	ProjectID      string            `json:"project_id"`
	ActorID        string            `json:"actor_id"`
	AuthMethod     string            `json:"auth_method"`
	TokenID        string            `json:"token_id"`
	ActorTwoFactor *bool             `json:"actor_two_factor"`
	IP             string            `json:"ip"`
	UserAgent      string            `json:"user_agent"`
	Location       *service.Location `json:"location"`
	Additional     json.RawMessage   `json:"additional"`

	ID          json.RawMessage `json:"id"`
	Model       json.RawMessage `json:"model"`
	Description json.RawMessage `json:"description"`
	Network     json.RawMessage `json:"network"`
	Device      json.RawMessage `json:"device"`
}

// ingestError is a 4xx answer naming the event and field at fault.
type ingestError struct {
	Error string `json:"error"`
	Index *int   `json:"index,omitempty"`
	Field string `json:"field,omitempty"`
}

// ingest is POST /api/v1/events, for services not written in Go: an ingest
// token as Bearer, a body {"events": [...]} of 1 to 1,000 events recorded
// all or nothing, and an optional Idempotency-Key.
func (h *Handler) ingest(w http.ResponseWriter, r *http.Request) {
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	fail := func(status int, e ingestError) { reply(status, e) }
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		fail(http.StatusUnauthorized, ingestError{Error: "an ingest token is required: Authorization: Bearer alin_…"})
		return
	}
	tok, err := h.log.AuthenticateIngest(r.Context(), token)
	if errors.Is(err, service.ErrTokenInvalid) {
		fail(http.StatusUnauthorized, ingestError{Error: "unknown or revoked ingest token"})
		return
	}
	if err != nil {
		h.opts.Logger.Error("web: ingest auth", "err", err)
		fail(http.StatusInternalServerError, ingestError{Error: "internal error"})
		return
	}
	release, ok := h.acquireIngest(w, tok)
	if !ok {
		return
	}
	defer release()
	// The body must be JSON whatever Content-Type says (curl -d sends a
	// form type); a Bearer token, not a cookie, authorises the request, so
	// there is no cross-site form to guard against.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxIngestBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		fail(http.StatusRequestEntityTooLarge, ingestError{Error: fmt.Sprintf("the body is over %d bytes", MaxIngestBytes)})
		return
	}
	if err != nil {
		fail(http.StatusBadRequest, ingestError{Error: "reading the body: " + err.Error()})
		return
	}
	events, msg := decodeEvents(body)
	if msg != "" {
		fail(http.StatusBadRequest, ingestError{Error: msg})
		return
	}
	ps := make([]service.EventParams, len(events))
	for i, e := range events {
		p, field, msg := h.eventParams(&e)
		if msg != "" {
			fail(http.StatusBadRequest, ingestError{Error: msg, Index: &i, Field: field})
			return
		}
		ps[i] = p
	}
	res, replayed, err := h.log.Ingest(r.Context(), tok, r.Header.Get("Idempotency-Key"), body, ps)
	var be *service.BatchError
	var ve *service.ValidationError
	switch {
	case err == nil:
	case errors.Is(err, service.ErrIdempotencyConflict):
		fail(http.StatusUnprocessableEntity, ingestError{Error: err.Error()})
		return
	case errors.As(err, &be):
		idx := be.Index
		e := ingestError{Error: be.Err.Error(), Index: &idx}
		if errors.As(be.Err, &ve) {
			e.Field = ve.Field
		}
		fail(http.StatusBadRequest, e)
		return
	case errors.As(err, &ve):
		fail(http.StatusBadRequest, ingestError{Error: ve.Error(), Field: ve.Field})
		return
	default:
		h.opts.Logger.Error("web: ingest", "token", tok.Name, "err", err)
		fail(http.StatusInternalServerError, ingestError{Error: "internal error"})
		return
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
		reply(http.StatusOK, res)
		return
	}
	reply(http.StatusCreated, res)
}

// eventParams maps one posted event, checking that its subject fits the
// model its tag belongs to; field and msg say what is wrong.
func (h *Handler) eventParams(e *ingestEvent) (p service.EventParams, field, msg string) {
	p = service.EventParams{Tag: e.Tag, ActorID: e.ActorID, AuthMethod: e.AuthMethod, TokenID: e.TokenID,
		ActorTwoFactor: e.ActorTwoFactor, IP: e.IP, UserAgent: e.UserAgent, Location: e.Location, Additional: e.Additional}
	if e.Time != nil {
		p.Time = *e.Time
	}
	spec, ok := h.log.Registry().Lookup(e.Tag)
	if !ok {
		return p, "tag", fmt.Sprintf("tag %q is not registered", e.Tag)
	}
	if spec.Model == service.ModelUser {
		if e.ProjectID != "" {
			return p, "project_id", fmt.Sprintf("%s is a user event: send user_id, not project_id", e.Tag)
		}
		p.Subject = e.UserID
		if p.Subject == "" {
			return p, "user_id", "user_id is required"
		}
	} else {
		if e.UserID != "" {
			return p, "user_id", fmt.Sprintf("%s is a project event: send project_id, not user_id", e.Tag)
		}
		p.Subject = e.ProjectID
		if p.Subject == "" {
			return p, "project_id", "project_id is required"
		}
	}
	return p, "", ""
}

// decodeEvents reads {"events": [...]} one event at a time and stops at
// the first event past service.MaxIngestEvents, so a large body of tiny
// events cannot make the server decode millions of them. msg says what is
// wrong.
func decodeEvents(body []byte) (events []ingestEvent, msg string) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	expect := func(want json.Delim) bool {
		tok, err := dec.Token()
		return err == nil && tok == want
	}
	if !expect('{') {
		return nil, `malformed JSON: the body must be an object {"events": [...]}`
	}
	seen := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, "malformed JSON: " + err.Error()
		}
		if key, _ := tok.(string); key != "events" || seen {
			return nil, fmt.Sprintf(`malformed JSON: unexpected key %v; the body is {"events": [...]}`, tok)
		}
		seen = true
		if !expect('[') {
			return nil, "malformed JSON: events must be an array"
		}
		for dec.More() {
			if len(events) == service.MaxIngestEvents {
				return nil, fmt.Sprintf("send 1 to %d events per request", service.MaxIngestEvents)
			}
			var e ingestEvent
			if err := dec.Decode(&e); err != nil {
				return nil, fmt.Sprintf("malformed JSON in event %d: %v", len(events), err)
			}
			events = append(events, e)
		}
		if !expect(']') {
			return nil, "malformed JSON: events must be an array"
		}
	}
	if !expect('}') {
		return nil, "malformed JSON: the body must be one object"
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, "malformed JSON: more than one value in the body"
	}
	if !seen || len(events) == 0 {
		return nil, fmt.Sprintf("send 1 to %d events per request", service.MaxIngestEvents)
	}
	return events, ""
}
