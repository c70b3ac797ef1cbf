package service

import (
	"errors"
	"time"
)

// Observer is told what the Log does, for metrics (package ops implements
// it for Prometheus). Its methods must be fast and safe for concurrent use.
type Observer interface {
	// Recorded is called after n events of tag were written (for the Tx
	// variants inside the caller's transaction, which may still roll
	// back).
	Recorded(model Model, tag string, n int)
	// Rejected is called for an event refused before reaching the
	// database; reason is its sentinel's text ("unknown tag", ...).
	Rejected(reason string)
	// PartitionDropped is called for each retention drop (reason as in
	// retention_log).
	PartitionDropped(reason string)
	// ErasureFinished is called after each erasure attempt.
	ErasureFinished(took time.Duration, err error)
	// DescriptionFallback is called for n events of tag written with a
	// fallback description: their additional lacked a value the tag's
	// description needs (the events are recorded all the same).
	DescriptionFallback(tag string, n int)
}

// RejectionReasons are the reasons Observer.Rejected is called with: the
// texts of the sentinel errors recording refuses events with.
func RejectionReasons() []string {
	var out []string
	for _, err := range []error{ErrMalformedTag, ErrUnknownTag, ErrRetiredTag, ErrWrongModel, ErrEmptySubject, ErrTooLong, ErrInvalidText,
		ErrInvalidAuthMethod, ErrInvalidIP, ErrInvalidAdditional, ErrAdditionalTooLarge, ErrTimeTooOld, ErrTimeTooNew, ErrNoPartition} {
		out = append(out, err.Error())
	}
	return out
}

// DropReasons are the reasons Observer.PartitionDropped is called with, as
// retention_log records them.
func DropReasons() []string {
	return []string{string(DropExpired), string(DropOrphan), string(DropDefault)}
}

// DropReason says why rows left user events: a DroppedPartition's reason,
// as retention_log records it.
type DropReason string

// Drop reasons.
const (
	// DropExpired: a monthly partition whose month left the window.
	DropExpired DropReason = "expired"
	// DropOrphan: an expired monthly table found detached from user_events.
	DropOrphan DropReason = "orphan"
	// DropDefault: expired rows deleted from user_events_default.
	DropDefault DropReason = "default"
	// DropReleased: held rows (held_user_events) deleted once no open
	// legal hold covered them and they were outside the window.
	DropReleased DropReason = "released"
)

type nopObserver struct{}

func (nopObserver) Recorded(Model, string, int)          {}
func (nopObserver) Rejected(string)                      {}
func (nopObserver) PartitionDropped(string)              {}
func (nopObserver) ErasureFinished(time.Duration, error) {}
func (nopObserver) DescriptionFallback(string, int)      {}

// rejected reports err to the observer when it is a validation failure.
func (l *Log) rejected(err error) {
	var ve *ValidationError
	if errors.As(err, &ve) && ve.Err != nil {
		l.observer.Rejected(ve.Err.Error())
	}
}
