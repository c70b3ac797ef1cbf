package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/service"
)

func runPartitions(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	action := "list"
	if len(args) > 0 && (args[0] == "plan" || args[0] == "maintain") {
		action, args = args[0], args[1:]
	}
	var cfg config
	cfg.owner = true // changes more than it records: the owner role (AUDITLOG_ADMIN_DATABASE_URL)
	name, summary := "partitions", `List user_events' monthly partitions: range, estimated rows, size on disk, the
date each becomes droppable, attached or detached.
  auditlog partitions plan [--now T]   what a maintenance pass would do (dry run)
  auditlog partitions maintain         run one real maintenance pass`
	switch action {
	case "plan":
		name, summary = "partitions plan", `Dry run: print what a maintenance pass at --now (default: the real clock) would
do — attach, rescue, create, drop, keep — and change nothing.`
	case "maintain":
		name, summary = "partitions maintain", `Run one real maintenance pass at the real clock: finish detached tables, rescue
the default partition, create the months ahead, drop expired months (each
drop is logged in retention_log), and print what it did. To see what a pass
at another time would do, use partitions plan --now T.`
	}
	fs, finish := newFlagSet(name, summary, getenv, &cfg, stdout, stderr)
	now := fs.Time("now", "plan only: the time to plan for, RFC 3339 or YYYY-MM-DD (default: the real clock); "+
		"a real pass always runs at the real clock")
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	nowSet := false
	fs.Visit(func(f *flag.Flag) { nowSet = nowSet || f.Name == "now" })
	shown := "T"
	if !now.IsZero() {
		shown = now.Format(time.RFC3339)
	}
	var at time.Time
	switch {
	case action == "plan":
		at = *now
	case nowSet && action == "maintain":
		return usagef("partitions maintain takes no --now: a real pass always runs at the real clock; "+
			"`auditlog partitions plan --now %s` shows what a pass then would do, and changes nothing", shown)
	case nowSet:
		return usagef("--now is for `auditlog partitions plan --now %s` only", shown)
	}
	pool, log, err := cfg.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	switch action {
	case "plan":
		rep, err := log.PlanPartitions(ctx, service.PlanOpts{Now: at, Ahead: cfg.ahead})
		if err != nil {
			return err
		}
		printPlan(stdout, rep, cfg.retention)
		return nil
	case "maintain":
		return maintainPartitions(ctx, pool, log, cfg, stdout)
	default:
		return listPartitions(ctx, log, stdout)
	}
}

// printPlan prints what a pass at rep.Now would do, step by step.
func printPlan(w io.Writer, rep *service.MaintenanceReport, retention time.Duration) {
	fmt.Fprintf(w, "plan for %s, window %s: months ending by %s have expired\n",
		rep.Now.Format(time.RFC3339), humanDuration(retention), rep.Cutoff.Format(time.RFC3339))
	for _, name := range rep.Reattached {
		fmt.Fprintf(w, "would attach %s again (it was left detached and its month is inside the window)\n", name)
	}
	rescued := make(map[string]bool, len(rep.Rescued))
	for _, r := range rep.Rescued {
		rescued[r.Name] = true
		fmt.Fprintf(w, "would move %d rows from user_events_default into %s (a new partition)\n", r.Rows, r.Name)
	}
	for _, name := range rep.Created {
		if !rescued[name] {
			fmt.Fprintf(w, "would create %s\n", name)
		}
	}
	for _, d := range rep.Dropped {
		switch d.Reason {
		case "default":
			fmt.Fprintf(w, "would delete %d rows of %s from user_events_default (their month has expired)\n",
				d.Rows, d.Month.Format("2006-01"))
		case "orphan":
			fmt.Fprintf(w, "would drop %s (%s, ~%d rows, left detached and expired)\n", d.Name, d.Month.Format("2006-01"), d.Rows)
		default:
			fmt.Fprintf(w, "would drop %s (%s, ~%d rows, %s)\n", d.Name, d.Month.Format("2006-01"), d.Rows, d.Reason)
		}
	}
	for _, name := range rep.Kept {
		fmt.Fprintf(w, "would keep %s (rows inside the window)\n", name)
	}
	for _, id := range rep.HoldsLapsed {
		fmt.Fprintf(w, "would release legal hold %d (its until has passed)\n", id)
	}
	if rep.HeldDropped > 0 {
		fmt.Fprintf(w, "would delete %d held rows no open hold covers any more (expired)\n", rep.HeldDropped)
	}
	if len(rep.Reattached)+len(rep.Created)+len(rep.Dropped)+len(rep.Kept)+len(rep.HoldsLapsed) == 0 && rep.HeldDropped == 0 {
		fmt.Fprintln(w, "nothing to do")
	}
	fmt.Fprintln(w, "nothing was changed: this is a plan; `auditlog partitions maintain` runs a pass at the real clock")
}

