// Package strictjson checks JSON text as an audit log must take it: the
// way PostgreSQL's jsonb will store it, and without anything the standard
// library would silently rewrite.
//
// encoding/json accepts and then rewrites several inputs: invalid UTF-8 and
// lone surrogate escapes (\ud800) become U+FFFD, so two different ids can
// decode to the same string; a repeated key keeps its last value; keys
// match struct fields case-insensitively. PostgreSQL's jsonb refuses other
// inputs that encoding/json accepts: \u0000, lone surrogates and numbers
// outside numeric's range, and it keeps only the last of repeated keys.
// Check refuses all of these up front with the path of the offending key,
// so a caller can answer with a clear error naming the field instead of a
// database error or a silent rewrite.
package strictjson

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits of PostgreSQL's numeric type, which jsonb stores numbers in.
const (
	// maxWeight is the largest decimal exponent of a number's most
	// significant digit (numeric holds up to 131072 digits before the
	// decimal point).
	maxWeight = 131071
	// maxScale is the most digits after the decimal point numeric holds.
	maxScale = 16383
	// maxExponent is PostgreSQL's own bound on a written exponent; past
	// it even zero is refused.
	maxExponent = 1<<30 - 1
)

// Options tunes a check.
type Options struct {
	// MaxDepth is the deepest nesting of objects and arrays allowed; 0
	// means no limit beyond the input's size.
	MaxDepth int
	// Key, when set, is called for every object key in document order
	// with its depth (1 for the keys of the top-level object; arrays count
	// as a level too) and the key
	// of the member that holds its object ("" at depth 1, or when the
	// object sits in an array). A non-nil error stops the check and is
	// returned inside an *Error whose Path ends at the key.
	Key func(depth int, parent, key string) error
}

// Error is what a check found wrong, and where.
type Error struct {
	// Path is the dotted path of object keys to the offending value
	// ("location.city"); array positions show as [n]. Empty at the top.
	Path string
	// Offset is the byte offset in the input.
	Offset int
	// Msg says what is wrong, for people.
	Msg string
}

// Error implements error.
func (e *Error) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Field returns the top-level key the error is under ("" at the top).
func (e *Error) Field() string {
	f, _, _ := strings.Cut(e.Path, ".")
	f, _, _ = strings.Cut(f, "[")
	return f
}

// Check reports whether b is exactly one JSON value that PostgreSQL's jsonb
// stores as written: valid JSON, valid UTF-8, no lone surrogate or \u0000
// escape, no key repeated in an object, every number within numeric's
// range, nesting within opts.MaxDepth. It returns nil or an *Error.
func Check(b []byte, opts Options) error {
	c := checker{b: b, opts: opts}
	c.ws()
	if c.i >= len(b) {
		return c.fail("empty input")
	}
	if err := c.value(0); err != nil {
		return err
	}
	c.ws()
	if c.i != len(b) {
		return c.fail("more than one JSON value")
	}
	return nil
}

// CheckObject is Check for input that must be one JSON object.
func CheckObject(b []byte, opts Options) error {
	c := checker{b: b, opts: opts}
	c.ws()
	if c.i >= len(b) || b[c.i] != '{' {
		return c.fail("not a JSON object")
	}
	return Check(b, opts)
}

type checker struct {
	b    []byte
	i    int
	opts Options
	// path holds the keys (or array positions) from the top to the value
	// being read, to name it in an error.
	path []string
}

func (c *checker) fail(format string, args ...any) *Error {
	return &Error{Path: c.pathString(), Offset: c.i, Msg: fmt.Sprintf(format, args...)}
}

func (c *checker) pathString() string {
	var sb strings.Builder
	for _, p := range c.path {
		if strings.HasPrefix(p, "[") {
			sb.WriteString(p)
			continue
		}
		if sb.Len() > 0 {
			sb.WriteByte('.')
		}
		sb.WriteString(p)
	}
	return sb.String()
}

func (c *checker) ws() {
	for c.i < len(c.b) {
		switch c.b[c.i] {
		case ' ', '\t', '\n', '\r':
			c.i++
		default:
			return
		}
	}
}

func (c *checker) value(depth int) *Error {
	if c.i >= len(c.b) {
		return c.fail("unexpected end of JSON")
	}
	switch ch := c.b[c.i]; {
	case ch == '{':
		return c.object(depth + 1)
	case ch == '[':
		return c.array(depth + 1)
	case ch == '"':
		_, err := c.str(false)
		return err
	case ch == '-' || ('0' <= ch && ch <= '9'):
		return c.number()
	case ch == 't':
		return c.literal("true")
	case ch == 'f':
		return c.literal("false")
	case ch == 'n':
		return c.literal("null")
	default:
		return c.fail("invalid character %q looking for a value", rune(ch))
	}
}

func (c *checker) literal(word string) *Error {
	if len(c.b)-c.i < len(word) || string(c.b[c.i:c.i+len(word)]) != word {
		return c.fail("invalid literal (true, false or null expected)")
	}
	c.i += len(word)
	return nil
}

