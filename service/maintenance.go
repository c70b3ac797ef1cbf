package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/db"
)

// Defaults for MaintainOpts.
const (
	DefaultPartitionsAhead = 3
	DefaultLockTimeout     = 2 * time.Second
	DefaultLockRetries     = 6
)

// ErrNeedsPool is returned by MaintainPartitions when the Log was built on
// something other than a *pgxpool.Pool: maintenance holds a session-level
// advisory lock on a connection of its own.
var ErrNeedsPool = errors.New("partition maintenance needs a *pgxpool.Pool")

// MaintainOpts configures one maintenance pass.
type MaintainOpts struct {
	// Now is the pass's clock; the Log's clock when zero. The CLI's
	// --now sets it to plan ahead.
	Now time.Time
	// Ahead is how many months after the current one must have a
	// partition; DefaultPartitionsAhead when zero.
	Ahead int
	// LockTimeout bounds how long one DDL statement waits for its lock on
	// user_events before giving up and retrying, so a long transaction
	// never queues writers behind the maintenance for long.
	LockTimeout time.Duration
	// LockRetries is how many times a DDL step is retried after a lock
	// timeout, with doubling backoff from 50 ms.
	LockRetries int
}

// DroppedPartition is one expired month removed by a pass.
type DroppedPartition struct {
	Name  string
	Month time.Time
	// Rows is the planner's estimate of the rows dropped (exact for rows
	// deleted from the default partition).
	Rows int64
	// Reason is "expired", "orphan" or "default"; see retention_log.
	Reason string
	// Detach is how long the DETACH transaction took (the only step that
	// locks user_events); Drop is how long the DROP transaction took,
	// which is mostly the kernel freeing the table's files at commit.
	Detach, Drop time.Duration
}

// RescuedMonth is a month whose rows had landed in user_events_default and
// were moved into a new partition of their own.
type RescuedMonth struct {
	Name string
	Rows int64
}

// MaintenanceReport says what one pass did.
type MaintenanceReport struct {
	// Skipped is true when another pass held the maintenance lock; this
	// one then did nothing.
	Skipped bool
	Now     time.Time
	// Cutoff is now − retention: a month whose end is at or before it has
	// expired.
	Cutoff  time.Time
	Created []string
	Dropped []DroppedPartition
	Rescued []RescuedMonth
	// Warnings are conditions an operator should look at: rows found in
	// the default partition, detached partitions that are not expired.
	Warnings []string
}

// MaintenanceLockKey is the session advisory lock a pass holds around its
// DDL, so two workers (or a worker and `auditlog partitions maintain`, or
// `migrate up`) never overlap.
const MaintenanceLockKey = 0x61756469746c6f67 // "auditlog"

// MaintainPartitions runs one partition-maintenance pass:
//
//  1. finishes monthly tables left detached from user_events (a crash, or
//     a DBA): drops those whose month has expired, attaches the others
//     again, and warns;
//  2. moves rows that landed in user_events_default into partitions of
//     their own (creating a partition over such a range fails otherwise),
//     deleting those of already expired months, and warns;
//  3. creates every missing monthly partition from the month the window
//     starts in up to Ahead months after the current one;
//  4. drops each partition whose month ended at or before now − retention,
//     after checking that it holds no row inside the window: DETACH in one
//     short transaction under lock_timeout (retried with backoff), then
//     DROP in another, so removing the files holds no lock on user_events. (DETACH … CONCURRENTLY is refused while user_events has a
//     default partition, and the default stays as the safety net.)
//
// Every drop writes a retention_log row. A pass is idempotent; when another
// holds the lock it returns at once with Skipped set.
func (l *Log) MaintainPartitions(ctx context.Context, opts MaintainOpts) (*MaintenanceReport, error) {
	rep, err := l.maintain(ctx, opts,
		(*maintenance).finishDetached, (*maintenance).rescueDefault, (*maintenance).create, (*maintenance).dropExpired)
	if err != nil {
		return rep, fmt.Errorf("maintain partitions: %w", err)
	}
	return rep, nil
}

