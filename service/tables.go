package service

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	auditsql "github.com/auditlog/auditlog/sql"
)

// The statements over a table named at run time live in sql/tables.tmpl;
// this file reads them once and fills in their markers. A marker is the
// only way a value enters their text, and each kind is quoted one way:
// identifiers by pgx.Identifier, times as UTC RFC 3339 timestamptz
// literals, durations as millisecond settings. Everything else is a
// parameter (@name, pgx.NamedArgs). A statement or marker that does not
// match is a programming error and panics (TestTableStatements renders
// every statement).

var (
	tableStatements = parseTableStatements(auditsql.Tables)
	markerPattern   = regexp.MustCompile(`/\* (table|columns|ident: \w+|time: \w+|ms: \w+) \*/`)
)

// parseTableStatements splits the template file at its "-- name:" lines,
// dropping comment lines.
func parseTableStatements(file string) map[string]string {
	out := map[string]string{}
	var name string
	var body []string
	flush := func() {
		if name != "" {
			out[name] = strings.TrimSpace(strings.Join(body, "\n"))
		}
	}
	for _, line := range strings.Split(file, "\n") {
		if n, ok := strings.CutPrefix(line, "-- name: "); ok {
			flush()
			name, body = strings.TrimSpace(n), nil
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		body = append(body, line)
	}
	flush()
	return out
}

// tableSQL is statement name for table, its other markers filled from
// vals (marker name → string for ident, time.Time for time,
// time.Duration for ms; "columns" → []string).
func tableSQL(name, table string, vals map[string]any) string {
	stmt, ok := tableStatements[name]
	if !ok {
		panic("tables.tmpl has no statement " + name)
	}
	used := map[string]bool{}
	out := markerPattern.ReplaceAllStringFunc(stmt, func(m string) string {
		kind, key, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(m, "/* "), " */"), ": ")
		if kind == "table" {
			if table == "" {
				panic(name + ": no table")
			}
			return pgx.Identifier{table}.Sanitize()
		}
		if kind == "columns" {
			key = "columns"
		}
		v, ok := vals[key]
		if !ok {
			panic(fmt.Sprintf("%s: no value for %s", name, m))
		}
		used[key] = true
		switch kind {
		case "ident":
			return pgx.Identifier{v.(string)}.Sanitize()
		case "columns":
			cols := v.([]string)
			quoted := make([]string, len(cols))
			for i, c := range cols {
				quoted[i] = pgx.Identifier{c}.Sanitize()
			}
			return strings.Join(quoted, ", ")
		case "time":
			return "'" + v.(time.Time).UTC().Format(time.RFC3339Nano) + "'::timestamptz"
		default: // ms
			return "'" + pgMillis(v.(time.Duration)) + "'"
		}
	})
	if strings.Contains(out, "/*") {
		panic(name + ": a marker is malformed")
	}
	for k := range vals {
		if !used[k] {
			panic(fmt.Sprintf("%s: value %s has no marker", name, k))
		}
	}
	return out
}

// pgMillis spells d as a PostgreSQL time setting in whole milliseconds
// (at least 1: 0 would mean no limit).
func pgMillis(d time.Duration) string {
	return fmt.Sprintf("%dms", max(d.Milliseconds(), 1))
}
