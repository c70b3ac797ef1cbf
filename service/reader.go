package service

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/auditlog/auditlog/db"
)

// Page sizes.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

var (
	minTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
)

// ListOpts filters and pages a read. The zero value asks for the first
// page of everything the reader may return.
type ListOpts struct {
	// Tag keeps only events with this exact tag.
	Tag string
	// TagPrefix keeps only events whose tag starts with it
	// ("account:login:" or "project:release").
	TagPrefix string
	// Since and Until bound the time range: Since <= time < Until. User
	// events are never returned from before the retention window, whatever
	// Since says.
	Since, Until time.Time
	// Cursor is Page.NextCursor of the previous page; empty for the first.
	Cursor string
	// Limit is the page size; DefaultPageSize when zero, at most MaxPageSize.
	Limit int
}

// Filter is the admin query's filters; every field is optional.
type Filter struct {
	// UserID keeps only user events about this user (project events have
	// no user subject and are left out).
	UserID string
	// ProjectID keeps only project events of this project (user events
	// are left out).
	ProjectID string
	// OrganizationID keeps only events of this organization;
	// TeamID ("ORG/TEAM") only events of this team. No event has two
	// subjects: two subject filters match nothing.
	OrganizationID, TeamID string
	// ActorID keeps only events this actor performed, in both models.
	ActorID string
	// IP is an address ("192.0.2.7") or a network in CIDR form
	// ("10.0.0.0/8", "2001:db8::/32").
	IP string
	ListOpts
}

// Page is one page of events, newest first.
type Page struct {
	Events []Event
	// NextCursor fetches the next page; empty on the last one.
	NextCursor string
}

// cursor is the keyset position: the (time, id) of the last event shown.
type cursor struct {
	time time.Time
	id   int64
}

var firstPage = cursor{time: maxTime, id: math.MaxInt64}

