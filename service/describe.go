package service

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A description template is text with placeholders and optional parts:
//
//	{key}            a value of additional; {a.b} a nested one
//	{key|filter}     the value formatted: map:NAME (the catalog's value
//	                 map NAME), time, date, bytes, list, count, person (an
//	                 account a person_ref key names, as stored), or:TEXT
//	                 (TEXT when missing or null)
//	[ ... ]          an optional part: shown only when every placeholder
//	                 in it has a value
//
// A placeholder outside [ ] without or: is required. Rendering never
// refuses an event: a required value that is missing makes the sentence a
// fallback (the template with "(unknown)" in its place), and the caller
// counts it.

// tmplNode is one piece of a parsed template: literal text, a
// placeholder, or an optional group of nodes.
type tmplNode struct {
	text     string
	path     []string // placeholder: the key and nested keys
	filter   string   // placeholder: the filter's name
	arg      string   // placeholder: the filter's argument (map:NAME, or:TEXT)
	optional []tmplNode
	isGroup  bool
}

// template is a parsed description.
type template struct {
	nodes []tmplNode
	// keys are the top-level keys the template reads, in order.
	keys []string
	maps map[string]map[string]string
}

// templateFilters are the filters a placeholder may name; true when it
// takes an argument.
var templateFilters = map[string]bool{
	"map": true, "or": true, "time": false, "date": false, "bytes": false, "list": false, "count": false, "person": false,
}

// parseTemplate parses a description; maps are the value maps map:NAME
// may name (nil: none).
func parseTemplate(desc string, maps map[string]map[string]string) (*template, error) {
	t := &template{maps: maps}
	nodes, rest, err := t.parse(desc, false)
	if err != nil {
		return nil, err
	}
	if rest != "" {
		return nil, fmt.Errorf("an unmatched ']'")
	}
	t.nodes = nodes
	return t, nil
}

// parse reads nodes until the end, or a ']' when inGroup.
func (t *template) parse(s string, inGroup bool) ([]tmplNode, string, error) {
	return t.parseDepth(s, inGroup, 0)
}

// maxTemplateDepth bounds how deep optional parts nest.
const maxTemplateDepth = 8

func (t *template) parseDepth(s string, inGroup bool, depth int) ([]tmplNode, string, error) {
	if depth > maxTemplateDepth {
		return nil, "", fmt.Errorf("optional parts nested deeper than %d", maxTemplateDepth)
	}
	var nodes []tmplNode
	var text strings.Builder
	flush := func() {
		if text.Len() > 0 {
			nodes = append(nodes, tmplNode{text: text.String()})
			text.Reset()
		}
	}
	for len(s) > 0 {
		switch c := s[0]; c {
		case '{':
			end := strings.IndexByte(s, '}')
			if end < 0 {
				return nil, "", fmt.Errorf("a '{' without its '}'")
			}
			n, err := t.placeholder(s[1:end])
			if err != nil {
				return nil, "", err
			}
			flush()
			nodes = append(nodes, n)
			s = s[end+1:]
		case '}':
			return nil, "", fmt.Errorf("a '}' without its '{'")
		case '[':
			flush()
			group, rest, err := t.parseDepth(s[1:], true, depth+1)
			if err != nil {
				return nil, "", err
			}
			if !strings.HasPrefix(rest, "]") {
				return nil, "", fmt.Errorf("a '[' without its ']'")
			}
			nodes = append(nodes, tmplNode{isGroup: true, optional: group})
			s = rest[1:]
		case ']':
			if !inGroup {
				return nil, "", fmt.Errorf("a ']' without its '['")
			}
			flush()
			return nodes, s, nil
		default:
			text.WriteByte(c)
			s = s[1:]
		}
	}
	flush()
	return nodes, "", nil
}

// placeholder parses the inside of {...}.
func (t *template) placeholder(s string) (tmplNode, error) {
	key, filter, hasFilter := strings.Cut(s, "|")
	var n tmplNode
	for _, part := range strings.Split(key, ".") {
		if !validKeyName(part) {
			return n, fmt.Errorf("{%s}: %q is not a key (letters, digits, '_', '-')", s, part)
		}
		n.path = append(n.path, part)
	}
	if hasFilter {
		name, arg, hasArg := strings.Cut(filter, ":")
		takesArg, ok := templateFilters[name]
		switch {
		case !ok:
			return n, fmt.Errorf("{%s}: unknown filter %q (there are map:NAME, or:TEXT, time, date, bytes, list, count, person)", s, name)
		case takesArg != hasArg || (takesArg && arg == ""):
			return n, fmt.Errorf("{%s}: filter %s %s", s, name, map[bool]string{true: "takes an argument (" + name + ":…)", false: "takes no argument"}[takesArg])
		case name == "map":
			if _, ok := t.maps[arg]; !ok {
				return n, fmt.Errorf("{%s}: no value map %q", s, arg)
			}
		}
		n.filter, n.arg = name, arg
	}
	if !slices.Contains(t.keys, n.path[0]) {
		t.keys = append(t.keys, n.path[0])
	}
	return n, nil
}

