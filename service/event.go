package service

import (
	"encoding/json"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/auditlog/auditlog/db"
	"github.com/auditlog/auditlog/internal/strictjson"
)

// Limits on event fields. Anything over them is refused with ErrTooLong or
// ErrAdditionalTooLarge; nothing is truncated silently.
const (
	MaxIDBytes         = 128       // user_id, project_id, actor_id, token_id
	MaxUserAgentBytes  = 1024      // user_agent
	MaxLocationBytes   = 128       // each of country, region, city
	MaxAdditionalBytes = 16 * 1024 // additional, as JSON text
	MaxAdditionalDepth = 100       // objects and arrays nested in additional
	maxAuthMethodBytes = 64
)

// MinEventTime is the earliest time an event may carry: an explicit time
// before it (such as Go's zero time sent as "0001-01-01T00:00:00Z") is a
// mistake, not history, and is refused with ErrTimeTooOld.
var MinEventTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)

// validAuthMethod reports whether m is a lower-case word: a-z first,
// then a-z, 0-9 and '_'.
func validAuthMethod(m string) bool {
	if len(m) == 0 || len(m) > maxAuthMethodBytes || m[0] < 'a' || m[0] > 'z' {
		return false
	}
	for i := 1; i < len(m); i++ {
		if c := m[i]; !(('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || c == '_') {
			return false
		}
	}
	return true
}

// Location is where an event came from, when known (from a GeoIP lookup
// or the CDN). It is personal data.
type Location struct {
	Country string `json:"country,omitempty"` // ISO 3166-1 alpha-2, e.g. "DE"
	Region  string `json:"region,omitempty"`
	City    string `json:"city,omitempty"`
}

// String is the location as people read it: "City, Region, Country",
// leaving out the parts not known ("" when none is).
func (l *Location) String() string {
	if l == nil {
		return ""
	}
	parts := make([]string, 0, 3)
	for _, p := range [...]string{l.City, l.Region, l.Country} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, ", ")
}

// Network is the network an address belongs to for the signals and the
// views: its /24 when IPv4, its /48 when IPv6 (the zero Prefix for the
// zero Addr).
func Network(ip netip.Addr) netip.Prefix {
	bits := 48
	if ip.Is4() {
		bits = 24
	}
	p, _ := ip.Prefix(bits)
	return p
}

// EventParams is one event to record.
type EventParams struct {
	// Tag is a registered tag of the model being recorded.
	Tag string
	// Subject is the user id for RecordUser* and the project id for
	// RecordProject*: the host's own opaque string ids.
	Subject string
	// Time defaults to now (the Log's clock) when zero. It is stored with
	// microsecond precision in UTC; a time before MinEventTime is refused.
	Time time.Time
	// ActorID is who acted when it is not the subject (an admin, another
	// maintainer, the owner of a token); empty when unknown.
	ActorID string
	// AuthMethod is how the actor authenticated: password, webauthn, totp,
	// api_token, trusted_publisher, ...
	AuthMethod string
	// TokenID names the token or trusted publisher that acted, if any.
	TokenID string
	// ActorTwoFactor says whether the actor had two-factor authentication
	// enabled; nil when unknown.
	ActorTwoFactor *bool
	// IP is the client address, IPv4 or IPv6 ("" when none). The
	// host:port form of http.Request.RemoteAddr ("192.0.2.7:52100",
	// "[2001:db8::7]:443") is accepted too; the port is not kept.
	// Personal data.
	IP string
	// UserAgent is the client's User-Agent header. Personal data.
	UserAgent string
	// Location is where the request came from. Personal data.
	Location *Location
	// Additional is a JSON object of tag-specific data; keys the tag
	// registers as personal are treated as personal data.
	Additional json.RawMessage
}

// Event is a recorded event as the readers return it. Its JSON form uses
// the column names; empty optional fields are left out.
type Event struct {
	ID             int64           `json:"id"`
	Model          Model           `json:"model"`
	Time           time.Time       `json:"time"`
	Tag            string          `json:"tag"`
	UserID         string          `json:"user_id,omitempty"`
	ProjectID      string          `json:"project_id,omitempty"`
	OrganizationID string          `json:"organization_id,omitempty"`
	TeamID         string          `json:"team_id,omitempty"` // "ORG/TEAM"
	ActorID        string          `json:"actor_id,omitempty"`
	AuthMethod     string          `json:"auth_method,omitempty"`
	TokenID        string          `json:"token_id,omitempty"`
	ActorTwoFactor *bool           `json:"actor_two_factor,omitempty"`
	IP             netip.Addr      `json:"ip,omitzero"`
	UserAgent      string          `json:"user_agent,omitempty"`
	Location       *Location       `json:"location,omitempty"`
	Description    string          `json:"description"`
	Additional     json.RawMessage `json:"additional"`
	// Held is set on a user event a legal hold keeps past its month
	// (held_user_events): only the admin query returns those.
	Held bool `json:"held,omitempty"`
}

