package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/geoip"
	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/migrations"
	"github.com/auditlog/auditlog/service"
)

const usage = `auditlog — a PostgreSQL-native audit log

Usage:
  auditlog <command> [flags]

Commands:
  migrate up        apply every migration (auditlog's tables, River's tables)
                    and create the monthly partitions the window needs
  migrate down      roll back the newest migration; --to N rolls back to
                    version N (--to 0 removes every table auditlog made)
  migrate status    list migrations and whether each is applied
  record            record one event from flags (operators, smoke tests)
  events            list events newest first with the admin filters, as a
                    table or, with --json, as JSON Lines
  partitions        list user_events' monthly partitions: range, estimated
                    rows, size, the date each becomes droppable
  partitions plan [--now T]
                    dry run: print what a maintenance pass at T (default
                    now) would do; changes nothing
  partitions maintain
                    run one real maintenance pass at the real clock
                    (premake, drop expired months, rescue the default
                    partition) and print it
  worker            run the River workers (partition maintenance on start
                    and hourly, erasure requests) until SIGTERM or SIGINT
  erase --user ID --reason TEXT [--by ADMIN]
                    request the GDPR erasure of a person: stores the request
                    and enqueues its job (run by worker); prints the
                    request id alone
  erasures [--user ID] [--json]
                    list erasure requests with their status and counts
  erasures --verify ID
                    check that request ID left nothing personal of the
                    person anywhere; exits 0 only when clean
  hold add --user ID | --project ID | --org ID --reason TEXT --by ADMIN [--until DATE]
                    place a legal hold: retention keeps a held person's
                    events, erasure scrubs nothing held and the erasures it
                    stops are blocked; prints the hold id alone
  hold release ID --by ADMIN
                    release a hold; the erasures it blocked resume
  holds [--open] [--json]
                    list legal holds, and the user events they keep
  import FILE|- [--run NAME] [--source NAME] [--strict] [--by ADMIN]
                    import JSON Lines of another service's history exactly
                    once (source, source_id kept); resumes a killed run;
                    expired user events counted per tag, refused ones
                    listed; no signal or hook runs
  export --user ID  write every event that names a person (as subject, as
                    actor, as a mention), with their roles, as JSON Lines,
                    for a subject access request
  serve [--addr 127.0.0.1:8080] [--no-worker] [--read-timeout 30s]
        [--write-timeout 60s] [--ingest-concurrency 4]
                    serve the views (/me, /projects/{id}, /orgs/{id},
                    /admin/events and their /api/v1 JSON twins) and run the
                    River workers in the same process; needs AUDITLOG_SECRET
  token --user ID [--maintains P1,P2] [--owns ORG1,ORG2] [--admin] [--ttl 1h] [--login-url URL]
                    mint a viewer token (printed alone on stdout), or with
                    --login-url a ready-to-open login link
  token --ingest NAME | --revoke-ingest NAME | --list-ingest
                    create (printed alone, once), revoke or list the tokens
                    that may POST /api/v1/events
  catalog [--json]  print the event catalog in force: each tag's model,
                    description and key classes (no database needed)
  catalog check FILE
                    check a catalog file; every mistake names its line and
                    tag; exits 0 only when the file is good
  demo              seed a realistic three-month history of several users,
                    projects and an organization (refuses a database that
                    holds events, unless --force)
  keygen --out FILE make an integrity key (AUDITLOG_SIGNING_KEY); prints the
                    verifier key
  checkpoint        append new events to the integrity log, sign a checkpoint
  verify [--since ID] [--against FILE]
                    check every leaf, tree, checkpoint and seal; exits 0 only
                    when clean, else names each event or checkpoint
  prove --event ID | --consistency OLD NEW
                    print an inclusion or consistency proof as JSON
  verify-proof FILE [--key VKEY]
                    check a proof without a database
  help [COMMAND]    show this text, or a command's help and flags (as
                    "auditlog COMMAND -h" does); help never acts

Configuration (a flag wins over the environment):
  DATABASE_URL        --database-url   PostgreSQL connection URL
                      (default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable)
  AUDITLOG_RETENTION  --retention      how long user events are kept and shown:
                      a Go duration or a number of days such as 90d (default 90d)
  AUDITLOG_PARTITIONS_AHEAD --ahead    months after the current one that keep a
                      partition ready (default 3)
  AUDITLOG_LOG_LEVEL  --log-level      debug, info, warn or error (default info)
  AUDITLOG_NEW_LOCATION --new-location record account:login:new_location (default on)
  AUDITLOG_FAILURE_BURST --failure-burst record account:login:failure_burst after
                      N failures within a duration, N/DURATION or off (default 5/10m)
  AUDITLOG_GEOIP      --geoip          a MaxMind .mmdb to locate IPs; new locations
                      are then decided by country (default: none, by network)
  AUDITLOG_SIGNING_KEY --signing-key  the integrity key file (auditlog keygen):
                      marks events, signs checkpoints (default: none)
  AUDITLOG_CATALOG    --catalog        the event catalog: a YAML file (see
                      docs/catalog.md) or builtin:NAME (default builtin:package-index)
  AUDITLOG_READ_TIMEOUT --read-timeout serve: the longest a request, body
                      included, may take to arrive (default 30s)
  AUDITLOG_WRITE_TIMEOUT --write-timeout serve: the longest an answer may
                      take; exports get it per page (default 60s)
  AUDITLOG_INGEST_CONCURRENCY --ingest-concurrency serve: ingest requests
                      one ingest token may have in progress (default 4)
  AUDITLOG_SECRET                      signs viewer tokens and CSRF tokens (serve,
                      token); at least 16 bytes (environment only)
  AUDITLOG_PSEUDONYM_SECRET            when set, erasure replaces the person's
                      actor_id in events they acted in with a stable HMAC
                      pseudonym; when unset, actor_id is kept (environment only)
`

