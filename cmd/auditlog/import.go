package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/auditlog/auditlog/importer"
	"github.com/auditlog/auditlog/service"
)

// errImportStrict makes `import --strict` exit 1 after printing what it
// would refuse.
var errImportStrict = errors.New("import refused by --strict")

func runImport(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	var cfg config
	cfg.owner = true // writes history in bulk: the owner role (AUDITLOG_ADMIN_DATABASE_URL)
	fs, finish := newFlagSet("import", `Import an existing service's history, exactly once: JSON Lines from FILE
(or - for stdin), one event per line with the fields of ingest and
`+"`events --json`"+` plus source and source_id.
  auditlog import FILE|- [--run NAME] [--source NAME] [--strict] [--by ADMIN]
Or straight from a Warehouse (PyPI) database, read only in one snapshot:
its user, project, file, organization and team events with their IP
addresses and GeoIP as the location:
  auditlog import --warehouse-dsn URL [--run NAME] [--strict] [--by ADMIN]
Every event keeps (source, source_id): a rerun, or a killed run started
again with the same --run, records nothing twice and resumes where it
stopped. User events older than the retention window are not imported and
are counted per tag; events the catalog cannot accept are listed with their
source id and reason, and the rest is imported (--strict: nothing is
imported when any would be rejected). Imported events run no signal and
enqueue no hook. The summary is printed and kept as an admin:import event.
Shows progress on a terminal.`, getenv, &cfg, stdout, stderr)
	fs.operands = 1
	var opts importer.Options
	fs.StringVar(&opts.Run, "run", "", "the run's name, to resume it (default: the file's absolute path, or stdin)")
	fs.StringVar(&opts.Source, "source", "", "the source of events whose line names none")
	fs.BoolVar(&opts.Strict, "strict", false, "import nothing when any event would be rejected")
	fs.StringVar(&opts.By, "by", "", "the admin the summary event names (default "+importer.DefaultBy+")")
	batch := fs.Int("batch", importer.DefaultBatch, 1, "events per transaction")
	warehouse := fs.String("warehouse-dsn", "", "import from the Warehouse database at this `URL` instead of a file")
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	opts.Batch = *batch
	if *warehouse != "" {
		if fs.NArg() != 0 {
			return usagef("import takes a FILE or --warehouse-dsn, not both")
		}
		if opts.Source != "" {
			return usagef("--source: a Warehouse import names its sources (warehouse:TABLE)")
		}
		return importWarehouse(ctx, cfg, *warehouse, opts, stdout, stderr)
	}
	if fs.NArg() != 1 {
		return usagef("import needs one FILE (or - for stdin), or --warehouse-dsn URL")
	}
	path := fs.Arg(0)
	open, size, cleanup, err := importInput(path, opts.Strict)
	if err != nil {
		return err
	}
	defer cleanup()
	if opts.Run == "" {
		opts.Run = "stdin"
		if path != "-" {
			abs, err := filepath.Abs(path)
			if err != nil {
				return err
			}
			opts.Run = abs
		}
	}
	pool, log, err := cfg.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	warnCatalog(ctx, log, stderr)
	bar := newProgress(stderr, size, "import", true)
	opts.Progress = bar.set
	res, err := importer.JSONL(ctx, log, open, opts)
	bar.done()
	return reportImport(res, err, opts, stdout, stderr)
}

// importWarehouse runs import --warehouse-dsn.
func importWarehouse(ctx context.Context, cfg config, dsn string, opts importer.Options, stdout, stderr io.Writer) error {
	if opts.Run == "" {
		opts.Run = "warehouse:" + redactURL(dsn)
	}
	pool, log, err := cfg.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	warnCatalog(ctx, log, stderr)
	bar := newProgress(stderr, -1, "import", false)
	opts.Progress, opts.Total = bar.set, bar.setTotal
	res, err := importer.Warehouse(ctx, log, dsn, opts)
	bar.done()
	return reportImport(res, err, opts, stdout, stderr)
}

// reportImport prints what an import did, or why it stopped.
func reportImport(res *importer.Result, err error, opts importer.Options, stdout, stderr io.Writer) error {
	if errors.Is(err, importer.ErrStrict) {
		printImport(stdout, "would import", res.Check)
		fmt.Fprintf(stderr, "import: %d events would be refused; nothing was imported (--strict)\n", res.Check.Refused)
		return errImportStrict
	}
	if res != nil && res.Resumed > 0 {
		fmt.Fprintf(stderr, "import: resumed run %s after line %d\n", cell(opts.Run), res.Resumed)
	}
	if err != nil {
		var ve *service.ValidationError
		if errors.As(err, &ve) {
			return flagError(err, nil)
		}
		if res != nil {
			fmt.Fprintf(stderr, "import: stopped after line %d; run the same command again to resume\n", res.Run.Position)
		}
		return err
	}
	printImport(stdout, "imported", &res.Run.Counts)
	return nil
}

// importInput opens path for importer.JSONL: a file (reopened for each
// pass), or stdin (copied to a temporary file first when it must be read
// twice).
func importInput(path string, twice bool) (open func() (io.ReadCloser, error), size int64, cleanup func(), err error) {
	cleanup = func() {}
	if path == "-" {
		if !twice {
			used := false
			return func() (io.ReadCloser, error) {
				if used {
					return nil, errors.New("stdin can be read once")
				}
				used = true
				return io.NopCloser(os.Stdin), nil
			}, -1, cleanup, nil
		}
		tmp, err := os.CreateTemp("", "auditlog-import-*.jsonl")
		if err != nil {
			return nil, 0, cleanup, err
		}
		cleanup = func() { _ = os.Remove(tmp.Name()) }
		n, err := io.Copy(tmp, os.Stdin)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			cleanup()
			return nil, 0, func() {}, err
		}
		path, size = tmp.Name(), n
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, 0, cleanup, usagef("import: %v", err)
	}
	if info.IsDir() {
		return nil, 0, cleanup, usagef("import: %s is a directory", path)
	}
	if size == 0 {
		size = info.Size()
	}
	return func() (io.ReadCloser, error) { return os.Open(path) }, size, cleanup, nil
}

// printImport prints an import's counts: the totals, the expired per tag
// and the refused events with their source ids and reasons.
func printImport(w io.Writer, verb string, c *service.ImportCounts) {
	fmt.Fprintf(w, "read %d events: %s %d, duplicates %d, expired %d (older than the retention window, not imported), refused %d\n",
		c.Read, verb, c.Recorded, c.Duplicates, c.Expired, c.Refused)
	tags := make([]string, 0, len(c.ExpiredByTag))
	for tag := range c.ExpiredByTag {
		tags = append(tags, tag)
	}
	slices.Sort(tags)
	for _, tag := range tags {
		fmt.Fprintf(w, "  expired %s: %d\n", cell(tag), c.ExpiredByTag[tag])
	}
	for _, r := range c.Refusals {
		field := ""
		if r.Field != "" {
			field = " (" + cell(r.Field) + ")"
		}
		fmt.Fprintf(w, "  refused %s %s%s: %s\n", cell(r.Source), cell(r.SourceID), field, cell(strings.TrimSpace(r.Reason)))
	}
	if n := c.Refused - int64(len(c.Refusals)); n > 0 {
		fmt.Fprintf(w, "  … and %d more refused\n", n)
	}
}
