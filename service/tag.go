package service

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Model says what kind of subject a tag's events are about: an account
// (the one time-limited model) or one of the subjects whose history is
// kept forever.
type Model string

const (
	// ModelUser events are about an account and hold personal data; they
	// are stored in user_events and expire after the retention window.
	ModelUser Model = "user"
	// ModelProject events are a project's history (its files' events
	// included), stored in project_events and kept forever.
	ModelProject Model = "project"
	// ModelOrganization events are an organization's history, kept
	// forever like project events (in project_events, subject_kind
	// 'organization').
	ModelOrganization Model = "organization"
	// ModelTeam events are the history of a team of an organization, kept
	// forever (in project_events, subject_kind 'team'). A team's subject
	// id is its organization's id, '/', and the team's own id (TeamSubject),
	// so the organization's owners can be told from the id alone.
	ModelTeam Model = "team"
)

// Models lists every model, the user model first.
var Models = []Model{ModelUser, ModelProject, ModelOrganization, ModelTeam}

// Valid reports whether m is one of Models.
func (m Model) Valid() bool {
	return m == ModelUser || m == ModelProject || m == ModelOrganization || m == ModelTeam
}

// SubjectField is the field naming an event's subject in this model: the
// JSON name in events, ingest and import, and the field a
// *ValidationError about the subject names.
func (m Model) SubjectField() string {
	switch m {
	case ModelProject:
		return "project_id"
	case ModelOrganization:
		return "organization_id"
	case ModelTeam:
		return "team_id"
	}
	return "user_id"
}

// TeamSubject is the subject id of a team's events: "ORG/TEAM".
func TeamSubject(org, team string) string { return org + "/" + team }

// SplitTeamSubject splits a team's subject id into its organization's id
// and the team's own; ok is false when subject is not "ORG/TEAM" with
// both parts non-empty and no second '/'.
func SplitTeamSubject(subject string) (org, team string, ok bool) {
	org, team, ok = strings.Cut(subject, "/")
	return org, team, ok && org != "" && team != "" && !strings.Contains(team, "/")
}

func modelNames() string {
	names := make([]string, len(Models))
	for i, m := range Models {
		names[i] = string(m)
	}
	return strings.Join(names, ", ")
}

// MaxTagBytes is the longest tag accepted.
const MaxTagBytes = 128

// tagByte reports whether c may appear in a tag segment.
func tagByte(c byte) bool {
	return ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || c == '_' || c == '-'
}

// validTag reports whether tag has 2 to 5 non-empty segments of tagByte
// separated by ':'. (A hand-written loop: it runs for every event of a
// bulk ingest.)
func validTag(tag string) bool {
	if len(tag) == 0 || len(tag) > MaxTagBytes {
		return false
	}
	segments, segLen := 1, 0
	for i := 0; i < len(tag); i++ {
		switch c := tag[i]; {
		case c == ':':
			if segLen == 0 {
				return false
			}
			segments, segLen = segments+1, 0
		case tagByte(c):
			segLen++
		default:
			return false
		}
	}
	return segLen > 0 && segments >= 2 && segments <= 5
}

// validTagPrefix reports whether p could begin a tag.
func validTagPrefix(p string) bool {
	if len(p) == 0 || len(p) > MaxTagBytes {
		return false
	}
	for i := 0; i < len(p); i++ {
		if !tagByte(p[i]) && p[i] != ':' {
			return false
		}
	}
	return true
}

// TagSpec registers one event type.
type TagSpec struct {
	// Tag names the event, source:subject:action, as Warehouse does
	// ("account:login:success", "project:release:add").
	Tag string
	// Model is the table the event goes to.
	Model Model
	// Description is the human description template (docs/catalog.md): a
	// placeholder such as {version} is replaced by that key of the event's
	// additional data when the event is recorded, {key|filter} formats it,
	// and [ ... ] is a part shown only when its values are there. An event
	// lacking a required value is recorded with a fallback sentence and
	// counted (Observer.DescriptionFallback), never refused. Placeholders
	// may not name personal or hidden_from_subject keys (the tag's own or
	// catalog-wide); a key they name that has no class is public, as the
	// description shows it to everyone who sees the event.
	Description string
	// PersonalKeys are the keys of additional that hold personal data
	// (an e-mail address, a phone number). They are hidden from the public
	// and removed by erasure. The same as KeyPersonal in Keys.
	PersonalKeys []string
	// Keys gives the class of each key of additional the tag sends (see
	// KeyClass); a key neither here nor in the catalog-wide classes is
	// shown to admins and the person the event is about only.
	Keys map[string]KeyClass
	// Retired tags stay readable (their events are shown and erased as
	// before) but are no longer recorded: recording one is
	// ErrRetiredTag.
	Retired bool
	// Example is an additional object shaped as the service sends it for
	// this tag (a catalog file's example:), for people reading the
	// catalog and for tests that record every tag; nil when none. It
	// plays no part in recording, showing or erasing.
	Example json.RawMessage
}

