package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/db"
)

// Defaults for MaintainOpts.
const (
	DefaultPartitionsAhead = 3
	DefaultLockTimeout     = 2 * time.Second
	DefaultLockRetries     = 6
	// DefaultStatementTimeout bounds one statement of a pass: DDL waits for
	// locks under LockTimeout, so only a DROP freeing a very large month's
	// files or a large move out of the default partition comes near it.
	DefaultStatementTimeout = 5 * time.Minute
	// DefaultIdleInTransactionTimeout ends the pass's session when it sits
	// idle inside one of its transactions (a paused or stuck client) for
	// that long, so the locks it holds on user_events are freed.
	DefaultIdleInTransactionTimeout = 2 * time.Second
)

// ErrNeedsPool is returned by RunErasure when the Log was built on
// something other than a *pgxpool.Pool: an erasure holds a session-level
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
	// StatementTimeout bounds each statement of the pass's transactions;
	// DefaultStatementTimeout when zero.
	StatementTimeout time.Duration
	// IdleInTransactionTimeout is the pass session's
	// idle_in_transaction_session_timeout inside its transactions;
	// DefaultIdleInTransactionTimeout when zero.
	IdleInTransactionTimeout time.Duration
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
	// Reason is why it went; see retention_log.
	Reason DropReason
	// Detach is how long taking the month's own lock, checking it for rows
	// inside the window and DETACHing it took; Drop is how long the DROP,
	// the retention_log row and the commit took (one transaction with the
	// detach), which is mostly the kernel freeing the table's files after
	// PostgreSQL has released its locks. Both are zero in a plan.
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
	// HeldMoved counts the rows of people under a legal hold copied into
	// held_user_events from the months dropped (or, in a plan, 0).
	HeldMoved int64
	// HoldsLapsed lists the holds released because their until passed
	// (in a plan, those that would be).
	HoldsLapsed []int64
	// HeldDropped counts the held rows deleted because no open hold
	// covers them and they are outside the window (in a plan, would be).
	HeldDropped int64
	// Errors holds the failure of each step that failed; every other step
	// ran all the same.
	Errors []StepError
}

// StepError is the failure of one step of a maintenance pass. A failed
// step never stops the others: MaintainPartitions runs every step and
// returns the StepErrors joined (errors.Join).
type StepError struct {
	// Step names the step: "release_holds", "finish_detached",
	// "rescue_default", "create", "guard_default", "drop_expired" or
	// "drop_released".
	Step string
	Err  error
}

// Error implements error.
func (e StepError) Error() string { return e.Step + ": " + e.Err.Error() }

// Unwrap returns the step's error.
func (e StepError) Unwrap() error { return e.Err }

// MaintenanceLockKey is the session advisory lock a pass holds around its
// DDL, so two workers (or a worker and `auditlog partitions maintain`, or
// `migrate up`) never overlap.
const MaintenanceLockKey = 0x61756469746c6f67 // "auditlog"

// step is one step of a pass, named as in StepError.
type step struct {
	name string
	run  func(*maintenance, context.Context) error
}

var (
	stepCreate = step{"create", (*maintenance).create}
	stepGuard  = step{"guard_default", (*maintenance).guardDefault}
	// passSteps are the steps of a full pass, in order; PlanPartitions
	// runs the same ones.
	passSteps = []step{
		{"release_holds", (*maintenance).releaseHolds},
		{"finish_detached", (*maintenance).finishDetached},
		{"rescue_default", (*maintenance).rescueDefault},
		stepCreate, stepGuard,
		{"drop_expired", (*maintenance).dropExpired},
		{"drop_released", (*maintenance).dropReleased},
	}
)

