package service

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/db"
)

// monthKey is a UTC calendar month counted from year 0 (year*12 + month-1).
type monthKey int

func monthOf(t time.Time) monthKey {
	t = t.UTC()
	return monthKey(t.Year()*12 + int(t.Month()) - 1)
}

// Start returns the first instant of the month, UTC.
func (m monthKey) Start() time.Time {
	return time.Date(int(m)/12, time.Month(int(m)%12+1), 1, 0, 0, 0, 0, time.UTC)
}

// PartitionName returns the name of the user_events partition holding
// the UTC calendar month of t: user_events_pYYYYMM.
func PartitionName(t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("user_events_p%04d%02d", t.Year(), int(t.Month()))
}

var partitionNamePattern = regexp.MustCompile(`^user_events_p(\d{4})(\d{2})$`)

// parsePartitionName returns the month a monthly partition's name stands for.
func parsePartitionName(name string) (monthKey, bool) {
	m := partitionNamePattern.FindStringSubmatch(name)
	if m == nil {
		return 0, false
	}
	year, _ := strconv.Atoi(m[1])
	month, _ := strconv.Atoi(m[2])
	if month < 1 || month > 12 {
		return 0, false
	}
	return monthKey(year*12 + month - 1), true
}

// partitionCacheTTL bounds how long a cached partition list is trusted for
// a month it contains. A month missing from the cache is always looked up
// again before an event is refused, so a freshly created partition is
// used at once.
const partitionCacheTTL = 30 * time.Second

// maintenanceRequestEvery is the least time between two maintenance passes
// one process asks for when it finds a partition missing: a burst of
// writers asks once.
const maintenanceRequestEvery = 5 * time.Second

// partitionCache remembers which months have an attached partition, so
// recording does not read the catalog on every event. Readers take the
// current snapshot without locking; one refresh runs at a time.
type partitionCache struct {
	snap    atomic.Pointer[partitionSnapshot]
	refresh sync.Mutex
	// requested is when this process last asked for a maintenance pass
	// (Unix nanoseconds, wall clock); zero for never.
	requested atomic.Int64
}

type partitionSnapshot struct {
	// months holds the months whose partition is attached to user_events;
	// a monthly table left detached is not writable and is not in it.
	months   map[monthKey]bool
	loadedAt time.Time // wall clock, not the injected one: it measures cache age
}

func (s *partitionSnapshot) fresh(month monthKey) bool {
	return s != nil && s.months[month] && time.Since(s.loadedAt) < partitionCacheTTL
}

// checkPartition checks that month has a partition attached to
// user_events. When it has none, a month from the window's first to
// PartitionsAhead months after now's is one that maintenance keeps a
// partition for: the error is ErrPartitionUnavailable and a pass is asked
// for (requestMaintenance). Any other month is refused as invalid with
// ErrNoPartition.
func (l *Log) checkPartition(ctx context.Context, dbtx db.DBTX, month monthKey, now time.Time) error {
	c := &l.parts
	if c.snap.Load().fresh(month) {
		return nil
	}
	c.refresh.Lock()
	defer c.refresh.Unlock()
	if c.snap.Load().fresh(month) { // another caller refreshed meanwhile
		return nil
	}
	names, err := l.q.PartitionAttachedNames(ctx, dbtx)
	if err != nil {
		return fmt.Errorf("list partitions: %w", err)
	}
	snap := &partitionSnapshot{months: make(map[monthKey]bool, len(names)), loadedAt: time.Now()}
	for _, name := range names {
		if m, ok := parsePartitionName(name); ok {
			snap.months[m] = true
		}
	}
	c.snap.Store(snap)
	if snap.months[month] {
		return nil
	}
	if l.keepsPartition(month, now) {
		l.requestMaintenance(ctx)
		return fmt.Errorf("%s is not attached to user_events: %w", PartitionName(month.Start()), ErrPartitionUnavailable)
	}
	return invalid("time", ErrNoPartition, "%s does not exist; partitions cover the retention window and the months `auditlog migrate up` made ahead", PartitionName(month.Start()))
}

// keepsPartition reports whether maintenance keeps a partition for month
// at now: from the month the retention window starts in to PartitionsAhead
// months after now's.
func (l *Log) keepsPartition(month monthKey, now time.Time) bool {
	return month >= monthOf(l.windowStart(now)) && month <= monthOf(now)+monthKey(l.ahead)
}

