package web

import "github.com/auditlog/auditlog/service"

func (h *Handler) project(r *request) (*result, error) {
	id := r.PathValue("id")
	q, opts, err := listQuery(r)
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
		aud = administrator
		if err := h.recordRead(r.Context(), r, "project", service.Filter{ProjectID: id, ListOpts: opts}); err != nil {
			return nil, err
		}
	}
	data := h.eventsPage(r, q, p, func(*service.Event) audience { return aud })
	data.ProjectID, data.Maintainer = id, aud != public
	return &result{Title: "History of " + id, Page: "project", Data: data}, nil
}
