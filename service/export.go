package service

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/auditlog/auditlog/db"
)

// ExportPage is how many events an export (ExportSubject, the admin
// console's CSV and JSON) reads per query: an export holds one page in
// memory (ExportSubject one per stream), whatever the history it streams.
const ExportPage = 1000

// ExportRole is how an event names the person a subject access export is
// for.
type ExportRole string

// Export roles, in the order ExportedEvent.Roles lists them.
const (
	// RoleSubject: the event is about the person (a user event whose
	// user_id is theirs).
	RoleSubject ExportRole = "subject"
	// RoleActor: the person acted (actor_id is theirs), on their own
	// account, another account or a project.
	RoleActor ExportRole = "actor"
	// RoleMentioned: additional names the person under a key that names
	// an account (class person_ref, the tag's own or catalog-wide);
	// ExportedEvent.MentionedAs says which keys.
	RoleMentioned ExportRole = "mentioned"
)

// ExportedEvent is one line of ExportSubject: the whole event, with every
// field the database holds, and how it names the person.
type ExportedEvent struct {
	Event
	// Roles are the person's roles in the event: at least one, each once,
	// in the order subject, actor, mentioned.
	Roles []ExportRole `json:"roles"`
	// MentionedAs are the keys of additional whose value is the person
	// (sorted), when Roles holds "mentioned"; left out otherwise.
	MentionedAs []string `json:"mentioned_as,omitempty"`
}

// ExportSubject writes, as JSON Lines, every event that names a person,
// for a subject access request (GDPR art. 15), and returns how many it
// wrote. An event names the person as its subject (their own user
// events), as its actor (other accounts' user events they acted on, such
// as an admin changing someone's e-mail address, and project events) or
// as a mention (additional holds their id under a person_ref key, the
// keys erasure replaces, in any user or project event). Each line is one
// ExportedEvent:
//
//	{"id":42,"model":"project","time":"…","tag":"project:role:add","project_id":"demo",
//	 "actor_id":"bob",…,"additional":{"role":"Owner","target_user":"alice"},
//	 "roles":["mentioned"],"mentioned_as":["target_user"]}
//
// that is, the Event's fields (as the readers return them) and "roles",
// with "mentioned_as" when the person is mentioned. Each event comes once,
// whatever the roles it gives the person, and the lines run newest first
// across both models ((time, id), the timeline the ids share). User events
// are read inside the retention window only: those outside it are gone by
// promise, whatever retention has yet to drop. Project events are kept
// forever and read whatever their age.
//
// The lines hold every stored field, also of other people: in an event
// the person is the subject of or mentioned in, the IP address, user
// agent, location and personal keys are those of whoever acted, and
// hidden_from_subject keys are there too. It is meant for the operator who
// answers the request.
//
// It reads five streams (user events as subject, as actor and mentioning
// the person; project events as actor and mentioning them), each page by
// page with its own keyset, and merges them: it holds at most a page of
// each, whatever the history. No index holds additional's values, so the
// mention streams are scans, of user_events inside the window and of
// project_events, each read once per export whatever the number of
// mentions; see sql/export.sql.
func (l *Log) ExportSubject(ctx context.Context, userID string, w io.Writer) (int, error) {
	if userID == "" {
		return 0, invalid("user_id", ErrEmptySubject, "the person to export is required")
	}
	if err := checkText("user_id", userID, MaxIDBytes); err != nil {
		return 0, err
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	n := 0
	streams := l.exportStreams(userID)
	for {
		var next *exportStream
		for _, s := range streams {
			e, err := s.head(ctx)
			if err != nil {
				return n, unavailable(fmt.Errorf("export %s: %w", userID, err))
			}
			if e != nil && (next == nil || newer(&e.Event, &next.page[0].Event)) {
				next = s
			}
		}
		if next == nil {
			break
		}
		if err := enc.Encode(&next.page[0]); err != nil {
			return n, err
		}
		n++
		next.page = next.page[1:]
	}
	return n, bw.Flush()
}

// exportStream is one of ExportSubject's streams: fetch reads the page
// after a cursor, newest first.
type exportStream struct {
	fetch func(ctx context.Context, after cursor) ([]ExportedEvent, error)
	// page is what is left of the last page read; after is that page's
	// last event, and more whether the page was full (so another may
	// follow).
	page  []ExportedEvent
	after cursor
	more  bool
}

// head returns the stream's newest event not yet written, reading the
// next page when the last one is used up; nil once the stream has ended.
func (s *exportStream) head(ctx context.Context) (*ExportedEvent, error) {
	if len(s.page) == 0 && s.more {
		page, err := s.fetch(ctx, s.after)
		if err != nil {
			return nil, err
		}
		s.page, s.more = page, len(page) == ExportPage
		if len(page) > 0 {
			last := &page[len(page)-1]
			s.after = cursor{time: last.Time, id: last.ID}
		}
	}
	if len(s.page) == 0 {
		return nil, nil
	}
	return &s.page[0], nil
}

// newer reports whether a comes before b in a newest-first timeline.
func newer(a, b *Event) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.After(b.Time)
	}
	return a.ID > b.ID
}

