package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/service"
)

func runDemo(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	var cfg config
	cfg.owner = true // changes more than it records: the owner role (AUDITLOG_ADMIN_DATABASE_URL)
	fs, finish := newFlagSet("demo", `Seed a realistic three-month history of several users, projects and an
organization with a team, in the package-index catalog's vocabulary:
sign-ins from several places, failed sign-in bursts, tokens, two-factor
changes, roles, releases. It records no hook and runs no signal (the history is the past),
and refuses a database that already holds events unless --force.`, getenv, &cfg, stdout, stderr)
	force := fs.Bool("force", false, "seed even when the database already holds events")
	seed := fs.Int64("seed", 2019, 0, "random seed (the same seed gives the same history)")
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	// The demo's Log has no hooks and no signals: the seeded history is
	// the past, so it must not notify anyone (the CLI's usual Log attaches
	// jobs.DefaultHooks, whose jobs the bulk path enqueues). It has the
	// integrity key, when there is one: the events it records carry their
	// record marks, so checkpoints append them.
	pool, err := cfg.connect(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	log, err := service.New(pool, &service.Opts{Retention: cfg.retention, Logger: cfg.logger, Registry: cfg.registry, Integrity: cfg.integrity})
	if err != nil {
		return err
	}
	if !*force {
		// Any event the views would show (user events inside the window,
		// project events) means the demo has been seeded.
		page, err := log.Events(ctx, service.Filter{ListOpts: service.ListOpts{Limit: 1}})
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if len(page.Events) > 0 {
			fmt.Fprintln(stdout, "demo: the database already holds events; not seeding again (use --force to add more)")
			return nil
		}
	}
	users, kept := demoEvents(log.Now(), min(cfg.retention, 90*24*time.Hour), uint64(*seed))
	// Every event commits together or not at all.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, _, err := log.RecordManyTx(ctx, tx, append(users, kept...))
		return err
	})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	fmt.Fprintf(stdout, "demo: recorded %d user events and %d project, organization and team events over the last %d days\n",
		len(users), len(kept), int(min(cfg.retention, 90*24*time.Hour).Hours()/24))
	return nil
}

// demoNetwork is a place people connect from. Only documentation address
// ranges (RFC 5737, RFC 3849) are used.
type demoNetwork struct {
	prefix   netip.Prefix
	location *service.Location
}

var (
	netBerlinHome = demoNetwork{netip.MustParsePrefix("203.0.113.0/25"), &service.Location{Country: "DE", Region: "Berlin", City: "Berlin"}}
	netLondonWork = demoNetwork{netip.MustParsePrefix("198.51.100.0/25"), &service.Location{Country: "GB", Region: "England", City: "London"}}
	netParisCafe  = demoNetwork{netip.MustParsePrefix("192.0.2.0/25"), &service.Location{Country: "FR", Region: "Île-de-France", City: "Paris"}}
	netMobileNL   = demoNetwork{netip.MustParsePrefix("2001:db8:100::/48"), &service.Location{Country: "NL", Region: "North Holland", City: "Amsterdam"}}
	netCIRunners  = demoNetwork{netip.MustParsePrefix("2001:db8:c1::/48"), &service.Location{Country: "US", Region: "Virginia", City: "Ashburn"}}
	netHostile    = demoNetwork{netip.MustParsePrefix("198.51.100.128/25"), nil} // no GeoIP answer
)

const (
	uaFirefox = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
	uaChrome  = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0.0.0 Safari/537.36"
	uaSafari  = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
	uaTwine   = "twine/6.1.0 CPython/3.13.1"
	uaCurl    = "curl/8.11.0"
)

type demoUser struct {
	id        string
	networks  []demoNetwork
	agent     string
	twoFactor string // method enabled from the start, or ""
}

