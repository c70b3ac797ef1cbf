package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/auditlog/auditlog/service"
)

func runEvents(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	var cfg config
	fs, finish := newFlagSet("events", `List events of every model newest first with the admin console's filters, as
a table or, with --json, as JSON Lines with the column names. User events
come only from inside the retention window. Control characters in stored
values are shown escaped, so no stored text can drive the terminal.`, getenv, &cfg, stdout, stderr)
	var f service.Filter
	fs.StringVar(&f.UserID, "user", "", "only user events about this user")
	fs.StringVar(&f.ProjectID, "project", "", "only project events of this project")
	fs.StringVar(&f.OrganizationID, "org", "", "only events of this organization")
	fs.StringVar(&f.TeamID, "team", "", "only events of this team (ORG/TEAM)")
	fs.StringVar(&f.ActorID, "actor", "", "only events this actor performed")
	fs.StringVar(&f.Tag, "tag", "", "only this tag")
	fs.StringVar(&f.TagPrefix, "tag-prefix", "", "only tags starting with this, e.g. account:login:")
	fs.StringVar(&f.IP, "ip", "", "only this address or CIDR network, e.g. 10.0.0.0/8")
	fs.StringVar(&f.Cursor, "cursor", "", "continue after a previous listing (printed on stderr)")
	since := fs.Time("since", "only events at or after this time (RFC 3339 or YYYY-MM-DD)")
	until := fs.Time("until", "only events before this time (RFC 3339 or YYYY-MM-DD)")
	limit := fs.Int("limit", 50, 0, "how many events to print (0: all)")
	asJSON := fs.Bool("json", false, "print JSON Lines instead of a table")
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	f.Since, f.Until = *since, *until
	// Every filter is checked before connecting: a bad one is a usage
	// error naming its flag, never a filter silently dropped.
	if err := f.Validate(); err != nil {
		return flagError(err, nil)
	}

	pool, log, err := cfg.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()

	var (
		enc = json.NewEncoder(stdout)
		tw  = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		n   int
	)
	if !*asJSON {
		fmt.Fprintln(tw, "TIME\tTAG\tSUBJECT\tACTOR\tAUTH\tIP\tLOCATION\tDESCRIPTION")
	}
	for {
		f.Limit = service.MaxPageSize
		if *limit > 0 {
			f.Limit = min(*limit-n, service.MaxPageSize)
		}
		page, err := log.Events(ctx, f)
		if err != nil {
			return err
		}
		for _, e := range page.Events {
			if *asJSON {
				if err := enc.Encode(e); err != nil {
					return err
				}
			} else {
				desc := cell(e.Description)
				if e.Held {
					desc = "[held] " + desc // kept past its month by a legal hold
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
					e.Time.Format("2006-01-02 15:04:05Z"), e.Tag, cell(subjectLabel(&e)), cell(dash(e.ActorID)),
					cell(dash(authLabel(&e))), dash(ipLabel(&e)), cell(dash(e.Location.String())), desc)
			}
		}
		n += len(page.Events)
		f.Cursor = page.NextCursor
		if f.Cursor == "" || (*limit > 0 && n >= *limit) {
			break
		}
	}
	if !*asJSON {
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if f.Cursor != "" {
		fmt.Fprintf(stderr, "more events: --cursor %s\n", f.Cursor) // base64url: nothing to escape
	}
	return nil
}

func subjectLabel(e *service.Event) string {
	return string(e.Model) + " " + e.Subject()
}

func authLabel(e *service.Event) string {
	s := e.AuthMethod
	if e.TokenID != "" {
		s += " (" + e.TokenID + ")"
	}
	if e.ActorTwoFactor != nil && *e.ActorTwoFactor {
		s += " 2fa"
	}
	return strings.TrimSpace(s)
}

func ipLabel(e *service.Event) string {
	if !e.IP.IsValid() {
		return ""
	}
	return e.IP.String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