// defaultDatabaseURL is the local server most development machines run.
const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// usageError is a mistake on the command line, found before anything was
// done; main exits 2 for it. err, when set, is the service error behind it.
type usageError struct {
	msg string
	err error
}

func (e *usageError) Error() string { return e.msg }

func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

func exitCode(err error) int {
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// env is the process environment, as os.Getenv.
type env func(string) string

// config is what every command shares.
type config struct {
	databaseURL string
	// adminURL is AUDITLOG_ADMIN_DATABASE_URL: the owner role's database
	// URL, which the worker and the commands that change more than they
	// record use (owner); empty means databaseURL (one role).
	adminURL string
	// owner makes connect use adminURL.
	owner     bool
	retention time.Duration
	ahead     int
	// pseudonymSecret comes from the environment only (a flag would show
	// in ps); see service.Opts.PseudonymSecret.
	pseudonymSecret []byte
	signals         service.SignalOpts
	geoipPath       string
	// registry is the catalog in force (--catalog, AUDITLOG_CATALOG; the
	// built-in package-index one when neither is set).
	registry *service.Registry
	// integrity is the key --signing-key (AUDITLOG_SIGNING_KEY) names, if
	// any.
	integrity *service.IntegrityKey
	observer  service.Observer // serve's metrics
	logger    *slog.Logger
	stdout    io.Writer
	stderr    io.Writer
}

// commands are the CLI's commands by name.
var commands = map[string]func(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error{
	"migrate": runMigrate, "record": runRecord, "events": runEvents, "demo": runDemo, "partitions": runPartitions,
	"worker": runWorker, "serve": runServe, "token": runToken, "erase": runErase, "erasures": runErasures,
	"export": runExport, "catalog": runCatalog, "hold": runHold, "holds": runHolds, "import": runImport,
	"keygen": runKeygen, "checkpoint": runCheckpoint, "verify": runVerify, "prove": runProve, "verify-proof": runVerifyProof,
}

func run(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, getenv, stdout, stderr)
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

func dispatch(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usagef("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "help", "-h", "--help", "-help":
		if len(rest) == 0 || cmd != "help" {
			fmt.Fprint(stdout, usage)
			return nil
		}
		// help CMD [ACTION]: the command's own help, which never acts.
		if _, ok := commands[rest[0]]; !ok {
			return usagef("help: unknown command %q (see auditlog help)", rest[0])
		}
		return dispatch(ctx, append(slices.Clone(rest), "-h"), getenv, stdout, stderr)
	}
	if fn, ok := commands[cmd]; ok {
		return fn(ctx, rest, getenv, stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	return usagef("unknown command %q", cmd)
}

// newFlagSet returns a command's flag set with the shared configuration
// flags bound to cfg, defaulted from the environment, and the function
// that finishes the configuration once the flags are parsed. summary is
// the help text shown above the flags.
func newFlagSet(name, summary string, getenv env, cfg *config, stdout, stderr io.Writer) (*flagSet, func() error) {
	fs := newFlags(name, summary, stdout)
	cfg.stdout, cfg.stderr = stdout, stderr
	if secret := getenv("AUDITLOG_PSEUDONYM_SECRET"); secret != "" {
		cfg.pseudonymSecret = []byte(secret)
	}
	// The default is resolved after parsing, so help never prints the
	// environment's URL (it may hold a password).
	fs.StringVar(&cfg.databaseURL, "database-url", "", "the PostgreSQL database URL (default: env DATABASE_URL, else "+defaultDatabaseURL+")")
	retention := fs.String("retention", orDefault(getenv("AUDITLOG_RETENTION"), "90d"), "user-event retention window (env AUDITLOG_RETENTION)")
	fs.IntVar(&cfg.ahead, "ahead", atoiOr(getenv("AUDITLOG_PARTITIONS_AHEAD"), service.DefaultPartitionsAhead), 1,
		"months after the current one that keep a partition (env AUDITLOG_PARTITIONS_AHEAD)")
	level := fs.String("log-level", orDefault(getenv("AUDITLOG_LOG_LEVEL"), "info"), "log level: debug, info, warn or error (env AUDITLOG_LOG_LEVEL)")
	fs.BoolVar(&cfg.signals.NewLocation, "new-location", orDefault(getenv("AUDITLOG_NEW_LOCATION"), "on") != "off",
		"record account:login:new_location for sign-ins from a new network or country (env AUDITLOG_NEW_LOCATION=on|off)")
	burst := fs.String("failure-burst", orDefault(getenv("AUDITLOG_FAILURE_BURST"), "5/10m"),
		"record account:login:failure_burst after N failed sign-ins within a duration, N/DURATION or off (env AUDITLOG_FAILURE_BURST)")
	fs.StringVar(&cfg.geoipPath, "geoip", getenv("AUDITLOG_GEOIP"), "a MaxMind .mmdb (City or Country) to locate IPs (env AUDITLOG_GEOIP)")
	keyPath := fs.String("signing-key", getenv("AUDITLOG_SIGNING_KEY"),
		"the integrity key file `auditlog keygen` made: marks recorded events, signs checkpoints (env AUDITLOG_SIGNING_KEY; none: no tamper evidence)")
	catalog := fs.String("catalog", getenv("AUDITLOG_CATALOG"),
		"the event catalog: a YAML file, or builtin:NAME (default builtin:package-index; env AUDITLOG_CATALOG)")
	finish := func() error {
		reg, err := loadRegistry(*catalog)
		if err != nil {
			return &usageError{msg: "--catalog: " + err.Error(), err: err}
		}
		cfg.registry = reg
		if *keyPath != "" {
			if cfg.integrity, err = service.LoadIntegrityKey(*keyPath); err != nil {
				return &usageError{msg: "--signing-key: " + err.Error(), err: err}
			}
		}
		if cfg.databaseURL == "" {
			cfg.databaseURL = orDefault(getenv("DATABASE_URL"), defaultDatabaseURL)
		}
		cfg.adminURL = getenv("AUDITLOG_ADMIN_DATABASE_URL")
		if *burst != "off" {
			n, d, ok := strings.Cut(*burst, "/")
			count, err := strconv.Atoi(n)
			window, derr := time.ParseDuration(d)
			if !ok || err != nil || derr != nil || count < 1 || window <= 0 {
				return usagef("--failure-burst: %q is not N/DURATION (5/10m) or off", *burst)
			}
			cfg.signals.BurstFailures, cfg.signals.BurstWindow = count, window
		}
		d, err := parseRetention(*retention)
		if err != nil {
			return usagef("--retention: %v", err)
		}
		cfg.retention = d
		if cfg.ahead < 1 {
			return usagef("--ahead: %d is not a positive number of months", cfg.ahead)
		}
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(*level)); err != nil {
			return usagef("--log-level: %q is not debug, info, warn or error", *level)
		}
		cfg.logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
		return nil
	}
	return fs, finish
}

// loadRegistry reads the catalog at path ("" is builtin:package-index) into a
// registry.
func loadRegistry(path string) (*service.Registry, error) {
	if path == "" {
		path = "builtin:package-index"
	}
	c, err := service.LoadCatalog(path)
	if err != nil {
		return nil, err
	}
	return c.Registry()
}

// parse parses args into fs and finishes the shared configuration; -h
// prints the help and returns errHelp, so the command does nothing.
func parse(fs *flagSet, finish func() error, args []string) error {
	if err := fs.parse(args); err != nil {
		return err
	}
	return finish()
}

func atoiOr(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return def
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// parseRetention accepts a Go duration ("2160h") or whole days ("90d").
func parseRetention(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number of days", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%q is not a duration such as 2160h or a number of days such as 90d", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration", s)
	}
	return d, nil
}

// connect opens a pool on the database and checks that its schema is the
// one this binary needs, so a command on a database that was never
// migrated (or is behind) says to run `auditlog migrate up` instead of
// failing on a missing table.
// ownerURL is the owner role's URL: AUDITLOG_ADMIN_DATABASE_URL, else
// the one URL of a single-role set-up.
func (c *config) ownerURL() string {
	if c.adminURL != "" {
		return c.adminURL
	}
	return c.databaseURL
}

func (c *config) connect(ctx context.Context) (*pgxpool.Pool, error) {
	url := c.databaseURL
	if c.owner {
		url = c.ownerURL()
	}
	return c.connectTo(ctx, url)
}

func (c *config) connectTo(ctx context.Context, url string) (*pgxpool.Pool, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to %s: %w", redactURL(url), err)
	}
	if err := migrations.Check(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// open connects and returns the pool and a Log configured from c, able to
// enqueue jobs (erasure) for whichever process runs the workers.
func (c *config) open(ctx context.Context) (*pgxpool.Pool, *service.Log, error) {
	pool, err := c.connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	return c.logOn(pool)
}

// openOwner is open on the owner's URL (ownerURL).
func (c *config) openOwner(ctx context.Context) (*pgxpool.Pool, *service.Log, error) {
	pool, err := c.connectTo(ctx, c.ownerURL())
	if err != nil {
		return nil, nil, err
	}
	return c.logOn(pool)
}

// logOn builds the Log every command uses on pool (closed on error).
func (c *config) logOn(pool *pgxpool.Pool) (*pgxpool.Pool, *service.Log, error) {
	enq, err := jobs.NewEnqueuer(pool)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	signals := c.signals
	if c.geoipPath != "" {
		db, err := geoip.Open(c.geoipPath) // kept open for the process's life
		if err != nil {
			pool.Close()
			return nil, nil, err
		}
		signals.Locator = db
	}
	log, err := service.New(pool, &service.Opts{
		Retention: c.retention, Logger: c.logger, Enqueuer: enq, PseudonymSecret: c.pseudonymSecret,
		Signals: signals, Hooks: jobs.DefaultHooks(), Observer: c.observer,
		PartitionsAhead: c.ahead, Registry: c.registry, Integrity: c.integrity,
	})
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return pool, log, nil
}

// redactURL hides a password in a connection URL for messages.
func redactURL(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		if at := strings.LastIndex(u, "@"); at > i {
			if colon := strings.Index(u[i+3:at], ":"); colon >= 0 {
				return u[:i+3+colon] + ":xxxxx" + u[at:]
			}
		}
	}
	return u
}