// tagEntry is a registered spec with its parsed template.
type tagEntry struct {
	spec TagSpec
	keys map[string]KeyClass // Keys and PersonalKeys together
	desc *template
	// refs are the person_ref keys the description names (its own class
	// or catalog-wide): those an audience that may not see accounts reads
	// as "someone".
	refs []string
}

// Registry maps tags to their specs. It is safe for concurrent use.
type Registry struct {
	mu   sync.RWMutex
	tags map[string]*tagEntry
	// keys are the catalog-wide key classes.
	keys map[string]KeyClass
	// maps are the catalog's value maps (the map:NAME filter).
	maps    map[string]map[string]string
	catalog *Catalog
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{tags: make(map[string]*tagEntry)}
}

// DefaultRegistry returns a new registry holding the generic catalog
// (DefaultTags and its key classes).
func DefaultRegistry() *Registry {
	c, err := BuiltinCatalog("generic")
	if err != nil {
		panic(err) // compiled in and tested
	}
	r, err := c.Registry()
	if err != nil {
		panic(err)
	}
	return r
}

// Register adds event types. It fails without registering any of them
// when a tag is malformed or already registered, the model is unknown, or
// the description names a personal key.
func (r *Registry) Register(specs ...TagSpec) error {
	entries := make([]*tagEntry, 0, len(specs))
	seen := make(map[string]bool, len(specs))
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, spec := range specs {
		e, err := newTagEntry(spec, r.maps, r.keys)
		if err != nil {
			return err
		}
		if _, dup := r.tags[spec.Tag]; dup || seen[spec.Tag] {
			return fmt.Errorf("register %s: already registered", spec.Tag)
		}
		seen[spec.Tag] = true
		entries = append(entries, e)
	}
	for _, e := range entries {
		r.tags[e.spec.Tag] = e
	}
	return nil
}

// Replace puts spec in place of the registered spec of its tag (or adds
// it): events already recorded keep their stored description; new ones
// follow spec.
func (r *Registry) Replace(spec TagSpec) error {
	e, err := newTagEntry(spec, r.maps, r.keys)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tags[spec.Tag] = e
	return nil
}

// Retire marks tag retired: still readable and erasable, no longer
// recordable (ErrRetiredTag).
func (r *Registry) Retire(tag string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.tags[tag]
	if !ok {
		return fmt.Errorf("retire %s: not registered", tag)
	}
	retired := *e
	retired.spec.Retired = true
	r.tags[tag] = &retired
	return nil
}

// MustRegister is Register that panics on error, for registrations made
// at start-up.
func (r *Registry) MustRegister(specs ...TagSpec) {
	if err := r.Register(specs...); err != nil {
		panic(err)
	}
}

// Lookup returns the spec registered for tag.
func (r *Registry) Lookup(tag string) (TagSpec, bool) {
	e := r.entry(tag)
	if e == nil {
		return TagSpec{}, false
	}
	return e.spec.clone(), true
}

// clone is s with its own copies of its slices and maps, so a caller
// cannot change the registry's.
func (s TagSpec) clone() TagSpec {
	s.PersonalKeys, s.Keys = slices.Clone(s.PersonalKeys), maps.Clone(s.Keys)
	return s
}

// Tags returns every registered spec, sorted by tag.
func (r *Registry) Tags() []TagSpec {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]TagSpec, 0, len(r.tags))
	for _, e := range r.tags {
		out = append(out, e.spec.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tag < out[j].Tag })
	return out
}

