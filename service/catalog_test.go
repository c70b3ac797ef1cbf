package service_test

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

// Every built-in catalog loads, and the generic one is DefaultTags: every
// tag constant is in it, with its key classes.
// registryFrom parses a catalog's text and makes its registry.
func registryFrom(t *testing.T, text string) *service.Registry {
	t.Helper()
	c, err := service.ParseCatalog(t.Name(), []byte(text))
	require.NoError(t, err)
	reg, err := c.Registry()
	require.NoError(t, err)
	return reg
}

func TestBuiltinCatalogs(t *testing.T) {
	t.Parallel()
	require.Contains(t, service.BuiltinCatalogs(), "generic")
	for _, name := range service.BuiltinCatalogs() {
		c, err := service.BuiltinCatalog(name)
		require.NoError(t, err, name)
		require.Equal(t, name, c.Name)
		require.Len(t, c.Fingerprint, 16)
		_, err = c.Registry()
		require.NoError(t, err, name)
	}
	reg := service.DefaultRegistry()
	for _, tag := range []string{service.TagLoginSuccess, service.TagAccountEmailAdd, service.TagProjectRoleAdd, service.TagAdminEventsView} {
		_, ok := reg.Lookup(tag)
		require.True(t, ok, tag)
	}
	require.Len(t, service.DefaultTags(), 35)
	class, ok := reg.KeyClass(service.TagAccountEmailAdd, "email")
	require.True(t, ok)
	require.Equal(t, service.KeyPersonal, class)
	class, ok = reg.KeyClass(service.TagProjectRoleAdd, "target_user")
	require.True(t, ok)
	require.Equal(t, service.KeyPersonRef, class)
	_, ok = reg.KeyClass(service.TagProjectRoleAdd, "something_else")
	require.False(t, ok, "a key the catalog does not know has no class")
	_, err := service.BuiltinCatalog("nope")
	require.ErrorContains(t, err, "no built-in catalog")
}

// A catalog file with mistakes is refused whole, and each mistake names
// the file, its line and its tag.
func TestCatalogErrorsNameFileLineAndTag(t *testing.T) {
	t.Parallel()
	path := dbtest.WriteFile(t, "catalog.yaml", `catalog: shop
version: 1
colour: blue
keys:
  geoip_info: personal
  card: secret
tags:
  order:cart:add:
    model: user
    description: "Added {item} to the cart"
    keys:
      item: public
  order:cart:pay:
    model: customer
    description: "Paid"
  order:cart:refund:
    model: user
    description: "Refunded to {card_last4}"
    keys:
      card_last4: personal
  order:cart:note:
    model: user
    description: "Noted {text}"
  Order:Bad:
    model: user
    description: "x"
  order:cart:size:
    model: user
    description: "Resized"
    colour: red
`)
	_, err := service.LoadCatalog(path)
	require.Error(t, err)
	var all []*service.CatalogError
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ce *service.CatalogError
		require.True(t, errors.As(e, &ce), "%v", e)
		require.Equal(t, path, ce.File)
		require.Positive(t, ce.Line)
		all = append(all, ce)
	}
	got := map[string]string{}
	for _, ce := range all {
		got[strings.TrimPrefix(ce.Error(), path+":")] = ce.Tag
	}
	want := []string{
		`3: unknown field "colour"`,
		`6: key card: class "secret" is not one of public, personal, person_ref, hidden_from_subject`,
		`14: tag order:cart:pay: model "customer" is not one of user, project, organization, team`,
		`18: tag order:cart:refund: the description names "card_last4", a personal key`,
		`23: tag order:cart:note: the description names "text", which has no class`,
		`24: tag Order:Bad: not a tag`,
		`30: tag order:cart:size: unknown field "colour"`,
	}
	require.Len(t, all, len(want), "%v", err)
	for _, w := range want {
		found := false
		for msg := range got {
			found = found || strings.HasPrefix(msg, w)
		}
		require.True(t, found, "missing %q in:\n%v", w, err)
	}

	_, err = service.LoadCatalog(dbtest.WriteFile(t, "catalog.yaml", "catalog: x\nversion: 1\ntags:\n  a:b:c:\n    model: user\n    description: d\n  a:b:c:\n    model: user\n    description: e\n"))
	require.ErrorContains(t, err, `:7: "a:b:c" listed twice`)
	_, err = service.LoadCatalog(dbtest.WriteFile(t, "catalog.yaml", "catalog: x\nversion: 2\ntags:\n  a:b:c:\n    model: user\n    description: d\n"))
	require.ErrorContains(t, err, ":2: version 2 is not supported")
}

