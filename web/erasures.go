package web

import (
	"context"
	"crypto/hmac"
	"errors"
	"net/http"
	"strconv"

	"github.com/auditlog/auditlog/service"
)

// ErasureRequester opens erasure requests and reads them back.
type ErasureRequester interface {
	RequestErasure(ctx context.Context, p service.ErasureParams) (req service.ErasureRequest, created bool, err error)
	ErasureRequest(ctx context.Context, id int64) (service.ErasureRequest, error)
	ErasureRequests(ctx context.Context, userID string, limit int) ([]service.ErasureRequest, error)
}

// erasuresPage is the erasure list, and its JSON answer.
type erasuresPage struct {
	Requests []service.ErasureRequest `json:"requests"`
	// Created is the request ?created= names after the form was sent,
	// read back from the database; nil when the parameter is not the id
	// of a stored request.
	Created *service.ErasureRequest `json:"-"`
	// Superseded is the stuck request Created replaced, if any.
	Superseded *service.ErasureRequest `json:"-"`
}

func (h *Handler) erasures(r *request) (*result, error) {
	if err := admin(r); err != nil {
		return nil, err
	}
	q, err := strictQuery(r.Request, "user", "created")
	if err != nil {
		return nil, err
	}
	reqs, err := h.log.ErasureRequests(r.Context(), q.Get("user"), 200)
	if err != nil {
		return nil, err
	}
	data := &erasuresPage{Requests: reqs}
	if r.html {
		// The notice is built from the stored request only, never from the
		// parameter: anything but a canonical id of an existing request
		// shows none.
		if id, ok := requestID(q.Get("created")); ok {
			if data.Created, err = h.storedRequest(r.Context(), id); err != nil {
				return nil, err
			}
		}
		if data.Created != nil && data.Created.Supersedes != 0 {
			if data.Superseded, err = h.storedRequest(r.Context(), data.Created.Supersedes); err != nil {
				return nil, err
			}
		}
	}
	return &result{Title: "Erasure requests", Page: "erasures", Data: data}, nil
}

// storedRequest is the erasure request id, or nil when there is none.
func (h *Handler) storedRequest(ctx context.Context, id int64) (*service.ErasureRequest, error) {
	er, err := h.log.ErasureRequest(ctx, id)
	if errors.Is(err, service.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &er, nil
}

// requestID parses s as an erasure request id: a positive decimal number
// written the canonical way (no sign, no leading zero).
func requestID(s string) (int64, bool) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != s {
		return 0, false
	}
	return id, true
}

// adminForm reads an admin console form (the erasure and hold forms): an
// admin, the body bounded, and the session's CSRF token unless a Bearer
// token authenticated the request (no cookie was involved; it gets JSON).
func (h *Handler) adminForm(w http.ResponseWriter, r *request) error {
	r.html = !h.bearer(r.Request)
	if err := h.identify(r); err != nil {
		return err
	}
	if err := admin(r); err != nil {
		return err
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		return errorf(http.StatusBadRequest, "bad form: %v", err)
	}
	if r.html && !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(h.csrf(r.session))) {
		return errorf(http.StatusForbidden, "the form's CSRF token is missing or wrong: reload the page")
	}
	return nil
}

// requestErasure opens an erasure request from the admin form (CSRF token
// required) or from a Bearer-authenticated client, which gets JSON.
func (h *Handler) requestErasure(w http.ResponseWriter, r *request) error {
	if err := h.adminForm(w, r); err != nil {
		return err
	}
	if r.PostFormValue("user_id") == r.viewer.UserID {
		return errorf(http.StatusForbidden, "an administrator's own erasure must be requested by another administrator")
	}
	er, _, err := h.log.RequestErasure(r.Context(), service.ErasureParams{
		UserID: r.PostFormValue("user_id"), Reason: r.PostFormValue("reason"), RequestedBy: r.viewer.UserID,
	})
	if err != nil {
		return err
	}
	if !r.html {
		writeJSON(w, http.StatusCreated, er)
		return nil
	}
	http.Redirect(w, r.Request, "/admin/erasures?created="+strconv.FormatInt(er.ID, 10), http.StatusSeeOther)
	return nil
}
