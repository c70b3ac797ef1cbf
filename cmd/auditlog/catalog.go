package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/auditlog/auditlog/service"
)

func runCatalog(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "check" {
		return runCatalogCheck(args[1:], getenv, stdout, stderr)
	}
	var cfg config
	fs, finish := newFlagSet("catalog", `Print the event catalog in force (--catalog, AUDITLOG_CATALOG, else the
built-in package-index one): its catalog-wide key classes, then each tag
with its model, description and the classes of its own keys (public,
personal, person_ref, hidden_from_subject). --json prints every key a
tag's events may carry, the catalog-wide ones included. Needs no database.

  auditlog catalog check FILE   checks a catalog file instead`, getenv, &cfg, stdout, stderr)
	asJSON := fs.Bool("json", false, "print JSON Lines: one object per tag")
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	printCatalog(stdout, cfg.registry, *asJSON)
	return nil
}

// catalogTag is one tag as `auditlog catalog --json` prints it.
type catalogTag struct {
	Tag         string                      `json:"tag"`
	Model       service.Model               `json:"model"`
	Description string                      `json:"description"`
	Retired     bool                        `json:"retired,omitempty"`
	Keys        map[string]service.KeyClass `json:"keys"`
}

func printCatalog(w io.Writer, reg *service.Registry, asJSON bool) {
	c := reg.Catalog()
	enc := json.NewEncoder(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if !asJSON {
		if c != nil {
			fmt.Fprintf(w, "catalog %s (%s, fingerprint %s)\n", c.Name, c.Source, c.Fingerprint)
		}
		if c != nil && len(c.Keys) > 0 {
			var shared []string
			for _, k := range slices.Sorted(maps.Keys(c.Keys)) {
				shared = append(shared, k+"="+string(c.Keys[k]))
			}
			fmt.Fprintf(w, "catalog-wide keys: %s\n", cell(strings.Join(shared, " ")))
		}
		fmt.Fprintln(tw, "TAG\tMODEL\tDESCRIPTION\tKEYS")
	}
	for _, spec := range reg.Tags() {
		t := catalogTag{Tag: spec.Tag, Model: spec.Model, Description: spec.Description, Retired: spec.Retired, Keys: map[string]service.KeyClass{}}
		var keys []string
		for _, kc := range reg.KeyClasses(spec.Tag) {
			t.Keys[kc.Key] = kc.Class
			if _, own := spec.Keys[kc.Key]; own {
				keys = append(keys, kc.Key+"="+string(kc.Class))
			}
		}
		if asJSON {
			_ = enc.Encode(t)
			continue
		}
		desc := spec.Description
		if spec.Retired {
			desc = "(retired) " + desc
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cell(spec.Tag), spec.Model, cell(desc), cell(strings.Join(keys, " ")))
	}
	if !asJSON {
		tw.Flush()
	}
}

func runCatalogCheck(args []string, getenv env, stdout, stderr io.Writer) error {
	var cfg config
	fs, finish := newFlagSet("catalog check", `Check a catalog file: its YAML, every tag's model, description and key
classes. Every mistake is printed with its line and tag; exits 0 only when
the file is good. Needs no database.

Usage: auditlog catalog check FILE`, getenv, &cfg, stdout, stderr)
	fs.operands = 1
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("catalog check: give one catalog file")
	}
	path := fs.Arg(0)
	c, err := service.LoadCatalog(path)
	if err == nil {
		_, err = c.Registry()
	}
	if err != nil {
		var n int
		if joined, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range joined.Unwrap() {
				fmt.Fprintln(stderr, cell(e.Error()))
				n++
			}
		} else {
			fmt.Fprintln(stderr, cell(err.Error()))
			n = 1
		}
		return fmt.Errorf("catalog check: %s: %d mistake(s)", path, n)
	}
	fmt.Fprintf(stdout, "%s: catalog %s is good: %d tags, fingerprint %s\n", path, c.Name, len(c.Tags), c.Fingerprint)
	return nil
}

// warnCatalog says on w when the catalog in force differs from the one
// `migrate up` or `serve` last started with: this process would then
// record, describe, show or erase events by other rules than the
// service's. A database that cannot say is no reason to stop.
func warnCatalog(ctx context.Context, log *service.Log, w io.Writer) {
	mark, differs, err := log.CheckCatalog(ctx)
	if err != nil || !differs {
		return
	}
	reg := log.Registry()
	fmt.Fprintf(w, "warning: this process runs catalog %s (fingerprint %s), but `auditlog %s` last ran catalog %s (fingerprint %s) at %s: "+
		"events may be recorded, shown or erased by other rules; start every process with the same --catalog (AUDITLOG_CATALOG)\n",
		reg.CatalogName(), reg.Fingerprint(), mark.Process, mark.Catalog, mark.Fingerprint, mark.MarkedAt.Format(time.RFC3339))
}