// Subject returns the id of the event's subject in its model: the user,
// project, organization or team ("ORG/TEAM") id.
func (e *Event) Subject() string {
	switch e.Model {
	case ModelProject:
		return e.ProjectID
	case ModelOrganization:
		return e.OrganizationID
	case ModelTeam:
		return e.TeamID
	}
	return e.UserID
}

// setSubject sets the subject field of e's model.
func (e *Event) setSubject(id string) {
	switch e.Model {
	case ModelProject:
		e.ProjectID = id
	case ModelOrganization:
		e.OrganizationID = id
	case ModelTeam:
		e.TeamID = id
	default:
		e.UserID = id
	}
}

// validEvent is a validated event, ready for either table.
type validEvent struct {
	time        time.Time
	tag         string
	model       Model
	subject     string
	actorID     string
	authMethod  string
	tokenID     string
	twoFactor   *bool
	ip          *netip.Addr
	userAgent   string
	location    json.RawMessage
	description string
	additional  json.RawMessage
	// fallback: the description lacked a required value (counted, never
	// refused).
	fallback bool
	// mac is the record mark (Opts.Integrity), nil without one.
	mac []byte
}

var emptyObject = json.RawMessage(`{}`)

// validate checks p for model and returns the row to write. Time bounds
// that need the database (partitions) are checked by the caller.
func (l *Log) validate(p *EventParams, model Model, now time.Time) (validEvent, error) {
	if err := checkTag(p.Tag); err != nil {
		return validEvent{}, err
	}
	entry := l.registry.entry(p.Tag)
	if entry == nil {
		return validEvent{}, invalid("tag", ErrUnknownTag, "%q is not registered", p.Tag)
	}
	if entry.spec.Retired {
		return validEvent{}, invalid("tag", ErrRetiredTag, "%q is retired: no longer recorded", p.Tag)
	}
	subjectField := model.SubjectField()
	if entry.spec.Model != model {
		return validEvent{}, invalid("tag", ErrWrongModel, "%s is a %s event, recorded as a %s event", p.Tag, entry.spec.Model, model)
	}
	if p.Subject == "" {
		return validEvent{}, invalid(subjectField, ErrEmptySubject, "")
	}
	for _, f := range [...]struct {
		name, value string
		max         int
	}{
		{subjectField, p.Subject, MaxIDBytes},
		{"actor_id", p.ActorID, MaxIDBytes},
		{"token_id", p.TokenID, MaxIDBytes},
		{"user_agent", p.UserAgent, MaxUserAgentBytes},
	} {
		if err := checkText(f.name, f.value, f.max); err != nil {
			return validEvent{}, err
		}
	}
	if model == ModelTeam {
		if _, _, ok := SplitTeamSubject(p.Subject); !ok {
			return validEvent{}, invalid(subjectField, ErrInvalidText, "%q is not ORGANIZATION/TEAM (a team's subject names its organization)", p.Subject)
		}
	}
	if p.AuthMethod != "" && !validAuthMethod(p.AuthMethod) {
		return validEvent{}, invalid("auth_method", ErrInvalidAuthMethod, "%q", p.AuthMethod)
	}

	r := validEvent{
		time:       p.Time,
		tag:        p.Tag,
		model:      model,
		subject:    p.Subject,
		actorID:    p.ActorID,
		authMethod: p.AuthMethod,
		tokenID:    p.TokenID,
		twoFactor:  p.ActorTwoFactor,
		userAgent:  p.UserAgent,
		additional: p.Additional,
	}
	if r.time.IsZero() {
		r.time = now
	} else if r.time.Before(MinEventTime) {
		return validEvent{}, invalid("time", ErrTimeTooOld, "%s is before %s", r.time.UTC().Format(time.RFC3339), MinEventTime.Format(time.RFC3339))
	}
	r.time = r.time.UTC().Truncate(time.Microsecond)

	if p.IP != "" {
		addr, err := parseIP(p.IP)
		if err != nil {
			return validEvent{}, err
		}
		r.ip = &addr
	}
	if p.Location != nil && *p.Location != (Location{}) {
		for _, f := range [...]struct{ name, value string }{
			{"location.country", p.Location.Country},
			{"location.region", p.Location.Region},
			{"location.city", p.Location.City},
		} {
			if err := checkText(f.name, f.value, MaxLocationBytes); err != nil {
				return validEvent{}, err
			}
		}
		r.location = p.Location.appendJSON(make([]byte, 0, 64))
	} else if r.ip != nil && l.signals.Locator != nil {
		if loc, ok := l.signals.Locator.Locate(*r.ip); ok && loc != (Location{}) {
			r.location = loc.appendJSON(make([]byte, 0, 64))
		}
	}
	if err := checkAdditional(r.additional); err != nil {
		return validEvent{}, err
	}
	if len(r.additional) == 0 {
		r.additional = emptyObject
	}
	desc, complete, err := entry.render(r.additional)
	if err != nil {
		return validEvent{}, err
	}
	r.description, r.fallback = desc, !complete
	if l.integrity != nil {
		e := Event{Model: model, Time: r.time, Tag: r.tag, AuthMethod: r.authMethod, TokenID: r.tokenID, ActorTwoFactor: r.twoFactor}
		e.setSubject(r.subject)
		r.mac = l.integrity.markEvent(&e)
	}
	return r, nil
}

