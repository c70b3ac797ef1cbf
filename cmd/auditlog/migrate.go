package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/auditlog/auditlog/migrations"
	"github.com/auditlog/auditlog/service"
)

func runMigrate(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	var cfg config
	cfg.owner = true // changes more than it records: the owner role (AUDITLOG_ADMIN_DATABASE_URL)
	action := ""
	if len(args) > 0 {
		action = args[0]
	}
	summaries := map[string]string{
		"up": `Apply every migration (auditlog's tables, River's tables) and create the
monthly partitions the retention window needs. Safe to run again.`,
		"down": `Roll back the newest migration, or with --to N every migration after
version N (--to 0 removes every table auditlog made, with its data).`,
		"status": `List the migrations and whether each is applied.`,
	}
	fs, finish := newFlagSet("migrate "+action, summaries[action], getenv, &cfg, stdout, stderr)
	var to *int64
	if action == "down" {
		to = fs.Int64("to", -1, 0, "roll back to this version (0 removes everything); default: the newest migration only")
	}
	switch action {
	case "up", "down", "status":
	case "-h", "--help", "-help":
		fmt.Fprint(stdout, "Usage: auditlog migrate up|down|status [flags]\n\n"+
			"  up      "+strings.ReplaceAll(summaries["up"], "\n", "\n          ")+"\n"+
			"  down    "+strings.ReplaceAll(summaries["down"], "\n", "\n          ")+"\n"+
			"  status  "+summaries["status"]+"\n\n`auditlog migrate ACTION -h` shows the action's flags.\n")
		return errHelp
	case "":
		return usagef("migrate needs up, down or status (see auditlog migrate -h)")
	default:
		return usagef("migrate: unknown action %q (up, down or status)", action)
	}
	if err := parse(fs, finish, args[1:]); err != nil {
		return err
	}
	connCfg, err := pgx.ParseConfig(cfg.ownerURL())
	if err != nil {
		return fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	sqlDB := stdlib.OpenDB(*connCfg)
	defer sqlDB.Close()
	provider, err := migrations.NewProvider(sqlDB, nil)
	if err != nil {
		return err
	}
	switch action {
	case "up":
		results, err := provider.Up(ctx)
		for _, r := range results {
			fmt.Fprintf(stdout, "applied %s (%s)\n", migrationName(r.Source.Path, r.Source.Version), r.Duration.Round(time.Millisecond))
		}
		if err != nil {
			return fmt.Errorf("migrate up: %w", err)
		}
		pool, log, err := cfg.open(ctx)
		if err != nil {
			return err
		}
		defer pool.Close()
		created, err := log.EnsurePartitions(ctx, pool, cfg.ahead)
		if err != nil {
			return err
		}
		for _, name := range created {
			fmt.Fprintf(stdout, "created partition %s\n", name)
		}
		if err := log.MarkCatalog(ctx, service.ProcessMigrate); err != nil {
			return err
		}
		v, err := provider.GetDBVersion(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "schema at version %d\n", v)
	case "down":
		if *to < 0 {
			r, err := provider.Down(ctx)
			if r != nil {
				fmt.Fprintf(stdout, "rolled back %s\n", migrationName(r.Source.Path, r.Source.Version))
			}
			if err != nil {
				return fmt.Errorf("migrate down: %w", err)
			}
		} else {
			results, err := provider.DownTo(ctx, *to)
			for _, r := range results {
				fmt.Fprintf(stdout, "rolled back %s\n", migrationName(r.Source.Path, r.Source.Version))
			}
			if err != nil {
				return fmt.Errorf("migrate down: %w", err)
			}
			if *to == 0 {
				// Down to nothing means nothing: goose's bookkeeping goes too.
				if err := migrations.DropVersionTable(ctx, sqlDB); err != nil {
					return fmt.Errorf("migrate down: %w", err)
				}
				fmt.Fprintln(stdout, "schema at version 0; no auditlog, River or goose table is left")
				return nil
			}
		}
		v, err := provider.GetDBVersion(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "schema at version %d\n", v)
	case "status":
		statuses, err := provider.Status(ctx)
		if err != nil {
			return fmt.Errorf("migrate status: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tMIGRATION\tSTATE\tAPPLIED AT")
		for _, s := range statuses {
			applied := ""
			if !s.AppliedAt.IsZero() {
				applied = s.AppliedAt.UTC().Format("2006-01-02 15:04:05Z")
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", s.Source.Version, migrationName(s.Source.Path, s.Source.Version), s.State, applied)
		}
		return tw.Flush()
	}
	return nil
}

func migrationName(path string, version int64) string {
	if path == "" {
		return fmt.Sprintf("%05d_river_schema (Go)", version)
	}
	return path
}
