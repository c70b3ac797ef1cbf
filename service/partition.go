package service

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

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

// partitionCache remembers which months have an attached partition, so
// recording does not read the catalog on every event. Readers take the
// current snapshot without locking; one refresh runs at a time.
type partitionCache struct {
	snap    atomic.Pointer[partitionSnapshot]
	refresh sync.Mutex
}

type partitionSnapshot struct {
	months   map[monthKey]bool
	loadedAt time.Time // wall clock, not the injected one: it measures cache age
}

func (s *partitionSnapshot) fresh(month monthKey) bool {
	return s != nil && s.months[month] && time.Since(s.loadedAt) < partitionCacheTTL
}

// checkPartition fails with ErrNoPartition when month has no partition.
func (l *Log) checkPartition(ctx context.Context, dbtx db.DBTX, month monthKey) error {
	c := &l.parts
	if c.snap.Load().fresh(month) {
		return nil
	}
	c.refresh.Lock()
	defer c.refresh.Unlock()
	if c.snap.Load().fresh(month) { // another caller refreshed meanwhile
		return nil
	}
	rows, err := l.q.PartitionList(ctx, dbtx)
	if err != nil {
		return fmt.Errorf("list partitions: %w", err)
	}
	snap := &partitionSnapshot{months: make(map[monthKey]bool, len(rows)), loadedAt: time.Now()}
	for _, r := range rows {
		if m, ok := parsePartitionName(r.Name); ok {
			snap.months[m] = true
		}
	}
	c.snap.Store(snap)
	if !snap.months[month] {
		return invalid("time", ErrNoPartition, "%s does not exist; partitions cover the retention window and the months `auditlog migrate up` made ahead", PartitionName(month.Start()))
	}
	return nil
}

// ForgetPartitions drops the cached partition list, so the next event
// reads the catalog again. Partition maintenance calls it after DDL.
func (l *Log) ForgetPartitions() { l.parts.snap.Store(nil) }

// partitionLockKey is the advisory lock held around partition DDL, so two
// processes never create or drop the same partition at once.
const partitionLockKey = 0x61756469746c6f67 // "auditlog"

// EnsurePartitions creates the missing monthly partitions of user_events
// from the month the retention window starts in up to ahead months after
// the current one, and returns the names it created. It is idempotent and safe to run from several
// processes at once.
func (l *Log) EnsurePartitions(ctx context.Context, ahead int) ([]string, error) {
	now := l.now()
	var created []string
	err := pgx.BeginFunc(ctx, l.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(partitionLockKey)); err != nil {
			return err
		}
		existing, err := l.q.PartitionList(ctx, tx)
		if err != nil {
			return err
		}
		have := make(map[string]bool, len(existing))
		for _, p := range existing {
			have[p.Name] = true
		}
		last := monthOf(now) + monthKey(ahead)
		for m := monthOf(l.windowStart(now)); m <= last; m++ {
			name := PartitionName(m.Start())
			if have[name] {
				continue
			}
			// PostgreSQL quotes the bounds (format %L); DDL takes no parameters.
			var ddl string
			if err := tx.QueryRow(ctx,
				"SELECT format('CREATE TABLE %s PARTITION OF user_events FOR VALUES FROM (%L) TO (%L)', $1::text, $2::timestamptz, $3::timestamptz)",
				pgx.Identifier{name}.Sanitize(), m.Start(), (m + 1).Start(),
			).Scan(&ddl); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, ddl); err != nil {
				return fmt.Errorf("create %s: %w", name, err)
			}
			created = append(created, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ensure partitions: %w", err)
	}
	l.ForgetPartitions()
	return created, nil
}
