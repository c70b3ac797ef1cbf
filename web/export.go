package web

import (
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/auditlog/auditlog/service"
)

var csvHeader = []string{"id", "model", "time", "tag", "user_id", "project_id", "organization_id", "team_id", "actor_id", "auth_method",
	"token_id", "actor_two_factor", "ip", "user_agent", "country", "region", "city", "description", "additional"}

// adminExport streams every event matching the admin filters as CSV
// (?format=csv) or JSON Lines (?format=jsonl), a page of 1,000 at a time,
// flushing after each: memory stays constant whatever the size. The read
// is recorded first; a failure after the first byte can only cut the
// stream short (the last line is then incomplete). It runs as long as it
// needs: each page gets its own write deadline (streamDeadlines).
func (h *Handler) adminExport(w http.ResponseWriter, r *request) error {
	if err := h.identify(r); err != nil {
		return err
	}
	if err := admin(r); err != nil {
		return err
	}
	// An export is every event that matches: no paging parameters.
	q, err := strictQuery(r.Request, "user", "project", "org", "team", "actor", "ip", "tag", "tag_prefix", "since", "until", "format")
	if err != nil {
		return err
	}
	f, err := adminFilter(q)
	if err != nil {
		return err
	}
	format := q.Get("format")
	if format != "csv" && format != "jsonl" {
		return errorf(http.StatusBadRequest, "format: must be csv or jsonl")
	}
	if err := h.recordRead(r.Context(), r, format, f); err != nil {
		return err
	}
	h.stream(w, r.Request, f, format)
	return nil
}

// stream writes the events f matches in format, page by page; an error
// only cuts the stream short (it is logged).
func (h *Handler) stream(w http.ResponseWriter, r *http.Request, f service.Filter, format string) {
	f.Cursor, f.Limit = "", service.ExportPage
	beforePage := h.streamDeadlines(w)
	name := "auditlog-events-" + h.log.Now().UTC().Format("20060102T150405Z")
	flusher, _ := w.(http.Flusher)
	var write func(*viewEvent) error
	var flush func() error
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.csv"`)
		cw := csv.NewWriter(w)
		if err := cw.Write(csvHeader); err != nil {
			return
		}
		write = func(e *viewEvent) error { return cw.Write(csvRow(e)) }
		flush = func() error { cw.Flush(); return cw.Error() }
	} else {
		w.Header().Set("Content-Type", "application/jsonl; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.jsonl"`)
		enc := json.NewEncoder(w)
		write = func(e *viewEvent) error { return enc.Encode(e) }
		flush = func() error { return nil }
	}
	for {
		p, err := h.log.Events(r.Context(), f)
		if err != nil {
			h.opts.Logger.Error("web: export cut short", "err", err)
			return
		}
		beforePage()
		for i := range p.Events {
			v := present(&p.Events[i], administrator, h.log.Registry())
			if err := write(&v); err != nil {
				return // the client went away
			}
		}
		if err := flush(); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		if p.NextCursor == "" {
			return
		}
		f.Cursor = p.NextCursor
	}
}

func csvRow(e *viewEvent) []string {
	twoFactor := ""
	if e.ActorTwoFactor != nil {
		twoFactor = strconv.FormatBool(*e.ActorTwoFactor)
	}
	var country, region, city string
	if l := e.Location; l != nil {
		country, region, city = l.Country, l.Region, l.City
	}
	row := []string{strconv.FormatInt(e.ID, 10), string(e.Model), e.Time.UTC().Format(time.RFC3339Nano), e.Tag,
		e.UserID, e.ProjectID, e.OrganizationID, e.TeamID, e.ActorID, e.AuthMethod, e.TokenID, twoFactor, e.IP, e.UserAgent,
		country, region, city, e.Description, string(e.Additional)}
	for i := range row {
		row[i] = csvSafe(row[i])
	}
	return row
}

// csvSafe keeps a spreadsheet from running a cell as a formula: any cell
// that starts like one gets a leading apostrophe.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
