package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/auditlog/auditlog/db"
)

// KeyClass says who may see a key of an event's additional data and when
// it goes away. A key whose class is not known is shown to admins and to
// the person the event is about only.
type KeyClass string

// Key classes.
const (
	// KeyPublic may be seen by whoever may see the event.
	KeyPublic KeyClass = "public"
	// KeyPersonal is personal data of the person who acted (an email
	// address, a device): hidden from the public and maintainers, removed
	// by that person's erasure.
	KeyPersonal KeyClass = "personal"
	// KeyPersonRef names an account (a collaborator added, the admin who
	// acted): hidden from the public.
	KeyPersonRef KeyClass = "person_ref"
	// KeyHiddenFromSubject is kept from the person the event is about
	// (which administrator removed their token): admins see it.
	KeyHiddenFromSubject KeyClass = "hidden_from_subject"
)

func (c KeyClass) valid() bool {
	switch c {
	case KeyPublic, KeyPersonal, KeyPersonRef, KeyHiddenFromSubject:
		return true
	}
	return false
}

// CatalogVersion is the catalog file format this package reads.
const CatalogVersion = 1

// MaxCatalogBytes bounds a catalog file (the package-index one is about
// 60 KiB).
const MaxCatalogBytes = 4 << 20

// Catalog is a set of event types read from a catalog file (YAML; see
// docs/catalog.md): the tags with their model, description and key
// classes, and classes for keys many tags share.
type Catalog struct {
	// Name is the catalog's name ("generic", "package-index", a file's own).
	Name        string
	Description string
	// Source is where it was read: a file path, or "builtin:NAME".
	Source string
	// Fingerprint identifies the catalog's content (Registry.Fingerprint
	// of a registry made from it): two processes that disagree about it do
	// not record and show events alike.
	Fingerprint string
	// Keys are the classes of keys any tag may send, unless the tag says
	// otherwise (geoip_info is personal everywhere).
	Keys map[string]KeyClass
	// Maps are the value maps descriptions may use ({reason|map:NAME}):
	// NAME → value → the words shown.
	Maps map[string]map[string]string
	// Tags are the event types, in the file's order.
	Tags []TagSpec
}

// CatalogError is one mistake in a catalog file, with where it is.
type CatalogError struct {
	File string
	Line int
	Tag  string // empty when the mistake is outside a tag
	Msg  string
}

