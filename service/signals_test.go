package service_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/geoip"
	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/internal/geoiptest"
	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/service"
)

// signalBundle is a Log with signals and the default hooks, enqueuing
// River jobs.
type signalBundle struct{ *dbtest.Fixture }

func signalSetup(t *testing.T, signals service.SignalOpts) *signalBundle {
	t.Helper()
	return &signalBundle{dbtest.NewFixture(t, dbtest.FixtureOpts{Jobs: true,
		Opts: service.Opts{Signals: signals, Hooks: jobs.DefaultHooks()}})}
}

// login records user's password sign-in from ip, ago before the clock,
// with no location: the signal compares networks, or looks the address up.
func (b *signalBundle) login(t *testing.T, user, ip string, ago time.Duration) {
	t.Helper()
	p := dbtest.SignIn(user, b.Now.Add(-ago))
	p.IP, p.UserAgent, p.Location = ip, "", nil
	b.Record(t, service.ModelUser, p)
}

// count counts user's events of tag.
func (b *signalBundle) count(t *testing.T, user, tag string) int {
	t.Helper()
	return b.Count(t, "SELECT count(*) FROM user_events WHERE user_id = $1 AND tag = $2", user, tag)
}

// A sign-in is from a new location when no sign-in inside the window came
// from its /24 (IPv4) or /48 (IPv6); the first sign-in is not.
func TestNewLocationByNetwork(t *testing.T) {
	t.Parallel()
	b := signalSetup(t, service.SignalOpts{NewLocation: true})
	b.login(t, "ann", "192.0.2.10", 48*time.Hour)
	require.Zero(t, b.count(t, "ann", service.TagLoginNewLocation), "the first sign-in has nothing to compare with")
	b.login(t, "ann", "192.0.2.200", 47*time.Hour)
	require.Zero(t, b.count(t, "ann", service.TagLoginNewLocation), "same /24")
	b.login(t, "ann", "192.0.3.10", 46*time.Hour)
	require.Equal(t, 1, b.count(t, "ann", service.TagLoginNewLocation), "a new /24")
	b.login(t, "ann", "192.0.3.11", 45*time.Hour)
	require.Equal(t, 1, b.count(t, "ann", service.TagLoginNewLocation), "that /24 is known now")

	b.login(t, "ann", "2001:db8:1:aaaa::1", 44*time.Hour)
	require.Equal(t, 2, b.count(t, "ann", service.TagLoginNewLocation), "a new /48")
	b.login(t, "ann", "2001:db8:1:bbbb::2", 43*time.Hour)
	require.Equal(t, 2, b.count(t, "ann", service.TagLoginNewLocation), "same /48")
	b.login(t, "ann", "2001:db8:2::1", 42*time.Hour)
	require.Equal(t, 3, b.count(t, "ann", service.TagLoginNewLocation), "another /48")

	// Another person's history is not ann's.
	b.login(t, "ben", "203.0.113.1", 41*time.Hour)
	b.login(t, "ben", "192.0.2.10", 40*time.Hour)
	require.Equal(t, 1, b.count(t, "ben", service.TagLoginNewLocation))

	p, err := b.Log.UserEvents(b.Ctx, "ann", service.ListOpts{Tag: service.TagLoginNewLocation, Limit: 1})
	require.NoError(t, err)
	var add map[string]any
	require.NoError(t, json.Unmarshal(p.Events[0].Additional, &add))
	require.Equal(t, "2001:db8:2::/48", add["network"])
	require.Equal(t, "2001:db8:2::1", p.Events[0].IP.String())
}

// With a GeoIP database, locations are filled in and compared by country.
func TestNewLocationByCountry(t *testing.T) {
	t.Parallel()
	path := geoiptest.Write(t, map[string]service.Location{
		"192.0.2.0/24":    {Country: "FR", City: "Paris"},
		"198.51.100.0/24": {Country: "FR", City: "Lyon"},
		"203.0.113.0/24":  {Country: "DE", City: "Berlin"},
	})
	db, err := geoip.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	b := signalSetup(t, service.SignalOpts{NewLocation: true, Locator: db})
	b.login(t, "cleo", "192.0.2.10", 10*time.Hour)
	b.login(t, "cleo", "198.51.100.10", 9*time.Hour)
	require.Zero(t, b.count(t, "cleo", service.TagLoginNewLocation), "another network, same country")
	b.login(t, "cleo", "203.0.113.10", 8*time.Hour)
	require.Equal(t, 1, b.count(t, "cleo", service.TagLoginNewLocation), "a new country")
	p, err := b.Log.UserEvents(b.Ctx, "cleo", service.ListOpts{Tag: service.TagLoginNewLocation})
	require.NoError(t, err)
	require.Equal(t, &service.Location{Country: "DE", City: "Berlin"}, p.Events[0].Location, "filled in from GeoIP")
}

// N failures within the window record one burst, at the threshold and not
// before, and not again for the same burst.
func TestFailureBurst(t *testing.T) {
	t.Parallel()
	b := signalSetup(t, service.SignalOpts{BurstFailures: 3, BurstWindow: 10 * time.Minute})
	fail := func(ago time.Duration) {
		_, err := b.Log.RecordUser(b.Ctx, service.EventParams{Tag: service.TagLoginFailure, Subject: "dora",
			IP: "203.0.113.9", Time: b.Now.Add(-ago), Additional: json.RawMessage(`{"reason": "bad password"}`)})
		require.NoError(t, err)
	}
	fail(30 * time.Minute) // outside the window of the later ones
	fail(9 * time.Minute)
	fail(8 * time.Minute)
	require.Zero(t, b.count(t, "dora", service.TagLoginFailureBurst), "two within ten minutes")
	fail(7 * time.Minute)
	require.Equal(t, 1, b.count(t, "dora", service.TagLoginFailureBurst), "the third is the threshold")
	fail(6 * time.Minute)
	fail(5 * time.Minute)
	require.Equal(t, 1, b.count(t, "dora", service.TagLoginFailureBurst), "once per burst")
	n, err := b.Log.FailedLoginsSinceSuccess(b.Ctx, "dora")
	require.NoError(t, err)
	require.Equal(t, int64(6), n)
	p, err := b.Log.UserEvents(b.Ctx, "dora", service.ListOpts{Tag: service.TagLoginFailureBurst})
	require.NoError(t, err)
	require.Equal(t, "3 failed sign-ins within 10 minutes", p.Events[0].Description)
}