// A catalog from a file drives recording and key classes: its own tags
// and catalog-wide classes, a retired tag stays readable but is no longer
// recorded, and Go registrations still work beside it.
func TestCatalogFromFile(t *testing.T) {
	t.Parallel()
	path := dbtest.WriteFile(t, "catalog.yaml", `catalog: shop
version: 1
keys:
  geoip_info: personal
tags:
  order:cart:add:
    model: user
    description: "Added {item} to the cart"
    keys:
      item: public
      buyer_note: personal
  order:cart:legacy:
    model: user
    description: "An old kind of event"
    retired: true
  shop:listing:create:
    model: project
    description: "Listed {title}"
    keys:
      title: public
      seller: person_ref
`)
	c, err := service.LoadCatalog(path)
	require.NoError(t, err)
	require.Equal(t, "shop", c.Name)
	reg, err := c.Registry()
	require.NoError(t, err)
	class, ok := reg.KeyClass("order:cart:add", "geoip_info")
	require.True(t, ok)
	require.Equal(t, service.KeyPersonal, class, "catalog-wide")
	class, _ = reg.KeyClass("shop:listing:create", "seller")
	require.Equal(t, service.KeyPersonRef, class)
	for _, tag := range service.OwnTags {
		spec, ok := reg.Lookup(tag)
		require.True(t, ok, "%s: a catalog that does not declare auditlog's own tags gets them", tag)
		require.NotEmpty(t, spec.Description)
	}
	require.NoError(t, reg.Register(service.TagSpec{Tag: "order:cart:remove", Model: service.ModelUser, Description: "Removed {item}",
		Keys: map[string]service.KeyClass{"item": service.KeyPublic}}))

	tx := dbtest.Tx(t)
	log := dbtest.Must(service.New(tx, &service.Opts{Registry: reg}))
	e, err := log.RecordUser(t.Context(), service.EventParams{Tag: "order:cart:add", Subject: "u",
		Additional: json.RawMessage(`{"item": "a lamp", "buyer_note": "by Friday"}`)})
	require.NoError(t, err)
	require.Equal(t, "Added a lamp to the cart", e.Description)
	_, err = log.RecordUser(t.Context(), service.EventParams{Tag: "order:cart:remove", Subject: "u", Additional: json.RawMessage(`{"item": "x"}`)})
	require.NoError(t, err, "a Go registration beside the file")
	_, err = log.RecordUser(t.Context(), service.EventParams{Tag: "order:cart:legacy", Subject: "u"})
	require.ErrorIs(t, err, service.ErrRetiredTag)
	var ve *service.ValidationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "tag", ve.Field)

	// Replacing a tag changes what new events say; retiring one stops it.
	require.NoError(t, reg.Replace(service.TagSpec{Tag: "order:cart:add", Model: service.ModelUser, Description: "Put {item} in the cart",
		Keys: map[string]service.KeyClass{"item": service.KeyPublic}}))
	e, err = log.RecordUser(t.Context(), service.EventParams{Tag: "order:cart:add", Subject: "u", Additional: json.RawMessage(`{"item": "a rug"}`)})
	require.NoError(t, err)
	require.Equal(t, "Put a rug in the cart", e.Description)
	require.NoError(t, reg.Retire("order:cart:add"))
	_, err = log.RecordUser(t.Context(), service.EventParams{Tag: "order:cart:add", Subject: "u", Additional: json.RawMessage(`{"item": "a rug"}`)})
	require.ErrorIs(t, err, service.ErrRetiredTag)
	page, err := log.UserEvents(t.Context(), "u", service.ListOpts{})
	require.NoError(t, err)
	require.Len(t, page.Events, 3, "a retired tag's events stay readable")
	require.Error(t, reg.Retire("no:such:tag"))
}

