package service

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/db"
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
		if err := l.q.SignalsLockUser(ctx, tx, e.UserID); err != nil {
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

// newLocation decides whether a successful sign-in came from somewhere new
// for the person: no successful sign-in inside the window from the same
// network (/24 for IPv4, /48 for IPv6) or, with a Locator and a known
// country, from the same country. The first sign-in inside the window has
// nothing to compare with and is not new.
func (l *Log) newLocation(ctx context.Context, tx pgx.Tx, e *Event, now time.Time) (*EventParams, error) {
	if !e.IP.IsValid() {
		return nil, nil
	}
	network := Network(e.IP)
	byCountry := l.signals.Locator != nil && e.Location != nil && e.Location.Country != ""
	country := text("")
	if byCountry {
		country = text(e.Location.Country)
	}
	h, err := l.q.UserEventLoginHistory(ctx, tx, db.UserEventLoginHistoryParams{
		UserID: e.UserID, SuccessTag: TagLoginSuccess, MinTime: l.windowStart(now), ExcludeID: e.ID, Net: network, Country: country})
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
	c, err := l.q.UserEventFailureCounts(ctx, tx, db.UserEventFailureCountsParams{
		UserID: e.UserID, FailureTag: TagLoginFailure, BurstTag: TagLoginFailureBurst, Since: since})
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