func (r *Registry) entry(tag string) *tagEntry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.tags[tag]
}

func newTagEntry(spec TagSpec, valueMaps map[string]map[string]string, shared map[string]KeyClass) (*tagEntry, error) {
	if err := checkTag(spec.Tag); err != nil {
		return nil, fmt.Errorf("register %q: %w", spec.Tag, err)
	}
	if !spec.Model.Valid() {
		return nil, fmt.Errorf("register %s: unknown model %q (one of %s)", spec.Tag, spec.Model, modelNames())
	}
	if strings.TrimSpace(spec.Description) == "" {
		return nil, fmt.Errorf("register %s: empty description", spec.Tag)
	}
	e := &tagEntry{spec: spec, keys: maps.Clone(spec.Keys)}
	e.spec.PersonalKeys = slices.Clone(spec.PersonalKeys)
	e.spec.Keys = maps.Clone(spec.Keys)
	if e.keys == nil {
		e.keys = map[string]KeyClass{}
	}
	for k, c := range e.keys {
		if !c.valid() {
			return nil, fmt.Errorf("register %s: key %s: unknown class %q", spec.Tag, k, c)
		}
	}
	for _, k := range spec.PersonalKeys {
		e.keys[k] = KeyPersonal
	}
	t, err := parseTemplate(spec.Description, valueMaps)
	if err != nil {
		return nil, fmt.Errorf("register %s: description: %w", spec.Tag, err)
	}
	for _, key := range t.keys {
		c, ok := e.keys[key]
		if !ok {
			c, ok = shared[key]
		}
		switch {
		case c == KeyPersonal || c == KeyHiddenFromSubject:
			return nil, fmt.Errorf("register %s: description names %s key %q", spec.Tag, c, key)
		case !ok:
			// Shown in the description to everyone who sees the event,
			// so shown in additional alike.
			e.keys[key] = KeyPublic
		case c == KeyPersonRef:
			e.refs = append(e.refs, key)
		}
	}
	e.desc = t
	return e, nil
}

func checkTag(tag string) error {
	if !validTag(tag) {
		return invalid("tag", ErrMalformedTag, "%q is not source:subject:action in a-z, 0-9, '_' and '-'", tag)
	}
	return nil
}

// Describe renders the description tag's template gives for additional,
// as recording would store it. A required value that additional lacks
// gives the fallback sentence, never an error; only an unknown tag or
// additional that is not a JSON object is.
func (r *Registry) Describe(tag string, additional json.RawMessage) (string, error) {
	e := r.entry(tag)
	if e == nil {
		return "", invalid("tag", ErrUnknownTag, "%q is not registered", tag)
	}
	if len(additional) == 0 {
		additional = emptyObject
	}
	desc, _, err := e.render(additional)
	return desc, err
}

// someone stands for an account in a description shown to an audience
// that may not see who it is.
const someone = "someone"

// DescribeWithoutAccounts renders tag's description for an audience that
// may not see the accounts an event names (its person_ref keys): each one
// the description names reads "someone". ok is false when the stored
// description may be shown as it is: the description names no such key
// (or the tag is not registered).
func (r *Registry) DescribeWithoutAccounts(tag string, additional json.RawMessage) (desc string, ok bool) {
	return r.DescribeWithNames(tag, additional, func(string) string { return someone })
}

// DescribeWithNames renders tag's description with each account its
// person_ref keys name (a string value) replaced by name(account); an
// empty name leaves the account as stored. ok is false when the stored
// description may be shown as it is: the description names no such key
// (or the tag is not registered, or additional is not an object).
func (r *Registry) DescribeWithNames(tag string, additional json.RawMessage, name func(account string) string) (desc string, ok bool) {
	e := r.entry(tag)
	if e == nil || len(e.refs) == 0 {
		return "", false
	}
	values, err := decodeObject(additional)
	if err != nil {
		return "", false
	}
	for _, k := range e.refs {
		if v, named := values[k]; named {
			if s, isText := v.(string); !isText {
				values[k] = someone
			} else if n := name(s); n != "" {
				values[k] = n
			}
		}
	}
	desc, _ = e.desc.render(values)
	return desc, true
}

