package web

import "net/http"

func (h *Handler) me(r *request) (*result, error) {
	if r.viewer == nil {
		return nil, errorf(http.StatusUnauthorized, "sign in to see your security history")
	}
	q, opts, err := listQuery(r)
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