func validKeyName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// unknownValue stands for a required value an event lacks, in a fallback
// sentence.
const unknownValue = "(unknown)"

// render fills the template from additional (a JSON object, decoded).
// complete is false when a required value was missing (the sentence then
// holds unknownValue in its place).
func (t *template) render(values map[string]any) (text string, complete bool) {
	var b strings.Builder
	complete = true
	for _, n := range t.nodes {
		if !t.write(&b, n, values) {
			complete = false
			b.WriteString(unknownValue)
		}
	}
	return b.String(), complete
}

// write writes node n; false when n is a placeholder without a value.
func (t *template) write(b *strings.Builder, n tmplNode, values map[string]any) bool {
	switch {
	case n.isGroup:
		var g strings.Builder
		for _, m := range n.optional {
			if !t.write(&g, m, values) {
				return true // an optional part without all its values is left out
			}
		}
		b.WriteString(g.String())
		return true
	case n.path == nil:
		b.WriteString(n.text)
		return true
	}
	s, ok := t.value(n, values)
	if ok {
		b.WriteString(s)
	}
	return ok
}

// value formats placeholder n's value; ok is false when it has none.
func (t *template) value(n tmplNode, values map[string]any) (string, bool) {
	var v any = values
	for _, k := range n.path {
		m, ok := v.(map[string]any)
		if !ok {
			v = nil
			break
		}
		v = m[k]
	}
	if n.filter == "or" {
		if s, ok := plain(v); ok {
			return s, true
		}
		return n.arg, true
	}
	if v == nil {
		return "", false
	}
	switch n.filter {
	case "map":
		s, ok := plain(v)
		if b, isBool := v.(bool); isBool {
			s = strconv.FormatBool(b) // maps are keyed by the JSON text
		}
		if !ok {
			return "", false
		}
		if mapped, ok := t.maps[n.arg][s]; ok {
			return mapped, true
		}
		return s, true // a value the map does not know is shown as it is
	case "time", "date":
		at, ok := timeValue(v)
		if !ok {
			return plain(v)
		}
		if n.filter == "date" {
			return at.UTC().Format("2 Jan 2006"), true
		}
		return at.UTC().Format("2 Jan 2006 15:04 UTC"), true
	case "bytes":
		f, ok := number(v)
		if !ok || f < 0 || f >= 1<<70 {
			return plain(v)
		}
		return byteSize(f), true
	case "count":
		if a, ok := v.([]any); ok {
			return strconv.Itoa(len(a)), true
		}
		return plain(v)
	}
	// list, person, and no filter
	if a, ok := v.([]any); ok {
		var parts []string
		for _, e := range a {
			if s, ok := plain(e); ok {
				parts = append(parts, s)
			}
		}
		if len(parts) == 0 {
			return "", false
		}
		return joinList(parts), true
	}
	return plain(v)
}

// plain is a scalar value as text: strings as they are, numbers as JSON
// writes them, booleans as yes or no; false for null, objects and arrays.
func plain(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, x != ""
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case json.Number:
		return x.String(), true
	case bool:
		if x {
			return "yes", true
		}
		return "no", true
	}
	return "", false
}

// timeValue reads a timestamp: RFC 3339 text, or seconds since the epoch.
func timeValue(v any) (time.Time, bool) {
	switch x := v.(type) {
	case string:
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999", "2006-01-02 15:04:05.999999", "2006-01-02"} {
			if t, err := time.Parse(layout, x); err == nil {
				return t, true
			}
		}
	case float64, json.Number:
		if f, ok := number(x); ok && f > 0 && f < 1e11 {
			sec, frac := math.Modf(f)
			return time.Unix(int64(sec), int64(frac*1e9)), true
		}
	}
	return time.Time{}, false
}

// number is a JSON number as a float64 (false for anything else, or one
// out of float64's range).
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

// byteSize is n bytes as people read sizes: 512 bytes, 1.5 KiB, 12 MiB.
func byteSize(n float64) string {
	if n < 1024 {
		return strconv.FormatFloat(n, 'f', -1, 64) + " bytes"
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i := -1
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	return strconv.FormatFloat(math.Round(n*10)/10, 'f', -1, 64) + " " + units[i]
}

// joinList is "a", "a and b", "a, b and c".
func joinList(parts []string) string {
	if len(parts) == 1 {
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}