// AccountsNamed lists the accounts (string values) that tag's description
// names through person_ref keys in additional, in key order; nil when it
// names none.
func (r *Registry) AccountsNamed(tag string, additional json.RawMessage) []string {
	e := r.entry(tag)
	if e == nil || len(e.refs) == 0 {
		return nil
	}
	values, err := decodeObject(additional)
	if err != nil {
		return nil
	}
	var out []string
	for _, k := range e.refs {
		if s, ok := values[k].(string); ok && s != "" {
			out = append(out, s)
		}
	}
	return out
}

// decodeObject decodes additional (a JSON object) with its numbers as
// written (json.Number): additional may hold any number PostgreSQL's
// numeric takes, such as 1e1000, which float64 cannot.
func decodeObject(additional json.RawMessage) (map[string]any, error) {
	if len(additional) == 0 {
		return map[string]any{}, nil
	}
	var values map[string]any
	dec := json.NewDecoder(bytes.NewReader(additional))
	dec.UseNumber()
	if err := dec.Decode(&values); err != nil || values == nil {
		return nil, invalid("additional", ErrInvalidAdditional, "not a JSON object")
	}
	return values, nil
}

// render fills the description template from the event's additional
// object; complete is false when the sentence is a fallback (a required
// value was missing). It decodes additional only when the template has
// placeholders; the decoding also proves it a JSON object.
func (e *tagEntry) render(additional json.RawMessage) (desc string, complete bool, err error) {
	if len(e.desc.keys) == 0 {
		text, _ := e.desc.render(nil)
		return text, true, nil
	}
	values, err := decodeObject(additional)
	if err != nil {
		return "", false, err
	}
	desc, complete = e.desc.render(values)
	return desc, complete, nil
}

// The default registry's tags (DefaultTags), for Go code that records or
// recognises one of them by name.
const (
	TagAccountCreate                 = "account:create"
	TagLoginSuccess                  = "account:login:success"
	TagLoginFailure                  = "account:login:failure"
	TagLoginNewLocation              = "account:login:new_location"
	TagLoginFailureBurst             = "account:login:failure_burst"
	TagAccountEmailAdd               = "account:email:add"
	TagAccountEmailRemove            = "account:email:remove"
	TagAccountEmailPrimaryChange     = "account:email:primary:change"
	TagAccountEmailReverify          = "account:email:reverify"
	TagAccountPasswordChange         = "account:password:change"
	TagAccountPasswordResetRequest   = "account:password:reset:request"
	TagAccountPasswordReset          = "account:password:reset"
	TagAccountTwoFactorMethodAdded   = "account:two_factor:method_added"
	TagAccountTwoFactorMethodRemoved = "account:two_factor:method_removed"
	TagAccountRecoveryCodesGenerated = "account:recovery_codes:generated"
	TagAccountRecoveryCodesUsed      = "account:recovery_codes:used"
	TagAccountAPITokenAdded          = "account:api_token:added"
	TagAccountAPITokenRemoved        = "account:api_token:removed"
	TagAdminEventsView               = "admin:events:view"
	TagAdminHoldPlaced               = "admin:hold:placed"
	TagAdminHoldReleased             = "admin:hold:released"
	TagAdminImport                   = "admin:import"
	TagProjectCreate                 = "project:create"
	TagProjectReleaseAdd             = "project:release:add"
	TagProjectReleaseRemove          = "project:release:remove"
	TagProjectReleaseYank            = "project:release:yank"
	TagProjectReleaseUnyank          = "project:release:unyank"
	TagProjectRoleAdd                = "project:role:add"
	TagProjectRoleRemove             = "project:role:remove"
	TagProjectRoleChange             = "project:role:change"
	TagProjectRoleInvite             = "project:role:invite"
	TagProjectAPITokenAdded          = "project:api_token:added"
	TagProjectAPITokenRemoved        = "project:api_token:removed"
)

// DefaultTags returns the event types of the generic catalog
// (service/catalogs/generic.yaml), which DefaultRegistry holds:
// Warehouse's 2019 starting set, sign-in outcomes and new locations, API
// tokens, two-factor changes, and project roles, releases, tokens and
// trusted publishers.
func DefaultTags() []TagSpec {
	return DefaultRegistry().Tags()
}
