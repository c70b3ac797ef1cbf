// Package service is auditlog's public Go API: the tag registry, recording
// events inside the caller's transaction (or in bulk through COPY), the
// readers the views are built on, partition maintenance (retention), GDPR
// erasure requests with their verification, and the subject access export.
//
// There are two event models, as PyPI's 2019 design meeting decided:
//
//   - user events (ModelUser) describe what happened to or by an account.
//     They carry personal data (IP, user agent, location), live in monthly
//     partitions of user_events and are kept for a limited window (90 days
//     by default). Every read filters by that window, so what anyone sees
//     never depends on when retention last ran.
//   - project events (ModelProject) are a project's history and are kept
//     forever; their personal columns can be erased in place.
//
// Every input is validated before anything reaches the database; a failure
// is a *ValidationError (wrapped in a *BatchError naming the index for the
// Many variants) that matches one of the Err* sentinels with errors.Is.
// When the database cannot be reached (refused or lost connections, the
// server shutting down, no pool connection in time) the recorders, readers
// and ingest return an error matching ErrUnavailable instead: nothing was
// changed, retry; IsUnavailable classifies any error the same way.
//
// Adding an event type is one registration:
//
//	reg.MustRegister(service.TagSpec{
//		Tag:          "account:recovery_codes:used",
//		Model:        service.ModelUser,
//		Description:  "Signed in with a recovery code",
//	})
//
// Descriptions are rendered once, when an event is recorded, from
// placeholders such as {version} that name keys of the event's additional
// data. A placeholder may not name a personal key, so a stored description
// never holds personal data and erasure never has to rewrite it.
package service