func (e *CatalogError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Tag != "" {
		fmt.Fprintf(&b, ": tag %s", e.Tag)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

//go:embed catalogs/*.yaml
var builtinCatalogs embed.FS

// BuiltinCatalogs lists the catalogs compiled into the package, by name:
// "generic" (DefaultTags) and any other in service/catalogs.
func BuiltinCatalogs() []string {
	entries, _ := builtinCatalogs.ReadDir("catalogs")
	var out []string
	for _, e := range entries {
		out = append(out, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	return out
}

// BuiltinCatalog returns the compiled-in catalog name.
func BuiltinCatalog(name string) (*Catalog, error) {
	data, err := builtinCatalogs.ReadFile("catalogs/" + name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("no built-in catalog %q (there are: %s)", name, strings.Join(BuiltinCatalogs(), ", "))
	}
	return ParseCatalog("builtin:"+name, data)
}

// LoadCatalog reads and checks the catalog file at path; "builtin:NAME"
// names a built-in one. Every mistake is reported, each a *CatalogError
// naming the file, the line and the tag (joined with errors.Join).
func LoadCatalog(path string) (*Catalog, error) {
	if name, ok := strings.CutPrefix(path, "builtin:"); ok {
		return BuiltinCatalog(name)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxCatalogBytes+1))
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	if len(data) > MaxCatalogBytes {
		return nil, &CatalogError{File: filepath.Clean(path), Msg: fmt.Sprintf("over %d bytes", MaxCatalogBytes)}
	}
	return ParseCatalog(filepath.Clean(path), data)
}

// catalogFields are the keys a catalog file and each of its tags may have.
var (
	catalogFields = []string{"catalog", "version", "description", "keys", "maps", "tags"}
	tagFields     = []string{"model", "description", "keys", "retired", "example", "source"}
)

// ParseCatalog checks and reads a catalog file's content; source names it
// in errors.
func ParseCatalog(source string, data []byte) (*Catalog, error) {
	c := &Catalog{Source: source, Keys: map[string]KeyClass{}}
	var errs []error
	fail := func(n *yaml.Node, tag, format string, args ...any) {
		line := 0
		if n != nil {
			line = n.Line
		}
		errs = append(errs, &CatalogError{File: source, Line: line, Tag: tag, Msg: fmt.Sprintf(format, args...)})
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		line := 0
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			fmt.Sscanf(strings.TrimPrefix(err.Error(), "yaml: line "), "%d", &line)
		}
		return nil, &CatalogError{File: source, Line: line, Msg: "not YAML: " + err.Error()}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &CatalogError{File: source, Line: extra.Line, Msg: "a catalog file holds one YAML document"}
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, &CatalogError{File: source, Line: 1, Msg: "a catalog is a mapping with catalog, version and tags"}
	}
	repeatedKeys(doc.Content[0], fail)
	root := doc.Content[0]
	var tagsNode *yaml.Node
	seenVersion := false
	forEach(root, func(k, v *yaml.Node) {
		switch k.Value {
		case "catalog":
			c.Name = scalar(v, "", "catalog", fail)
		case "description":
			c.Description = scalar(v, "", "description", fail)
		case "version":
			seenVersion = true
			if v.Value != fmt.Sprint(CatalogVersion) {
				fail(v, "", "version %s is not supported (this build reads version %d)", v.Value, CatalogVersion)
			}
		case "keys":
			c.Keys = keyClasses(v, "", fail)
		case "maps":
			c.Maps = valueMaps(v, fail)
		case "tags":
			tagsNode = v
		default:
			fail(k, "", "unknown field %q (a catalog has %s)", k.Value, strings.Join(catalogFields, ", "))
		}
	})
	if c.Name == "" {
		fail(root, "", "no catalog name (catalog: NAME)")
	}
	if !seenVersion {
		fail(root, "", "no version (version: %d)", CatalogVersion)
	}
	if tagsNode == nil || tagsNode.Kind != yaml.MappingNode || len(tagsNode.Content) == 0 {
		fail(root, "", "no tags")
	} else {
		seen := map[string]bool{}
		forEach(tagsNode, func(k, v *yaml.Node) {
			if seen[k.Value] {
				return // repeatedKeys reported it
			}
			seen[k.Value] = true
			if spec, ok := catalogTag(k, v, c, fail); ok {
				c.Tags = append(c.Tags, spec)
			}
		})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	r, err := c.Registry()
	if err != nil {
		return nil, err
	}
	c.Fingerprint = r.Fingerprint()
	return c, nil
}

// catalogTag reads one tag of the file.
func catalogTag(k, v *yaml.Node, c *Catalog, fail func(*yaml.Node, string, string, ...any)) (TagSpec, bool) {
	spec := TagSpec{Tag: k.Value}
	bad := false
	failed := func(node *yaml.Node, format string, args ...any) {
		bad = true
		fail(node, spec.Tag, format, args...)
	}
	if err := checkTag(spec.Tag); err != nil {
		failed(k, "not a tag: source:subject:action in a-z, 0-9, '_' and '-'")
		return spec, false
	}
	if v.Kind != yaml.MappingNode {
		failed(v, "a tag is a mapping with model and description")
		return spec, false
	}
	var descNode *yaml.Node
	forEach(v, func(fk, fv *yaml.Node) {
		switch fk.Value {
		case "model":
			spec.Model = Model(scalar(fv, spec.Tag, "model", fail))
			if !spec.Model.Valid() {
				failed(fv, "model %q is not one of %s", fv.Value, modelNames())
			}
		case "description":
			descNode = fv
			spec.Description = scalar(fv, spec.Tag, "description", fail)
		case "keys":
			spec.Keys = keyClasses(fv, spec.Tag, fail)
		case "retired":
			spec.Retired = fv.Value == "true"
			if fv.Value != "true" && fv.Value != "false" {
				failed(fv, "retired is true or false, not %q", fv.Value)
			}
		case "example":
			spec.Example = exampleJSON(fv, func(format string, args ...any) { failed(fv, format, args...) })
		case "source":
			// documentation: where the service sends it
		default:
			failed(fk, "unknown field %q (a tag has %s)", fk.Value, strings.Join(tagFields, ", "))
		}
	})
	if spec.Model == "" {
		failed(v, "no model")
	}
	if strings.TrimSpace(spec.Description) == "" {
		failed(v, "no description")
	}
	if spec.Description == "" {
		return spec, !bad
	}
	t, err := parseTemplate(spec.Description, c.Maps)
	if err != nil {
		failed(descNode, "description: %v", err)
		return spec, false
	}
	for _, key := range t.keys {
		class, ok := spec.Keys[key]
		if !ok {
			class, ok = c.Keys[key]
		}
		switch {
		case !ok:
			failed(descNode, "the description names %q, which has no class (add it under keys)", key)
		case class == KeyPersonal || class == KeyHiddenFromSubject:
			failed(descNode, "the description names %q, a %s key: descriptions are shown to everyone who sees the event", key, class)
		}
	}
	return spec, !bad
}

// exampleJSON is an example: mapping as a JSON object.
func exampleJSON(n *yaml.Node, fail func(string, ...any)) json.RawMessage {
	if n.Kind != yaml.MappingNode {
		fail("example is a mapping: the additional object the service sends")
		return nil
	}
	var v map[string]any
	if err := n.Decode(&v); err != nil {
		fail("example: %v", err)
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		fail("example: %v", err)
		return nil
	}
	return b
}

// keyClasses reads a mapping of key to class.
func keyClasses(n *yaml.Node, tag string, fail func(*yaml.Node, string, string, ...any)) map[string]KeyClass {
	out := map[string]KeyClass{}
	if n.Kind != yaml.MappingNode {
		fail(n, tag, "keys is a mapping of key to class (%s)", strings.Join(keyClassNames(), ", "))
		return out
	}
	forEach(n, func(k, v *yaml.Node) {
		class := KeyClass(v.Value)
		if v.Kind != yaml.ScalarNode || !class.valid() {
			fail(v, tag, "key %s: class %q is not one of %s", k.Value, v.Value, strings.Join(keyClassNames(), ", "))
			return
		}
		out[k.Value] = class
	})
	return out
}

// valueMaps reads the maps section: NAME → value → words.
func valueMaps(n *yaml.Node, fail func(*yaml.Node, string, string, ...any)) map[string]map[string]string {
	out := map[string]map[string]string{}
	if n.Kind != yaml.MappingNode {
		fail(n, "", "maps is a mapping of map names to value → words")
		return out
	}
	forEach(n, func(k, v *yaml.Node) {
		if v.Kind != yaml.MappingNode {
			fail(v, "", "map %s: a mapping of value → words", k.Value)
			return
		}
		m := map[string]string{}
		forEach(v, func(vk, vv *yaml.Node) {
			if vv.Kind != yaml.ScalarNode || vv.Value == "" {
				fail(vv, "", "map %s: value %s: the words to show", k.Value, vk.Value)
				return
			}
			m[vk.Value] = vv.Value
		})
		out[k.Value] = m
	})
	return out
}

func keyClassNames() []string {
	return []string{string(KeyPublic), string(KeyPersonal), string(KeyPersonRef), string(KeyHiddenFromSubject)}
}

// repeatedKeys reports every key a mapping of n repeats (YAML decoding
// into a node keeps both, and the loader would silently keep the last:
// a class flipped by a bad merge).
func repeatedKeys(n *yaml.Node, fail func(*yaml.Node, string, string, ...any)) {
	if n.Kind == yaml.MappingNode {
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if seen[k.Value] {
				fail(k, "", "%q listed twice", k.Value)
			}
			seen[k.Value] = true
		}
	}
	for _, c := range n.Content {
		repeatedKeys(c, fail)
	}
}

// forEach calls fn for each key and value of a mapping node.
func forEach(n *yaml.Node, fn func(k, v *yaml.Node)) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		fn(n.Content[i], n.Content[i+1])
	}
}

