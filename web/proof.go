package web

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/auditlog/auditlog/service"
)

// eventProof is GET /api/v1/events/{id}/proof: the event's inclusion
// proof against the newest checkpoint (service.InclusionProof, the JSON
// `auditlog prove --event` prints and `auditlog verify-proof` checks),
// for a viewer allowed to have it (proofAccess). Every other case is the
// same 404 — no such event, not one the viewer may have, not covered by a
// checkpoint yet, no integrity key — so the answer never tells whether
// someone else's event exists. An administrator's proof of an event that
// is not their own is recorded as an admin read.
func (h *Handler) eventProof(w http.ResponseWriter, r *request) error {
	if err := h.identify(r); err != nil {
		return err
	}
	if _, err := strictQuery(r.Request); err != nil {
		return err
	}
	raw := r.PathValue("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != raw {
		return errorf(http.StatusBadRequest, "%s: not an event id", strconv.Quote(truncate(raw, 32)))
	}
	none := errorf(http.StatusNotFound, "no proof of event %d for you: no such event you may see, or no checkpoint covers it yet", id)
	if r.viewer == nil {
		return none // nothing for the public: see proofAccess
	}
	p, err := h.log.ProveEvent(r.Context(), id)
	if errors.Is(err, service.ErrNotFound) {
		return none
	}
	if err != nil {
		return err
	}
	model, at, ok := leafModelTime(p.LeafData)
	if !ok {
		return errors.New("the proof's leaf names no model and time")
	}
	e, err := h.log.EventAt(r.Context(), model, at, id)
	if errors.Is(err, service.ErrNotFound) {
		return none
	}
	if err != nil {
		return err
	}
	allowed, asAdmin := proofAccess(r.viewer, &e)
	if !allowed {
		return none
	}
	if asAdmin {
		f := service.Filter{}
		switch e.Model {
		case service.ModelUser:
			f.UserID = e.UserID
		case service.ModelOrganization:
			f.OrganizationID = e.OrganizationID
		case service.ModelTeam:
			f.TeamID = e.TeamID
		default:
			f.ProjectID = e.ProjectID
		}
		applied := appliedFilter(f)
		applied["event"] = strconv.FormatInt(id, 10)
		if err := h.recordApplied(r.Context(), r, "proof", applied); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// proofAccess says whether v may have the inclusion proof of e, and
// whether only as an administrator. The person an event is about may have
// the proofs of their own user events; those who manage a kept-forever
// subject (its maintainers, its organization's owners) the proofs of its
// events; administrators every proof. The public and everyone else get
// none, although the public sees the kept-forever subjects' events: a
// leaf holds the event's fixed fields in the clear — its auth method,
// token id and two-factor flag among them, which the public view leaves
// out (a trusted publisher's token id names an account) — beside the
// commitments to its personal values.
func proofAccess(v *Viewer, e *service.Event) (allowed, asAdmin bool) {
	switch {
	case v.Anonymous():
		return false, false
	case e.Model == service.ModelUser && e.UserID == v.UserID:
		return true, false
	case e.Model != service.ModelUser && !v.Admin && v.Manages(e.Model, e.Subject()):
		return true, false
	}
	return v.Admin, v.Admin
}

// proofURL is the link to e's proof for v, or "" when v may not have it
// or the log keeps no integrity log.
func (h *Handler) proofURL(v *Viewer, e *service.Event) string {
	if !h.log.Integrity() {
		return ""
	}
	if ok, _ := proofAccess(v, e); !ok {
		return ""
	}
	return "/api/v1/events/" + strconv.FormatInt(e.ID, 10) + "/proof"
}

// leafModelTime reads the model and time fields of a leaf's data (the
// leaf encoding of docs/integrity.md: a format line, then fields of
// "NAME LENGTH\nVALUE\n").
func leafModelTime(data []byte) (service.Model, time.Time, bool) {
	_, rest, ok := bytes.Cut(data, []byte("\n"))
	if !ok {
		return "", time.Time{}, false
	}
	var model service.Model
	var at time.Time
	for len(rest) > 0 && (model == "" || at.IsZero()) {
		head, after, ok := bytes.Cut(rest, []byte("\n"))
		if !ok {
			return "", time.Time{}, false
		}
		name, size, ok := bytes.Cut(head, []byte(" "))
		n, err := strconv.Atoi(string(size))
		if !ok || err != nil || n < 0 || n >= len(after) || after[n] != '\n' {
			return "", time.Time{}, false
		}
		value := string(after[:n])
		switch string(name) {
		case "model":
			model = service.Model(value)
		case "time":
			if at, err = time.Parse("2006-01-02T15:04:05.000000Z", value); err != nil {
				return "", time.Time{}, false
			}
		}
		rest = after[n+1:]
	}
	return model, at, model != "" && !at.IsZero()
}
