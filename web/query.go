package web

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/auditlog/auditlog/service"
)

// Limits on what a request may ask for; past them the answer is a 400.
const (
	PageSize       = 50  // events on a page unless ?limit= asks for fewer or more
	MaxPageLimit   = 200 // the most ?limit= may ask for
	MaxFilterBytes = 256 // the longest a filter value may be
)

// strictQuery parses the query string, allowing only the keys in allowed,
// each at most once, each value at most MaxFilterBytes of printable UTF-8
// text: a filter that would not apply exactly is refused, never dropped.
func strictQuery(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "the query string is malformed")
	}
	for k, vs := range q {
		if !slices.Contains(allowed, k) {
			return nil, errorf(http.StatusBadRequest, "%s: unknown parameter (this page takes %s)", strconv.Quote(k), strings.Join(allowed, ", "))
		}
		if len(vs) > 1 {
			return nil, errorf(http.StatusBadRequest, "%s: given more than once", k)
		}
		v := vs[0]
		max := MaxFilterBytes
		if n, ok := longParams[k]; ok {
			max = n
		}
		switch {
		case len(v) > max:
			return nil, errorf(http.StatusBadRequest, "%s: longer than %d bytes", k, max)
		case !utf8.ValidString(v):
			return nil, errorf(http.StatusBadRequest, "%s: not valid UTF-8", k)
		case strings.IndexFunc(v, unicode.IsControl) >= 0:
			return nil, errorf(http.StatusBadRequest, "%s: holds a control character", k)
		}
	}
	return q, nil
}

// longParams are the parameters that may be longer than a filter: a
// viewer token names every project its holder maintains.
var longParams = map[string]int{"token": 8192, "next": 1024}

// listKeys are the query parameters every event list takes.
var listKeys = []string{"tag", "tag_prefix", "since", "until", "cursor", "limit"}

// listOpts reads the shared filters from q: tag, tag_prefix, since,
// until, cursor, limit. The service checks the rest.
func listOpts(q url.Values) (service.ListOpts, error) {
	o := service.ListOpts{Tag: q.Get("tag"), TagPrefix: q.Get("tag_prefix"), Cursor: q.Get("cursor"), Limit: PageSize}
	for _, t := range [...]struct {
		field string
		to    *time.Time
	}{{"since", &o.Since}, {"until", &o.Until}} {
		if s := q.Get(t.field); s != "" {
			v, err := service.ParseTime(t.field, s)
			if err != nil {
				return o, err
			}
			*t.to = v
		}
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageLimit {
			return o, errorf(http.StatusBadRequest, "limit: must be a number from 1 to %d", MaxPageLimit)
		}
		o.Limit = n
	}
	return o, o.Validate()
}

// listQuery reads a history page's query: only listKeys, and the
// shared filters they hold.
func listQuery(r *request) (url.Values, service.ListOpts, error) {
	q, err := strictQuery(r.Request, listKeys...)
	if err != nil {
		return nil, service.ListOpts{}, err
	}
	opts, err := listOpts(q)
	return q, opts, err
}

// adminKeys are the admin console's query parameters.
var adminKeys = append([]string{"user", "project", "org", "team", "actor", "ip"}, listKeys...)

// adminFilter reads the admin filters from q; the service validates them.
func adminFilter(q url.Values) (service.Filter, error) {
	opts, err := listOpts(q)
	if err != nil {
		return service.Filter{}, err
	}
	f := service.Filter{UserID: q.Get("user"), ProjectID: q.Get("project"), OrganizationID: q.Get("org"),
		TeamID: q.Get("team"), ActorID: q.Get("actor"), IP: q.Get("ip"), ListOpts: opts}
	return f, f.Validate()
}

// appliedFilter is f as the read applies it, for the admin:events:view
// record: only the filters set, the network masked to what it matches,
// times in RFC 3339 UTC. Paging (cursor, limit) is not a filter.
func appliedFilter(f service.Filter) map[string]string {
	m := map[string]string{}
	for k, v := range map[string]string{"user": f.UserID, "project": f.ProjectID, "org": f.OrganizationID,
		"team": f.TeamID, "actor": f.ActorID, "tag": f.Tag, "tag_prefix": f.TagPrefix} {
		if v != "" {
			m[k] = v
		}
	}
	if f.IP != "" {
		if p, err := service.ParseNetwork(f.IP); err == nil {
			m["ip"] = p.String()
		}
	}
	if !f.Since.IsZero() {
		m["since"] = f.Since.UTC().Format(time.RFC3339Nano)
	}
	if !f.Until.IsZero() {
		m["until"] = f.Until.UTC().Format(time.RFC3339Nano)
	}
	return m
}
