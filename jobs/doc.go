// Package jobs will hold auditlog's River job kinds, one file per kind:
// the args type with Kind and InsertOpts, and its worker. The core issue
// installs River's tables (migration 00002); the workers (partition
// maintenance and retention, erasure, hooks) arrive with the issues that
// build them.
package jobs