// MaintainPartitions runs one partition-maintenance pass at the Log's
// clock:
//
//  1. finishes monthly tables left detached from user_events (a crash, or
//     a DBA): drops those whose month has expired; attaches the others
//     again, after moving back the rows of their month that landed in
//     user_events_default meanwhile (one transaction), and warns;
//  2. moves rows that landed in user_events_default into partitions of
//     their own (creating a partition over such a range fails otherwise),
//     deleting those of already expired months, and warns;
//  3. creates every missing monthly partition from the month the window
//     starts in up to Ahead months after the current one;
//  4. keeps a guard on user_events_default (a CHECK constraint, NOT VALID)
//     refusing rows of exactly those months, so an event whose partition
//     is detached or dropped fails (ErrPartitionUnavailable) instead of
//     landing there;
//  5. drops each partition whose month ended at or before now − retention:
//     in one transaction it takes the month's own lock first (under
//     lock_timeout, retried with backoff, holding nothing on user_events
//     meanwhile, so writers never queue behind a reader of the old month),
//     checks that it holds no row inside the window, DETACHes it, DROPs
//     it and logs the drop. PostgreSQL releases the locks before removing
//     the files at commit. (DETACH … CONCURRENTLY is refused while
//     user_events has a default partition, and the default stays as the
//     safety net.)
//
// Every transaction of the pass runs with lock_timeout, statement_timeout
// and idle_in_transaction_session_timeout set for that transaction only
// (MaintainOpts), so the pooled connection keeps none of them. A step that
// fails does not stop the others: the report lists each failure in
// Errors, and the error returned joins them, each naming its step. Every
// drop writes a retention_log row dated by the Log's clock. A pass is
// idempotent; when another holds the lock it returns at once with Skipped
// set. pool is the Log's database as a pool: the pass holds a session
// advisory lock, and runs its statements, on one connection of its own.
func (l *Log) MaintainPartitions(ctx context.Context, pool *pgxpool.Pool, opts MaintainOpts) (*MaintenanceReport, error) {
	rep, err := l.maintain(ctx, pool, opts, passSteps...)
	if err != nil {
		return rep, unavailable(fmt.Errorf("maintain partitions: %w", err))
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
		return nil, unavailable(fmt.Errorf("plan partition maintenance: %w", err))
	}
	return rep, nil
}

