package web

import (
	"mime"
	"net/http"
	"strings"
)

// JobsUIContentSecurityPolicy is the Content-Security-Policy of River UI
// (riverqueue.com/riverui v0.22.0, under /admin/jobs), as strict as it
// allows. Its page loads one module script, one stylesheet and its icons
// from its own path, and calls its JSON API there (script-src,
// connect-src, img-src 'self'; its configuration is a
// <script type="application/json"> data block, which CSP does not treat as
// script). It needs two exceptions:
//
//   - style-src 'unsafe-inline': its components (react-hot-toast through
//     goober, next-themes) write their CSS into <style> elements they
//     create at run time, without a nonce; under style-src 'self' Chromium
//     blocks about ten of them on every page. Scripts stay 'self' only, so
//     an injected style cannot run code.
//   - img-src data:: its stylesheet draws checkboxes, radios and select
//     arrows as data: SVG images.
//
// It uses no fonts, frames, workers, eval or other origins.
const JobsUIContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// RequireAdmin guards an admin tool mounted beside the views (River UI
// under /admin/jobs):
//
//   - only administrators get through; others get the same 401 or 403 as
//     the admin pages;
//   - a state-changing request (any method but GET, HEAD and OPTIONS)
//     authenticated by the session cookie must prove it comes from this
//     origin's own script (see checkSameOriginJSON); a Bearer client needs
//     no proof, as no ambient credential is involved;
//   - every answer, next's and the refusals, carries
//     JobsUIContentSecurityPolicy, nosniff, Referrer-Policy: no-referrer and
//     Cache-Control: no-store, set again as the status is written so next
//     cannot drop or replace them.
func (h *Handler) RequireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w = &securedWriter{ResponseWriter: w}
		setJobsUIHeaders(w.Header())
		bearer := h.bearer(r)
		req := &request{Request: r, html: !bearer && !strings.Contains(r.URL.Path, "/api/"), route: "jobs"}
		if err := h.admitToJobsUI(req, bearer); err != nil {
			h.fail(w, req, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// admitToJobsUI lets through an administrator, and a state-changing
// request only with the same-origin proof unless it is bearer's.
func (h *Handler) admitToJobsUI(r *request, bearer bool) error {
	if err := h.identify(r); err != nil {
		return err
	}
	if err := admin(r); err != nil {
		return err
	}
	if bearer || safeMethod(r.Method) {
		return nil
	}
	if err := checkSameOriginJSON(r.Request); err != nil {
		r.html = false // refused API calls get {"error": …}
		return err
	}
	return nil
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// checkSameOriginJSON refuses a state-changing request unless it provably
// comes from a script of this very origin:
//
//  1. Same origin. Sec-Fetch-Site, when the browser sends it, must be
//     "same-origin"; without it, Origin must be this server's own
//     scheme://host (https when the connection is TLS). A request with
//     neither header is refused: every browser in use sends one of them on
//     such a request, so its absence is no proof.
//  2. A script's JSON call, never a form: Content-Type application/json;
//     or, for River UI's own front end, Accept: application/json with a
//     Content-Type that is absent or text/plain. River UI posts its JSON as
//     a plain string, which fetch labels text/plain, and pauses queues
//     with no body at all, so demanding application/json alone would break
//     its buttons. An HTML form cannot set Accept, and a script of another
//     origin is refused by (1), so this admits nothing a form could send.
//     Form bodies (urlencoded, multipart) are refused outright.
func checkSameOriginJSON(r *http.Request) error {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "same-origin":
	case "":
		origin := r.Header.Get("Origin")
		if origin == "" {
			return errorf(http.StatusForbidden, "a state-changing request needs a Sec-Fetch-Site or Origin header showing it comes from this site")
		}
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		if !strings.EqualFold(origin, scheme+"://"+r.Host) {
			return errorf(http.StatusForbidden, "cross-origin request refused: the Origin header is not this site")
		}
	default:
		return errorf(http.StatusForbidden, "cross-origin request refused (Sec-Fetch-Site: %s)", truncate(site, 32))
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case ct == "application/json":
		return nil
	case (ct == "" || ct == "text/plain") && acceptsJSON(r):
		return nil
	}
	return errorf(http.StatusForbidden, "a state-changing request must be a JSON call (Content-Type: application/json), not a form")
}

// acceptsJSON reports whether the request's Accept header names
// application/json.
func acceptsJSON(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "application/json" {
				return true
			}
		}
	}
	return false
}

func setJobsUIHeaders(hdr http.Header) {
	hdr.Set("Content-Security-Policy", JobsUIContentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Cache-Control", "no-store")
}

// securedWriter sets the security headers again when the status is
// written, so the handler it wraps cannot remove or replace them (net/http's
// file server, for one, deletes Cache-Control when it answers an error).
type securedWriter struct {
	http.ResponseWriter
	wroteHeader bool
}

// WriteHeader implements http.ResponseWriter.
func (s *securedWriter) WriteHeader(status int) {
	setJobsUIHeaders(s.Header())
	if status >= 200 {
		s.wroteHeader = true
	}
	s.ResponseWriter.WriteHeader(status)
}

// Write implements http.ResponseWriter.
func (s *securedWriter) Write(p []byte) (int, error) {
	if !s.wroteHeader {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(p)
}

// Flush implements http.Flusher.
func (s *securedWriter) Flush() {
	if !s.wroteHeader {
		s.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(s.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection.
func (s *securedWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
