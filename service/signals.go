package service

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/db"
)

// Tags the signals record and react to.
const (
	TagLoginSuccess      = "account:login:success"
	TagLoginFailure      = "account:login:failure"
	TagLoginNewLocation  = "account:login:new_location"
	TagLoginFailureBurst = "account:login:failure_burst"
)

// DefaultBurstWindow is SignalOpts.BurstWindow when zero.
const DefaultBurstWindow = 10 * time.Minute

// Locator maps an IP address to where it is (a GeoIP database); see
// package geoip. ok is false when the address is unknown.
type Locator interface {
	Locate(ip netip.Addr) (loc Location, ok bool)
}

// SignalOpts configures the account-security signals that fire when one
// event is recorded (RecordUser, RecordUserTx), in the same transaction as
// the event. They are off unless set: each costs a few indexed queries per
// sign-in. The bulk path (RecordUserMany*) stores events as given and
// runs no signal (a backfill of old sign-ins must not raise notices);
// hooks still fire for it.
type SignalOpts struct {
	// NewLocation records account:login:new_location after a successful
	// sign-in from a network (or, with a Locator, a country) the person
	// has not signed in from inside the window.
	NewLocation bool
	// BurstFailures, when positive, records one account:login:failure_burst
	// when that many failed sign-ins fall within BurstWindow
	// (DefaultBurstWindow when zero).
	BurstFailures int
	BurstWindow   time.Duration
	// Locator, when set, fills in the location of events that carry an IP
	// but no location, and new-location decisions compare countries
	// instead of networks.
	Locator Locator
}

// Hook is background work attached to a tag or a tag prefix: when a
// matching event is recorded, the hook's job is enqueued in the event's
// own transaction (Opts.Enqueuer), so a rolled-back event enqueues nothing
// and a committed one always does. jobs.HookWorker runs it.
type Hook struct {
	// Name selects the handler in jobs.HookWorker.
	Name string
	// Tag matches one tag; TagPrefix every tag that starts with it.
	Tag, TagPrefix string
}

func (h *Hook) matches(tag string) bool {
	return (h.Tag != "" && h.Tag == tag) || (h.TagPrefix != "" && strings.HasPrefix(tag, h.TagPrefix))
}

// checkHooks validates Opts.Hooks.
func checkHooks(hooks []Hook) error {
	for i, h := range hooks {
		if h.Name == "" || (h.Tag == "") == (h.TagPrefix == "") {
			return fmt.Errorf("hook %d: a hook has a name and exactly one of Tag and TagPrefix", i)
		}
	}
	return nil
}

// reacts reports whether recording an event of tag runs a signal (when
// signals is true: a single event) or a hook; both need the event's
// transaction.
func (l *Log) reacts(model Model, tag string, signals bool) bool {
	if signals && l.signalsOn(model, tag) {
		return true
	}
	for i := range l.hooks {
		if l.hooks[i].matches(tag) {
			return true
		}
	}
	return false
}

func (l *Log) signalsOn(model Model, tag string) bool {
	return model == ModelUser && ((tag == TagLoginSuccess && l.signals.NewLocation) ||
		(tag == TagLoginFailure && l.signals.BurstFailures > 0))
}

// react runs, inside tx and after e was inserted, the signals e fires
// (when signals is true) and the hooks that match it and the events the
// signals record.
func (l *Log) react(ctx context.Context, tx pgx.Tx, e *Event, now time.Time, signals bool) error {
	if signals && l.signalsOn(e.Model, e.Tag) {
		// One person's sign-ins are decided one at a time, so two at once
		// from a new place give one notice, and a burst is recorded once.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended('auditlog:signals:' || $1, 0))", e.UserID); err != nil {
			return err
		}
		var derived *EventParams
		var err error
		if e.Tag == TagLoginSuccess {
			derived, err = l.newLocation(ctx, tx, e, now)
		} else {
			derived, err = l.failureBurst(ctx, tx, e)
		}
		if err != nil {
			return err
		}
		if derived != nil {
			r, err := l.validate(derived, ModelUser, now)
			if err != nil {
				return fmt.Errorf("%s: %w", derived.Tag, err)
			}
			id, err := l.q.UserEventInsert(ctx, tx, r.userParams())
			if err != nil {
				return fmt.Errorf("%s: %w", derived.Tag, err)
			}
			de := r.event(id, ModelUser)
			if err := l.enqueueHooks(ctx, tx, &de); err != nil {
				return err
			}
		}
	}
	return l.enqueueHooks(ctx, tx, e)
}

