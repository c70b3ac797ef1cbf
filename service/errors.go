package service

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every validation failure wraps exactly one of them, so
// callers test with errors.Is; errors.As with *ValidationError gives the
// field, and with *BatchError the index of the offending event.
var (
	// ErrMalformedTag: the tag is not of the form source:subject:action
	// (2 to 5 segments of a-z, 0-9, '_' and '-', at most 128 bytes).
	ErrMalformedTag = errors.New("malformed tag")
	// ErrUnknownTag: the tag is well formed but not registered.
	ErrUnknownTag = errors.New("unknown tag")
	// ErrRetiredTag: the tag is retired in the catalog: its events stay
	// readable, new ones are not recorded.
	ErrRetiredTag = errors.New("retired tag")
	// ErrWrongModel: the tag belongs to the other model (a project tag
	// recorded as a user event, or the reverse).
	ErrWrongModel = errors.New("tag belongs to the other event model")
	// ErrEmptySubject: no user id or project id was given.
	ErrEmptySubject = errors.New("empty subject")
	// ErrTooLong: an id (subject, actor, token) is over 128 bytes, or
	// another text field over its limit.
	ErrTooLong = errors.New("value too long")
	// ErrInvalidText: a text field is not valid UTF-8 or holds a NUL byte,
	// which PostgreSQL cannot store.
	ErrInvalidText = errors.New("invalid text")
	// ErrInvalidAuthMethod: auth_method is not a lower-case word such as
	// password, webauthn, totp, api_token or trusted_publisher.
	ErrInvalidAuthMethod = errors.New("invalid auth method")
	// ErrInvalidIP: the IP address does not parse, or carries a zone.
	ErrInvalidIP = errors.New("invalid IP address")
	// ErrInvalidAdditional: additional is not a JSON object, or lacks a key
	// the tag's description names.
	ErrInvalidAdditional = errors.New("invalid additional data")
	// ErrAdditionalTooLarge: additional is over MaxAdditionalBytes.
	ErrAdditionalTooLarge = errors.New("additional data too large")
	// ErrTimeTooOld: a user event is dated before the retention window.
	ErrTimeTooOld = errors.New("time is older than the retention window")
	// ErrTimeTooNew: a project event is dated further ahead than
	// MaxFutureSkew.
	ErrTimeTooNew = errors.New("time is too far in the future")
	// ErrNoPartition: a user event is dated in a month that has no
	// partition (beyond the last one, or a gap); it would otherwise land in
	// the unmanaged default partition.
	ErrNoPartition = errors.New("no partition for the event's month")
	// ErrInvalidCursor: a pagination cursor was not produced by this API.
	ErrInvalidCursor = errors.New("invalid cursor")
	// ErrInvalidFilter: a read filter is malformed (a bad tag prefix, a
	// time range that ends before it starts).
	ErrInvalidFilter = errors.New("invalid filter")
	// ErrUnavailable: the database cannot be reached right now (down,
	// restarting, refusing connections). Nothing was changed; the call may
	// be retried, and HTTP answers 503 with Retry-After. It is never a
	// *ValidationError: the input was fine.
	ErrUnavailable = errors.New("the database is unavailable; retry shortly")
	// ErrPartitionUnavailable: a user event's month is one that has (or
	// should have) a partition, but none is attached right now (dropped or
	// detached by hand, or a rescue is moving rows). A maintenance pass is
	// asked for at once; retry shortly. It matches ErrUnavailable too.
	ErrPartitionUnavailable = fmt.Errorf("no partition is attached for the event's month right now: %w", ErrUnavailable)
)

// ValidationError describes one invalid field of one event or query.
type ValidationError struct {
	// Field is the snake_case name of the offending field, as in the
	// columns ("tag", "user_id", "ip", "additional", ...).
	Field string
	// Err is one of the Err* sentinels.
	Err error
	// Detail says what was wrong, for people.
	Detail string
}

// Error implements error.
func (e *ValidationError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("%s: %v", e.Field, e.Err)
	}
	return fmt.Sprintf("%s: %v: %s", e.Field, e.Err, e.Detail)
}

// Unwrap returns the sentinel.
func (e *ValidationError) Unwrap() error { return e.Err }

// BatchError reports which event of a batch was invalid. Nothing of the
// batch was written.
type BatchError struct {
	// Index is the position of the invalid event in the batch.
	Index int
	// Err is the event's *ValidationError.
	Err error
}

// Error implements error.
func (e *BatchError) Error() string {
	return fmt.Sprintf("event %d: %v (nothing of the batch was written)", e.Index, e.Err)
}

// Unwrap returns the event's error.
func (e *BatchError) Unwrap() error { return e.Err }

func invalid(field string, err error, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Err: err, Detail: fmt.Sprintf(format, args...)}
}
