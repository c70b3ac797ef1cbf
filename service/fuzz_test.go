package service

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/auditlog/auditlog/internal/strictjson"
)

// tagPattern is the tag grammar written as a regular expression: the
// oracle validTag's hand-written loop must agree with.
var tagPattern = regexp.MustCompile(`^[a-z0-9_-]+(:[a-z0-9_-]+){1,4}$`)

// FuzzTag: validTag accepts exactly the tag grammar, and a tag prefix
// check never accepts what no tag could start with.
func FuzzTag(f *testing.F) {
	for _, s := range []string{"account:login:success", "a:b", "a:b:c:d:e", "a:b:c:d:e:f", "A:b", "a::b", ":a", "a:", "a:b\x00", "project:oidc:publisher-added", strings.Repeat("a:", 64) + "a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := validTag(s)
		want := len(s) <= MaxTagBytes && tagPattern.MatchString(s)
		if got != want {
			t.Fatalf("validTag(%q) = %v, want %v", s, got, want)
		}
		if validTagPrefix(s) && strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789_-:") != "" {
			t.Fatalf("validTagPrefix(%q) accepted a character no tag holds", s)
		}
		if got && checkTag(s) != nil {
			t.Fatalf("checkTag refuses valid %q", s)
		}
	})
}

// FuzzAdditional: whatever checkAdditional accepts, PostgreSQL stores as
// written (the strict checker's promise), decodes as an object, and
// renders into a description without a panic, a NUL or invalid UTF-8.
func FuzzAdditional(f *testing.F) {
	for _, s := range []string{`{"version": "1.0"}`, `{"version": 2}`, `{"version": null}`, `{"version": {"a": [1]}}`, `{}`, `[]`,
		`{"version": "\ud800"}`, `{"version": "1", "version": "2"}`, `{"n": 1e131072}`, `{"a": "\u0000"}`, "{\"a\": \"\xff\"}", ``} {
		f.Add([]byte(s))
	}
	reg := DefaultRegistry()
	entry := reg.entry("project:release:add")
	f.Fuzz(func(t *testing.T, b []byte) {
		err := checkAdditional(b)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != "additional" {
				t.Fatalf("error of the wrong shape: %v", err)
			}
			return
		}
		if len(b) == 0 {
			return
		}
		if serr := strictjson.CheckObject(b, strictjson.Options{MaxDepth: MaxAdditionalDepth}); serr != nil {
			t.Fatalf("accepted %q that the strict check refuses: %v", b, serr)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("accepted %q that is not an object: %v", b, err)
		}
		desc, complete, err := entry.render(b)
		if err != nil {
			t.Fatalf("render refused %q, a JSON object: %v", b, err)
		}
		if _, ok := m["version"]; ok && !complete && string(m["version"]) != "null" && !strings.HasPrefix(string(m["version"]), "{") &&
			!strings.HasPrefix(string(m["version"]), "[") && string(m["version"]) != `""` {
			t.Fatalf("render(%q) fell back although it has the key", b)
		}
		if !utf8.ValidString(desc) || strings.ContainsRune(desc, 0) {
			t.Fatalf("render(%q) = %q: not storable text", b, desc)
		}
	})
}

// FuzzCursor: a cursor either decodes to a position PostgreSQL can compare
// (a time in the years 1 to 9999, a positive id) that encodes back to
// itself, or is ErrInvalidCursor.
func FuzzCursor(f *testing.F) {
	f.Add("")
	f.Add(cursor{time: time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC), id: 42}.String())
	f.Add(firstPage.String())
	f.Add("AQAAAAAAAAAAAAAAAAAAAAE")
	f.Add("not-a-cursor")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseCursor(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidCursor) {
				t.Fatalf("parseCursor(%q): %v is not ErrInvalidCursor", s, err)
			}
			return
		}
		if s == "" {
			return
		}
		if c.time.Before(minTime) || c.time.After(maxTime) || c.id <= 0 {
			t.Fatalf("parseCursor(%q) = %v, outside what a query can take", s, c)
		}
		again, err := parseCursor(c.String())
		if err != nil || again != c {
			t.Fatalf("cursor %v does not survive its own encoding: %v, %v", c, again, err)
		}
	})
}

// FuzzCheckpoint: a checkpoint note that parses re-renders to the same
// text (one spelling per checkpoint), and no input makes the parser or
// the note opener panic; a note opens only under the key that signed it.
func FuzzCheckpoint(f *testing.F) {
	file, _, err := GenerateIntegrityKey("fuzz.test")
	if err != nil {
		f.Fatal(err)
	}
	key, err := ParseIntegrityKey(file)
	if err != nil {
		f.Fatal(err)
	}
	root := emptyTreeRoot.String()
	for _, s := range []string{
		"fuzz.test\n0\n" + root + "\ntime 2026-12-02T18:00:00Z\nprev none\n",
		"fuzz.test\n3\n" + root + "\ntime 2026-12-02T18:00:00Z\nprev " + root + "\ntree user-202612 2 " + root + "\n",
		"fuzz.test\n-1\n\n", "a\nb\nc\nd\ne\n", "fuzz.test\n1\n" + root + "\ntime x\nprev none\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		cp, err := parseCheckpoint(text)
		if err != nil {
			if !errors.Is(err, ErrCheckpoint) {
				t.Fatalf("parseCheckpoint(%q): an untyped error %v", text, err)
			}
			return
		}
		origin, _, _ := strings.Cut(text, "\n")
		if again := checkpointText(origin, cp); again != text {
			t.Fatalf("parseCheckpoint(%q) renders back as %q", text, again)
		}
		_, _ = OpenCheckpoint([]byte(text), key.verifier) // unsigned: must fail, never panic
	})
}