// exportStreams returns ExportSubject's streams for user; the mention
// streams only when the catalog has keys that name an account. The
// streams are disjoint (see sql/export.sql).
func (l *Log) exportStreams(user string) []*exportStream {
	refKeys, refTags := l.registry.accountKeys()
	window := l.windowStart(l.now())
	stream := func(fetch func(ctx context.Context, after cursor) ([]ExportedEvent, error)) *exportStream {
		return &exportStream{fetch: fetch, after: firstPage, more: true}
	}
	size := int32(ExportPage)
	streams := []*exportStream{
		stream(func(ctx context.Context, after cursor) ([]ExportedEvent, error) {
			rows, err := l.q.ExportUserEventsAsSubject(ctx, l.db, db.ExportUserEventsAsSubjectParams{
				RefKeys: refKeys, UserID: user, MinTime: window, BeforeTime: after.time, BeforeID: after.id, Max: size,
			})
			return exported(rows, user, func(r *db.ExportUserEventsAsSubjectRow) (Event, []string) {
				return userEvent(&r.UserEvent), r.MentionedAs
			}), err
		}),
		stream(func(ctx context.Context, after cursor) ([]ExportedEvent, error) {
			rows, err := l.q.ExportUserEventsAsActor(ctx, l.db, db.ExportUserEventsAsActorParams{
				RefKeys: refKeys, UserID: user, MinTime: window, BeforeTime: after.time, BeforeID: after.id, Max: size,
			})
			return exported(rows, user, func(r *db.ExportUserEventsAsActorRow) (Event, []string) {
				return userEvent(&r.UserEvent), r.MentionedAs
			}), err
		}),
		stream(func(ctx context.Context, after cursor) ([]ExportedEvent, error) {
			rows, err := l.q.ExportProjectEventsAsActor(ctx, l.db, db.ExportProjectEventsAsActorParams{
				RefKeys: refKeys, UserID: user, BeforeTime: after.time, BeforeID: after.id, Max: size,
			})
			return exported(rows, user, func(r *db.ExportProjectEventsAsActorRow) (Event, []string) {
				return projectEvent(&r.ProjectEvent), r.MentionedAs
			}), err
		}),
	}
	if len(refTags) == 0 {
		return streams
	}
	return append(streams,
		stream(func(ctx context.Context, after cursor) ([]ExportedEvent, error) {
			rows, err := l.q.ExportUserEventsMentioning(ctx, l.db, db.ExportUserEventsMentioningParams{
				RefKeys: refKeys, UserID: user, RefTags: refTags, MinTime: window, BeforeTime: after.time, BeforeID: after.id, Max: size,
			})
			return exported(rows, user, func(r *db.ExportUserEventsMentioningRow) (Event, []string) {
				return userEvent(&r.UserEvent), r.MentionedAs
			}), err
		}),
		stream(func(ctx context.Context, after cursor) ([]ExportedEvent, error) {
			rows, err := l.q.ExportProjectEventsMentioning(ctx, l.db, db.ExportProjectEventsMentioningParams{
				RefKeys: refKeys, UserID: user, RefTags: refTags, BeforeTime: after.time, BeforeID: after.id, Max: size,
			})
			return exported(rows, user, func(r *db.ExportProjectEventsMentioningRow) (Event, []string) {
				return projectEvent(&r.ProjectEvent), r.MentionedAs
			}), err
		}),
	)
}

// exported converts a stream's rows (conv gives each one's Event and the
// keys that name user) and states user's roles in each.
func exported[T any](rows []T, user string, conv func(*T) (Event, []string)) []ExportedEvent {
	out := make([]ExportedEvent, len(rows))
	for i := range rows {
		e, keys := conv(&rows[i])
		x := ExportedEvent{Event: e}
		if e.Model == ModelUser && e.UserID == user {
			x.Roles = append(x.Roles, RoleSubject)
		}
		if e.ActorID == user {
			x.Roles = append(x.Roles, RoleActor)
		}
		if len(keys) > 0 {
			x.Roles, x.MentionedAs = append(x.Roles, RoleMentioned), keys
		}
		out[i] = x
	}
	return out
}
