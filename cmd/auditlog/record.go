package main

import (
	"context"
	"encoding/json"
	"io"
	"strconv"

	"github.com/auditlog/auditlog/service"
)

func runRecord(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	var cfg config
	fs, finish := newFlagSet("record", `Record one event from flags (operators, smoke tests) and print it as JSON. The
model follows the tag's registration. A value the event refuses is a usage
error naming its flag (exit 2); nothing is written.`, getenv, &cfg, stdout, stderr)
	var (
		p          service.EventParams
		model      = fs.String("model", "", "user, project, organization or team (default: the tag's registered model)")
		at         = fs.Time("time", "event time, RFC 3339 or YYYY-MM-DD (default now)")
		twoFactor  = fs.String("two-factor", "", "true or false: whether the actor had 2FA enabled")
		additional = fs.String("additional", "", "tag-specific data, a JSON object")
		loc        service.Location
	)
	fs.StringVar(&p.Tag, "tag", "", "registered tag, e.g. account:login:success (required)")
	fs.StringVar(&p.Subject, "subject", "", "user id (user events) or project id (project events) (required)")
	fs.StringVar(&p.ActorID, "actor", "", "who acted, when not the subject")
	fs.StringVar(&p.AuthMethod, "auth-method", "", "password, webauthn, totp, api_token, trusted_publisher, ...")
	fs.StringVar(&p.TokenID, "token", "", "the token or trusted publisher that acted")
	fs.StringVar(&p.IP, "ip", "", "client IP address")
	fs.StringVar(&p.UserAgent, "user-agent", "", "client User-Agent")
	fs.StringVar(&loc.Country, "country", "", "location: ISO country code")
	fs.StringVar(&loc.Region, "region", "", "location: region")
	fs.StringVar(&loc.City, "city", "", "location: city")
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	if p.Tag == "" || p.Subject == "" {
		return usagef("record needs --tag and --subject")
	}
	p.Time = *at
	if *twoFactor != "" {
		b, err := strconv.ParseBool(*twoFactor)
		if err != nil {
			return usagef("--two-factor: %q is not true or false", *twoFactor)
		}
		p.ActorTwoFactor = &b
	}
	m := service.Model(*model)
	if m != "" && !m.Valid() {
		return usagef("--model: %q is not one of user, project, organization, team", *model)
	}
	if *additional != "" {
		p.Additional = json.RawMessage(*additional)
	}
	if loc != (service.Location{}) {
		p.Location = &loc
	}

	pool, log, err := cfg.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	if m == "" {
		m = service.ModelUser
		if spec, ok := log.Registry().Lookup(p.Tag); ok {
			m = spec.Model
		}
	}
	e, err := log.Record(ctx, m, p)
	if err != nil {
		return flagError(err, map[string]string{"user_id": "subject", "project_id": "subject",
			"organization_id": "subject", "team_id": "subject", "actor_id": "actor",
			"token_id": "token", "location.country": "country", "location.region": "region", "location.city": "city"})
	}
	return json.NewEncoder(stdout).Encode(e)
}
