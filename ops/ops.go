// Package ops is what operators look at: Prometheus metrics (/metrics),
// liveness (/healthz) and readiness (/readyz).
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/auditlog/auditlog/migrations"
	"github.com/auditlog/auditlog/service"
)

// MetricsSource is what Metrics reads of *service.Log: the registered tags
// (Init) and the partitions (at each scrape).
type MetricsSource interface {
	Registry() *service.Registry
	Partitions(ctx context.Context) ([]service.Partition, error)
	DefaultPartitionRows(ctx context.Context) (int64, error)
}

// ReadySource is what Readyz checks of *service.Log beside the pool: next
// month's partition, by its clock; failures go to its logger.
type ReadySource interface {
	Now() time.Time
	Logger() *slog.Logger
	Partitions(ctx context.Context) ([]service.Partition, error)
}

var (
	_ MetricsSource = (*service.Log)(nil)
	_ ReadySource   = (*service.Log)(nil)
)

// Metrics implements service.Observer and jobs.HookObserver with
// Prometheus collectors, and reads the partitions at each scrape.
type Metrics struct {
	registry   *prometheus.Registry
	recorded   *prometheus.CounterVec
	rejected   *prometheus.CounterVec
	dropped    *prometheus.CounterVec
	erasure    *prometheus.HistogramVec
	erasureErr prometheus.Counter
	hooks      *prometheus.CounterVec
	refused    *prometheus.CounterVec
	down       *prometheus.CounterVec
	fallbacks  *prometheus.CounterVec

	log MetricsSource
	// partitions and defaultRows are read at scrape time.
	partitions  *prometheus.Desc
	defaultRows *prometheus.Desc
}

// NewMetrics makes the collectors in a registry of their own (with the Go
// and process collectors). Call Init before serving so scrapes can read
// the partitions.
func NewMetrics() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		recorded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditlog_events_recorded_total",
			Help: "Events recorded, by model and tag."}, []string{"model", "tag"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditlog_events_rejected_total",
			Help: "Events refused by validation, by reason."}, []string{"reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditlog_retention_drops_total",
			Help: "Monthly partitions (or default-partition months) removed by retention, by reason."}, []string{"reason"}),
		erasure: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "auditlog_erasure_duration_seconds",
			Help: "Duration of erasure attempts, by result.", Buckets: prometheus.ExponentialBuckets(0.01, 4, 8)}, []string{"result"}),
		erasureErr: prometheus.NewCounter(prometheus.CounterOpts{Name: "auditlog_erasure_failures_total",
			Help: "Erasure attempts that failed (River retries them)."}),
		hooks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditlog_hook_jobs_total",
			Help: "Hook jobs run, by hook and result."}, []string{"hook", "result"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditlog_http_refused_total",
			Help: "HTTP requests answered with a 4xx status, by route and reason."}, []string{"route", "reason"}),
		down: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditlog_http_unavailable_total",
			Help: "HTTP requests answered 503 because the database could not be reached, by route."}, []string{"route"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditlog_description_fallbacks_total",
			Help: "Events recorded with a fallback description (their additional lacked a value the tag's description needs), by tag."},
			[]string{"tag"}),
		partitions: prometheus.NewDesc("auditlog_partitions", "Monthly partitions of user_events, by state (attached or detached).",
			[]string{"state"}, nil),
		defaultRows: prometheus.NewDesc("auditlog_default_partition_rows",
			"Rows in user_events_default (should be 0; maintenance moves them into partitions).", nil, nil),
	}
	m.registry.MustRegister(m.recorded, m.rejected, m.dropped, m.erasure, m.erasureErr, m.hooks, m.refused, m.down, m.fallbacks, m,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, reason := range service.RejectionReasons() {
		m.rejected.WithLabelValues(reason)
	}
	for _, reason := range service.DropReasons() {
		m.dropped.WithLabelValues(reason)
	}
	for _, result := range []string{"done", "failed"} {
		m.erasure.WithLabelValues(result)
	}
	return m
}

// Labels are label values whose series exist at zero from the start,
// beside those NewMetrics and Init know themselves, so that a counter is
// there before its first event (a rate over it is then never missing).
type Labels struct {
	// Hooks names the hooks attached (jobs.DefaultHooks()).
	Hooks []string
	// Routes and RefusalReasons are web.Routes and web.RefusalReasons.
	Routes, RefusalReasons []string
	// Rejections are event refusal reasons besides the service's own
	// (web.EventRejections).
	Rejections []string
}

// Init gives the scrape-time collectors their database and creates every
// series at zero: one per registered tag (by its model), per hook, per
// route and refusal reason, per route for the database's 503s, per
// rejection reason.
func (m *Metrics) Init(log MetricsSource, labels Labels) {
	m.log = log
	for _, spec := range log.Registry().Tags() {
		m.recorded.WithLabelValues(string(spec.Model), spec.Tag)
		m.fallbacks.WithLabelValues(spec.Tag)
	}
	for _, hook := range labels.Hooks {
		for _, result := range []string{"done", "failed"} {
			m.hooks.WithLabelValues(hook, result)
		}
	}
	for _, route := range labels.Routes {
		m.down.WithLabelValues(route)
		for _, reason := range labels.RefusalReasons {
			m.refused.WithLabelValues(route, reason)
		}
	}
	for _, reason := range labels.Rejections {
		m.rejected.WithLabelValues(reason)
	}
}

