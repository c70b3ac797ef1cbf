package service

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/auditlog/auditlog/db"
)

// DB is what Log needs of a database handle: *pgxpool.Pool, *pgx.Conn and
// pgx.Tx all satisfy it.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Defaults for Opts.
const (
	DefaultRetention     = 90 * 24 * time.Hour
	DefaultMaxFutureSkew = time.Hour
)

// Opts configures a Log. The zero value is usable.
type Opts struct {
	// Registry holds the event types; DefaultRegistry() when nil.
	Registry *Registry
	// Retention is how long user events are kept and shown; 90 days when
	// zero. Recording refuses user events older than it, and every read
	// of user events filters by it.
	Retention time.Duration
	// PartitionsAhead is how many months after the current one maintenance
	// keeps a partition for (DefaultPartitionsAhead when zero; set it as
	// the worker's MaintainOpts.Ahead). A user event of a month from the
	// window's first to that one whose partition is not attached is
	// refused with ErrPartitionUnavailable (retry), any later month with
	// ErrNoPartition.
	PartitionsAhead int
	// MaxFutureSkew is how far ahead of the clock a project event may be
	// dated (clock skew between hosts); one hour when zero. User events
	// are bounded by their partitions instead.
	MaxFutureSkew time.Duration
	// Clock returns the current time; time.Now when nil. Tests inject one.
	Clock func() time.Time
	// Logger receives warnings; slog.Default() when nil.
	Logger *slog.Logger
	// Enqueuer puts jobs (erasure) in the caller's transaction;
	// jobs.NewEnqueuer gives one. RequestErasure needs it.
	Enqueuer Enqueuer
	// PseudonymSecret, when set, makes erasure replace the person's
	// actor_id in the events they acted in with Pseudonym(id); when empty
	// (the default) actor_id is kept as the provenance the service needs.
	PseudonymSecret []byte
	// ErasureBatch is the most rows one erasure statement touches;
	// DefaultErasureBatch when zero.
	ErasureBatch int
	// Signals configures new-location and failed-sign-in signals.
	Signals SignalOpts
	// Hooks attach background jobs to tags; they need Enqueuer.
	Hooks []Hook
	// Observer is told about recordings, rejections, drops and erasures
	// (metrics); none when nil.
	Observer Observer
	// Integrity, when set, marks every recorded event (its MAC) and lets
	// Checkpoint append events to the integrity log and sign checkpoints
	// (docs/integrity.md). Retention then seals a month's tree before it
	// drops the month. Without it the log keeps no proof.
	Integrity *IntegrityKey
}

// Log records and reads audit events.
type Log struct {
	db        DB
	q         *db.Queries
	registry  *Registry
	integrity *IntegrityKey
	retention time.Duration
	skew      time.Duration
	ahead     int
	now       func() time.Time
	logger    *slog.Logger
	parts     partitionCache

	enqueuer     Enqueuer
	pseudonymKey []byte
	erasureBatch int
	signals      SignalOpts
	hooks        []Hook
	observer     Observer
}

// New returns a Log over database (normally a *pgxpool.Pool). The
// readers and the non-Tx recorders use it; the Tx recorders use the
// caller's transaction. It refuses options that could only fail later (a
// hook without a name or a tag).
func New(database DB, opts *Opts) (*Log, error) {
	if opts == nil {
		opts = &Opts{}
	}
	if err := checkHooks(opts.Hooks); err != nil {
		return nil, fmt.Errorf("service.New: %w", err)
	}
	l := &Log{
		db:        database,
		q:         db.New(),
		registry:  opts.Registry,
		retention: opts.Retention,
		skew:      opts.MaxFutureSkew,
		ahead:     opts.PartitionsAhead,
		now:       opts.Clock,
		logger:    opts.Logger,

		enqueuer:     opts.Enqueuer,
		pseudonymKey: opts.PseudonymSecret,
		erasureBatch: opts.ErasureBatch,
		signals:      opts.Signals,
		hooks:        append([]Hook(nil), opts.Hooks...),
		observer:     opts.Observer,
		integrity:    opts.Integrity,
	}
	if l.observer == nil {
		l.observer = nopObserver{}
	}
	if l.erasureBatch <= 0 {
		l.erasureBatch = DefaultErasureBatch
	}
	if l.signals.BurstWindow <= 0 {
		l.signals.BurstWindow = DefaultBurstWindow
	}
	if l.registry == nil {
		l.registry = DefaultRegistry()
	}
	if l.retention <= 0 {
		l.retention = DefaultRetention
	}
	if l.skew <= 0 {
		l.skew = DefaultMaxFutureSkew
	}
	if l.ahead <= 0 {
		l.ahead = DefaultPartitionsAhead
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.logger == nil {
		l.logger = slog.Default()
	}
	return l, nil
}

// Registry returns the Log's tag registry.
func (l *Log) Registry() *Registry { return l.registry }

// Retention returns the user-event retention window.
func (l *Log) Retention() time.Duration { return l.retention }

// Now returns the Log's clock reading.
func (l *Log) Now() time.Time { return l.now() }

// Logger returns the Log's logger (Opts.Logger, else slog.Default()).
func (l *Log) Logger() *slog.Logger { return l.logger }

// windowStart is the oldest time a user event may have to be kept or shown.
func (l *Log) windowStart(now time.Time) time.Time {
	return now.Add(-l.retention).UTC().Truncate(time.Microsecond)
}
