package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/auditlog/auditlog/service"
)

// audience is what a viewer may see of an event.
type audience int

const (
	// public: anyone, on a project page. No actor, no way in, nothing
	// personal.
	public audience = iota
	// maintainer: a project's maintainers. Who acted and how, with which
	// token, from which location (or network), on which kind of device;
	// never the raw IP, user agent or personal keys.
	maintainer
	// actedOn: the person an event is about, when someone else acted (an
	// admin, a collaborator): everything but the actor's raw IP and user
	// agent, which are the actor's personal data (network and device
	// instead).
	actedOn
	// owner: the person an event is about, when they acted themselves (or
	// nobody is named). Everything but the keys kept from the subject
	// (hidden_from_subject).
	owner
	// administrator: an admin. Everything.
	administrator
)

// subjectView is the audience of the person an event is about.
func subjectView(e *service.Event) audience {
	if e.ActorID != "" && e.ActorID != e.Subject() {
		return actedOn
	}
	return owner
}

// viewEvent is an event as one audience sees it. Its JSON uses the column
// names; a field the audience may not see is left out, never blanked.
type viewEvent struct {
	ID             int64             `json:"id"`
	Model          service.Model     `json:"model"`
	Time           time.Time         `json:"time"`
	Tag            string            `json:"tag"`
	UserID         string            `json:"user_id,omitempty"`
	ProjectID      string            `json:"project_id,omitempty"`
	OrganizationID string            `json:"organization_id,omitempty"`
	TeamID         string            `json:"team_id,omitempty"`
	ActorID        string            `json:"actor_id,omitempty"`
	AuthMethod     string            `json:"auth_method,omitempty"`
	TokenID        string            `json:"token_id,omitempty"`
	ActorTwoFactor *bool             `json:"actor_two_factor,omitempty"`
	IP             string            `json:"ip,omitempty"`
	UserAgent      string            `json:"user_agent,omitempty"`
	Location       *service.Location `json:"location,omitempty"`
	// Network is the IP's /24 (IPv4) or /48 (IPv6): where from, without
	// the address.
	Network string `json:"network,omitempty"`
	// Device is the user agent boiled down to browser or tool and system.
	Device      string          `json:"device,omitempty"`
	Description string          `json:"description"`
	Additional  json.RawMessage `json:"additional,omitempty"`
	// ProofURL is where the viewer gets the event's inclusion proof
	// (GET /api/v1/events/{id}/proof), when the log has an integrity key
	// and the viewer may have it (proofAccess).
	ProofURL string `json:"proof_url,omitempty"`
	// Held marks, for admins only, a user event a legal hold keeps past
	// its month.
	Held bool `json:"held,omitempty"`
}

// present turns e into what aud may see; reg gives the class of each key
// of additional (see visibleKey).
func present(e *service.Event, aud audience, reg *service.Registry) viewEvent {
	v := viewEvent{
		ID: e.ID, Model: e.Model, Time: e.Time, Tag: e.Tag, UserID: e.UserID, ProjectID: e.ProjectID,
		OrganizationID: e.OrganizationID, TeamID: e.TeamID, Description: e.Description, Additional: visibleAdditional(e, aud, reg),
	}
	if aud == public {
		// The public may not see who else an event names: the
		// description says "someone" where it names an account.
		if desc, ok := reg.DescribeWithoutAccounts(e.Tag, e.Additional); ok {
			v.Description = desc
		}
		return v
	}
	v.ActorID, v.AuthMethod, v.TokenID, v.ActorTwoFactor = e.ActorID, e.AuthMethod, e.TokenID, e.ActorTwoFactor
	if (aud == owner || aud == actedOn) && redactsRequest(e) {
		return v // where from and with what belong to whoever else made the request
	}
	v.Location = e.Location
	v.Device = device(e.UserAgent)
	if e.IP.IsValid() {
		v.Network = service.Network(e.IP).String()
	}
	if aud == maintainer {
		return v
	}
	if aud == actedOn {
		return v
	}
	if e.IP.IsValid() {
		v.IP = e.IP.String()
	}
	v.UserAgent = e.UserAgent
	v.Held = aud == administrator && e.Held
	return v
}

// redactsRequest reports whether e's additional says "redact_ip": true:
// the request's address, network, location and device are those of
// someone other than the person the event is about (an administrator, a
// scheduled task, another user: Warehouse's rule), so that person is not
// shown them, whoever the event names as actor. Maintainers and admins
// see them as on any event.
func redactsRequest(e *service.Event) bool {
	if len(e.Additional) == 0 || !bytes.Contains(e.Additional, []byte(`"redact_ip"`)) {
		return false
	}
	var m struct {
		RedactIP bool `json:"redact_ip"`
	}
	return json.Unmarshal(e.Additional, &m) == nil && m.RedactIP
}

