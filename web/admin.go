package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/auditlog/auditlog/service"
)

// ReadRecorder records an admin's read in their own history.
type ReadRecorder interface {
	RecordUser(ctx context.Context, p service.EventParams) (service.Event, error)
}

// recordRead records an admin's read as an event in their own history
// (admin:events:view): who looked, with which filter as applied, in which
// form. The read is refused when it cannot be recorded.
func (h *Handler) recordRead(ctx context.Context, r *request, format string, f service.Filter) error {
	return h.recordApplied(ctx, r, format, appliedFilter(f))
}

// recordApplied is recordRead with the filter as applied (appliedFilter's
// form).
func (h *Handler) recordApplied(ctx context.Context, r *request, format string, applied map[string]string) error {
	add, err := json.Marshal(map[string]any{"filter": applied, "format": format})
	if err != nil {
		return err
	}
	_, err = h.log.RecordUser(ctx, service.EventParams{
		Tag: service.TagAdminEventsView, Subject: r.viewer.UserID, ActorID: r.viewer.UserID,
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
	data := h.eventsPage(r, q, p, func(*service.Event) audience { return administrator })
	return &result{Title: "Admin console", Page: "admin", Data: data}, nil
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
