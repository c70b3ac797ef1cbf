// Package jobs holds auditlog's River job kinds, one file per kind: the
// args type with Kind and InsertOpts, and its worker, which declares the
// small interface it needs instead of importing all of service. NewConfig
// assembles the River configuration `auditlog worker` runs.
package jobs
