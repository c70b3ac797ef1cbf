package web

import (
	"errors"
	"io"
	"net/http"

	"github.com/auditlog/auditlog/service"
)

// latestCheckpoint is GET /api/v1/checkpoints/latest, public: the newest
// signed checkpoint as its signed note (text/plain, the tlog-checkpoint
// layout), for witnesses and users who keep checkpoints to check proofs
// against later. 404 before the first checkpoint.
func (h *Handler) latestCheckpoint(w http.ResponseWriter, r *request) error {
	cp, err := h.log.LatestCheckpoint(r.Context())
	if errors.Is(err, service.ErrNotFound) {
		return errorf(http.StatusNotFound, "no checkpoint yet: the log runs without an integrity key, or none was signed yet")
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err = io.WriteString(w, cp.Note)
	return err
}