// Refused implements web.Observer.
func (m *Metrics) Refused(route, reason string) { m.refused.WithLabelValues(route, reason).Inc() }

// Unavailable implements web.Observer.
func (m *Metrics) Unavailable(route string) { m.down.WithLabelValues(route).Inc() }

// Recorded implements service.Observer.
func (m *Metrics) Recorded(model service.Model, tag string, n int) {
	m.recorded.WithLabelValues(string(model), tag).Add(float64(n))
}

// Rejected implements service.Observer and web.Observer.
func (m *Metrics) Rejected(reason string) { m.rejected.WithLabelValues(reason).Inc() }

// DescriptionFallback implements service.Observer.
func (m *Metrics) DescriptionFallback(tag string, n int) {
	m.fallbacks.WithLabelValues(tag).Add(float64(n))
}

// PartitionDropped implements service.Observer.
func (m *Metrics) PartitionDropped(reason string) { m.dropped.WithLabelValues(reason).Inc() }

// ErasureFinished implements service.Observer.
func (m *Metrics) ErasureFinished(took time.Duration, err error) {
	result := "done"
	if err != nil {
		result = "failed"
		m.erasureErr.Inc()
	}
	m.erasure.WithLabelValues(result).Observe(took.Seconds())
}

// HookRan implements jobs.HookObserver.
func (m *Metrics) HookRan(hook string, err error) {
	result := "done"
	if err != nil {
		result = "failed"
	}
	m.hooks.WithLabelValues(hook, result).Inc()
}

// Describe implements prometheus.Collector for the scrape-time series.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.partitions
	ch <- m.defaultRows
}

// Collect implements prometheus.Collector: it reads the partitions, with
// a short timeout so a slow database never hangs a scrape.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	if m.log == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	parts, err := m.log.Partitions(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(m.partitions, err)
		return
	}
	attached, detached := 0, 0
	for _, p := range parts {
		switch {
		case p.From.IsZero(): // the default partition
		case p.Attached:
			attached++
		default:
			detached++
		}
	}
	ch <- prometheus.MustNewConstMetric(m.partitions, prometheus.GaugeValue, float64(attached), "attached")
	ch <- prometheus.MustNewConstMetric(m.partitions, prometheus.GaugeValue, float64(detached), "detached")
	rows, err := m.log.DefaultPartitionRows(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(m.defaultRows, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(m.defaultRows, prometheus.GaugeValue, float64(rows))
}

// Handler serves the metrics in the Prometheus text format. While the
// database cannot be reached the scrape-time series are left out and
// every counter is still served (auditlog_http_unavailable_total above
// all), rather than failing the whole scrape.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Healthz answers 200 while the process runs.
func Healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// Readyz answers 200 when the database answers, every migration is
// applied and next month's partition exists; 503 with the failed checks
// otherwise, as JSON: {"ready": false, "checks": {"database": "connection
// refused"}}. The endpoint is unauthenticated, so a failed check says in
// a few words what is wrong (service.UnavailableCause) and never holds the
// database's host, port, user or name nor the driver's text; the whole
// error goes to the Log's logger, at warn.
func Readyz(pool *pgxpool.Pool, log ReadySource) http.HandlerFunc {
	logger := log.Logger()
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		checks := map[string]string{}
		ok := true
		check := func(name string, err error) {
			if err == nil {
				checks[name] = "ok"
				return
			}
			ok = false
			checks[name] = readyCause(err)
			logger.Warn("readyz: check failed", "check", name, "err", err)
		}
		err := pool.Ping(ctx)
		check("database", err)
		if err == nil {
			check("migrations", migrations.Check(ctx, pool))
			check("next_month_partition", nextMonth(ctx, log))
		}
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ready": ok, "checks": checks})
	}
}

// finding is a failed check's own sentence, which holds no connection
// detail and is shown as it is.
type finding string

func (f finding) Error() string { return string(f) }

// readyCause is what /readyz shows of a failed check: a finding, a
// missing migration (its own sentence), or else a few words on why the
// database failed.
func readyCause(err error) string {
	var f finding
	if errors.As(err, &f) {
		return f.Error()
	}
	if errors.Is(err, migrations.ErrNotMigrated) {
		return err.Error()
	}
	return service.UnavailableCause(err)
}

func nextMonth(ctx context.Context, log ReadySource) error {
	now := log.Now().UTC()
	next := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	name := service.PartitionName(next)
	parts, err := log.Partitions(ctx)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if p.Name == name && p.Attached {
			return nil
		}
	}
	return finding(name + " does not exist: partition maintenance is not running (auditlog worker, serve)")
}