// maintain runs steps under the maintenance lock.
func (l *Log) maintain(ctx context.Context, opts MaintainOpts, steps ...func(*maintenance, context.Context) error) (*MaintenanceReport, error) {
	pool, ok := l.db.(*pgxpool.Pool)
	if !ok {
		return nil, ErrNeedsPool
	}
	if opts.Now.IsZero() {
		opts.Now = l.now()
	}
	if opts.Ahead <= 0 {
		opts.Ahead = DefaultPartitionsAhead
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.LockRetries <= 0 {
		opts.LockRetries = DefaultLockRetries
	}
	now := opts.Now.UTC()
	rep := &MaintenanceReport{Now: now, Cutoff: l.windowStart(now)}

	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", int64(MaintenanceLockKey)).Scan(&locked); err != nil {
		return nil, err
	}
	if !locked {
		rep.Skipped = true
		return rep, nil
	}
	defer func() {
		// A broken connection releases the lock with its session.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(MaintenanceLockKey))
	}()
	defer l.ForgetPartitions()

	m := &maintenance{l: l, conn: conn.Conn(), opts: opts, rep: rep}
	for _, step := range steps {
		if err := step(m, ctx); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

type maintenance struct {
	l    *Log
	conn *pgx.Conn
	opts MaintainOpts
	rep  *MaintenanceReport
}

// expired reports whether every instant of month is before the cutoff.
func (m *maintenance) expired(month monthKey) bool {
	return !(month + 1).Start().After(m.rep.Cutoff)
}

// tx runs fn in a transaction with lock_timeout set, retrying with
// doubling backoff when a lock is not granted in time.
func (m *maintenance) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := pgx.BeginFunc(ctx, m.conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT set_config('lock_timeout', $1, true)",
				fmt.Sprintf("%dms", m.opts.LockTimeout.Milliseconds())); err != nil {
				return err
			}
			return fn(tx)
		})
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55P03" || attempt >= m.opts.LockRetries {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

// ddl runs a DDL statement built by PostgreSQL's format(): names go in as
// %I and values as %L, both passed as parameters, since DDL itself takes
// no parameters.
func ddl(ctx context.Context, tx pgx.Tx, format string, args ...any) error {
	placeholders := ""
	for i, a := range args {
		typ := "text"
		if _, ok := a.(time.Time); ok {
			typ = "timestamptz"
		}
		placeholders += fmt.Sprintf(", $%d::%s", i+2, typ)
	}
	var stmt string
	if err := tx.QueryRow(ctx, "SELECT format($1::text"+placeholders+")", append([]any{format}, args...)...).Scan(&stmt); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, stmt)
	return err
}

func (m *maintenance) logDrop(ctx context.Context, tx pgx.Tx, d DroppedPartition) error {
	return m.l.q.RetentionLogInsert(ctx, tx, db.RetentionLogInsertParams{
		PartitionName: d.Name, Month: d.Month, RowsEstimated: d.Rows,
		DroppedAt: m.rep.Now, RetentionSeconds: m.l.retention.Seconds(), Reason: d.Reason,
	})
}

// drop drops the detached table d.Name and logs it in one transaction,
// and records how long that took in d.Drop.
func (m *maintenance) drop(ctx context.Context, d *DroppedPartition) error {
	start := time.Now()
	err := m.tx(ctx, func(tx pgx.Tx) error {
		if err := ddl(ctx, tx, "DROP TABLE %I", d.Name); err != nil {
			return err
		}
		return m.logDrop(ctx, tx, *d)
	})
	d.Drop = time.Since(start)
	return err
}

func (m *maintenance) finishDetached(ctx context.Context) error {
	parts, err := m.l.q.PartitionList(ctx, m.conn)
	if err != nil {
		return err
	}
	for _, p := range parts {
		month, ok := parsePartitionName(p.Name)
		if !ok || p.Attached {
			continue
		}
		if !m.expired(month) {
			// Its rows are still inside the window: attaching it back keeps
			// them readable and lets the month record again.
			err := m.tx(ctx, func(tx pgx.Tx) error {
				return ddl(ctx, tx, "ALTER TABLE user_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)",
					p.Name, month.Start(), (month + 1).Start())
			})
			if err != nil {
				return fmt.Errorf("attach %s again: %w", p.Name, err)
			}
			m.rep.Warnings = append(m.rep.Warnings, fmt.Sprintf(
				"%s was detached from user_events but its month is inside the window; attached it again", p.Name))
			continue
		}
		d := DroppedPartition{Name: p.Name, Month: month.Start(), Rows: p.RowsEstimated, Reason: "orphan"}
		if err := m.drop(ctx, &d); err != nil {
			return fmt.Errorf("drop detached %s: %w", p.Name, err)
		}
		m.rep.Dropped = append(m.rep.Dropped, d)
		m.l.observer.PartitionDropped(d.Reason)
	}
	return nil
}