// fallbackCounter counts description fallbacks by tag.
type fallbackCounter struct {
	mu  sync.Mutex
	got map[string]int
}

func (c *fallbackCounter) Recorded(service.Model, string, int)  {}
func (c *fallbackCounter) Rejected(string)                      {}
func (c *fallbackCounter) PartitionDropped(string)              {}
func (c *fallbackCounter) ErasureFinished(time.Duration, error) {}
func (c *fallbackCounter) DescriptionFallback(tag string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got[tag] += n
}

// A description never refuses an event: one that lacks a required value
// is recorded with a fallback sentence and counted, one by one and in
// bulk; value maps come from the catalog's maps.
func TestDescriptionFallbackIsRecordedAndCounted(t *testing.T) {
	t.Parallel()
	reg := registryFrom(t, `catalog: t
version: 1
maps:
  reason:
    invalid_password: incorrect password
tags:
  account:login:failure:
    model: user
    description: "Failed sign-in[ ({reason|map:reason})]"
    keys:
      reason: public
  project:release:add:
    model: project
    description: "Released version {version}"
    keys:
      version: public
`)
	counter := &fallbackCounter{got: map[string]int{}}
	tx := dbtest.Tx(t)
	log := dbtest.Must(service.New(tx, &service.Opts{Registry: reg, Observer: counter}))
	e, err := log.RecordUser(t.Context(), service.EventParams{Tag: "account:login:failure", Subject: "u", Additional: json.RawMessage(`{"reason": "invalid_password"}`)})
	require.NoError(t, err)
	require.Equal(t, "Failed sign-in (incorrect password)", e.Description)
	e, err = log.RecordUser(t.Context(), service.EventParams{Tag: "account:login:failure", Subject: "u"})
	require.NoError(t, err)
	require.Equal(t, "Failed sign-in", e.Description, "an optional part is left out, no fallback")
	e, err = log.RecordProject(t.Context(), service.EventParams{Tag: "project:release:add", Subject: "p"})
	require.NoError(t, err, "a missing value is no reason to refuse an event")
	require.Equal(t, "Released version (unknown)", e.Description)
	n, err := log.RecordProjectMany(t.Context(), []service.EventParams{
		{Tag: "project:release:add", Subject: "p", Additional: json.RawMessage(`{"version": "1"}`)},
		{Tag: "project:release:add", Subject: "p"}, {Tag: "project:release:add", Subject: "p", Additional: json.RawMessage(`{"v": 2}`)},
	})
	require.NoError(t, err)
	require.EqualValues(t, 3, n)
	require.Equal(t, map[string]int{"project:release:add": 3}, counter.got)

	_, err = service.ParseCatalog("bad", []byte("catalog: t\nversion: 1\ntags:\n  a:b:c:\n    model: user\n    description: \"{r|map:nope}\"\n    keys:\n      r: public\n"))
	require.ErrorContains(t, err, `bad:6: tag a:b:c: description: {r|map:nope}: no value map "nope"`)
}