// demoEvents builds a deterministic history over the window ending at now:
// sign-ins from several networks, a new location now and then, failed
// sign-in bursts from a hostile network, API tokens, 2FA changes, and
// releases published with tokens and trusted publishers.
func demoEvents(now time.Time, window time.Duration, seed uint64) (users, projects []service.EventParams) {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	start := now.Add(-window + 24*time.Hour) // a day of margin inside the window
	at := func(day float64) time.Time {
		return start.Add(time.Duration(day * float64(24*time.Hour))).Truncate(time.Second)
	}
	ip := func(n demoNetwork) string {
		a := n.prefix.Addr().As16()
		if n.prefix.Addr().Is4() {
			b := n.prefix.Addr().As4()
			b[3] += byte(1 + rng.IntN(120))
			return netip.AddrFrom4(b).String()
		}
		a[15] = byte(1 + rng.IntN(250))
		return netip.AddrFrom16(a).String()
	}
	add := func(kv ...string) json.RawMessage {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		b, _ := json.Marshal(m)
		return b
	}
	yes, no := true, false
	days := window.Hours()/24 - 2

	people := []demoUser{
		{"alice", []demoNetwork{netBerlinHome, netLondonWork}, uaFirefox, "webauthn"},
		{"bob", []demoNetwork{netLondonWork, netMobileNL}, uaChrome, ""},
		{"carol", []demoNetwork{netParisCafe}, uaSafari, "totp"},
		{"dave", []demoNetwork{netBerlinHome, netMobileNL}, uaChrome, "totp"},
		{"erin", []demoNetwork{netMobileNL}, uaSafari, ""},
		{"frank", []demoNetwork{netLondonWork}, uaFirefox, ""},
	}
	for ui, u := range people {
		twoFactor := u.twoFactor != ""
		method := "password"
		if twoFactor {
			method = u.twoFactor
		}
		if ui >= 4 { // erin and frank joined during the window
			users = append(users, service.EventParams{Tag: service.TagAccountCreate, Subject: u.id, Time: at(float64(ui) * 3),
				ActorID: u.id, AuthMethod: "password", ActorTwoFactor: &no, IP: ip(u.networks[0]), UserAgent: u.agent, Location: u.networks[0].location})
		}
		// A sign-in is from a new location when the person signed in
		// before, inside the window, but never from there: the first
		// sign-in has nothing to compare with, as with the real signal.
		seen := map[*service.Location]bool{}
		for d := float64(ui)*3 + 0.4; d < days; d += 1 + rng.Float64()*3 {
			n := u.networks[rng.IntN(len(u.networks))]
			if rng.IntN(12) == 0 {
				n = netParisCafe // travelling
			}
			p := service.EventParams{Tag: service.TagLoginSuccess, Subject: u.id, Time: at(d), ActorID: u.id,
				AuthMethod: method, ActorTwoFactor: &twoFactor, IP: ip(n), UserAgent: u.agent, Location: n.location}
			if twoFactor {
				p.Additional = add("two_factor_method", u.twoFactor)
			}
			users = append(users, p)
			if len(seen) > 0 && !seen[n.location] {
				p.Tag, p.Time, p.Additional = service.TagLoginNewLocation, p.Time.Add(time.Second), add("decided_by", "network")
				users = append(users, p)
			}
			seen[n.location] = true
		}
		// Two-factor changes.
		switch u.id {
		case "bob":
			users = append(users, service.EventParams{Tag: service.TagAccountTwoFactorMethodAdded, Subject: u.id, Time: at(days * 0.4),
				ActorID: u.id, AuthMethod: "password", ActorTwoFactor: &no, IP: ip(netLondonWork), UserAgent: u.agent,
				Location: netLondonWork.location, Additional: add("method", "totp")})
		case "dave":
			users = append(users, service.EventParams{Tag: service.TagAccountTwoFactorMethodRemoved, Subject: u.id, Time: at(days * 0.7),
				ActorID: u.id, AuthMethod: "totp", ActorTwoFactor: &yes, IP: ip(netBerlinHome), UserAgent: u.agent,
				Location: netBerlinHome.location, Additional: add("method", "totp")})
		case "carol":
			users = append(users, service.EventParams{Tag: service.TagAccountPasswordChange, Subject: u.id, Time: at(days * 0.5),
				ActorID: u.id, AuthMethod: "totp", ActorTwoFactor: &yes, IP: ip(netParisCafe), UserAgent: u.agent, Location: netParisCafe.location})
		}
	}
	// Failed sign-in bursts from a hostile network against alice and dave,
	// the last one a few hours ago.
	for _, burst := range []struct {
		user string
		day  float64
		n    int
	}{{"alice", days * 0.3, 6}, {"dave", days * 0.8, 4}, {"alice", days - 0.2, 3}} {
		for i := range burst.n {
			users = append(users, service.EventParams{Tag: service.TagLoginFailure, Subject: burst.user,
				Time: at(burst.day).Add(time.Duration(i) * 47 * time.Second), IP: ip(netHostile), UserAgent: uaCurl,
				Additional: add("reason", "invalid_password")})
		}
	}
	// API tokens, created by their owners.
	for _, tok := range []struct {
		user, name string
		day        float64
	}{{"alice", "ci-upload", 2}, {"bob", "laptop-twine", days * 0.45}, {"dave", "nightly", days * 0.2}} {
		p := service.EventParams{Tag: service.TagAccountAPITokenAdded, Subject: tok.user, Time: at(tok.day), ActorID: tok.user,
			AuthMethod: "password", IP: ip(netLondonWork), UserAgent: uaChrome, Location: netLondonWork.location,
			Additional: add("description", tok.name)}
		users = append(users, p)
	}
	users = append(users, service.EventParams{Tag: service.TagAccountAPITokenRemoved, Subject: "dave", Time: at(days * 0.75), ActorID: "dave",
		AuthMethod: "totp", ActorTwoFactor: &yes, IP: ip(netBerlinHome), UserAgent: uaChrome, Location: netBerlinHome.location,
		Additional: add("macaroon_id", "5a7e1c3b-8f2d-4e69-b4a0-1d9c6e2f7a83")})

	// Projects: creation, roles, releases by token and trusted publisher, a yank.
	type release struct {
		project, actor, auth, token, agent string
		net                                demoNetwork
	}
	projects = append(projects,
		service.EventParams{Tag: service.TagProjectCreate, Subject: "tinyweb", Time: at(1), ActorID: "erin", AuthMethod: "password",
			IP: ip(netMobileNL), UserAgent: uaSafari, Location: netMobileNL.location, Additional: add("created_by", "erin")},
		service.EventParams{Tag: service.TagProjectRoleAdd, Subject: "tinyweb", Time: at(1.1), ActorID: "erin", AuthMethod: "password",
			IP: ip(netMobileNL), UserAgent: uaSafari, Location: netMobileNL.location, Additional: add("target_user", "frank", "role_name", "Maintainer", "submitted_by", "erin")},
		service.EventParams{Tag: service.TagProjectRoleAdd, Subject: "fastjson", Time: at(days * 0.35), ActorID: "alice", AuthMethod: "webauthn",
			ActorTwoFactor: &yes, IP: ip(netBerlinHome), UserAgent: uaFirefox, Location: netBerlinHome.location, Additional: add("target_user", "bob", "role_name", "Maintainer", "submitted_by", "alice")},
		service.EventParams{Tag: service.TagProjectRoleRemove, Subject: "requests-lite", Time: at(days * 0.6), ActorID: "dave", AuthMethod: "totp",
			ActorTwoFactor: &yes, IP: ip(netMobileNL), UserAgent: uaChrome, Location: netMobileNL.location, Additional: add("target_user", "carol", "role_name", "Owner", "submitted_by", "dave")},
		service.EventParams{Tag: "project:oidc:publisher-added", Subject: "tinyweb", Time: at(2), ActorID: "erin", AuthMethod: "password",
			IP: ip(netMobileNL), UserAgent: uaSafari, Location: netMobileNL.location, Additional: add("publisher", "GitHub", "specifier", "release.yml", "url", "https://github.com/erin/tinyweb", "submitted_by", "erin")},
	)
	releasers := []release{
		{"fastjson", "alice", "api_token", "ci-upload", uaTwine, netCIRunners},
		{"fastjson", "bob", "api_token", "laptop-twine", uaTwine, netLondonWork},
		{"requests-lite", "dave", "api_token", "nightly", uaTwine, netCIRunners},
		{"tinyweb", "erin", "trusted_publisher", "github:erin/tinyweb/release.yml", "pypa/gh-action-pypi-publish", netCIRunners},
	}
	minor := map[string]int{}
	for d := 3.0; d < days; d += 2 + rng.Float64()*5 {
		r := releasers[rng.IntN(len(releasers))]
		if r.actor == "bob" && d < days*0.45 { // bob's token exists from then on
			r = releasers[0]
		}
		if r.actor == "dave" && d > days*0.75 { // dave's token was removed
			continue
		}
		minor[r.project]++
		projects = append(projects, service.EventParams{Tag: service.TagProjectReleaseAdd, Subject: r.project, Time: at(d),
			ActorID: r.actor, AuthMethod: r.auth, TokenID: r.token, IP: ip(r.net), UserAgent: r.agent, Location: r.net.location,
			Additional: add("canonical_version", fmt.Sprintf("1.%d.0", minor[r.project]), "submitted_by", r.actor)})
	}
	projects = append(projects, service.EventParams{Tag: service.TagProjectReleaseYank, Subject: "fastjson", Time: at(days - 1), ActorID: "alice",
		AuthMethod: "webauthn", ActorTwoFactor: &yes, IP: ip(netBerlinHome), UserAgent: uaFirefox, Location: netBerlinHome.location,
		Additional: add("canonical_version", fmt.Sprintf("1.%d.0", minor["fastjson"]), "submitted_by", "alice", "yanked_reason", "broken wheel")})

	// An organization, acme, owned by alice, with a release team that
	// bob joins, and fastjson moved into it.
	org := func(tag, subject string, day float64, actor string, kv ...string) service.EventParams {
		return service.EventParams{Tag: tag, Subject: subject, Time: at(day), ActorID: actor, AuthMethod: "webauthn",
			ActorTwoFactor: &yes, IP: ip(netBerlinHome), UserAgent: uaFirefox, Location: netBerlinHome.location,
			Additional: add(append([]string{"organization_name", "acme"}, kv...)...)}
	}
	releaseTeam := service.TeamSubject("acme", "release")
	projects = append(projects,
		org("organization:create", "acme", 0.5, "alice", "created_by_user_id", "alice"),
		org("organization:organization_role:add", "acme", 5, "alice", "submitted_by_user_id", "alice", "role_name", "Member", "target_user_id", "bob"),
		org("organization:team:create", "acme", 6, "alice", "created_by_user_id", "alice", "team_name", "release"),
		org("team:create", releaseTeam, 6, "alice", "created_by_user_id", "alice", "team_name", "release"),
		org("team:team_role:add", releaseTeam, 6.1, "alice", "submitted_by_user_id", "alice", "team_name", "release", "role_name", "Member", "target_user_id", "bob"),
		org("organization:organization_project:add", "acme", 8, "alice", "submitted_by_user_id", "alice", "project_name", "fastjson"),
		org("project:organization_project:add", "fastjson", 8, "alice", "submitted_by_user_id", "alice"),
	)

	byTime := func(a, b service.EventParams) int { return a.Time.Compare(b.Time) }
	slices.SortStableFunc(users, byTime)
	slices.SortStableFunc(projects, byTime)
	return users, projects
}