func (c *checker) deeper(depth int) *Error {
	if c.opts.MaxDepth > 0 && depth > c.opts.MaxDepth {
		return c.fail("nested deeper than %d levels", c.opts.MaxDepth)
	}
	return nil
}

func (c *checker) object(depth int) *Error {
	if err := c.deeper(depth); err != nil {
		return err
	}
	parent := ""
	if depth > 1 && len(c.path) > 0 && !strings.HasPrefix(c.path[len(c.path)-1], "[") {
		parent = c.path[len(c.path)-1]
	}
	c.i++ // {
	c.ws()
	if c.i < len(c.b) && c.b[c.i] == '}' {
		c.i++
		return nil
	}
	var seen []string
	var seenSet map[string]struct{}
	for {
		c.ws()
		if c.i >= len(c.b) || c.b[c.i] != '"' {
			return c.fail("an object key must be a string")
		}
		key, err := c.str(true)
		if err != nil {
			return err
		}
		if seenSet != nil {
			if _, dup := seenSet[key]; dup {
				return c.keyFail(key, "key repeated in the same object")
			}
			seenSet[key] = struct{}{}
		} else {
			for _, k := range seen {
				if k == key {
					return c.keyFail(key, "key repeated in the same object")
				}
			}
			seen = append(seen, key)
			if len(seen) > 16 {
				seenSet = make(map[string]struct{}, 32)
				for _, k := range seen {
					seenSet[k] = struct{}{}
				}
			}
		}
		if c.opts.Key != nil {
			if kerr := c.opts.Key(depth, parent, key); kerr != nil {
				return c.keyFail(key, "%v", kerr)
			}
		}
		c.ws()
		if c.i >= len(c.b) || c.b[c.i] != ':' {
			return c.fail("expected ':' after an object key")
		}
		c.i++
		c.ws()
		c.path = append(c.path, key)
		if err := c.value(depth); err != nil {
			return err
		}
		c.path = c.path[:len(c.path)-1]
		c.ws()
		if c.i >= len(c.b) {
			return c.fail("unexpected end of JSON in an object")
		}
		switch c.b[c.i] {
		case ',':
			c.i++
		case '}':
			c.i++
			return nil
		default:
			return c.fail("expected ',' or '}' in an object")
		}
	}
}

func (c *checker) keyFail(key, format string, args ...any) *Error {
	c.path = append(c.path, key)
	err := c.fail(format, args...)
	c.path = c.path[:len(c.path)-1]
	return err
}

func (c *checker) array(depth int) *Error {
	if err := c.deeper(depth); err != nil {
		return err
	}
	c.i++ // [
	c.ws()
	if c.i < len(c.b) && c.b[c.i] == ']' {
		c.i++
		return nil
	}
	for n := 0; ; n++ {
		c.ws()
		c.path = append(c.path, fmt.Sprintf("[%d]", n))
		if err := c.value(depth); err != nil {
			return err
		}
		c.path = c.path[:len(c.path)-1]
		c.ws()
		if c.i >= len(c.b) {
			return c.fail("unexpected end of JSON in an array")
		}
		switch c.b[c.i] {
		case ',':
			c.i++
		case ']':
			c.i++
			return nil
		default:
			return c.fail("expected ',' or ']' in an array")
		}
	}
}

// str reads a string starting at its opening quote. With decode it returns
// the string's value (object keys are compared by value: "a" and "\u0061"
// are the same key).
func (c *checker) str(decode bool) (string, *Error) {
	start := c.i
	c.i++ // "
	var sb *strings.Builder
	plainFrom := c.i
	for {
		if c.i >= len(c.b) {
			return "", c.fail("unterminated string")
		}
		ch := c.b[c.i]
		switch {
		case ch == '"':
			s := ""
			if decode {
				if sb == nil {
					s = string(c.b[start+1 : c.i])
				} else {
					sb.Write(c.b[plainFrom:c.i])
					s = sb.String()
				}
			}
			c.i++
			return s, nil
		case ch == '\\':
			if decode && sb == nil {
				sb = &strings.Builder{}
			}
			if sb != nil {
				sb.Write(c.b[plainFrom:c.i])
			}
			r, err := c.escape()
			if err != nil {
				return "", err
			}
			if sb != nil {
				sb.WriteRune(r)
			}
			plainFrom = c.i
		case ch < 0x20:
			return "", c.fail("control character %U inside a string (it must be escaped)", rune(ch))
		case ch < utf8.RuneSelf:
			c.i++
		default:
			r, size := utf8.DecodeRune(c.b[c.i:])
			if r == utf8.RuneError && size <= 1 {
				return "", c.fail("not valid UTF-8")
			}
			c.i += size
		}
	}
}

