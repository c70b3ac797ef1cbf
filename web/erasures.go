package web

import (
	"crypto/hmac"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/auditlog/auditlog/service"
)

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
			if er, err := h.log.ErasureRequest(r.Context(), id); err == nil {
				data.Created = &er
			} else if !errors.Is(err, service.ErrNotFound) {
				return nil, err
			}
		}
		if data.Created != nil && data.Created.Supersedes != 0 {
			if old, err := h.log.ErasureRequest(r.Context(), data.Created.Supersedes); err == nil {
				data.Superseded = &old
			} else if !errors.Is(err, service.ErrNotFound) {
				return nil, err
			}
		}
	}
	return &result{Title: "Erasure requests", Page: "erasures", Data: data}, nil
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

// requestErasure opens an erasure request from the admin form (CSRF token
// required) or from a Bearer-authenticated client.
func (h *Handler) requestErasure(w http.ResponseWriter, r *http.Request) {
	viewer, session, err := h.identify(r)
	// Only a request that authenticated with a Bearer token skips CSRF: no
	// cookie was involved.
	bearer := h.opts.Identify == nil && strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ")
	req := &request{Request: r, viewer: viewer, session: session, html: !bearer, route: "erasures"}
	if err == nil {
		err = admin(req)
	}
	if err == nil {
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if perr := r.ParseForm(); perr != nil {
			err = errorf(http.StatusBadRequest, "bad form: %v", perr)
		}
	}
	if err == nil && req.html && !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(h.csrf(session))) {
		err = errorf(http.StatusForbidden, "the form's CSRF token is missing or wrong: reload the page")
	}
	if err == nil && r.PostFormValue("user_id") == viewer.UserID {
		err = errorf(http.StatusForbidden, "an administrator's own erasure must be requested by another administrator")
	}
	var er service.ErasureRequest
	if err == nil {
		er, _, err = h.log.RequestErasure(r.Context(), service.ErasureParams{
			UserID: r.PostFormValue("user_id"), Reason: r.PostFormValue("reason"), RequestedBy: viewer.UserID,
		})
	}
	if err != nil {
		h.fail(w, req, err)
		return
	}
	if !req.html {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(er)
		return
	}
	http.Redirect(w, r, "/admin/erasures?created="+strconv.FormatInt(er.ID, 10), http.StatusSeeOther)
}
