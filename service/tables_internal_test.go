package service

import (
	"maps"
	"slices"
)

// TableSQL and TableStatementNames expose the statements of
// sql/tables.tmpl to the external tests.
var TableSQL = tableSQL

func TableStatementNames() []string {
	return slices.Sorted(maps.Keys(tableStatements))
}