func checkText(field, value string, max int) error {
	if len(value) > max {
		return invalid(field, ErrTooLong, "%d bytes, at most %d", len(value), max)
	}
	if !utf8.ValidString(value) {
		return invalid(field, ErrInvalidText, "not valid UTF-8")
	}
	for i := 0; i < len(value); i++ {
		if value[i] == 0 {
			return invalid(field, ErrInvalidText, "holds a NUL byte")
		}
	}
	return nil
}

// appendJSON appends l as the JSON object json.Marshal would produce,
// without reflection (it runs for every event of a bulk ingest). The
// fields are valid UTF-8 without NUL, checked before.
func (l *Location) appendJSON(b []byte) []byte {
	b = append(b, '{')
	sep := false
	for _, f := range [...]struct{ key, value string }{{"country", l.Country}, {"region", l.Region}, {"city", l.City}} {
		if f.value == "" {
			continue
		}
		if sep {
			b = append(b, ',')
		}
		sep = true
		b = append(b, '"')
		b = append(b, f.key...)
		b = append(b, '"', ':')
		b = appendJSONString(b, f.value)
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// parseIP parses an event's IP address: an IPv4 or IPv6 address without a
// zone, or the host:port form http.Request.RemoteAddr has (the port is
// dropped). IPv4-mapped IPv6 addresses are stored as IPv4.
func parseIP(s string) (netip.Addr, error) {
	addr, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		if perr != nil {
			return netip.Addr{}, invalid("ip", ErrInvalidIP, "%q is not an IP address", s)
		}
		addr = ap.Addr()
	}
	if addr.Zone() != "" {
		return netip.Addr{}, invalid("ip", ErrInvalidIP, "%q carries a zone", s)
	}
	return addr.Unmap(), nil
}

// checkAdditional accepts nothing (stored as {}) or one JSON object that
// PostgreSQL's jsonb stores exactly as written: valid UTF-8, no \u0000 or
// lone surrogate, no repeated key (jsonb would keep only the last), every
// number within numeric's range, at most MaxAdditionalDepth levels deep.
func checkAdditional(a json.RawMessage) error {
	if len(a) == 0 {
		return nil
	}
	if len(a) > MaxAdditionalBytes {
		return invalid("additional", ErrAdditionalTooLarge, "%d bytes, at most %d", len(a), MaxAdditionalBytes)
	}
	if err := strictjson.CheckObject(a, strictjson.Options{MaxDepth: MaxAdditionalDepth}); err != nil {
		return invalid("additional", ErrInvalidAdditional, "%v", err)
	}
	return nil
}

// userParams is r as the generated user_events insert takes it. The COPY
// variant's params struct has the same fields, so it converts directly.
func (r *validEvent) userParams() db.UserEventInsertParams {
	return db.UserEventInsertParams{
		Time: r.time, Tag: r.tag, UserID: r.subject,
		ActorID: text(r.actorID), AuthMethod: text(r.authMethod), TokenID: text(r.tokenID),
		ActorTwoFactor: boolean(r.twoFactor), Ip: r.ip, UserAgent: text(r.userAgent),
		Location: r.location, Description: r.description, Additional: r.additional, Mac: r.mac,
	}
}

// projectParams is r as the generated project_events insert takes it.
func (r *validEvent) projectParams() db.ProjectEventInsertParams {
	return db.ProjectEventInsertParams{
		Time: r.time, Tag: r.tag, SubjectKind: string(r.model), ProjectID: r.subject,
		ActorID: text(r.actorID), AuthMethod: text(r.authMethod), TokenID: text(r.tokenID),
		ActorTwoFactor: boolean(r.twoFactor), Ip: r.ip, UserAgent: text(r.userAgent),
		Location: r.location, Description: r.description, Additional: r.additional, Mac: r.mac,
	}
}

func (r *validEvent) event(id int64, model Model) Event {
	e := Event{
		ID: id, Model: model, Time: r.time, Tag: r.tag,
		ActorID: r.actorID, AuthMethod: r.authMethod, TokenID: r.tokenID,
		ActorTwoFactor: r.twoFactor, UserAgent: r.userAgent,
		Description: r.description, Additional: r.additional,
	}
	e.setSubject(r.subject)
	if r.ip != nil {
		e.IP = *r.ip
	}
	e.Location = decodeLocation(r.location)
	return e
}