func (l *Log) enqueueHooks(ctx context.Context, tx pgx.Tx, e *Event) error {
	for i := range l.hooks {
		if !l.hooks[i].matches(e.Tag) {
			continue
		}
		if l.enqueuer == nil {
			return fmt.Errorf("hook %s: %w", l.hooks[i].Name, ErrNoEnqueuer)
		}
		if err := l.enqueuer.EnqueueHookTx(ctx, tx, l.hooks[i].Name, e); err != nil {
			return fmt.Errorf("hook %s: %w", l.hooks[i].Name, err)
		}
	}
	return nil
}

// newLocation decides whether a successful sign-in came from somewhere new
// for the person: no successful sign-in inside the window from the same
// network (/24 for IPv4, /48 for IPv6) or, with a Locator and a known
// country, from the same country. The first sign-in inside the window has
// nothing to compare with and is not new.
func (l *Log) newLocation(ctx context.Context, tx pgx.Tx, e *Event, now time.Time) (*EventParams, error) {
	if !e.IP.IsValid() {
		return nil, nil
	}
	bits := 48
	if e.IP.Is4() {
		bits = 24
	}
	network, _ := e.IP.Prefix(bits)
	byCountry := l.signals.Locator != nil && e.Location != nil && e.Location.Country != ""
	country := text("")
	if byCountry {
		country = text(e.Location.Country)
	}
	h, err := l.q.UserEventLoginHistory(ctx, tx, db.UserEventLoginHistoryParams{
		UserID: e.UserID, MinTime: l.windowStart(now), ExcludeID: e.ID, Net: network, Country: country})
	if err != nil || !h.SignedIn {
		return nil, err
	}
	by, seen := "network", h.FromNetwork
	if byCountry {
		by, seen = "country", h.FromCountry
	}
	if seen {
		return nil, nil
	}
	add, _ := json.Marshal(map[string]any{"network": network.String(), "decided_by": by, "login_event_id": e.ID})
	return &EventParams{
		Tag: TagLoginNewLocation, Subject: e.UserID, Time: e.Time, ActorID: e.ActorID, AuthMethod: e.AuthMethod,
		TokenID: e.TokenID, ActorTwoFactor: e.ActorTwoFactor, IP: e.IP.String(), UserAgent: e.UserAgent,
		Location: e.Location, Additional: add,
	}, nil
}

// failureBurst records a burst when this failure makes BurstFailures
// within BurstWindow and no burst was recorded in that window yet.
func (l *Log) failureBurst(ctx context.Context, tx pgx.Tx, e *Event) (*EventParams, error) {
	since := e.Time.Add(-l.signals.BurstWindow)
	c, err := l.q.UserEventFailureCounts(ctx, tx, db.UserEventFailureCountsParams{UserID: e.UserID, Since: since})
	if err != nil || c.Failures < int64(l.signals.BurstFailures) || c.Bursts > 0 {
		return nil, err
	}
	n := c.Failures
	add, _ := json.Marshal(map[string]any{"failures": n, "minutes": int(l.signals.BurstWindow.Minutes())})
	return &EventParams{Tag: TagLoginFailureBurst, Subject: e.UserID, Time: e.Time, IP: ipString(e.IP),
		UserAgent: e.UserAgent, Location: e.Location, Additional: add}, nil
}

func ipString(ip netip.Addr) string {
	if !ip.IsValid() {
		return ""
	}
	return ip.String()
}