// maintainPartitions runs one real pass at the real clock and prints it.
func maintainPartitions(ctx context.Context, pool *pgxpool.Pool, log *service.Log, cfg config, stdout io.Writer) error {
	rep, err := log.MaintainPartitions(ctx, pool, service.MaintainOpts{Ahead: cfg.ahead})
	if err != nil {
		return err
	}
	if rep.Skipped {
		fmt.Fprintln(stdout, "another maintenance pass holds the lock; nothing done")
		return nil
	}
	fmt.Fprintf(stdout, "now %s, window %s: months ending by %s have expired\n",
		rep.Now.Format(time.RFC3339), humanDuration(cfg.retention), rep.Cutoff.Format(time.RFC3339))
	for _, d := range rep.Dropped {
		fmt.Fprintf(stdout, "dropped %s (%s, ~%d rows, %s", d.Name, d.Month.Format("2006-01"), d.Rows, d.Reason)
		if d.Reason == "expired" {
			fmt.Fprintf(stdout, "; detach %s", d.Detach.Round(100*time.Microsecond))
		}
		if d.Reason != "default" {
			fmt.Fprintf(stdout, "; drop %s", d.Drop.Round(100*time.Microsecond))
		}
		fmt.Fprintln(stdout, ")")
	}
	for _, name := range rep.Created {
		fmt.Fprintf(stdout, "created %s\n", name)
	}
	for _, id := range rep.HoldsLapsed {
		fmt.Fprintf(stdout, "released legal hold %d (its until has passed)\n", id)
	}
	if rep.HeldMoved > 0 {
		fmt.Fprintf(stdout, "kept %d rows of people under a legal hold (moved to held_user_events)\n", rep.HeldMoved)
	}
	if rep.HeldDropped > 0 {
		fmt.Fprintf(stdout, "deleted %d held rows no open hold covers any more (expired)\n", rep.HeldDropped)
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	if len(rep.Dropped)+len(rep.Created)+len(rep.Warnings)+len(rep.HoldsLapsed) == 0 && rep.HeldDropped == 0 {
		fmt.Fprintln(stdout, "nothing to do")
	}
	return nil
}

func listPartitions(ctx context.Context, log *service.Log, stdout io.Writer) error {
	parts, err := log.Partitions(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tFROM\tTO\tROWS (EST.)\tSIZE\tDROPPABLE FROM\tSTATE")
	for _, p := range parts {
		from, to, droppable := "-", "-", "-"
		if !p.From.IsZero() {
			from, to = p.From.Format("2006-01-02"), p.To.Format("2006-01-02")
			droppable = p.DroppableAt.Format("2006-01-02 15:04Z")
		}
		state := "attached"
		if !p.Attached {
			state = "detached"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", p.Name, from, to, p.Rows, humanBytes(p.Bytes), droppable, state)
	}
	return tw.Flush()
}

func humanBytes(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", f), ".0") + " " + units[i]
}

// humanDuration prints whole days as "90 days".
func humanDuration(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}
