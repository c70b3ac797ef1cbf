package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// MaintainOpts configures one maintenance pass. A pass always runs at the
// Log's clock (Opts.Clock); PlanPartitions shows what a pass at another
// time would do, and changes nothing.
type MaintainOpts struct {
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

// PlanOpts configures PlanPartitions.
type PlanOpts struct {
	// Now is the time the plan is made for; the Log's clock when zero.
	Now time.Time
	// Ahead is as in MaintainOpts.
	Ahead int
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
	// Both are zero in a plan.
	Detach, Drop time.Duration
}

// RescuedMonth is a month whose rows had landed in user_events_default and
// were moved into a new partition of their own.
type RescuedMonth struct {
	Name string
	Rows int64
}

// MaintenanceReport says what one pass did, or, when Planned, what a pass
// at Now would do.
type MaintenanceReport struct {
	// Planned is true for a report of PlanPartitions: nothing was changed,
	// and every list says what a pass at Now would do.
	Planned bool
	// Skipped is true when another pass held the maintenance lock; this
	// one then did nothing.
	Skipped bool
	Now     time.Time
	// Cutoff is now − retention: a month whose end is at or before it has
	// expired.
	Cutoff time.Time
	// Created names the partitions created, rescued months included.
	Created []string
	Dropped []DroppedPartition
	Rescued []RescuedMonth
	// Reattached names monthly tables found detached from user_events
	// whose month is inside the window; they were attached again.
	Reattached []string
	// Kept names expired months that were not dropped because they hold
	// rows inside the window (a partition whose bounds differ from its
	// name).
	Kept []string
	// Warnings are conditions an operator should look at: rows found in
	// the default partition, detached partitions that are not expired.
	Warnings []string
}

// MaintenanceLockKey is the session advisory lock a pass holds around its
// DDL, so two workers (or a worker and `auditlog partitions maintain`, or
// `migrate up`) never overlap.
const MaintenanceLockKey = 0x61756469746c6f67 // "auditlog"

// passSteps are the steps of a full pass, in order; PlanPartitions runs
// the same ones.
var passSteps = []func(*maintenance, context.Context) error{
	(*maintenance).finishDetached, (*maintenance).rescueDefault, (*maintenance).create, (*maintenance).dropExpired,
}

// MaintainPartitions runs one partition-maintenance pass at the Log's
// clock:
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
// Every drop writes a retention_log row dated by the Log's clock. A pass
// is idempotent; when another holds the lock it returns at once with
// Skipped set.
func (l *Log) MaintainPartitions(ctx context.Context, opts MaintainOpts) (*MaintenanceReport, error) {
	rep, err := l.maintain(ctx, opts, passSteps...)
	if err != nil {
		return rep, fmt.Errorf("maintain partitions: %w", err)
	}
	return rep, nil
}

// PlanPartitions reports what MaintainPartitions would do if its clock read
// opts.Now, and changes nothing: the pass's own steps decide, but every
// action is only recorded in the report (Planned set). Its reads run in one
// READ ONLY transaction; it takes no lock beyond the reads', writes no
// retention_log row and leaves the partition cache alone, so it may run
// beside a real pass.
func (l *Log) PlanPartitions(ctx context.Context, opts PlanOpts) (*MaintenanceReport, error) {
	if opts.Now.IsZero() {
		opts.Now = l.now()
	}
	rep, err := l.plan(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("plan partition maintenance: %w", err)
	}
	return rep, nil
}

func (l *Log) plan(ctx context.Context, opts PlanOpts) (*MaintenanceReport, error) {
	tx, err := l.db.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "SET TRANSACTION READ ONLY"); err != nil {
		return nil, err
	}
	m, err := l.newMaintenance(ctx, tx, nil, MaintainOpts{Ahead: opts.Ahead}, opts.Now, true)
	if err != nil {
		return nil, err
	}
	if err := m.run(ctx, passSteps); err != nil {
		return nil, err
	}
	return m.rep, nil
}

// maintain runs steps under the maintenance lock, at the Log's clock.
func (l *Log) maintain(ctx context.Context, opts MaintainOpts, steps ...func(*maintenance, context.Context) error) (*MaintenanceReport, error) {
	pool, ok := l.db.(*pgxpool.Pool)
	if !ok {
		return nil, ErrNeedsPool
	}
	now := l.now()
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
		rep := l.newReport(now, false)
		rep.Skipped = true
		return rep, nil
	}
	defer func() {
		// A broken connection releases the lock with its session.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(MaintenanceLockKey))
	}()
	defer l.ForgetPartitions()

	m, err := l.newMaintenance(ctx, conn.Conn(), conn.Conn(), opts, now, false)
	if err != nil {
		return nil, err
	}
	return m.rep, m.run(ctx, steps)
}