// visibleKey reports whether aud may see a key of additional of class
// (known false: the catalog does not say). Deny by default: the public
// and maintainers see public keys only (maintainers read the accounts an
// event names in its description, which the public sees with "someone"
// in their place); the person the event is about sees everything but what is kept from
// them (their own e-mail address an admin added is theirs to see); admins
// see everything. A key of unknown class is shown to admins and the
// person only.
func visibleKey(aud audience, class service.KeyClass, known bool) bool {
	switch aud {
	case administrator:
		return true
	case owner, actedOn:
		if !known {
			return true
		}
		return class != service.KeyHiddenFromSubject
	}
	return known && class == service.KeyPublic
}

// visibleAdditional returns e's additional data with only the keys aud
// may see; nothing when it is not a JSON object (rather than guess).
func visibleAdditional(e *service.Event, aud audience, reg *service.Registry) json.RawMessage {
	if aud == administrator || len(e.Additional) == 0 {
		return e.Additional
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(e.Additional, &m) != nil {
		return nil
	}
	hidden := false
	for k := range m {
		class, known := reg.KeyClass(e.Tag, k)
		if !visibleKey(aud, class, known) {
			delete(m, k)
			hidden = true
		}
	}
	if !hidden {
		return e.Additional
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil
	}
	return b
}

// device names the browser or tool and the system in a User-Agent header,
// as far as a few well-known markers tell ("Firefox on Linux", "curl").
// The raw header is shown to the person themselves and admins only.
func device(ua string) string {
	if ua == "" {
		return ""
	}
	name := ""
	for _, b := range []struct{ marker, name string }{
		{"Edg/", "Edge"}, {"OPR/", "Opera"}, {"Firefox/", "Firefox"}, {"Chrome/", "Chrome"},
		{"Safari/", "Safari"}, {"curl/", "curl"}, {"twine/", "twine"}, {"pip/", "pip"},
		{"python-requests/", "Python requests"}, {"Go-http-client/", "Go HTTP client"},
	} {
		if strings.Contains(ua, b.marker) {
			name = b.name
			break
		}
	}
	system := ""
	for _, s := range []struct{ marker, name string }{
		{"Android", "Android"}, {"iPhone", "iOS"}, {"iPad", "iPadOS"}, {"Windows", "Windows"},
		{"Mac OS X", "macOS"}, {"Macintosh", "macOS"}, {"CrOS", "ChromeOS"}, {"Linux", "Linux"},
	} {
		if strings.Contains(ua, s.marker) {
			system = s.name
			break
		}
	}
	switch {
	case name != "" && system != "":
		return name + " on " + system
	case name != "":
		return name
	case system != "":
		return "a browser on " + system
	default:
		return "another client"
	}
}

// Where says where an event came from, for a page: the location when
// known, else the network.
func (v *viewEvent) Where() string {
	if where := v.Location.String(); where != "" {
		return where
	}
	return v.Network
}

// How says how the actor got in: the method, the token or trusted
// publisher, and two-factor when known.
func (v *viewEvent) How() string {
	var b strings.Builder
	b.WriteString(strings.ReplaceAll(v.AuthMethod, "_", " "))
	if v.TokenID != "" {
		if v.AuthMethod == "trusted_publisher" {
			b.WriteString(" " + v.TokenID)
		} else {
			b.WriteString(" “" + v.TokenID + "”")
		}
	}
	if v.ActorTwoFactor != nil {
		if *v.ActorTwoFactor {
			b.WriteString(" (2FA on)")
		} else {
			b.WriteString(" (no 2FA)")
		}
	}
	return strings.TrimSpace(b.String())
}

// OnBehalf reports whether someone or something other than the subject
// acted: an admin, another user, a token or a trusted publisher.
func (v *viewEvent) OnBehalf() bool {
	return (v.ActorID != "" && v.ActorID != v.UserID) || v.TokenID != ""
}

// Failure reports whether the event is a failed sign-in (highlighted).
func (v *viewEvent) Failure() bool { return strings.HasPrefix(v.Tag, service.TagLoginFailure) }

// NewLocation reports whether the event is a sign-in from a new place.
func (v *viewEvent) NewLocation() bool { return v.Tag == service.TagLoginNewLocation }

// inert makes text safe to show on a page as text: characters that change
// the direction of the text around them (bidi overrides, embeddings,
// isolates and marks, which could make "exe.txt" read "txt.exe") and other
// invisible control characters are shown as their code point, e.g.
// "[U+202E]". html/template escapes markup on top of this.
func inert(s string) string {
	i := strings.IndexFunc(s, hidden)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:i])
	for _, r := range s[i:] {
		if hidden(r) {
			fmt.Fprintf(&b, "[U+%04X]", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// hidden reports whether r is a control or bidi formatting character.
func hidden(r rune) bool {
	switch {
	case r == '\t':
		return false
	case unicode.IsControl(r):
		return true
	case r == 0x061C, r == 0x200E, r == 0x200F, 0x202A <= r && r <= 0x202E, 0x2066 <= r && r <= 0x2069:
		return true
	}
	return false
}

// nameAccounts renders again, with Options.DisplayNames, the descriptions
// of the events shown to audiences that may see the accounts an event
// names. A failed lookup leaves the stored names (and is logged): the
// page is still right, only less friendly.
func (h *Handler) nameAccounts(r *request, events []service.Event, views []viewEvent, aud func(*service.Event) audience) {
	if h.opts.DisplayNames == nil {
		return
	}
	reg := h.log.Registry()
	var accounts []string
	for i := range events {
		if aud(&events[i]) != public {
			accounts = append(accounts, reg.AccountsNamed(events[i].Tag, events[i].Additional)...)
		}
	}
	if len(accounts) == 0 {
		return
	}
	slices.Sort(accounts)
	names, err := h.opts.DisplayNames(r.Context(), slices.Compact(accounts))
	if err != nil {
		h.opts.Logger.Warn("web: display names unavailable; showing accounts as stored", "err", err)
		return
	}
	for i := range events {
		if aud(&events[i]) == public {
			continue
		}
		if desc, ok := reg.DescribeWithNames(events[i].Tag, events[i].Additional, func(a string) string { return names[a] }); ok {
			views[i].Description = desc
		}
	}
}

// eventsPage is the data of every event list, and the JSON answer.
type eventsPage struct {
	Events     []viewEvent `json:"events"`
	NextCursor string      `json:"next_cursor,omitempty"`
	// NextURL is the next page's link with the same filters (pages only).
	NextURL string `json:"-"`
	// For the security history.
	RetentionDays      int         `json:"retention_days,omitempty"`
	FailedSinceSuccess *int64      `json:"failed_logins_since_success,omitempty"`
	Failed             int64       `json:"-"`
	ProjectID          string      `json:"project_id,omitempty"`
	OrganizationID     string      `json:"organization_id,omitempty"`
	TeamID             string      `json:"team_id,omitempty"`
	Subject            subjectInfo `json:"-"`
	Maintainer         bool        `json:"-"`
	Filter             filterForm  `json:"-"`
	// The admin export links for the same filters.
	ExportCSV, ExportJSONL template.URL `json:"-"`
	// Proofs: some event has a proof link (the page shows the column).
	Proofs bool `json:"-"`
}

type filterForm struct {
	User, Project, Actor, Tag, TagPrefix, IP, Since, Until string
}

func (h *Handler) eventsPage(r *request, q url.Values, p *service.Page, aud func(*service.Event) audience) *eventsPage {
	out := &eventsPage{Events: make([]viewEvent, len(p.Events)), NextCursor: p.NextCursor}
	reg := h.log.Registry()
	for i := range p.Events {
		out.Events[i] = present(&p.Events[i], aud(&p.Events[i]), reg)
		out.Events[i].ProofURL = h.proofURL(r.viewer, &p.Events[i])
		out.Proofs = out.Proofs || out.Events[i].ProofURL != ""
	}
	h.nameAccounts(r, p.Events, out.Events, aud)
	q = maps.Clone(q)
	if p.NextCursor != "" {
		q.Set("cursor", p.NextCursor)
		// The escaped path: a subject may hold "/" or "?".
		out.NextURL = r.URL.EscapedPath() + "?" + q.Encode()
	}
	q.Del("cursor")
	q.Set("format", "csv")
	out.ExportCSV = template.URL("/admin/export?" + q.Encode()) // built by url.Values: safe as a URL
	q.Set("format", "jsonl")
	out.ExportJSONL = template.URL("/admin/export?" + q.Encode())
	out.Filter = filterForm{User: q.Get("user"), Project: q.Get("project"), Actor: q.Get("actor"), Tag: q.Get("tag"),
		TagPrefix: q.Get("tag_prefix"), IP: q.Get("ip"), Since: q.Get("since"), Until: q.Get("until")}
	return out
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
