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

	"github.com/auditlog/auditlog/internal/strictjson"
	"github.com/auditlog/auditlog/service"
)

// MaxIngestBytes caps an ingest request's body: 1,000 events with their
// additional data at its 16 KiB limit, and room for the rest.
const MaxIngestBytes = 20 << 20

// ingestEvent is one event as POST /api/v1/events takes it: the field
// names the read API returns, spelled exactly (names are case-sensitive and
// none may repeat). The tag decides the model, and with it whether user_id
// or project_id is the subject. id, model, description, network and device
// are what the read API adds; they are accepted so a read event can be
// sent back, and ignored (descriptions come from the tag registry).
type ingestEvent struct {
	Tag            string            `json:"tag"`
	Time           json.RawMessage   `json:"time"`
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

// ingestFields are the keys an event may have, and locationFields those of
// its location.
var (
	ingestFields = map[string]bool{"tag": true, "time": true, "user_id": true, "project_id": true, "actor_id": true,
		"auth_method": true, "token_id": true, "actor_two_factor": true, "ip": true, "user_agent": true, "location": true,
		"additional": true, "id": true, "model": true, "description": true, "network": true, "device": true}
	locationFields = map[string]bool{"country": true, "region": true, "city": true}
)

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
	fail := func(status int, e ingestError) {
		h.refused("ingest", status)
		reply(status, e)
	}
	// The database cannot be reached: 503, checked before the 4xx answers
	// (the token check needs the database too).
	down := func(err error) bool {
		if !service.IsUnavailable(err) {
			return false
		}
		h.unavailable(w, "ingest", err)
		reply(http.StatusServiceUnavailable, ingestError{Error: UnavailableMessage})
		return true
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		fail(http.StatusUnauthorized, ingestError{Error: "an ingest token is required: Authorization: Bearer alin_…"})
		return
	}
	tok, err := h.log.AuthenticateIngest(r.Context(), token)
	if down(err) {
		return
	}
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
	events, bad := decodeEvents(body)
	if bad != nil && bad.Index != nil {
		// An event before the one that could not be decoded may be bad
		// too: the answer names the first bad event of the body.
		if err := h.log.CheckIngest(r.Context(), events); err != nil {
			if down(err) {
				return
			}
			var be *service.BatchError
			if !errors.As(err, &be) {
				h.opts.Logger.Error("web: ingest check", "token", tok.Name, "err", err)
				fail(http.StatusInternalServerError, ingestError{Error: "internal error"})
				return
			}
			bad = batchError(be)
		}
	}
	if bad != nil {
		h.eventRejected("malformed JSON")
		fail(http.StatusBadRequest, *bad)
		return
	}
	res, replayed, err := h.log.Ingest(r.Context(), tok, r.Header.Get("Idempotency-Key"), body, events)
	var be *service.BatchError
	var ve *service.ValidationError
	switch {
	case err == nil:
	case down(err):
		return
	case errors.Is(err, service.ErrIdempotencyConflict):
		fail(http.StatusUnprocessableEntity, ingestError{Error: err.Error()})
		return
	case errors.As(err, &be):
		fail(http.StatusBadRequest, *batchError(be))
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

func batchError(be *service.BatchError) *ingestError {
	idx := be.Index
	e := &ingestError{Error: be.Err.Error(), Index: &idx}
	var ve *service.ValidationError
	if errors.As(be.Err, &ve) {
		e.Field = ve.Field
	}
	return e
}

// decodeEvents reads {"events": [...]} one event at a time and stops at
// the first event past service.MaxIngestEvents, so a large body of tiny
// events cannot make the server decode millions of them. Each event is
// checked strictly before it is decoded (see internal/strictjson): exact
// field names, no repeated key, valid UTF-8 and no lone surrogate in any
// string, which encoding/json would otherwise rewrite to U+FFFD (so two
// ids could collapse into one). bad, when not nil, says what is wrong; its
// Index is set when an event is at fault, and events then holds the events
// before it.
func decodeEvents(body []byte) (events []service.IngestEvent, bad *ingestError) {
	malformed := func(format string, args ...any) ([]service.IngestEvent, *ingestError) {
		return events, &ingestError{Error: "malformed JSON: " + fmt.Sprintf(format, args...)}
	}
	atEvent := func(field, format string, args ...any) ([]service.IngestEvent, *ingestError) {
		i := len(events)
		return events, &ingestError{Error: fmt.Sprintf("event %d: ", i) + fmt.Sprintf(format, args...), Index: &i, Field: field}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	expect := func(want json.Delim) bool {
		tok, err := dec.Token()
		return err == nil && tok == want
	}
	if !expect('{') {
		return malformed(`the body must be an object {"events": [...]}`)
	}
	seen := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return malformed("%v", err)
		}
		if key, _ := tok.(string); key != "events" || seen {
			return malformed(`unexpected key %q; the body is {"events": [...]}`, tok)
		}
		seen = true
		if !expect('[') {
			return malformed("events must be an array")
		}
		for dec.More() {
			if len(events) == service.MaxIngestEvents {
				return events, &ingestError{Error: fmt.Sprintf("send 1 to %d events per request", service.MaxIngestEvents)}
			}
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return atEvent("", "malformed JSON: %v", err)
			}
			e, field, msg := decodeEvent(raw)
			if msg != "" {
				return atEvent(field, "%s", msg)
			}
			events = append(events, e)
		}
		if !expect(']') {
			return malformed("events must be an array")
		}
	}
	if !expect('}') {
		return malformed("the body must be one object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return malformed("more than one value in the body")
	}
	if !seen || len(events) == 0 {
		return events, &ingestError{Error: fmt.Sprintf("send 1 to %d events per request", service.MaxIngestEvents)}
	}
	return events, nil
}

// decodeEvent decodes one event strictly; field and msg say what is wrong.
func decodeEvent(raw json.RawMessage) (e service.IngestEvent, field, msg string) {
	err := strictjson.CheckObject(raw, strictjson.Options{Key: func(depth int, parent, key string) error {
		if (depth == 1 && !ingestFields[key]) || (depth == 2 && parent == "location" && !locationFields[key]) {
			return errors.New("unknown field (field names are case-sensitive)")
		}
		return nil
	}})
	var se *strictjson.Error
	if errors.As(err, &se) {
		return e, se.Field(), se.Error()
	}
	var in ingestEvent
	if err := json.Unmarshal(raw, &in); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return e, strings.SplitN(te.Field, ".", 2)[0], fmt.Sprintf("%s: must be %s, not a JSON %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
		}
		return e, "", "malformed JSON: " + err.Error()
	}
	e = service.IngestEvent{Tag: in.Tag, UserID: in.UserID, ProjectID: in.ProjectID, ActorID: in.ActorID,
		AuthMethod: in.AuthMethod, TokenID: in.TokenID, ActorTwoFactor: in.ActorTwoFactor, IP: in.IP,
		UserAgent: in.UserAgent, Location: in.Location, Additional: in.Additional}
	if string(in.Additional) == "null" {
		e.Additional = nil
	}
	if len(in.Time) > 0 && string(in.Time) != "null" {
		var s string
		if json.Unmarshal(in.Time, &s) != nil {
			return e, "time", "time: must be an RFC 3339 time in a string"
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return e, "time", fmt.Sprintf("time: %q is not an RFC 3339 time", s)
		}
		e.Time = &t
	}
	return e, "", ""
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "bool":
		return "true, false or null"
	case "struct":
		return "an object"
	default:
		return "a " + goKind
	}
}