// scalar is a scalar node's text; anything else is reported.
func scalar(n *yaml.Node, tag, field string, fail func(*yaml.Node, string, string, ...any)) string {
	if n.Kind != yaml.ScalarNode {
		fail(n, tag, "%s is a single value", field)
		return ""
	}
	return n.Value
}

// OwnTags are the tags auditlog records itself: the signals' derived
// events and the admin console's read records. Every registry made from a
// catalog has them: a catalog that does not declare one gets the generic
// catalog's definition, so a service's own vocabulary never disables a
// signal, an admin read, a legal hold's or an import's record.
var OwnTags = []string{TagLoginNewLocation, TagLoginFailureBurst, TagAdminEventsView, TagAdminHoldPlaced, TagAdminHoldReleased, TagAdminImport}

// Registry returns a new registry holding the catalog's tags and key
// classes, and OwnTags.
func (c *Catalog) Registry() (*Registry, error) {
	r := NewRegistry()
	r.keys = maps.Clone(c.Keys)
	r.maps = make(map[string]map[string]string, len(c.Maps))
	for name, m := range c.Maps {
		r.maps[name] = maps.Clone(m)
	}
	r.catalog = c
	tags := c.Tags
	for _, tag := range OwnTags {
		if !slices.ContainsFunc(c.Tags, func(s TagSpec) bool { return s.Tag == tag }) {
			spec, err := ownTag(tag)
			if err != nil {
				return nil, err
			}
			tags = append(slices.Clip(tags), spec)
		}
	}
	if err := r.Register(tags...); err != nil {
		return nil, fmt.Errorf("catalog %s: %w", c.Source, err)
	}
	return r, nil
}

// ownTag is the generic catalog's definition of an OwnTags tag (whose keys
// are all classed on the tag itself).
func ownTag(tag string) (TagSpec, error) {
	generic, err := BuiltinCatalog("generic")
	if err != nil {
		return TagSpec{}, err
	}
	for _, s := range generic.Tags {
		if s.Tag == tag {
			return s, nil
		}
	}
	return TagSpec{}, fmt.Errorf("the generic catalog lacks %s", tag)
}

