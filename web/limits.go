package web

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/auditlog/auditlog/service"
)

// DefaultIngestConcurrency is how many ingest requests one ingest token may
// have in progress at once when Options.IngestConcurrency is zero.
const DefaultIngestConcurrency = 4

// checkLimits refuses limits that make no sense; New calls it.
func (o *Options) checkLimits() error {
	if o.IngestConcurrency < 0 {
		return fmt.Errorf("web: Options.IngestConcurrency must be 0 (the default, %d) or more, not %d", DefaultIngestConcurrency, o.IngestConcurrency)
	}
	if o.WriteTimeout < 0 {
		return errors.New("web: Options.WriteTimeout must not be negative")
	}
	return nil
}

// tokenSlots counts the requests in progress per ingest token. The zero
// value is ready to use.
type tokenSlots struct {
	mu   sync.Mutex
	busy map[int64]int // token id → requests in progress; absent when none
}

// acquire takes one of max slots of token id. ok is false when all are
// taken; otherwise release gives the slot back (once, however often it is
// called).
func (s *tokenSlots) acquire(id int64, max int) (release func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy[id] >= max {
		return nil, false
	}
	if s.busy == nil {
		s.busy = make(map[int64]int)
	}
	s.busy[id]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.busy[id]--; s.busy[id] <= 0 {
				delete(s.busy, id)
			}
		})
	}, true
}

// acquireIngest takes an ingest slot of tok for the request. When the token
// already has Options.IngestConcurrency requests in progress the error is
// the answer, a 429 with Retry-After; otherwise the caller must call
// release when the request ends (defer it).
func (h *Handler) acquireIngest(tok service.IngestToken) (release func(), err error) {
	max := h.opts.IngestConcurrency
	if max == 0 {
		max = DefaultIngestConcurrency
	}
	release, ok := h.ingestSlots.acquire(tok.ID, max)
	if !ok {
		return nil, &httpError{status: http.StatusTooManyRequests, retryAfter: "1", msg: fmt.Sprintf(
			"this ingest token already has %d requests in progress: wait for one to finish, then retry", max)}
	}
	return release, nil
}

// streamDeadlines returns the function a streaming answer (the export)
// calls before writing each page: with Options.WriteTimeout set, each page
// gets a fresh write deadline of that length, so the stream runs as long as
// it needs while a client that stops reading is still cut off one page
// later. (The server's read deadline needs nothing: net/http lifts it once
// the request's body has been read.) Writers that cannot set deadlines (a
// test recorder) are left alone.
func (h *Handler) streamDeadlines(w http.ResponseWriter) (beforePage func()) {
	rc := http.NewResponseController(w)
	return func() {
		if d := h.opts.WriteTimeout; d > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(d))
		}
	}
}