// defaultPartition is the partition that catches rows of months without
// one of their own; maintenance keeps a guard on it (see guardDefault).
const defaultPartition = "user_events_default"

// partitionRace maps the failure of a user_events insert that the default
// partition refused (SQLSTATE 23514, check_violation, on
// user_events_default: its guard, or its partition constraint when the
// month's partition was attached while the insert waited) to
// ErrPartitionUnavailable: the month's partition was detached or dropped
// after the cache last looked, or is being attached. It forgets the cache
// and asks for a pass. Any other error is returned as it is.
func (l *Log) partitionRace(ctx context.Context, err error) error {
	pgErr := pgError(err)
	if pgErr == nil || pgErr.Code != pgerrcode.CheckViolation || pgErr.TableName != defaultPartition {
		return err
	}
	l.ForgetPartitions()
	l.requestMaintenance(ctx)
	// Message names the relation and constraint; Detail, which would hold
	// the row (personal data), is left out.
	return fmt.Errorf("%w (%s)", ErrPartitionUnavailable, pgErr.Message)
}

// requestMaintenance asks for an immediate maintenance pass through the
// Enqueuer (jobs.Enqueuer inserts the partition-maintenance job, unique
// while one is queued or running), at most once per
// maintenanceRequestEvery in this process. It does not wait: the job is
// inserted on a connection of its own, outside the failed event's
// transaction, and a failure to insert it is logged. Without an Enqueuer
// nothing is asked for, and the hourly pass (or `auditlog partitions
// maintain`) restores the partition.
func (l *Log) requestMaintenance(ctx context.Context) {
	if l.enqueuer == nil {
		return
	}
	c := &l.parts
	now := time.Now().UnixNano()
	last := c.requested.Load()
	if last != 0 && now-last < int64(maintenanceRequestEvery) || !c.requested.CompareAndSwap(last, now) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), maintenanceRequestEvery)
	go func() {
		defer cancel()
		if err := l.enqueuer.EnqueueMaintenance(ctx); err != nil {
			l.logger.WarnContext(ctx, "could not ask for a partition maintenance pass", "error", err)
		}
	}()
}

// ForgetPartitions drops the cached partition list, so the next event
// reads the catalog again. Partition maintenance calls it after DDL.
func (l *Log) ForgetPartitions() { l.parts.snap.Store(nil) }

// EnsurePartitions creates the missing monthly partitions of user_events
// from the month the retention window starts in up to ahead months after
// the current one, puts the default partition's guard over those months
// (see MaintainPartitions), and returns the names it created; it drops
// nothing (`auditlog migrate up` calls it). It shares MaintainPartitions'
// lock, so it does nothing while a maintenance pass runs (that pass
// creates them). pool is as for MaintainPartitions.
func (l *Log) EnsurePartitions(ctx context.Context, pool *pgxpool.Pool, ahead int) ([]string, error) {
	rep, err := l.maintain(ctx, pool, MaintainOpts{Ahead: ahead}, stepCreate, stepGuard)
	if err != nil {
		return nil, unavailable(fmt.Errorf("ensure partitions: %w", err))
	}
	return rep.Created, nil
}

// Partition describes one table of user_events for operators.
type Partition struct {
	Name string
	// From and To bound the month (To exclusive); zero for the default
	// partition.
	From, To time.Time
	// Attached is false for a monthly table left detached.
	Attached bool
	// Rows is the planner's estimate; Bytes the size on disk with indexes.
	Rows, Bytes int64
	// DroppableAt is when the month leaves the retention window: To plus
	// the window. Zero for the default partition.
	DroppableAt time.Time
}

// Partitions lists user_events' partitions, monthly ones in order, then
// the default partition.
func (l *Log) Partitions(ctx context.Context) ([]Partition, error) {
	rows, err := l.q.PartitionList(ctx, l.db)
	if err != nil {
		return nil, unavailable(fmt.Errorf("list partitions: %w", err))
	}
	var out, other []Partition
	for _, r := range rows {
		p := partition(&r, l.retention)
		if !p.From.IsZero() {
			out = append(out, p)
		} else {
			other = append(other, p)
		}
	}
	return append(out, other...), nil
}

// DefaultPartitionRows counts the rows in user_events_default: events
// whose month had no partition, which the next maintenance pass moves.
func (l *Log) DefaultPartitionRows(ctx context.Context) (int64, error) {
	n, err := l.q.DefaultPartitionRowCount(ctx, l.db)
	return n, wrapped(err, "count the default partition's rows")
}
