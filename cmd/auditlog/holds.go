package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/auditlog/auditlog/service"
)

// holdSubjectFlags are hold add's subject flags by the kind they name.
var holdSubjectFlags = []struct {
	flag string
	kind service.Model
}{{"user", service.ModelUser}, {"project", service.ModelProject}, {"org", service.ModelOrganization}}

// holdFields maps the service's field names of a hold to hold add's flags.
var holdFields = map[string]string{"user_id": "user", "project_id": "project", "organization_id": "org"}

func runHold(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "add":
			return runHoldAdd(ctx, args[1:], getenv, stdout, stderr)
		case "release":
			return runHoldRelease(ctx, args[1:], getenv, stdout, stderr)
		}
		if !strings.HasPrefix(args[0], "-") {
			return usagef("hold: unknown action %q (add or release; see auditlog hold -h)", args[0])
		}
	}
	var cfg config
	fs, finish := newFlagSet("hold", `Place or release a legal hold on a person, a project or an organization.
  auditlog hold add --user ID | --project ID | --org ID --reason TEXT --by ADMIN [--until DATE]
  auditlog hold release ID --by ADMIN
auditlog holds lists them. `+"`auditlog hold ACTION -h`"+` shows the action's flags.`, getenv, &cfg, stdout, stderr)
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	return usagef("hold needs add or release (see auditlog hold -h)")
}

// holdEffect says what an open hold does, for the operator.
func holdEffect(h *service.Hold) string {
	if h.Kind == service.ModelUser {
		return fmt.Sprintf("while it is open, retention keeps %s's user events (their own and those they acted in) past their month, "+
			"and no erasure of %s runs", cell(h.SubjectID), cell(h.SubjectID))
	}
	return fmt.Sprintf("while it is open, erasure scrubs nothing from the events of %s %s, "+
		"and the erasure of anyone who acted in them waits", h.Kind, cell(h.SubjectID))
}

func runHoldAdd(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	var cfg config
	cfg.owner = true // changes more than it records: the owner role (AUDITLOG_ADMIN_DATABASE_URL)
	fs, finish := newFlagSet("hold add", `Place a legal hold on a person (--user), a project (--project) or an
organization and its teams (--org). While it is open, retention keeps a
held person's user events past their month (admins see them marked held),
erasure scrubs nothing from a held project's or organization's events, and
every erasure the hold stops is blocked until it is released. Placing it
is an admin:hold:placed event of --by; the held person is not told.
Prints the hold id alone on stdout; stderr says whether the hold is new or
the subject's open hold already (nothing is changed then).`, getenv, &cfg, stdout, stderr)
	subjects := make([]*string, len(holdSubjectFlags))
	for i, s := range holdSubjectFlags {
		subjects[i] = fs.String(s.flag, "", "the "+string(s.kind)+" to hold (exactly one of --user, --project, --org)")
	}
	var p service.HoldParams
	fs.StringVar(&p.Reason, "reason", "", "why: a case, a request (required; admins only see it)")
	fs.StringVar(&p.By, "by", "", "the admin who places the hold (required)")
	until := fs.Time("until", "when the hold lapses by itself, RFC 3339 or YYYY-MM-DD (that day's 00:00 UTC); default: never")
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	var named []string
	for i, s := range holdSubjectFlags {
		if *subjects[i] != "" {
			named = append(named, "--"+s.flag)
			p.Kind, p.SubjectID = s.kind, *subjects[i]
		}
	}
	switch {
	case len(named) == 0:
		return usagef("hold add needs one of --user, --project or --org")
	case len(named) > 1:
		return usagef("hold add takes one subject, not %s", strings.Join(named, " and "))
	case p.Reason == "":
		return usagef("hold add needs --reason")
	case p.By == "":
		return usagef("hold add needs --by")
	}
	if !until.IsZero() {
		p.Until = until
	}
	pool, log, err := cfg.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	hold, created, err := log.PlaceHold(ctx, p)
	if err != nil {
		return flagError(err, holdFields)
	}
	if !created {
		fmt.Fprintf(stderr, "hold add: %s %s already has an open hold %d (placed by %s at %s: %s); not adding another\n",
			hold.Kind, cell(hold.SubjectID), hold.ID, cell(hold.PlacedBy), hold.PlacedAt.Format(time.RFC3339), cell(hold.Reason))
	} else {
		lapses := "until released (auditlog hold release " + strconv.FormatInt(hold.ID, 10) + ")"
		if hold.Until != nil {
			lapses = "until " + hold.Until.Format(time.RFC3339) + " or its release, whichever comes first"
		}
		fmt.Fprintf(stderr, "hold add: new hold %d on %s %s, %s\n", hold.ID, hold.Kind, cell(hold.SubjectID), lapses)
		if blocked := blockedBy(ctx, log, hold.ID); len(blocked) > 0 {
			fmt.Fprintf(stderr, "hold add: it blocks erasure request(s) %s\n", blocked)
		}
	}
	fmt.Fprintf(stderr, "hold add: %s\n", holdEffect(&hold))
	fmt.Fprintln(stdout, hold.ID)
	return nil
}

