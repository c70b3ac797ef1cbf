package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"riverqueue.com/riverui"

	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/ops"
	"github.com/auditlog/auditlog/service"
	"github.com/auditlog/auditlog/web"
)

// secretFrom reads AUDITLOG_SECRET, which signs viewer tokens.
func secretFrom(getenv env) ([]byte, error) {
	s := getenv("AUDITLOG_SECRET")
	if len(s) < web.MinSecretBytes {
		return nil, usagef("AUDITLOG_SECRET must be set to at least %d bytes (e.g. `head -c 32 /dev/urandom | base64`)", web.MinSecretBytes)
	}
	return []byte(s), nil
}

func runServe(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	var cfg config
	fs, finish := newFlagSet("serve", `Serve the views (/me, /projects/{id}, /admin/events, /admin/erasures and their
/api/v1 JSON twins), HTTP ingest, /metrics, /healthz, /readyz and River UI
under /admin/jobs, and run the River workers in the same process unless
--no-worker. Needs AUDITLOG_SECRET (at least 16 bytes).`, getenv, &cfg, stdout, stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on")
	noWorker := fs.Bool("no-worker", false, "do not run the River workers in this process")
	secure := fs.Bool("secure-cookies", false, "mark the session cookie Secure (when served over TLS)")
	readTimeout := fs.String("read-timeout", orDefault(getenv("AUDITLOG_READ_TIMEOUT"), defaultReadTimeout.String()),
		"the longest a request, body included, may take to arrive (env AUDITLOG_READ_TIMEOUT)")
	writeTimeout := fs.String("write-timeout", orDefault(getenv("AUDITLOG_WRITE_TIMEOUT"), defaultWriteTimeout.String()),
		"the longest an answer may take, from the end of the request's headers; exports get it afresh for each page (env AUDITLOG_WRITE_TIMEOUT)")
	ingestConcurrency := fs.String("ingest-concurrency", orDefault(getenv("AUDITLOG_INGEST_CONCURRENCY"), strconv.Itoa(web.DefaultIngestConcurrency)),
		"ingest requests one ingest token may have in progress at once; more get 429 (env AUDITLOG_INGEST_CONCURRENCY)")
	rescue := rescueAfterFlag(fs, getenv)
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	jobOpts, err := jobsOpts(*rescue)
	if err != nil {
		return err
	}
	limits, err := parseServerLimits(*readTimeout, *writeTimeout, *ingestConcurrency)
	if err != nil {
		return err
	}
	secret, err := secretFrom(getenv)
	if err != nil {
		return err
	}
	metrics := ops.NewMetrics()
	cfg.observer = metrics
	pool, log, err := cfg.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := log.MarkCatalog(ctx, service.ProcessServe); err != nil {
		cfg.logger.Warn("serve: could not record the catalog it runs with", "err", err)
	}
	hookNames := []string{}
	for _, h := range jobs.DefaultHooks() {
		if !slices.Contains(hookNames, h.Name) {
			hookNames = append(hookNames, h.Name)
		}
	}
	metrics.Init(log, ops.Labels{Hooks: hookNames, Routes: web.Routes, RefusalReasons: web.RefusalReasons, Rejections: web.EventRejections})
	views, err := web.New(web.Options{Log: log, Secret: secret, SecureCookies: *secure, Logger: cfg.logger, Observer: metrics,
		IngestConcurrency: limits.ingestConcurrency, WriteTimeout: limits.write})
	if err != nil {
		return err
	}
	handler := http.NewServeMux()
	handler.Handle("GET /metrics", metrics.Handler())
	handler.HandleFunc("GET /healthz", ops.Healthz)
	handler.HandleFunc("GET /readyz", ops.Readyz(pool, log))
	handler.Handle("/", views)
	var client *river.Client[pgx.Tx]
	var passDone <-chan struct{}
	if !*noWorker {
		// The workers (retention, erasure, checkpoints) run as the owner:
		// with AUDITLOG_ADMIN_DATABASE_URL, on a pool of their own, while
		// the views and ingest stay on DATABASE_URL (the writer).
		workPool, workLog := pool, log
		if cfg.adminURL != "" && cfg.adminURL != cfg.databaseURL {
			if workPool, workLog, err = cfg.openOwner(ctx); err != nil {
				return fmt.Errorf("serve: the workers' owner connection: %w", err)
			}
			defer workPool.Close()
		}
		pool, log := workPool, workLog
		jobOpts.PartitionsAhead, jobOpts.Logger, jobOpts.HookObserver = cfg.ahead, cfg.logger, metrics
		if client, err = jobs.NewClient(pool, log, jobOpts); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		if err := client.Start(context.WithoutCancel(ctx)); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		passDone = maintainAtStart(ctx, pool, log, jobOpts, cfg.logger)
	}
	// River UI for administrators, on this process's client (an insert-only
	// one with --no-worker).
	uiClient := client
	if uiClient == nil {
		if uiClient, err = river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: cfg.logger}); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
	}
	ui, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints: riverui.NewEndpoints(uiClient, nil), Logger: cfg.logger, Prefix: "/admin/jobs",
		JobListHideArgsByDefault: true,
	})
	if err != nil {
		return fmt.Errorf("serve: river ui: %w", err)
	}
	if err := ui.Start(ctx); err != nil {
		return fmt.Errorf("serve: river ui: %w", err)
	}
	handler.Handle("/admin/jobs", views.RequireAdmin(ui))
	handler.Handle("/admin/jobs/", views.RequireAdmin(ui))

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	srv := newHTTPServer(handler, limits)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	url := "http://" + strings.Replace(ln.Addr().String(), "0.0.0.0", "127.0.0.1", 1)
	cfg.logger.Info("serving", "url", url, "worker", !*noWorker)
	fmt.Fprintf(stdout, "auditlog serving on %s\n", url)

	select {
	case err = <-errc:
	case <-ctx.Done():
		cfg.logger.Info("shutting down: finishing requests and jobs", "grace", shutdownGrace.String())
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if serr := srv.Shutdown(stopCtx); serr != nil && err == nil {
		err = serr
	}
	if client != nil {
		if serr := client.Stop(stopCtx); serr != nil {
			cfg.logger.Warn("jobs still running at the end of the grace period; cancelling them", "err", serr)
			_ = client.StopAndCancel(context.Background())
		}
		waitPass(stopCtx, passDone, cfg.logger)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// The HTTP server's fixed limits; --read-timeout and --write-timeout set
// the others.
const (
	defaultReadTimeout  = 30 * time.Second // a 20 MiB ingest body must fit
	defaultWriteTimeout = 60 * time.Second
	readHeaderTimeout   = 10 * time.Second
	idleTimeout         = 2 * time.Minute
	maxHeaderBytes      = 64 << 10 // larger headers get 431
)

// serverLimits are serve's configurable limits.
type serverLimits struct {
	read, write       time.Duration
	ingestConcurrency int
}

// parseServerLimits reads --read-timeout, --write-timeout and
// --ingest-concurrency: positive durations and a positive count.
func parseServerLimits(read, write, concurrency string) (serverLimits, error) {
	var l serverLimits
	var err error
	for _, d := range []struct {
		flag, value string
		to          *time.Duration
	}{{"read-timeout", read, &l.read}, {"write-timeout", write, &l.write}} {
		if *d.to, err = time.ParseDuration(d.value); err != nil || *d.to <= 0 {
			return l, usagef("--%s: %q is not a positive duration (such as 30s)", d.flag, d.value)
		}
	}
	if l.ingestConcurrency, err = strconv.Atoi(concurrency); err != nil || l.ingestConcurrency < 1 {
		return l, usagef("--ingest-concurrency: %q is not a positive number", concurrency)
	}
	return l, nil
}

// newHTTPServer is serve's HTTP server: a slow or stalled client cannot
// hold a connection past the read timeout (headers within 10 s at most),
// an answer past the write timeout (the export extends its own deadline
// page by page, see web.Options.WriteTimeout), or an idle keep-alive
// connection past 2 minutes; request headers over 64 KiB get 431.
func newHTTPServer(handler http.Handler, l serverLimits) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: min(readHeaderTimeout, l.read),
		ReadTimeout:       l.read,
		WriteTimeout:      l.write,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
}

func runToken(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	var cfg config
	fs, finish := newFlagSet("token", `Mint a viewer token for --user (printed alone on stdout), or with --login-url a
login link that opens a sign-in page; or create (--ingest NAME, printed once),
revoke (--revoke-ingest NAME) or list (--list-ingest) the tokens that may
POST /api/v1/events. Viewer tokens need AUDITLOG_SECRET.`, getenv, &cfg, stdout, stderr)
	user := fs.String("user", "", "the user the token signs in (required)")
	maintains := fs.String("maintains", "", "comma-separated project ids the user maintains")
	owns := fs.String("owns", "", "comma-separated organization ids the user owns (their teams included)")
	admin := fs.Bool("admin", false, "the user is an administrator")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	base := fs.String("login-url", "", "print a login link on this server (e.g. http://127.0.0.1:8080) instead of the bare token")
	ingest := fs.String("ingest", "", "create an ingest token with this `name` for POST /api/v1/events (printed once)")
	revoke := fs.String("revoke-ingest", "", "revoke the ingest token with this `name`")
	list := fs.Bool("list-ingest", false, "list ingest tokens (names and dates, never the tokens)")
	if err := parse(fs, finish, args); err != nil {
		return err
	}
	if *ingest != "" || *revoke != "" || *list {
		return ingestTokens(ctx, &cfg, *ingest, *revoke, *list, stdout)
	}
	if *user == "" {
		return usagef("token needs --user (a viewer token) or --ingest NAME")
	}
	secret, err := secretFrom(getenv)
	if err != nil {
		return err
	}
	v := web.Viewer{UserID: *user, Admin: *admin}
	for _, p := range strings.Split(*maintains, ",") {
		if p = strings.TrimSpace(p); p != "" {
			v.Maintains = append(v.Maintains, p)
		}
	}
	for _, o := range strings.Split(*owns, ",") {
		if o = strings.TrimSpace(o); o != "" {
			v.Owns = append(v.Owns, o)
		}
	}
	token, err := web.MintViewerToken(secret, v, time.Now(), *ttl)
	if err != nil {
		return flagError(err, map[string]string{"user_id": "user"})
	}
	if *base != "" {
		fmt.Fprintf(stdout, "%s/login?token=%s\n", strings.TrimSuffix(*base, "/"), token)
		return nil
	}
	fmt.Fprintln(stdout, token)
	return nil
}

func ingestTokens(ctx context.Context, cfg *config, create, revoke string, list bool, stdout io.Writer) error {
	cfg.owner = true // tokens are the owner's to make and revoke
	pool, log, err := cfg.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	switch {
	case create != "":
		token, err := log.CreateIngestToken(ctx, create)
		if err != nil {
			return flagError(err, map[string]string{"name": "ingest"})
		}
		fmt.Fprintln(stdout, token)
	case revoke != "":
		if err := log.RevokeIngestToken(ctx, revoke); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked ingest token %s\n", cell(revoke))
	default:
		tokens, err := log.IngestTokens(ctx)
		if err != nil {
			return err
		}
		for _, t := range tokens {
			state := "active"
			if t.RevokedAt != nil {
				state = "revoked " + t.RevokedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(stdout, "%s\tcreated %s\t%s\n", cell(t.Name), t.CreatedAt.Format(time.RFC3339), state)
		}
	}
	return nil
}