// escape reads one escape sequence starting at its backslash and returns
// the character it stands for.
func (c *checker) escape() (rune, *Error) {
	if c.i+1 >= len(c.b) {
		return 0, c.fail("unterminated escape")
	}
	e := c.b[c.i+1]
	switch e {
	case '"', '\\', '/':
		c.i += 2
		return rune(e), nil
	case 'b':
		c.i += 2
		return '\b', nil
	case 'f':
		c.i += 2
		return '\f', nil
	case 'n':
		c.i += 2
		return '\n', nil
	case 'r':
		c.i += 2
		return '\r', nil
	case 't':
		c.i += 2
		return '\t', nil
	case 'u':
	default:
		return 0, c.fail("invalid escape \\%c", rune(e))
	}
	hi, ok := c.hex4(c.i + 2)
	if !ok {
		return 0, c.fail("invalid \\u escape")
	}
	switch {
	case hi == 0:
		return 0, c.fail(`holds \u0000, which PostgreSQL cannot store`)
	case hi >= 0xDC00 && hi <= 0xDFFF:
		return 0, c.fail(`lone low surrogate \u%04x`, hi)
	case hi >= 0xD800 && hi <= 0xDBFF:
		if c.i+12 > len(c.b) || c.b[c.i+6] != '\\' || c.b[c.i+7] != 'u' {
			return 0, c.fail(`lone high surrogate \u%04x`, hi)
		}
		lo, ok := c.hex4(c.i + 8)
		if !ok || lo < 0xDC00 || lo > 0xDFFF {
			return 0, c.fail(`lone high surrogate \u%04x`, hi)
		}
		c.i += 12
		return 0x10000 + (rune(hi)-0xD800)<<10 + (rune(lo) - 0xDC00), nil
	}
	c.i += 6
	return rune(hi), nil
}

func (c *checker) hex4(at int) (uint16, bool) {
	if at+4 > len(c.b) {
		return 0, false
	}
	var v uint16
	for _, h := range c.b[at : at+4] {
		v <<= 4
		switch {
		case '0' <= h && h <= '9':
			v |= uint16(h - '0')
		case 'a' <= h && h <= 'f':
			v |= uint16(h - 'a' + 10)
		case 'A' <= h && h <= 'F':
			v |= uint16(h - 'A' + 10)
		default:
			return 0, false
		}
	}
	return v, true
}

// number reads a JSON number and checks that PostgreSQL's numeric holds
// it as written: its most significant digit at most 10^131071, at most
// 16383 digits after the point (trailing zeros count), and an exponent
// PostgreSQL accepts at all.
func (c *checker) number() *Error {
	start := c.i
	if c.b[c.i] == '-' {
		c.i++
	}
	intFrom := c.i
	switch {
	case c.i < len(c.b) && c.b[c.i] == '0':
		c.i++
	case c.i < len(c.b) && '1' <= c.b[c.i] && c.b[c.i] <= '9':
		for c.i < len(c.b) && '0' <= c.b[c.i] && c.b[c.i] <= '9' {
			c.i++
		}
	default:
		return c.fail("invalid number")
	}
	intDigits := c.b[intFrom:c.i]
	var fracDigits []byte
	if c.i < len(c.b) && c.b[c.i] == '.' {
		c.i++
		fracFrom := c.i
		for c.i < len(c.b) && '0' <= c.b[c.i] && c.b[c.i] <= '9' {
			c.i++
		}
		if c.i == fracFrom {
			return c.fail("invalid number: no digit after the point")
		}
		fracDigits = c.b[fracFrom:c.i]
	}
	exp := 0
	if c.i < len(c.b) && (c.b[c.i] == 'e' || c.b[c.i] == 'E') {
		c.i++
		neg := false
		if c.i < len(c.b) && (c.b[c.i] == '+' || c.b[c.i] == '-') {
			neg = c.b[c.i] == '-'
			c.i++
		}
		expFrom := c.i
		for c.i < len(c.b) && '0' <= c.b[c.i] && c.b[c.i] <= '9' {
			if exp <= maxExponent {
				exp = exp*10 + int(c.b[c.i]-'0')
			}
			c.i++
		}
		if c.i == expFrom {
			return c.fail("invalid number: no digit in the exponent")
		}
		if exp >= maxExponent {
			return c.numberFail(start)
		}
		if neg {
			exp = -exp
		}
	}
	if scale := len(fracDigits) - exp; scale > maxScale {
		return c.numberFail(start)
	}
	// The decimal exponent of the most significant non-zero digit.
	for p, d := range intDigits {
		if d != '0' {
			if len(intDigits)-1-p+exp > maxWeight {
				return c.numberFail(start)
			}
			return nil
		}
	}
	for p, d := range fracDigits {
		if d != '0' {
			if -1-p+exp > maxWeight {
				return c.numberFail(start)
			}
			return nil
		}
	}
	return nil // zero
}

func (c *checker) numberFail(start int) *Error {
	n := string(c.b[start:c.i])
	if len(n) > 40 {
		n = n[:37] + "..."
	}
	return c.fail("number %s is outside the range PostgreSQL stores", n)
}