func (m *maintenance) rescueDefault(ctx context.Context) error {
	months, err := m.l.q.DefaultPartitionMonths(ctx, m.conn)
	if err != nil {
		return err
	}
	for _, row := range months {
		month := monthOf(row.Month)
		name := PartitionName(row.Month)
		lo, hi := month.Start(), (month + 1).Start()
		if m.expired(month) {
			d := DroppedPartition{Name: "user_events_default", Month: lo, Rows: row.Rows, Reason: "default"}
			err := m.tx(ctx, func(tx pgx.Tx) error {
				tag, err := tx.Exec(ctx, "DELETE FROM user_events_default WHERE time >= $1 AND time < $2", lo, hi)
				if err != nil {
					return err
				}
				d.Rows = tag.RowsAffected()
				return m.logDrop(ctx, tx, d)
			})
			if err != nil {
				return fmt.Errorf("delete expired rows of %s from the default partition: %w", name, err)
			}
			m.rep.Dropped = append(m.rep.Dropped, d)
			m.l.observer.PartitionDropped(d.Reason)
			m.rep.Warnings = append(m.rep.Warnings, fmt.Sprintf(
				"user_events_default held %d expired rows of %s; deleted", d.Rows, lo.Format("2006-01")))
			continue
		}
		var moved int64
		err := m.tx(ctx, func(tx pgx.Tx) error {
			// No new row may reach the default partition while its rows move.
			if _, err := tx.Exec(ctx, "LOCK TABLE user_events_default IN SHARE ROW EXCLUSIVE MODE"); err != nil {
				return err
			}
			if err := ddl(ctx, tx, "CREATE TABLE %I (LIKE user_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)", name); err != nil {
				return err
			}
			if err := ddl(ctx, tx, "INSERT INTO %I SELECT * FROM user_events_default WHERE time >= %L AND time < %L", name, lo, hi); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, "DELETE FROM user_events_default WHERE time >= $1 AND time < $2", lo, hi)
			if err != nil {
				return err
			}
			moved = tag.RowsAffected()
			return ddl(ctx, tx, "ALTER TABLE user_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)", name, lo, hi)
		})
		if err != nil {
			return fmt.Errorf("rescue %s from the default partition: %w", name, err)
		}
		m.rep.Rescued = append(m.rep.Rescued, RescuedMonth{Name: name, Rows: moved})
		m.rep.Created = append(m.rep.Created, name)
		m.rep.Warnings = append(m.rep.Warnings, fmt.Sprintf(
			"user_events_default held %d rows of %s (their month had no partition); moved them into %s", moved, lo.Format("2006-01"), name))
	}
	return nil
}

func (m *maintenance) create(ctx context.Context) error {
	parts, err := m.l.q.PartitionList(ctx, m.conn)
	if err != nil {
		return err
	}
	have := make(map[monthKey]bool, len(parts))
	for _, p := range parts {
		if month, ok := parsePartitionName(p.Name); ok && p.Attached {
			have[month] = true
		}
	}
	last := monthOf(m.rep.Now) + monthKey(m.opts.Ahead)
	for month := monthOf(m.rep.Cutoff); month <= last; month++ {
		if have[month] {
			continue
		}
		name := PartitionName(month.Start())
		err := m.tx(ctx, func(tx pgx.Tx) error {
			return ddl(ctx, tx, "CREATE TABLE %I PARTITION OF user_events FOR VALUES FROM (%L) TO (%L)",
				name, month.Start(), (month + 1).Start())
		})
		if err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
		m.rep.Created = append(m.rep.Created, name)
	}
	return nil
}

func (m *maintenance) dropExpired(ctx context.Context) error {
	parts, err := m.l.q.PartitionList(ctx, m.conn)
	if err != nil {
		return err
	}
	for _, p := range parts {
		month, ok := parsePartitionName(p.Name)
		if !ok || !p.Attached || !m.expired(month) {
			continue
		}
		d := DroppedPartition{Name: p.Name, Month: month.Start(), Rows: p.RowsEstimated, Reason: "expired"}
		kept := false
		start := time.Now()
		err := m.tx(ctx, func(tx pgx.Tx) error {
			// The range bounds every row to the month, so this finds
			// nothing unless the partition's bounds differ from its
			// name; it is the last check before anything is dropped.
			var inWindow bool
			if err := tx.QueryRow(ctx, fmt.Sprintf("SELECT EXISTS (SELECT 1 FROM %s WHERE time >= $1)",
				pgx.Identifier{p.Name}.Sanitize()), m.rep.Cutoff).Scan(&inWindow); err != nil {
				return err
			}
			if inWindow {
				kept = true
				return nil
			}
			return ddl(ctx, tx, "ALTER TABLE user_events DETACH PARTITION %I", p.Name)
		})
		d.Detach = time.Since(start)
		if err == nil && !kept {
			// Dropped in a transaction of its own: the files' removal at
			// commit holds no lock on user_events. A crash in between
			// leaves a detached table that the next pass finishes.
			err = m.drop(ctx, &d)
		}
		if err != nil {
			return fmt.Errorf("drop %s: %w", p.Name, err)
		}
		if kept {
			m.rep.Warnings = append(m.rep.Warnings, fmt.Sprintf("%s holds rows inside the window; kept", p.Name))
			continue
		}
		m.rep.Dropped = append(m.rep.Dropped, d)
		m.l.observer.PartitionDropped(d.Reason)
	}
	return nil
}
