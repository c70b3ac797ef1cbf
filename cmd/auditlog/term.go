package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
)

// cell makes stored text safe to print on an operator's terminal: control
// characters (ESC, BEL, CR, LF, tab, DEL, C1) and characters that reorder
// text (bidi overrides, embeddings, isolates, marks) are written as Go
// escapes (\x1b, \n, \u202e), so no stored value can move the cursor,
// rewrite a line, change the terminal's title or break a table's columns.
// Everything else is printed as it is.
func cell(s string) string {
	if strings.IndexFunc(s, unsafeRune) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if !unsafeRune(r) {
			b.WriteRune(r)
			continue
		}
		switch r {
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x100 {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		}
	}
	return b.String()
}

// unsafeRune reports whether r may act on a terminal or reorder the text
// around it rather than be shown.
func unsafeRune(r rune) bool {
	switch {
	case unicode.IsControl(r):
		return true
	case r == 0x061C, r == 0x200E, r == 0x200F, 0x202A <= r && r <= 0x202E, 0x2066 <= r && r <= 0x2069:
		return true
	}
	return false
}

// isTerminal reports whether w is a terminal (progress is shown there
// only).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
