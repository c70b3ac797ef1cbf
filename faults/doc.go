// Package faults is auditlog's fault suite: Go tests that put the real
// service (the auditlog binary as a subprocess, HTTP, SQL) under the faults
// of issue 11 — kill -9 of the worker mid-erasure and mid-drop, two
// maintenance passes beside four writers, PostgreSQL crashed during
// idempotent ingest, a month detached or dropped by hand while written to,
// a tight statement_timeout during an erasure — and check that every
// acknowledged event is present exactly once, nothing else was deleted,
// and the service recovered with no human step.
//
// The scenarios run one at a time (no t.Parallel): each measures how long
// its writers' inserts take and how soon the service recovers, which
// another scenario's load beside it would distort.
//
// The package holds tests only; its harness is internal/faulttest. The
// fast scenarios run in `go test ./...` (and `make test`); the heavy ones
// need AUDITLOG_FAULTS=heavy, which `make faults` sets before it prints
// every scenario's figures as a table.
package faults
