package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/auditlog/auditlog/service"
)

func runPartitions(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	maintain := len(args) > 0 && args[0] == "maintain"
	if maintain {
		args = args[1:]
	}
	var cfg config
	fs, finish := newFlagSet("partitions [maintain]", getenv, &cfg, stdout, stderr)
	now := fs.String("now", "", "maintain: the clock for this pass, RFC 3339 or YYYY-MM-DD (to test or plan ahead)")
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	pool, log, err := cfg.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	if !maintain {
		return listPartitions(ctx, log, stdout)
	}
	opts := service.MaintainOpts{Ahead: cfg.ahead}
	if *now != "" {
		if opts.Now, err = parseTime(*now); err != nil {
			return usagef("--now: %v", err)
		}
	}
	rep, err := log.MaintainPartitions(ctx, opts)
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
	for _, w := range rep.Warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	if len(rep.Dropped)+len(rep.Created)+len(rep.Warnings) == 0 {
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