// KeyClasses lists the classes a tag's keys have, its own and the
// catalog-wide ones, sorted by key.
func (r *Registry) KeyClasses(tag string) []KeyAndClass {
	e := r.entry(tag)
	r.mu.RLock()
	defer r.mu.RUnlock()
	m := map[string]KeyClass{}
	for k, c := range r.keys {
		m[k] = c
	}
	if e != nil {
		for k, c := range e.keys {
			m[k] = c
		}
	}
	out := make([]KeyAndClass, 0, len(m))
	for k, c := range m {
		out = append(out, KeyAndClass{Key: k, Class: c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// KeyAndClass is one key of additional and its class.
type KeyAndClass struct {
	Key   string
	Class KeyClass
}

// KeyClass returns the class of key in events of tag: the tag's own, else
// the catalog-wide one; ok is false when neither says.
func (r *Registry) KeyClass(tag, key string) (class KeyClass, ok bool) {
	e := r.entry(tag)
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e != nil {
		if c, ok := e.keys[key]; ok {
			return c, true
		}
	}
	c, ok := r.keys[key]
	return c, ok
}

// Catalog returns the catalog the registry was made from (nil for one
// made with NewRegistry).
func (r *Registry) Catalog() *Catalog { return r.catalog }

// personalKeys lists the keys of tag that erasure removes: those of class
// personal, its own and catalog-wide.
func (r *Registry) personalKeys(tag string) []string {
	var out []string
	for _, kc := range r.KeyClasses(tag) {
		if kc.Class == KeyPersonal {
			out = append(out, kc.Key)
		}
	}
	return slices.Clip(out)
}

// Fingerprint identifies what the registry holds (every tag's model,
// description, key classes and retirement, the catalog-wide classes and
// the value maps):
// 16 hex digits. Two processes whose registries differ record, describe,
// show or erase events differently.
func (r *Registry) Fingerprint() string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	h := sha256.New()
	write := func(parts ...string) {
		for _, p := range parts {
			fmt.Fprintf(h, "%d:%s;", len(p), p)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(r.keys)) {
		write("key", k, string(r.keys[k]))
	}
	for _, name := range slices.Sorted(maps.Keys(r.maps)) {
		for _, v := range slices.Sorted(maps.Keys(r.maps[name])) {
			write("map", name, v, r.maps[name][v])
		}
	}
	for _, tag := range slices.Sorted(maps.Keys(r.tags)) {
		e := r.tags[tag]
		write("tag", tag, string(e.spec.Model), e.spec.Description, fmt.Sprint(e.spec.Retired))
		for _, k := range slices.Sorted(maps.Keys(e.keys)) {
			write(k, string(e.keys[k]))
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// CatalogName is the name of the catalog the registry was made from, or
// "go" for one made in Go with NewRegistry.
func (r *Registry) CatalogName() string {
	if r.catalog != nil {
		return r.catalog.Name
	}
	return "go"
}

// CatalogMark is the catalog a kind of process last started with.
type CatalogMark struct {
	Process     string
	Catalog     string
	Fingerprint string
	MarkedAt    time.Time
}

// Processes that record the catalog the service runs with (MarkCatalog),
// and that CheckCatalog compares with.
const (
	ProcessMigrate = "migrate"
	ProcessServe   = "serve"
)

// MarkCatalog records the Log's catalog (its registry's name and
// Fingerprint) as the one process runs with; `migrate up` and `serve` call
// it as they start.
func (l *Log) MarkCatalog(ctx context.Context, process string) error {
	return wrapped(l.q.CatalogMark(ctx, l.db, db.CatalogMarkParams{
		Process: process, Catalog: l.registry.CatalogName(), Fingerprint: l.registry.Fingerprint(), MarkedAt: l.now().UTC(),
	}), "mark the catalog")
}

// CheckCatalog compares the Log's catalog with the newest one `migrate up`
// or `serve` recorded: differs is true when their fingerprints differ
// (false when none was recorded yet). `worker` and `erase` warn then.
func (l *Log) CheckCatalog(ctx context.Context) (mark CatalogMark, differs bool, err error) {
	row, err := l.q.CatalogMarkLatest(ctx, l.db, []string{ProcessMigrate, ProcessServe})
	if isNoRows(err) {
		return CatalogMark{}, false, nil
	}
	if err != nil {
		return CatalogMark{}, false, wrapped(err, "check the catalog")
	}
	mark = CatalogMark{Process: row.Process, Catalog: row.Catalog, Fingerprint: row.Fingerprint, MarkedAt: row.MarkedAt.UTC()}
	return mark, mark.Fingerprint != l.registry.Fingerprint(), nil
}
