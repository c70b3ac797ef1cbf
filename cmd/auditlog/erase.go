package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/auditlog/auditlog/service"
)

// errNotClean makes `erasures --verify` exit 1 after printing its findings.
var errNotClean = errors.New("erasure is not clean")

func runErase(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	var cfg config
	cfg.owner = true // changes more than it records: the owner role (AUDITLOG_ADMIN_DATABASE_URL)
	fs, finish := newFlagSet("erase", `Request the GDPR erasure of a person: store the request and enqueue its job
(auditlog worker or serve carries it out). Prints the request id alone on
stdout; stderr says whether the request is new, replaces a stuck one, or is
the person's open request already, and warns when no event names the id.`, getenv, &cfg, stdout, stderr)
	var p service.ErasureParams
	fs.StringVar(&p.UserID, "user", "", "the person to erase (required)")
	fs.StringVar(&p.Reason, "reason", "", "why: a ticket, \"account deleted\" (required)")
	fs.StringVar(&p.RequestedBy, "by", "", "who asks for it, e.g. an admin's id")
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	if p.UserID == "" || p.Reason == "" {
		return usagef("erase needs --user and --reason")
	}
	pool, log, err := cfg.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	warnCatalog(ctx, log, stderr)
	req, created, err := log.RequestErasure(ctx, p)
	if err != nil {
		return flagError(err, map[string]string{"user_id": "user", "requested_by": "by"})
	}
	switch {
	case !created:
		fmt.Fprintf(stderr, "erase: %s already has an open request %d (%s since %s, its job %s); not adding another\n",
			cell(req.UserID), req.ID, req.Status, req.RequestedAt.Format(time.RFC3339), req.JobState)
	case req.Supersedes != 0:
		why := "it was stuck"
		if old, err := log.ErasureRequest(ctx, req.Supersedes); err == nil {
			why = old.Error
		}
		fmt.Fprintf(stderr, "erase: request %d for %s was stuck and is now failed (%s)\n", req.Supersedes, cell(req.UserID), cell(why))
		fmt.Fprintf(stderr, "erase: new request %d stored and its job enqueued; `auditlog worker` (or serve) carries it out\n", req.ID)
	default:
		fmt.Fprintf(stderr, "erase: new request %d stored and its job enqueued; `auditlog worker` (or serve) carries it out\n", req.ID)
	}
	if !req.EventsFound {
		fmt.Fprintf(stderr, "erase: warning: no event names %s; check the id — the request is stored\n", cell(req.UserID))
	}
	fmt.Fprintln(stdout, req.ID)
	return nil
}

// erasureStatus is a request's status for people, with why it is stuck.
func erasureStatus(r *service.ErasureRequest) string {
	if r.Stuck {
		return fmt.Sprintf("%s (stuck: job %s)", r.Status, r.JobState)
	}
	if r.Status == service.ErasureBlocked && r.BlockedBy != 0 {
		return fmt.Sprintf("%s (hold %d)", r.Status, r.BlockedBy)
	}
	return string(r.Status)
}

func runErasures(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	var cfg config
	fs, finish := newFlagSet("erasures", `List erasure requests newest first with their status, counts and, for an open
request whose River job is gone, why it is stuck; or with --verify ID check
that the request left nothing personal of the person anywhere (exit 0 only
when clean).`, getenv, &cfg, stdout, stderr)
	user := fs.String("user", "", "only this person's requests")
	verify := fs.String("verify", "", "check request `ID` against the data now; exit 0 only when clean")
	limit := fs.Int("limit", 100, 1, "how many requests to list")
	asJSON := fs.Bool("json", false, "print JSON Lines")
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	var id int64
	if *verify != "" {
		var err error
		if id, err = strconv.ParseInt(*verify, 10, 64); err != nil || id <= 0 {
			return usagef("--verify: %q is not a request id", *verify)
		}
	}
	pool, log, err := cfg.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	if *verify != "" {
		return verifyErasure(ctx, log, id, *asJSON, stdout)
	}
	reqs, err := log.ErasureRequests(ctx, *user, *limit)
	if err != nil {
		return flagError(err, map[string]string{"user_id": "user"})
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, r := range reqs {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tSTATUS\tREQUESTED\tCOMPLETED\tUSER EVENTS DELETED\tUSER EVENTS SCRUBBED\tPROJECT EVENTS SCRUBBED\tADMIN READS SCRUBBED\tREASON\tERROR")
	stuck := 0
	for _, r := range reqs {
		completed := "-"
		if r.CompletedAt != nil {
			completed = r.CompletedAt.Format("2006-01-02 15:04:05Z")
		}
		if r.Stuck {
			stuck++
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", r.ID, cell(r.UserID), erasureStatus(&r),
			r.RequestedAt.Format("2006-01-02 15:04:05Z"), completed, r.UserEventsDeleted, r.UserEventsScrubbed,
			r.ProjectEventsScrubbed, r.AdminReadsScrubbed, cell(r.Reason), cell(dash(r.Error)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if stuck > 0 {
		fmt.Fprintf(stderr, "erasures: %d stuck request(s): no River job will carry them out; `auditlog erase` for the person again starts afresh\n", stuck)
	}
	return nil
}

func verifyErasure(ctx context.Context, log *service.Log, id int64, asJSON bool, stdout io.Writer) error {
	v, err := log.VerifyErasure(ctx, id)
	if err != nil {
		return err
	}
	if asJSON {
		if err := json.NewEncoder(stdout).Encode(v); err != nil {
			return err
		}
	} else {
		r := v.Request
		fmt.Fprintf(stdout, "request %d for %s: %s; removed %d user events, scrubbed %d user events, %d project events and %d admin reads\n",
			r.ID, cell(r.UserID), erasureStatus(&r), r.UserEventsDeleted, r.UserEventsScrubbed, r.ProjectEventsScrubbed, r.AdminReadsScrubbed)
		if v.Clean {
			fmt.Fprintln(stdout, "clean: no user event of the person is left in any partition, the default partition or a detached table,")
			fmt.Fprintln(stdout, "no event they acted in carries an IP, user agent, location or personal key,")
			fmt.Fprintln(stdout, "no admin read's filter and no event's account key (person_ref) names them,")
			fmt.Fprintln(stdout, "no hook job's arguments or recorded errors and no ingest idempotency key names them")
			fmt.Fprintln(stdout, "(a filter on their network cannot be checked once their events are gone)")
		} else {
			fmt.Fprintln(stdout, "NOT clean:")
			for _, p := range v.Problems {
				fmt.Fprintf(stdout, "  %s\n", cell(p))
			}
		}
	}
	if !v.Clean {
		return errNotClean
	}
	return nil
}

func runExport(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	var cfg config
	fs, finish := newFlagSet("export", `Write every event that names a person as JSON Lines, for a subject access
request: their user events, the events they acted in (on other accounts,
on projects) and the events naming them under a person_ref key, each once,
newest first; user events inside the window only. Each line is the whole
event plus "roles" (subject, actor, mentioned) and, when mentioned,
"mentioned_as" (the keys that name them).`, getenv, &cfg, stdout, stderr)
	user := fs.String("user", "", "the person whose events to export (required)")
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	if *user == "" {
		return usagef("export needs --user")
	}
	pool, log, err := cfg.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	bar := newProgress(stderr, -1, "export", false)
	n, err := log.ExportSubject(ctx, *user, &lineCounter{w: stdout, each: bar.set})
	bar.done()
	if err != nil {
		return flagError(err, map[string]string{"user_id": "user"})
	}
	fmt.Fprintf(stderr, "export: %d events\n", n)
	return nil
}
