package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/auditlog/auditlog/service"
)

// MaxIngestBytes caps an ingest request's body: 1,000 events with their
// additional data at its 16 KiB limit, and room for the rest.
const MaxIngestBytes = 20 << 20

// Ingester authenticates ingest tokens and records their batches, each
// event in the model its tag belongs to (the service decides).
type Ingester interface {
	AuthenticateIngest(ctx context.Context, token string) (service.IngestToken, error)
	CheckIngest(ctx context.Context, events []service.IngestEvent) error
	Ingest(ctx context.Context, token service.IngestToken, key string, body []byte, events []service.IngestEvent) (res service.IngestResult, replayed bool, err error)
}

// ingest is POST /api/v1/events, for services not written in Go: an ingest
// token as Bearer, a body {"events": [...]} of 1 to 1,000 events recorded
// all or nothing, and an optional Idempotency-Key. A refusal names the
// event (index) and field at fault; while the database cannot be reached
// the answer is a 503, the token check's included.
func (h *Handler) ingest(w http.ResponseWriter, r *request) error {
	r.faults = true
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return errorf(http.StatusUnauthorized, "an ingest token is required: Authorization: Bearer alin_…")
	}
	tok, err := h.log.AuthenticateIngest(r.Context(), token)
	if errors.Is(err, service.ErrTokenInvalid) {
		return errorf(http.StatusUnauthorized, "unknown or revoked ingest token")
	}
	if err != nil {
		return err
	}
	r.logArgs = []any{"token", tok.Name}
	release, err := h.acquireIngest(tok)
	if err != nil {
		return err
	}
	defer release()
	// The body must be JSON whatever Content-Type says (curl -d sends a
	// form type); a Bearer token, not a cookie, authorises the request, so
	// there is no cross-site form to guard against.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxIngestBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return errorf(http.StatusRequestEntityTooLarge, "the body is over %d bytes", MaxIngestBytes)
	}
	if err != nil {
		return errorf(http.StatusBadRequest, "reading the body: %v", err)
	}
	events, bad := decodeEvents(body)
	if bad != nil {
		return h.undecodable(r.Context(), events, bad)
	}
	// The service decides each event's model from its tag, and refuses a
	// subject of the other model.
	res, replayed, err := h.log.Ingest(r.Context(), tok, r.Header.Get("Idempotency-Key"), body, events)
	if err != nil {
		return err
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
		writeJSON(w, http.StatusOK, res)
		return nil
	}
	writeJSON(w, http.StatusCreated, res)
	return nil
}

// undecodable is the answer to a body decodeEvents refused with bad: a
// 400 naming the first bad event of the body, which may be one before the
// event that could not be decoded (the service checks those, events).
func (h *Handler) undecodable(ctx context.Context, events []service.IngestEvent, bad *httpError) error {
	if bad.index != nil {
		var be *service.BatchError
		if err := h.log.CheckIngest(ctx, events); errors.As(err, &be) {
			bad = batchError(be)
		} else if err != nil {
			return err
		}
	}
	h.eventRejected("malformed JSON")
	return bad
}

// decodeEvents reads {"events": [...]} one event at a time and stops at
// the first event past service.MaxIngestEvents, so a large body of tiny
// events cannot make the server decode millions of them. Each event is
// checked strictly before it is decoded (see internal/strictjson): exact
// field names, no repeated key, valid UTF-8 and no lone surrogate in any
// string, which encoding/json would otherwise rewrite to U+FFFD (so two
// ids could collapse into one). bad, when not nil, is the 400 saying what
// is wrong; its index is set when an event is at fault, and events then
// holds the events before it.
func decodeEvents(body []byte) (events []service.IngestEvent, bad *httpError) {
	malformed := func(format string, args ...any) ([]service.IngestEvent, *httpError) {
		return events, &httpError{status: http.StatusBadRequest, msg: "malformed JSON: " + fmt.Sprintf(format, args...)}
	}
	atEvent := func(field, format string, args ...any) ([]service.IngestEvent, *httpError) {
		i := len(events)
		return events, &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("event %d: ", i) + fmt.Sprintf(format, args...), index: &i, field: field}
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
				return events, errorf(http.StatusBadRequest, "send 1 to %d events per request", service.MaxIngestEvents)
			}
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return atEvent("", "malformed JSON: %v", err)
			}
			e, _, field, msg := service.DecodeEvent(raw, false)
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
		return events, errorf(http.StatusBadRequest, "send 1 to %d events per request", service.MaxIngestEvents)
	}
	return events, nil
}
