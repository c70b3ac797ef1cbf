// Package sql holds auditlog's statements: the sqlc queries in the .sql
// files (compiled into package db) and, in tables.tmpl, the statements
// over a table named at run time, which package service fills in.
package sql

import _ "embed"

// Tables is tables.tmpl: the statements over a partition or the default
// partition of user_events, each after a "-- name:" line, with markers
// for the table and the literals DDL needs (see the file's header).
//
//go:embed tables.tmpl
var Tables string