func (c cursor) String() string {
	var b [17]byte
	b[0] = 1 // format version
	binary.BigEndian.PutUint64(b[1:], uint64(c.time.UnixMicro()))
	binary.BigEndian.PutUint64(b[9:], uint64(c.id))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func parseCursor(s string) (cursor, error) {
	if s == "" {
		return firstPage, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 17 || b[0] != 1 {
		return cursor{}, invalid("cursor", ErrInvalidCursor, "%q is not a cursor this API gave", s)
	}
	c := cursor{
		time: time.UnixMicro(int64(binary.BigEndian.Uint64(b[1:]))).UTC(),
		id:   int64(binary.BigEndian.Uint64(b[9:])),
	}
	// Every cursor this API gives holds an event's time (or the first
	// page's maxTime) and a positive id; anything else was made by hand,
	// and a time outside PostgreSQL's range would fail the query.
	if c.time.Before(minTime) || c.time.After(maxTime) || c.id <= 0 {
		return cursor{}, invalid("cursor", ErrInvalidCursor, "%q is not a cursor this API gave", s)
	}
	return c, nil
}

// ParseTime parses a time given as a filter or on the command line:
// RFC 3339 ("2026-07-01T12:00:00Z", fractional seconds allowed),
// "2026-07-01T12:00" (UTC) or a date "2026-07-01" (midnight UTC). field
// names the value in the error, a *ValidationError with ErrInvalidFilter.
func ParseTime(field, s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, invalid(field, ErrInvalidFilter, "%q is not a time (RFC 3339 or YYYY-MM-DD)", s)
}

// query is a validated ListOpts.
type query struct {
	after            cursor
	minTime, maxTime time.Time
	tag              pgtype.Text
	tagFrom, tagTo   pgtype.Text
	limit            int
}

// Validate checks o without reading anything: the cursor, the tag and tag
// prefix, the time range. The readers run it first; callers such as the
// CLI run it to refuse a bad option before connecting.
func (o *ListOpts) Validate() error {
	_, err := o.parse()
	return err
}

// Validate checks f without reading anything: the ids, the network and the
// ListOpts.
func (f *Filter) Validate() error {
	_, err := f.parse()
	return err
}

func (f *Filter) parse() (*netip.Prefix, error) {
	for _, id := range [...]struct{ field, value string }{{"user", f.UserID}, {"project", f.ProjectID},
		{"org", f.OrganizationID}, {"team", f.TeamID}, {"actor", f.ActorID}} {
		if err := checkText(id.field, id.value, MaxIDBytes); err != nil {
			return nil, err
		}
	}
	if _, err := f.ListOpts.parse(); err != nil {
		return nil, err
	}
	if f.IP == "" {
		return nil, nil
	}
	p, err := ParseNetwork(f.IP)
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// parse validates o into a query, without the retention window.
func (o *ListOpts) parse() (query, error) {
	q := query{minTime: minTime, maxTime: maxTime, limit: o.Limit}
	var err error
	if q.after, err = parseCursor(o.Cursor); err != nil {
		return q, err
	}
	if q.limit <= 0 {
		q.limit = DefaultPageSize
	}
	q.limit = min(q.limit, MaxPageSize)
	for _, t := range [...]struct {
		field string
		value time.Time
	}{{"since", o.Since}, {"until", o.Until}} {
		if !t.value.IsZero() && (t.value.Before(minTime) || t.value.After(maxTime)) {
			return q, invalid(t.field, ErrInvalidFilter, "%s is outside the years 0001 to 9999", t.value.UTC().Format(time.RFC3339))
		}
	}
	if !o.Since.IsZero() {
		q.minTime = o.Since.UTC()
	}
	if !o.Until.IsZero() {
		q.maxTime = o.Until.UTC()
	}
	if !o.Since.IsZero() && !o.Until.IsZero() && o.Until.Before(o.Since) {
		return q, invalid("until", ErrInvalidFilter, "until %s is before since %s", o.Until.Format(time.RFC3339), o.Since.Format(time.RFC3339))
	}
	if o.Tag != "" {
		if err := checkTag(o.Tag); err != nil {
			return q, err
		}
		q.tag = text(o.Tag)
	}
	if o.TagPrefix != "" {
		if !validTagPrefix(o.TagPrefix) {
			return q, invalid("tag_prefix", ErrInvalidFilter, "%q is not a tag prefix", o.TagPrefix)
		}
		// tag is COLLATE "C", so the prefix is the byte range [p, p+1).
		end := []byte(o.TagPrefix)
		end[len(end)-1]++
		q.tagFrom, q.tagTo = text(o.TagPrefix), text(string(end))
	}
	return q, nil
}

// parseListOpts validates o for a read of model: user events never come
// from before the retention window.
func (l *Log) parseListOpts(o *ListOpts, model Model) (query, error) {
	q, err := o.parse()
	if err != nil {
		return q, err
	}
	if model == ModelUser {
		q.minTime = maxOf(q.minTime, l.windowStart(l.now()))
	}
	return q, nil
}

func maxOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// UserEvents returns one user's events newest first, only from inside the
// retention window.
func (l *Log) UserEvents(ctx context.Context, userID string, opts ListOpts) (*Page, error) {
	q, err := l.parseListOpts(&opts, ModelUser)
	if err == nil {
		err = checkText("user_id", userID, MaxIDBytes)
	}
	if err != nil {
		return nil, fmt.Errorf("user events: %w", err)
	}
	rows, err := l.q.UserEventListByUser(ctx, l.db, db.UserEventListByUserParams{
		UserID: userID, MinTime: q.minTime, MaxTime: q.maxTime,
		BeforeTime: q.after.time, BeforeID: q.after.id,
		Tag: q.tag, TagFrom: q.tagFrom, TagTo: q.tagTo,
		Max: int32(q.limit + 1),
	})
	if err != nil {
		return nil, unavailable(fmt.Errorf("user events of %s: %w", userID, err))
	}
	return page(mapEvents(rows, userEvent), q.limit), nil
}

// ProjectEvents returns one project's events newest first.
func (l *Log) ProjectEvents(ctx context.Context, projectID string, opts ListOpts) (*Page, error) {
	return l.SubjectEvents(ctx, ModelProject, projectID, opts)
}

// OrganizationEvents returns one organization's events newest first (its
// teams' events are TeamEvents).
func (l *Log) OrganizationEvents(ctx context.Context, orgID string, opts ListOpts) (*Page, error) {
	return l.SubjectEvents(ctx, ModelOrganization, orgID, opts)
}

// TeamEvents returns one team's events newest first; teamID is
// TeamSubject(org, team).
func (l *Log) TeamEvents(ctx context.Context, teamID string, opts ListOpts) (*Page, error) {
	return l.SubjectEvents(ctx, ModelTeam, teamID, opts)
}

// SubjectEvents returns the events of one subject of a kept-forever model
// (project, organization, team) newest first. For ModelUser it is
// UserEvents.
func (l *Log) SubjectEvents(ctx context.Context, model Model, id string, opts ListOpts) (*Page, error) {
	if model == ModelUser {
		return l.UserEvents(ctx, id, opts)
	}
	field := model.SubjectField()
	q, err := l.parseListOpts(&opts, model)
	if err == nil && !model.Valid() {
		err = invalid("model", ErrInvalidFilter, "%q is not one of %s", model, modelNames())
	}
	if err == nil {
		err = checkText(field, id, MaxIDBytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%s events: %w", model, err)
	}
	rows, err := l.q.ProjectEventListBySubject(ctx, l.db, db.ProjectEventListBySubjectParams{
		SubjectKind: string(model), ProjectID: id, MinTime: q.minTime, MaxTime: q.maxTime,
		BeforeTime: q.after.time, BeforeID: q.after.id,
		Tag: q.tag, TagFrom: q.tagFrom, TagTo: q.tagTo,
		Max: int32(q.limit + 1),
	})
	if err != nil {
		return nil, unavailable(fmt.Errorf("%s events of %s: %w", model, id, err))
	}
	return page(mapEvents(rows, projectEvent), q.limit), nil
}

// Events is the admin query: events of both models, newest first, with
// optional filters. User events are still limited to the retention window,
// except those a legal hold keeps past it (held_user_events), which come
// marked Held.
//
// Each filter combination wants its own index, so the two queries run in a
// transaction with plan_cache_mode = force_custom_plan: a cached
// generic plan would otherwise walk the time index past every row a rare
// filter rejects.
func (l *Log) Events(ctx context.Context, f Filter) (*Page, error) {
	userQ, err := l.parseListOpts(&f.ListOpts, ModelUser)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	projQ, err := l.parseListOpts(&f.ListOpts, ModelProject)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	ipNet, err := f.parse()
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	heldQ, err := f.ListOpts.parse()
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	var users, held, projects []Event
	if f.subjects() > 1 {
		return page(nil, userQ.limit), nil
	}
	err = pgx.BeginFunc(ctx, l.db, func(tx pgx.Tx) error {
		if err := l.q.PlanCustomInTransaction(ctx, tx); err != nil {
			return err
		}
		kind, subject := f.keptSubject()
		if kind == "" {
			rows, err := l.q.UserEventList(ctx, tx, db.UserEventListParams{
				MinTime: userQ.minTime, MaxTime: userQ.maxTime,
				BeforeTime: userQ.after.time, BeforeID: userQ.after.id,
				UserID: text(f.UserID), ActorID: text(f.ActorID),
				Tag: userQ.tag, TagFrom: userQ.tagFrom, TagTo: userQ.tagTo,
				IpNet: ipNet, Max: int32(userQ.limit + 1),
			})
			if err != nil {
				return err
			}
			users = mapEvents(rows, userEvent)
			heldRows, err := l.q.HeldEventList(ctx, tx, db.HeldEventListParams{
				MinTime: heldQ.minTime, MaxTime: heldQ.maxTime,
				BeforeTime: heldQ.after.time, BeforeID: heldQ.after.id,
				UserID: text(f.UserID), ActorID: text(f.ActorID),
				Tag: heldQ.tag, TagFrom: heldQ.tagFrom, TagTo: heldQ.tagTo,
				IpNet: ipNet, Max: int32(heldQ.limit + 1),
			})
			if err != nil {
				return err
			}
			held = mapEvents(heldRows, heldEvent)
		}
		if f.UserID == "" {
			rows, err := l.q.ProjectEventList(ctx, tx, db.ProjectEventListParams{
				MinTime: projQ.minTime, MaxTime: projQ.maxTime,
				BeforeTime: projQ.after.time, BeforeID: projQ.after.id,
				SubjectKind: text(string(kind)), ProjectID: text(subject), ActorID: text(f.ActorID),
				Tag: projQ.tag, TagFrom: projQ.tagFrom, TagTo: projQ.tagTo,
				IpNet: ipNet, Max: int32(projQ.limit + 1),
			})
			if err != nil {
				return err
			}
			projects = mapEvents(rows, projectEvent)
		}
		return nil
	})
	if err != nil {
		return nil, unavailable(fmt.Errorf("events: %w", err))
	}
	return page(mergeNewestFirst(mergeNewestFirst(users, held), projects), userQ.limit), nil
}

// SubjectFilter is the admin filter on one kept-forever subject of model
// (project, organization or team), with opts.
func SubjectFilter(model Model, id string, opts ListOpts) Filter {
	f := Filter{ListOpts: opts}
	switch model {
	case ModelOrganization:
		f.OrganizationID = id
	case ModelTeam:
		f.TeamID = id
	default:
		f.ProjectID = id
	}
	return f
}

// subjects counts the subject filters set.
func (f *Filter) subjects() int {
	n := 0
	for _, id := range [...]string{f.UserID, f.ProjectID, f.OrganizationID, f.TeamID} {
		if id != "" {
			n++
		}
	}
	return n
}

// keptSubject is the kept-forever subject f filters on, if any.
func (f *Filter) keptSubject() (Model, string) {
	switch {
	case f.ProjectID != "":
		return ModelProject, f.ProjectID
	case f.OrganizationID != "":
		return ModelOrganization, f.OrganizationID
	case f.TeamID != "":
		return ModelTeam, f.TeamID
	}
	return "", ""
}

// ParseNetwork parses an IP filter: an address ("192.0.2.7", a network of
// one) or a CIDR network ("10.0.0.0/8", "2001:db8::/32"), masked to its
// network. IPv4 is stored as IPv4, so an IPv4-mapped IPv6 network
// ("::ffff:10.0.0.0/104") means the IPv4 network it maps; one shorter than
// /96 would span more than IPv4 and is refused rather than reinterpreted.
// The error is a *ValidationError for field "ip" with ErrInvalidIP.
func ParseNetwork(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, invalid("ip", ErrInvalidIP, "%q is not an address or CIDR network", s)
		}
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				return netip.Prefix{}, invalid("ip", ErrInvalidIP, "%q is an IPv4-mapped network shorter than /96; give the IPv4 network instead", s)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, invalid("ip", ErrInvalidIP, "%q is not an address or CIDR network", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// before reports whether a sorts before b in newest-first order.
func before(a, b *Event) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.After(b.Time)
	}
	return a.ID > b.ID
}

func mergeNewestFirst(a, b []Event) []Event {
	out := make([]Event, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if before(&a[0], &b[0]) {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	out = append(out, a...)
	return append(out, b...)
}

// page cuts events (fetched with limit+1) to limit and sets the cursor
// when there is more.
func page(events []Event, limit int) *Page {
	p := &Page{Events: events}
	if len(events) > limit {
		p.Events = events[:limit]
		last := p.Events[limit-1]
		p.NextCursor = cursor{time: last.Time, id: last.ID}.String()
	}
	if p.Events == nil {
		p.Events = []Event{}
	}
	return p
}

// FailedLoginsSinceSuccess counts userID's failed sign-ins after their
// latest successful one inside the retention window (every failure in the
// window when none succeeded).
func (l *Log) FailedLoginsSinceSuccess(ctx context.Context, userID string) (int64, error) {
	n, err := l.q.UserEventCountFailuresSinceSuccess(ctx, l.db, db.UserEventCountFailuresSinceSuccessParams{
		UserID: userID, MinTime: l.windowStart(l.now()), FailureTag: TagLoginFailure, SuccessTag: TagLoginSuccess,
	})
	if err != nil {
		return 0, unavailable(fmt.Errorf("failed logins of %s: %w", userID, err))
	}
	return n, nil
}

// EventAt reads one event by its model, time and id (the key a hook job
// carries), or ErrNotFound: erased, expired, or never committed. User
// events outside the retention window are not returned.
func (l *Log) EventAt(ctx context.Context, model Model, at time.Time, id int64) (Event, error) {
	if model == ModelUser {
		if at.Before(l.windowStart(l.now())) {
			return Event{}, fmt.Errorf("user event %d: %w", id, ErrNotFound)
		}
		r, err := l.q.UserEventGet(ctx, l.db, db.UserEventGetParams{Time: at, ID: id})
		if err != nil {
			return Event{}, notFound(err, "user event %d", id)
		}
		return userEvent((*db.UserEvent)(&r)), nil
	}
	r, err := l.q.ProjectEventGet(ctx, l.db, db.ProjectEventGetParams{Time: at, ID: id})
	if err != nil {
		return Event{}, notFound(err, "project event %d", id)
	}
	return projectEvent((*db.ProjectEvent)(&r)), nil
}
