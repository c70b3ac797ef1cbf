package service

import (
	"maps"
	"slices"
)

// TableSQL and TableStatementNames expose the statements of
// sql/tables.tmpl to the external tests.
var TableSQL = tableSQL

func TableStatementNames() []string {
	return sortedKeys(tableStatements)
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range maps.Keys(m) {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
