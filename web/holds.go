package web

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/auditlog/auditlog/service"
)

// HoldKeeper places and releases legal holds and reads them back.
type HoldKeeper interface {
	PlaceHold(ctx context.Context, p service.HoldParams) (hold service.Hold, created bool, err error)
	ReleaseHold(ctx context.Context, id int64, by string) (hold service.Hold, resumed []service.ErasureRequest, err error)
	Holds(ctx context.Context, openOnly bool, limit int) ([]service.Hold, error)
	GetHold(ctx context.Context, id int64) (service.Hold, error)
	HeldEvents(ctx context.Context) (int64, error)
}

// holdsPage is the list of legal holds, and its JSON answer.
type holdsPage struct {
	// Holds are the open holds first, then the released ones, each newest
	// first.
	Holds []service.Hold `json:"holds"`
	// HeldEvents counts the user events holds keep past their month.
	HeldEvents int64 `json:"held_events"`
	// Notice is the hold ?placed=, ?existing= or ?released= names after a
	// form was sent, read back from the database; nil when the parameter
	// is not the id of a stored hold. NoticeKind says which parameter.
	Notice     *service.Hold `json:"-"`
	NoticeKind string        `json:"-"`
}

// holdNotices are the query parameters that name the hold a form acted on.
var holdNotices = []string{"placed", "existing", "released"}

// holdsLimit is how many holds the page lists.
const holdsLimit = 500

func (h *Handler) holds(r *request) (*result, error) {
	if err := admin(r); err != nil {
		return nil, err
	}
	q, err := strictQuery(r.Request, holdNotices...)
	if err != nil {
		return nil, err
	}
	holds, err := h.log.Holds(r.Context(), false, holdsLimit)
	if err != nil {
		return nil, err
	}
	// Open first; the service lists newest first and the sort is stable.
	slices.SortStableFunc(holds, func(a, b service.Hold) int {
		switch {
		case a.Open() == b.Open():
			return 0
		case a.Open():
			return -1
		}
		return 1
	})
	held, err := h.log.HeldEvents(r.Context())
	if err != nil {
		return nil, err
	}
	data := &holdsPage{Holds: holds, HeldEvents: held}
	if r.html {
		// As on the erasures page, the notice is built from the stored
		// hold only, never from the parameter.
		for _, kind := range holdNotices {
			id, ok := requestID(q.Get(kind))
			if !ok {
				continue
			}
			hold, err := h.log.GetHold(r.Context(), id)
			if errors.Is(err, service.ErrNotFound) {
				break
			}
			if err != nil {
				return nil, err
			}
			data.Notice, data.NoticeKind = &hold, kind
			break
		}
	}
	return &result{Title: "Legal holds", Page: "holds", Data: data}, nil
}

// formField names the form's field for a service validation error about
// a hold: the subject's field (user_id, project_id, organization_id) is
// the form's subject.
func formField(err error) error {
	var ve *service.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	field := ve.Field
	if strings.HasSuffix(field, "_id") {
		field = "subject"
	}
	return &httpError{status: http.StatusBadRequest, msg: field + ": " + strings.TrimPrefix(ve.Error(), ve.Field+": "), field: field}
}

// placeHold places a legal hold from the admin form (fields kind,
// subject, reason, until) or a Bearer client's form; the admin is the one
// who places it.
func (h *Handler) placeHold(w http.ResponseWriter, r *request) error {
	if err := h.adminForm(w, r); err != nil {
		return err
	}
	p := service.HoldParams{Kind: service.Model(r.PostFormValue("kind")), SubjectID: r.PostFormValue("subject"),
		Reason: r.PostFormValue("reason"), By: r.viewer.UserID}
	if s := strings.TrimSpace(r.PostFormValue("until")); s != "" {
		until, err := service.ParseTime("until", s)
		if err != nil {
			return formField(err)
		}
		p.Until = &until
	}
	hold, created, err := h.log.PlaceHold(r.Context(), p)
	if err != nil {
		return formField(err)
	}
	if !r.html {
		status := http.StatusCreated
		if !created {
			status = http.StatusOK
		}
		writeJSON(w, status, map[string]any{"hold": hold, "created": created})
		return nil
	}
	notice := "placed"
	if !created {
		notice = "existing"
	}
	http.Redirect(w, r.Request, "/admin/holds?"+notice+"="+strconv.FormatInt(hold.ID, 10), http.StatusSeeOther)
	return nil
}

// releaseHold releases hold {id}; the admin is the one who releases it.
// A hold on an administrator is released by another administrator.
func (h *Handler) releaseHold(w http.ResponseWriter, r *request) error {
	if err := h.adminForm(w, r); err != nil {
		return err
	}
	id, ok := requestID(r.PathValue("id"))
	if !ok {
		return errorf(http.StatusNotFound, "%q is not a hold id", r.PathValue("id"))
	}
	if cur, err := h.log.GetHold(r.Context(), id); err == nil && cur.Kind == service.ModelUser && cur.SubjectID == r.viewer.UserID {
		return errorf(http.StatusForbidden, "a hold on an administrator must be released by another administrator")
	}
	hold, resumed, err := h.log.ReleaseHold(r.Context(), id, r.viewer.UserID)
	if errors.Is(err, service.ErrHoldNotOpen) {
		return errorf(http.StatusConflict, "hold %d was released already", id)
	}
	if err != nil {
		return formField(err)
	}
	if !r.html {
		if resumed == nil {
			resumed = []service.ErasureRequest{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"hold": hold, "resumed": resumed})
		return nil
	}
	http.Redirect(w, r.Request, "/admin/holds?released="+strconv.FormatInt(hold.ID, 10), http.StatusSeeOther)
	return nil
}