func (l *Log) plan(ctx context.Context, opts PlanOpts) (*MaintenanceReport, error) {
	tx, err := l.db.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := l.q.TransactionReadOnly(ctx, tx); err != nil {
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
func (l *Log) maintain(ctx context.Context, pool *pgxpool.Pool, opts MaintainOpts, steps ...step) (*MaintenanceReport, error) {
	now := l.now()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	locked, err := l.q.MaintenanceTryLock(ctx, conn, MaintenanceLockKey)
	if err != nil {
		return nil, err
	}
	if !locked {
		rep := l.newReport(now, false)
		rep.Skipped = true
		return rep, nil
	}
	defer func() {
		// A broken connection releases the lock with its session.
		_, _ = l.q.MaintenanceUnlock(context.WithoutCancel(ctx), conn, MaintenanceLockKey)
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
		opts.Ahead = l.ahead
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.LockRetries <= 0 {
		opts.LockRetries = DefaultLockRetries
	}
	if opts.StatementTimeout <= 0 {
		opts.StatementTimeout = DefaultStatementTimeout
	}
	if opts.IdleInTransactionTimeout <= 0 {
		opts.IdleInTransactionTimeout = DefaultIdleInTransactionTimeout
	}
	parts, err := l.q.PartitionAttachmentList(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	defaults, err := l.q.DefaultPartitionMonths(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("read the default partition: %w", err)
	}
	guards, err := l.q.DefaultPartitionGuards(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("read the default partition's guard: %w", err)
	}
	return &maintenance{l: l, q: q, conn: conn, opts: opts, rep: l.newReport(now, planned),
		parts: parts, defaults: defaults, guards: guards}, nil
}

// maintenance is one pass or one plan. Each step decides from parts and
// defaults, the catalog and the default partition as the steps before it
// left them, and then acts: a pass carries the action out, a plan only
// records it. Both update parts and defaults the same way, so a plan
// decides each step exactly as the pass would.
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
	parts []db.PartitionAttachmentListRow
	// defaults are the months of the rows in user_events_default, read
	// with parts; a month is taken out once its rows have moved.
	defaults []db.DefaultPartitionMonthsRow
	// guards names the guard constraints on user_events_default.
	guards []string
}

// run runs every step, each even when one before it failed, and returns
// the failures joined; each is also in the report's Errors.
func (m *maintenance) run(ctx context.Context, steps []step) error {
	var errs []error
	for _, s := range steps {
		if err := s.run(m, ctx); err != nil {
			se := StepError{Step: s.name, Err: err}
			m.rep.Errors = append(m.rep.Errors, se)
			errs = append(errs, se)
		}
	}
	return errors.Join(errs...)
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
		m.l.observer.PartitionDropped(string(d.Reason))
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
	m.parts = append(m.parts, db.PartitionAttachmentListRow{Name: name, Attached: true})
}

// removed takes name out of parts.
func (m *maintenance) removed(name string) {
	m.parts = slices.DeleteFunc(m.parts, func(p db.PartitionAttachmentListRow) bool { return p.Name == name })
}

// detached reports whether parts holds name as a table left detached.
func (m *maintenance) detached(name string) bool {
	for _, p := range m.parts {
		if p.Name == name {
			return !p.Attached
		}
	}
	return false
}

// takeDefault takes month out of defaults and returns how many of its rows
// the default partition held when the pass started.
func (m *maintenance) takeDefault(month monthKey) int64 {
	var n int64
	m.defaults = slices.DeleteFunc(m.defaults, func(r db.DefaultPartitionMonthsRow) bool {
		if monthOf(r.Month) == month {
			n += r.Rows
			return true
		}
		return false
	})
	return n
}

// tx runs fn in a transaction whose lock_timeout, statement_timeout and
// idle_in_transaction_session_timeout are set for that transaction only
// (SET LOCAL, sent with the BEGIN in one round trip), retrying with
// doubling backoff when a lock is not granted in time.
func (m *maintenance) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	if m.conn == nil {
		return errors.New("a plan changes nothing") // act never gets here when planning
	}
	begin := pgx.TxOptions{BeginQuery: tableSQL("maintenance_begin", "", map[string]any{
		"lock": m.opts.LockTimeout, "statement": m.opts.StatementTimeout, "idle": m.opts.IdleInTransactionTimeout,
	})}
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := pgx.BeginTxFunc(ctx, m.conn, begin, fn)
		if !hasCode(err, pgerrcode.LockNotAvailable) || attempt >= m.opts.LockRetries {
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

// ddl runs the statement name of tables.tmpl for table.
func ddl(ctx context.Context, tx pgx.Tx, name, table string, vals map[string]any) error {
	_, err := tx.Exec(ctx, tableSQL(name, table, vals))
	return err
}

// logDrop records the drop of d in retention_log, with the seal of the
// month's integrity tree when it has one: the tree's size and root in the
// newest checkpoint, read from the checkpoint (not from the month's rows),
// after which the tree's leaves and hashes go as whole tables.
func (m *maintenance) logDrop(ctx context.Context, tx pgx.Tx, d DroppedPartition) error {
	p := db.RetentionLogInsertParams{
		PartitionName: d.Name, Month: d.Month, RowsEstimated: d.Rows,
		DroppedAt: m.rep.Now, RetentionSeconds: m.l.retention.Seconds(), Reason: string(d.Reason),
	}
	tree := leafTree(ModelUser, d.Month)
	sealed, err := m.l.sealTree(ctx, tx, tree, m.rep.Now)
	if err != nil {
		return fmt.Errorf("seal %s: %w", tree, err)
	}
	if sealed != nil {
		p.SealedSize, p.SealedRoot = pgtype.Int8{Int64: sealed.Size, Valid: true}, sealed.Root[:]
	}
	return m.l.q.RetentionLogInsert(ctx, tx, p)
}

// drop drops the detached table d.Name and logs it in one transaction,
// and records how long that took in d.Drop.
func (m *maintenance) drop(ctx context.Context, d *DroppedPartition) error {
	var err error
	d.Drop, err = m.act(ctx, func(tx pgx.Tx) error {
		if err := m.keepHeld(ctx, tx, d.Name, d.Month); err != nil {
			return err
		}
		if err := ddl(ctx, tx, "partition_drop", d.Name, nil); err != nil {
			return err
		}
		return m.logDrop(ctx, tx, *d)
	})
	return err
}

// lockDefault locks user_events_default against new rows (its readers go
// on) while rows move out of it.
func (m *maintenance) lockDefault(ctx context.Context, tx pgx.Tx) error {
	return m.l.q.DefaultPartitionLock(ctx, tx)
}

func (m *maintenance) finishDetached(ctx context.Context) error {
	var errs []error
	for _, p := range slices.Clone(m.parts) {
		month, ok := parsePartitionName(p.Name)
		if !ok || p.Attached {
			continue
		}
		if !m.expired(month) {
			if err := m.reattach(ctx, p.Name, month); err != nil {
				errs = append(errs, fmt.Errorf("attach %s again: %w", p.Name, err))
			}
			continue
		}
		d := DroppedPartition{Name: p.Name, Month: month.Start(), Rows: p.RowsEstimated, Reason: DropOrphan}
		if err := m.drop(ctx, &d); err != nil {
			errs = append(errs, fmt.Errorf("drop detached %s: %w", p.Name, err))
			continue
		}
		m.removed(p.Name)
		m.dropped(d)
	}
	return errors.Join(errs...)
}

// reattach attaches the detached table name of month (inside the window)
// to user_events again. The rows of its month that landed in
// user_events_default meanwhile (before the default partition had its
// guard) move into it first, in the same transaction: ATTACH refuses
// otherwise (SQLSTATE 23514), and the default partition is locked against
// new rows throughout, as when rescuing.
func (m *maintenance) reattach(ctx context.Context, name string, month monthKey) error {
	lo, hi := month.Start(), (month + 1).Start()
	moved := m.takeDefault(month)
	_, err := m.act(ctx, func(tx pgx.Tx) error {
		if err := m.lockDefault(ctx, tx); err != nil {
			return err
		}
		cols, err := m.l.q.UserEventColumns(ctx, tx)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, tableSQL("default_move_month", name, map[string]any{"columns": cols}),
			pgx.NamedArgs{"month_start": lo, "month_end": hi})
		if err != nil {
			return err
		}
		moved = tag.RowsAffected()
		return ddl(ctx, tx, "partition_attach", name, map[string]any{"from": lo, "to": hi})
	})
	if err != nil {
		return err
	}
	m.attached(name)
	m.rep.Reattached = append(m.rep.Reattached, name)
	if moved > 0 {
		m.warnf("%s was detached from user_events but its month is inside the window, and user_events_default held %d rows of its month; %s",
			name, moved, m.verb("moved them back into it and attached it again", "would move them back into it and attach it again"))
	} else {
		m.warnf("%s was detached from user_events but its month is inside the window; %s",
			name, m.verb("attached it again", "would attach it again"))
	}
	return nil
}

func (m *maintenance) rescueDefault(ctx context.Context) error {
	var errs []error
	for _, row := range slices.Clone(m.defaults) {
		month := monthOf(row.Month)
		name := PartitionName(row.Month)
		if m.detached(name) {
			continue // its table failed to attach again (finish_detached says why)
		}
		m.takeDefault(month)
		lo, hi := month.Start(), (month + 1).Start()
		if m.expired(month) {
			d := DroppedPartition{Name: "user_events_default", Month: lo, Rows: row.Rows, Reason: DropDefault}
			_, err := m.act(ctx, func(tx pgx.Tx) error {
				if err := m.keepHeld(ctx, tx, "user_events_default", lo); err != nil {
					return err
				}
				n, err := m.l.q.DefaultPartitionDeleteMonth(ctx, tx, db.DefaultPartitionDeleteMonthParams{MonthStart: lo, MonthEnd: hi})
				if err != nil {
					return err
				}
				d.Rows = n
				return m.logDrop(ctx, tx, d)
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("delete expired rows of %s from the default partition: %w", name, err))
				continue
			}
			m.dropped(d)
			m.warnf("user_events_default held %d expired rows of %s; %s",
				d.Rows, lo.Format("2006-01"), m.verb("deleted", "would delete them"))
			continue
		}
		moved := row.Rows
		_, err := m.act(ctx, func(tx pgx.Tx) error {
			// No new row may reach the default partition while its rows move.
			if err := m.lockDefault(ctx, tx); err != nil {
				return err
			}
			if err := ddl(ctx, tx, "partition_create_detached", name, nil); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, tableSQL("default_copy_month", name, nil), pgx.NamedArgs{"month_start": lo, "month_end": hi}); err != nil {
				return err
			}
			n, err := m.l.q.DefaultPartitionDeleteMonth(ctx, tx, db.DefaultPartitionDeleteMonthParams{MonthStart: lo, MonthEnd: hi})
			if err != nil {
				return err
			}
			moved = n
			return ddl(ctx, tx, "partition_attach", name, map[string]any{"from": lo, "to": hi})
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("rescue %s from the default partition: %w", name, err))
			continue
		}
		m.attached(name)
		m.rep.Rescued = append(m.rep.Rescued, RescuedMonth{Name: name, Rows: moved})
		m.rep.Created = append(m.rep.Created, name)
		m.warnf("user_events_default held %d rows of %s (their month had no partition); %s %s",
			moved, lo.Format("2006-01"), m.verb("moved them into", "would move them into"), name)
	}
	return errors.Join(errs...)
}

// kept returns the first and last months a pass keeps a partition for:
// from the window's first to Ahead months after the current one.
func (m *maintenance) kept() (first, last monthKey) {
	return monthOf(m.rep.Cutoff), monthOf(m.rep.Now) + monthKey(m.opts.Ahead)
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
	first, last := m.kept()
	for month := first; month <= last; month++ {
		if !have[month] {
			out = append(out, month)
		}
	}
	return out
}

func (m *maintenance) create(ctx context.Context) error {
	var errs []error
	for _, month := range m.missing() {
		name := PartitionName(month.Start())
		_, err := m.act(ctx, func(tx pgx.Tx) error {
			return ddl(ctx, tx, "partition_create", name, map[string]any{"from": month.Start(), "to": (month + 1).Start()})
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("create %s: %w", name, err))
			continue
		}
		m.attached(name)
		m.rep.Created = append(m.rep.Created, name)
	}
	return errors.Join(errs...)
}

// guardName names the guard constraint that refuses the rows of the months
// from first to last in user_events_default.
func guardName(first, last monthKey) string {
	return "user_events_default_guard_" + first.Start().Format("200601") + "_" + last.Start().Format("200601")
}

// guardDefault keeps one CHECK constraint on user_events_default refusing
// rows of the months the pass keeps partitions for, replacing the guard of
// an older window. Recording never means to write there (it refuses such
// events before the insert), so the guard matters when a month's
// partition is detached or dropped while the recording cache still holds
// it: the insert then fails with SQLSTATE 23514, which recording reports
// as ErrPartitionUnavailable, instead of the event landing in the default
// partition. It is NOT VALID: rows already there (from before the guard)
// do not block it, and the rescue moves them. Rows of other months (an
// INSERT by hand of an expired or a far month) still land there as before.
func (m *maintenance) guardDefault(ctx context.Context) error {
	first, last := m.kept()
	name := guardName(first, last)
	if len(m.guards) == 1 && m.guards[0] == name || m.rep.Planned {
		return nil
	}
	_, err := m.act(ctx, func(tx pgx.Tx) error {
		for _, g := range m.guards {
			if err := ddl(ctx, tx, "default_guard_drop", "", map[string]any{"guard": g}); err != nil {
				return err
			}
		}
		return ddl(ctx, tx, "default_guard_add", "", map[string]any{"guard": name, "from": first.Start(), "to": (last + 1).Start()})
	})
	if err != nil {
		return fmt.Errorf("guard user_events_default: %w", err)
	}
	m.guards = []string{name}
	return nil
}

// holdsRowsInWindow reports whether the table name holds a row at or
// after the cutoff. The range bounds every row of a partition to its
// month, so this finds nothing unless the partition's bounds differ from
// its name; it is the last check before anything is dropped.
func (m *maintenance) holdsRowsInWindow(ctx context.Context, q db.DBTX, name string) (bool, error) {
	var inWindow bool
	// No parameter: one round trip in the simple protocol.
	err := q.QueryRow(ctx, tableSQL("partition_holds_rows_in_window", name, map[string]any{"cutoff": m.rep.Cutoff}),
		pgx.QueryExecModeSimpleProtocol).Scan(&inWindow)
	return inWindow, err
}

func (m *maintenance) dropExpired(ctx context.Context) error {
	var errs []error
	for _, p := range slices.Clone(m.parts) {
		month, ok := parsePartitionName(p.Name)
		if !ok || !p.Attached || !m.expired(month) {
			continue
		}
		d := DroppedPartition{Name: p.Name, Month: month.Start(), Rows: p.RowsEstimated, Reason: DropExpired}
		kept, err := m.dropOne(ctx, &d)
		if err != nil {
			errs = append(errs, fmt.Errorf("drop %s: %w", p.Name, err))
			continue
		}
		if kept {
			m.rep.Kept = append(m.rep.Kept, p.Name)
			m.warnf("%s holds rows inside the window; %s", p.Name, m.verb("kept", "would keep it"))
			continue
		}
		m.removed(p.Name)
		m.dropped(d)
	}
	return errors.Join(errs...)
}

// dropOne drops the expired partition d.Name in one transaction, unless it
// holds a row inside the window (kept). It takes the partition's own lock
// first, under lock_timeout and retried: while a reader of the old month
// holds it, the pass waits without holding anything on user_events, so
// writers of other months never queue behind it. Only then does DETACH
// take user_events' lock, for the DETACH, the DROP's catalog changes and
// the commit; PostgreSQL removes the files after releasing its locks.
func (m *maintenance) dropOne(ctx context.Context, d *DroppedPartition) (kept bool, err error) {
	if m.rep.Planned {
		return m.holdsRowsInWindow(ctx, m.q, d.Name)
	}
	var detached time.Time
	err = m.tx(ctx, func(tx pgx.Tx) error {
		start := time.Now()
		if err := ddl(ctx, tx, "partition_lock", d.Name, nil); err != nil {
			return err
		}
		var err error
		if kept, err = m.holdsRowsInWindow(ctx, tx, d.Name); err != nil || kept {
			return err
		}
		if err := ddl(ctx, tx, "partition_detach", d.Name, nil); err != nil {
			return err
		}
		detached = time.Now()
		d.Detach = detached.Sub(start)
		if err := m.keepHeld(ctx, tx, d.Name, d.Month); err != nil {
			return err
		}
		if err := ddl(ctx, tx, "partition_drop", d.Name, nil); err != nil {
			return err
		}
		return m.logDrop(ctx, tx, *d)
	})
	if err == nil && !kept {
		d.Drop = time.Since(detached)
	}
	return kept, err
}