// blockedBy lists the ids of the erasure requests hold blocks ("" when
// none or they cannot be read: it only informs).
func blockedBy(ctx context.Context, log *service.Log, hold int64) string {
	reqs, err := log.ErasureRequests(ctx, "", 10_000)
	if err != nil {
		return ""
	}
	var ids []string
	for _, r := range reqs {
		if r.Status == service.ErasureBlocked && r.BlockedBy == hold {
			ids = append(ids, strconv.FormatInt(r.ID, 10))
		}
	}
	return strings.Join(ids, ", ")
}

func runHoldRelease(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	var cfg config
	cfg.owner = true // changes more than it records: the owner role (AUDITLOG_ADMIN_DATABASE_URL)
	fs, finish := newFlagSet("hold release", `Release legal hold ID: the erasure requests no other open hold stops go back
to pending with their jobs enqueued, and the user events it kept past their
month go at the next maintenance pass once they are outside the window.
Releasing is an admin:hold:released event of --by. Says on stderr what was
released and which erasure requests resumed.

Usage: auditlog hold release ID --by ADMIN`, getenv, &cfg, stdout, stderr)
	fs.operands = 1
	by := fs.String("by", "", "the admin who releases the hold (required)")
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("hold release needs the hold's ID")
	}
	id, ok := holdID(fs.Arg(0))
	if !ok {
		return usagef("hold release: %q is not a hold id", fs.Arg(0))
	}
	if *by == "" {
		return usagef("hold release needs --by")
	}
	pool, log, err := cfg.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	hold, resumed, err := log.ReleaseHold(ctx, id, *by)
	switch {
	case errors.Is(err, service.ErrNotFound):
		return fmt.Errorf("hold release: there is no hold %d (auditlog holds lists them)", id)
	case errors.Is(err, service.ErrHoldNotOpen):
		if h, gerr := log.GetHold(ctx, id); gerr == nil && h.ReleasedAt != nil {
			return fmt.Errorf("hold release: hold %d was released already, by %s at %s", id, cell(h.ReleasedBy), h.ReleasedAt.Format(time.RFC3339))
		}
		return fmt.Errorf("hold release: hold %d was released already", id)
	case err != nil:
		return flagError(err, nil)
	}
	fmt.Fprintf(stderr, "hold release: released hold %d on %s %s (placed by %s at %s: %s)\n", hold.ID, hold.Kind,
		cell(hold.SubjectID), cell(hold.PlacedBy), hold.PlacedAt.Format(time.RFC3339), cell(hold.Reason))
	if len(resumed) == 0 {
		fmt.Fprintln(stderr, "hold release: no erasure request resumed")
	} else {
		ids := make([]string, len(resumed))
		for i, r := range resumed {
			ids[i] = strconv.FormatInt(r.ID, 10)
		}
		fmt.Fprintf(stderr, "hold release: erasure request(s) %s resumed: pending again, their jobs enqueued\n", strings.Join(ids, ", "))
	}
	return nil
}

// holdID parses s as a hold id: a positive decimal number.
func holdID(s string) (int64, bool) {
	id, err := strconv.ParseInt(s, 10, 64)
	return id, err == nil && id > 0
}

func runHolds(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	var cfg config
	fs, finish := newFlagSet("holds", `List legal holds newest first: id, kind, subject, who placed it and when,
until, who released it and when, and why; with --open only the open ones.
Then how many user events holds keep past their month.`, getenv, &cfg, stdout, stderr)
	open := fs.Bool("open", false, "only the open holds")
	limit := fs.Int("limit", 100, 1, "how many holds to list")
	asJSON := fs.Bool("json", false, "print JSON Lines: one hold per line")
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	pool, log, err := cfg.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	holds, err := log.Holds(ctx, *open, *limit)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, h := range holds {
			if err := enc.Encode(h); err != nil {
				return err
			}
		}
		return nil
	}
	const stamp = "2006-01-02 15:04:05Z"
	when := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.Format(stamp)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tSUBJECT\tSTATUS\tPLACED BY\tPLACED\tUNTIL\tRELEASED BY\tRELEASED\tREASON")
	for _, h := range holds {
		status := "open"
		if !h.Open() {
			status = "released"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.ID, h.Kind, cell(h.SubjectID), status, cell(h.PlacedBy),
			h.PlacedAt.Format(stamp), when(h.Until), cell(dash(h.ReleasedBy)), when(h.ReleasedAt), cell(h.Reason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if n, err := log.HeldEvents(ctx); err == nil {
		fmt.Fprintf(stderr, "holds: %d user event(s) kept past their month by holds\n", n)
	}
	return nil
}