// Erasure removes the catalog-wide personal keys from the events the
// person acted in, also of a tag the catalog no longer holds, and
// verification counts them.
func TestErasureRemovesCatalogWidePersonalKeys(t *testing.T) {
	t.Parallel()
	reg := registryFrom(t, `catalog: wide
version: 1
keys:
  geoip_info: personal
tags:
  project:release:add:
    model: project
    description: "Released version {version}"
    keys:
      version: public
`)
	f := dbtest.NewFixture(t, dbtest.FixtureOpts{Opts: service.Opts{Registry: reg}, Jobs: true})
	// An event of a tag this catalog does not hold, recorded by an
	// older one.
	older := dbtest.Must(service.New(f.Pool, nil))
	require.NoError(t, older.Registry().Register(service.TagSpec{Tag: "project:note:add", Model: service.ModelProject, Description: "Added a note"}))
	for _, tag := range []string{"project:release:add", "project:note:add"} {
		_, err := older.RecordProject(f.Ctx, service.EventParams{Tag: tag, Subject: "p", ActorID: "alice",
			Additional: json.RawMessage(`{"version": "1", "geoip_info": {"city": "Berlin"}}`)})
		require.NoError(t, err)
	}
	req, _, err := f.Log.RequestErasure(f.Ctx, service.ErasureParams{UserID: "alice", Reason: "asked"})
	require.NoError(t, err)
	v, err := f.Log.VerifyErasure(f.Ctx, req.ID)
	require.NoError(t, err)
	require.EqualValues(t, 2, v.ProjectEventsPersonal, "both events still hold geoip_info")
	_, err = f.Log.RunErasure(f.Ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	require.Zero(t, dbtest.Count(t, f.Pool, "SELECT count(*) FROM project_events WHERE additional ? 'geoip_info'"))
	require.Equal(t, 2, dbtest.Count(t, f.Pool, "SELECT count(*) FROM project_events WHERE additional ->> 'version' = '1'"), "the rest stays")
	v, err = f.Log.VerifyErasure(f.Ctx, req.ID)
	require.NoError(t, err)
	require.True(t, v.Clean, "%v", v.Problems)
}

// The loader refuses what would silently change a class or a sentence: a
// key repeated in a mapping, a second YAML document, optional parts nested
// too deep; Go registrations follow the catalog-wide classes.
func TestCatalogRefusesSilentRewrites(t *testing.T) {
	t.Parallel()
	base := "catalog: t\nversion: 1\nkeys:\n  geoip_info: personal\n  geoip_info: public\ntags:\n  a:b:c:\n    model: user\n    description: d\n"
	_, err := service.ParseCatalog("dup", []byte(base))
	require.ErrorContains(t, err, `dup:5: "geoip_info" listed twice`)
	_, err = service.ParseCatalog("two", []byte("catalog: t\nversion: 1\ntags:\n  a:b:c:\n    model: user\n    description: d\n---\ncatalog: u\n"))
	require.ErrorContains(t, err, "one YAML document")
	_, err = service.ParseCatalog("deep", []byte("catalog: t\nversion: 1\ntags:\n  a:b:c:\n    model: user\n    description: \"[[[[[[[[[[x]]]]]]]]]]\"\n"))
	require.ErrorContains(t, err, "nested deeper than 8")

	c, err := service.ParseCatalog("t", []byte("catalog: t\nversion: 1\nkeys:\n  geoip_info: personal\nmaps:\n  primary:\n    \"false\": a secondary address\ntags:\n  a:b:c:\n    model: user\n    description: \"Verified {primary|map:primary}\"\n    keys:\n      primary: public\n"))
	require.NoError(t, err)
	reg, err := c.Registry()
	require.NoError(t, err)
	desc, err := reg.Describe("a:b:c", json.RawMessage(`{"primary": false}`))
	require.NoError(t, err)
	require.Equal(t, "Verified a secondary address", desc, "a boolean is looked up by its JSON text")
	err = reg.Register(service.TagSpec{Tag: "a:b:d", Model: service.ModelUser, Description: "From {geoip_info}"})
	require.ErrorContains(t, err, "personal key", "a catalog-wide personal key cannot reach a description")
	require.NoError(t, reg.Register(service.TagSpec{Tag: "a:b:e", Model: service.ModelUser, Description: "Did {what}"}))
	class, ok := reg.KeyClass("a:b:e", "what")
	require.True(t, ok)
	require.Equal(t, service.KeyPublic, class, "a key a description shows is public")

	other, err := service.ParseCatalog("t", []byte("catalog: t\nversion: 1\nkeys:\n  geoip_info: personal\nmaps:\n  primary:\n    \"false\": another address\ntags:\n  a:b:c:\n    model: user\n    description: \"Verified {primary|map:primary}\"\n    keys:\n      primary: public\n"))
	require.NoError(t, err)
	require.NotEqual(t, c.Fingerprint, other.Fingerprint, "the value maps count")
}

// Erasing a person removes their name wherever an event names them as an
// account (person_ref), whoever the event is about or by, in additional
// and in its description; verification checks it and fails on a mention
// left behind.
func TestErasureRemovesMentions(t *testing.T) {
	t.Parallel()
	reg := registryFrom(t, `catalog: mentions
version: 1
keys:
  submitted_by: person_ref
tags:
  project:role:add:
    model: project
    description: "Gave {target_user|person} the {role} role"
    keys:
      target_user: person_ref
      role: public
  account:team:join:
    model: user
    description: "Joined a team[ invited by {inviter}]"
    keys:
      inviter: person_ref
`)
	f := dbtest.NewFixture(t, dbtest.FixtureOpts{Opts: service.Opts{Registry: reg}, Jobs: true})
	record := func(model service.Model, p service.EventParams) {
		t.Helper()
		f.Record(t, model, p)
	}
	record(service.ModelProject, service.EventParams{Tag: "project:role:add", Subject: "p", ActorID: "bob",
		Additional: json.RawMessage(`{"target_user": "alice", "role": "Owner", "submitted_by": "alice"}`)})
	record(service.ModelProject, service.EventParams{Tag: "project:role:add", Subject: "p", ActorID: "bob",
		Additional: json.RawMessage(`{"target_user": "carol", "role": "Maintainer"}`)})
	record(service.ModelUser, service.EventParams{Tag: "account:team:join", Subject: "carol", ActorID: "carol",
		Additional: json.RawMessage(`{"inviter": "alice"}`)})

	req, _, err := f.Log.RequestErasure(f.Ctx, service.ErasureParams{UserID: "alice", Reason: "asked"})
	require.NoError(t, err)
	v, err := f.Log.VerifyErasure(f.Ctx, req.ID)
	require.NoError(t, err)
	require.EqualValues(t, 2, v.MentionsLeft, "the role and the invitation name alice")
	_, err = f.Log.RunErasure(f.Ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)

	texts := func(sql string) []string {
		rows, err := f.Pool.Query(f.Ctx, sql)
		require.NoError(t, err)
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return out
	}
	require.Equal(t, []string{"Gave [erased] the Owner role", "Gave carol the Maintainer role"},
		texts("SELECT description FROM project_events ORDER BY description"))
	require.Equal(t, []string{`{"role": "Owner", "target_user": "[erased]", "submitted_by": "[erased]"}`, `{"role": "Maintainer", "target_user": "carol"}`},
		texts("SELECT additional::text FROM project_events ORDER BY description"))
	require.Equal(t, []string{"Joined a team invited by [erased]"}, texts("SELECT description FROM user_events WHERE user_id = 'carol'"))
	require.Empty(t, texts("SELECT tag FROM user_events WHERE additional::text LIKE '%alice%' OR description LIKE '%alice%' UNION ALL "+
		"SELECT tag FROM project_events WHERE additional::text LIKE '%alice%' OR description LIKE '%alice%'"), "alice is named nowhere")
	v, err = f.Log.VerifyErasure(f.Ctx, req.ID)
	require.NoError(t, err)
	require.True(t, v.Clean, "%v", v.Problems)

	// A mention written behind the service's back is found.
	_, err = f.Pool.Exec(f.Ctx, `INSERT INTO project_events (time, tag, project_id, description, additional)
		VALUES (now(), 'project:role:add', 'q', 'Gave alice the Owner role', '{"target_user": "alice", "role": "Owner"}')`)
	require.NoError(t, err)
	v, err = f.Log.VerifyErasure(f.Ctx, req.ID)
	require.NoError(t, err)
	require.False(t, v.Clean)
	require.EqualValues(t, 1, v.MentionsLeft)
	require.Contains(t, strings.Join(v.Problems, "; "), "project_events holds 1 events naming the person as an account")
}