func (l *Log) newReport(now time.Time, planned bool) *MaintenanceReport {
	now = now.UTC()
	return &MaintenanceReport{Planned: planned, Now: now, Cutoff: l.windowStart(now)}
}

// newMaintenance reads the catalog through q and readies a pass (conn
// set) or a plan (conn nil) at now.
func (l *Log) newMaintenance(ctx context.Context, q db.DBTX, conn *pgx.Conn, opts MaintainOpts, now time.Time, planned bool) (*maintenance, error) {
	if opts.Ahead <= 0 {
		opts.Ahead = DefaultPartitionsAhead
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.LockRetries <= 0 {
		opts.LockRetries = DefaultLockRetries
	}
	parts, err := l.q.PartitionList(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	return &maintenance{l: l, q: q, conn: conn, opts: opts, rep: l.newReport(now, planned), parts: parts}, nil
}

// maintenance is one pass or one plan. Each step decides from parts, the
// catalog as the steps before it left it, and then acts: a pass carries
// the action out, a plan only records it. Both update parts the same way,
// so a plan decides each step exactly as the pass would.
type maintenance struct {
	l *Log
	// q reads: the pass's connection, or the plan's read-only transaction.
	q db.DBTX
	// conn is the pass's connection; nil in a plan, which writes nothing.
	conn *pgx.Conn
	opts MaintainOpts
	rep  *MaintenanceReport
	// parts is read once when the pass starts (under its lock) and kept
	// up to date by every action.
	parts []db.PartitionListRow
}

func (m *maintenance) run(ctx context.Context, steps []func(*maintenance, context.Context) error) error {
	for _, step := range steps {
		if err := step(m, ctx); err != nil {
			return err
		}
	}
	return nil
}

// expired reports whether every instant of month is before the cutoff.
func (m *maintenance) expired(month monthKey) bool {
	return !(month + 1).Start().After(m.rep.Cutoff)
}

// act carries out one action of the pass in a transaction of its own and
// returns how long that took. In a plan it does nothing and returns zero.
func (m *maintenance) act(ctx context.Context, fn func(pgx.Tx) error) (time.Duration, error) {
	if m.rep.Planned {
		return 0, nil
	}
	start := time.Now()
	err := m.tx(ctx, fn)
	return time.Since(start), err
}

// verb picks the wording of a warning: what the pass did, or what it
// would do.
func (m *maintenance) verb(did, would string) string {
	if m.rep.Planned {
		return would
	}
	return did
}

func (m *maintenance) warnf(format string, args ...any) {
	m.rep.Warnings = append(m.rep.Warnings, fmt.Sprintf(format, args...))
}

// dropped records d; a pass also tells the observer.
func (m *maintenance) dropped(d DroppedPartition) {
	m.rep.Dropped = append(m.rep.Dropped, d)
	if !m.rep.Planned {
		m.l.observer.PartitionDropped(d.Reason)
	}
}

// attached marks name as an attached partition in parts, adding it when
// it is new.
func (m *maintenance) attached(name string) {
	for i := range m.parts {
		if m.parts[i].Name == name {
			m.parts[i].Attached = true
			return
		}
	}
	m.parts = append(m.parts, db.PartitionListRow{Name: name, Attached: true})
}

// removed takes name out of parts.
func (m *maintenance) removed(name string) {
	m.parts = slices.DeleteFunc(m.parts, func(p db.PartitionListRow) bool { return p.Name == name })
}

// tx runs fn in a transaction with lock_timeout set, retrying with
// doubling backoff when a lock is not granted in time.
func (m *maintenance) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	if m.conn == nil {
		return errors.New("a plan changes nothing") // act never gets here when planning
	}
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
	var err error
	d.Drop, err = m.act(ctx, func(tx pgx.Tx) error {
		if err := ddl(ctx, tx, "DROP TABLE %I", d.Name); err != nil {
			return err
		}
		return m.logDrop(ctx, tx, *d)
	})
	return err
}

func (m *maintenance) finishDetached(ctx context.Context) error {
	for _, p := range slices.Clone(m.parts) {
		month, ok := parsePartitionName(p.Name)
		if !ok || p.Attached {
			continue
		}
		if !m.expired(month) {
			// Its rows are still inside the window: attaching it back keeps
			// them readable and lets the month record again.
			_, err := m.act(ctx, func(tx pgx.Tx) error {
				return ddl(ctx, tx, "ALTER TABLE user_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)",
					p.Name, month.Start(), (month + 1).Start())
			})
			if err != nil {
				return fmt.Errorf("attach %s again: %w", p.Name, err)
			}
			m.attached(p.Name)
			m.rep.Reattached = append(m.rep.Reattached, p.Name)
			m.warnf("%s was detached from user_events but its month is inside the window; %s",
				p.Name, m.verb("attached it again", "would attach it again"))
			continue
		}
		d := DroppedPartition{Name: p.Name, Month: month.Start(), Rows: p.RowsEstimated, Reason: "orphan"}
		if err := m.drop(ctx, &d); err != nil {
			return fmt.Errorf("drop detached %s: %w", p.Name, err)
		}
		m.removed(p.Name)
		m.dropped(d)
	}
	return nil
}

func (m *maintenance) rescueDefault(ctx context.Context) error {
	months, err := m.l.q.DefaultPartitionMonths(ctx, m.q)
	if err != nil {
		return err
	}
	for _, row := range months {
		month := monthOf(row.Month)
		name := PartitionName(row.Month)
		lo, hi := month.Start(), (month + 1).Start()
		if m.expired(month) {
			d := DroppedPartition{Name: "user_events_default", Month: lo, Rows: row.Rows, Reason: "default"}
			_, err := m.act(ctx, func(tx pgx.Tx) error {
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
			m.dropped(d)
			m.warnf("user_events_default held %d expired rows of %s; %s",
				d.Rows, lo.Format("2006-01"), m.verb("deleted", "would delete them"))
			continue
		}
		moved := row.Rows
		_, err := m.act(ctx, func(tx pgx.Tx) error {
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
		m.attached(name)
		m.rep.Rescued = append(m.rep.Rescued, RescuedMonth{Name: name, Rows: moved})
		m.rep.Created = append(m.rep.Created, name)
		m.warnf("user_events_default held %d rows of %s (their month had no partition); %s %s",
			moved, lo.Format("2006-01"), m.verb("moved them into", "would move them into"), name)
	}
	return nil
}

// missing lists the months from the window's first to Ahead months after
// the current one that have no attached partition.
func (m *maintenance) missing() []monthKey {
	have := make(map[monthKey]bool, len(m.parts))
	for _, p := range m.parts {
		if month, ok := parsePartitionName(p.Name); ok && p.Attached {
			have[month] = true
		}
	}
	var out []monthKey
	last := monthOf(m.rep.Now) + monthKey(m.opts.Ahead)
	for month := monthOf(m.rep.Cutoff); month <= last; month++ {
		if !have[month] {
			out = append(out, month)
		}
	}
	return out
}

func (m *maintenance) create(ctx context.Context) error {
	for _, month := range m.missing() {
		name := PartitionName(month.Start())
		_, err := m.act(ctx, func(tx pgx.Tx) error {
			return ddl(ctx, tx, "CREATE TABLE %I PARTITION OF user_events FOR VALUES FROM (%L) TO (%L)",
				name, month.Start(), (month + 1).Start())
		})
		if err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
		m.attached(name)
		m.rep.Created = append(m.rep.Created, name)
	}
	return nil
}

// holdsRowsInWindow reports whether the table name holds a row at or
// after the cutoff. The range bounds every row of a partition to its
// month, so this finds nothing unless the partition's bounds differ from
// its name; it is the last check before anything is dropped.
func (m *maintenance) holdsRowsInWindow(ctx context.Context, q db.DBTX, name string) (bool, error) {
	var inWindow bool
	err := q.QueryRow(ctx, fmt.Sprintf("SELECT EXISTS (SELECT 1 FROM %s WHERE time >= $1)",
		pgx.Identifier{name}.Sanitize()), m.rep.Cutoff).Scan(&inWindow)
	return inWindow, err
}

func (m *maintenance) dropExpired(ctx context.Context) error {
	for _, p := range slices.Clone(m.parts) {
		month, ok := parsePartitionName(p.Name)
		if !ok || !p.Attached || !m.expired(month) {
			continue
		}
		d := DroppedPartition{Name: p.Name, Month: month.Start(), Rows: p.RowsEstimated, Reason: "expired"}
		kept := false
		var err error
		if m.rep.Planned {
			kept, err = m.holdsRowsInWindow(ctx, m.q, p.Name)
		} else {
			d.Detach, err = m.act(ctx, func(tx pgx.Tx) error {
				var err error
				if kept, err = m.holdsRowsInWindow(ctx, tx, p.Name); err != nil || kept {
					return err
				}
				return ddl(ctx, tx, "ALTER TABLE user_events DETACH PARTITION %I", p.Name)
			})
		}
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
			m.rep.Kept = append(m.rep.Kept, p.Name)
			m.warnf("%s holds rows inside the window; %s", p.Name, m.verb("kept", "would keep it"))
			continue
		}
		m.removed(p.Name)
		m.dropped(d)
	}
	return nil
}
