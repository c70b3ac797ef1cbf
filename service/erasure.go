package service

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/db"
)

// ErasureStatus is where an erasure request stands.
type ErasureStatus string

// Erasure request statuses.
const (
	ErasurePending  ErasureStatus = "pending"  // stored, its job not started yet
	ErasureRunning  ErasureStatus = "running"  // an attempt is running, or the next is due after one used its time budget
	ErasureRetrying ErasureStatus = "retrying" // an attempt failed (see Error); River retries
	ErasureDone     ErasureStatus = "done"     // every personal row of the person is gone
	ErasureFailed   ErasureStatus = "failed"   // the last attempt failed; a new request may be made
	// ErasureBlocked (holds.go): a legal hold stops it until released.
)

// Erasure limits and defaults.
const (
	// DefaultErasureBatch is how many rows one erasure statement touches
	// at most, so no statement holds its locks or grows its transaction
	// for long.
	DefaultErasureBatch = 10_000
	// DefaultErasureStatementTimeout is the statement_timeout the erasure
	// sets on each of its transactions (SET LOCAL): a batch of
	// DefaultErasureBatch rows takes a fraction of a second on a healthy
	// database, so a batch that runs this long is too large for the moment
	// and is halved.
	DefaultErasureStatementTimeout = 10 * time.Second
	// DefaultErasureLockTimeout is the lock_timeout the erasure sets on
	// each of its transactions: how long a batch waits for a lock held by
	// someone else (maintenance's DDL, a long writer) before the attempt
	// fails and River retries it.
	DefaultErasureLockTimeout = 5 * time.Second
	// MaxReasonBytes bounds an erasure request's reason.
	MaxReasonBytes = 1024
)

var (
	// ErrNoEnqueuer: RequestErasure needs a Log built with Opts.Enqueuer
	// (jobs.NewEnqueuer), which puts the erasure job in the same
	// transaction as the request.
	ErrNoEnqueuer = errors.New("no job enqueuer configured (service.Opts.Enqueuer)")
	// ErrNotFound: no erasure request has that id.
	ErrNotFound = errors.New("not found")
	// ErrEmptyReason: an erasure request must say why it is made.
	ErrEmptyReason = errors.New("empty reason")
	// ErrErasureFailed: the request failed on its last attempt and is
	// final; a new request for the person starts afresh.
	ErrErasureFailed = errors.New("erasure request failed for good; request a new one")
	// ErrErasureBusy: another attempt of the same request holds the
	// request's lock and is working; this attempt did nothing and recorded
	// nothing. Run it again later.
	ErrErasureBusy = errors.New("another attempt of this erasure request is running")
	// ErrErasureYielded: the attempt used its time budget
	// (RunErasureOpts.Budget) while making progress and stopped between
	// two batches; what it did is committed and counted, and running it
	// again continues.
	ErrErasureYielded = errors.New("erasure attempt used its time budget; its progress is committed, run it again to continue")
)

// Enqueuer puts background jobs in the caller's transaction, so a job
// exists exactly when the change that needs it commits. jobs.Enqueuer
// implements it with River's InsertTx.
type Enqueuer interface {
	EnqueueErasureTx(ctx context.Context, tx pgx.Tx, requestID int64) error
	// EnqueueHookTx enqueues hook's job for event e.
	EnqueueHookTx(ctx context.Context, tx pgx.Tx, hook string, e *Event) error
	// EnqueueMaintenance asks for a partition-maintenance pass now, in a
	// statement of its own (recording calls it when a month's partition
	// is missing, outside the failed event's transaction).
	EnqueueMaintenance(ctx context.Context) error
}

// ErasureParams asks for one person's personal data to be erased.
type ErasureParams struct {
	// UserID is the person: the host's user id, as recorded in user_id and
	// actor_id.
	UserID string
	// Reason is why (a ticket reference, "account deleted", ...); kept
	// with the request as the record of the erasure.
	Reason string
	// RequestedBy is who asked for it (an admin's id), if known.
	RequestedBy string
}

// ErasureRequest is a stored request and what its job did so far.
type ErasureRequest struct {
	ID          int64         `json:"id"`
	UserID      string        `json:"user_id"`
	Reason      string        `json:"reason"`
	RequestedBy string        `json:"requested_by,omitempty"`
	RequestedAt time.Time     `json:"requested_at"`
	Status      ErasureStatus `json:"status"`
	StartedAt   *time.Time    `json:"started_at,omitempty"`
	CompletedAt *time.Time    `json:"completed_at,omitempty"`
	// UserEventsDeleted counts the person's own user events deleted.
	UserEventsDeleted int64 `json:"user_events_deleted"`
	// UserEventsScrubbed counts other accounts' user events the person
	// acted in whose personal fields were removed.
	UserEventsScrubbed int64 `json:"user_events_scrubbed"`
	// ProjectEventsScrubbed counts project events the person acted in
	// whose personal fields were removed.
	ProjectEventsScrubbed int64 `json:"project_events_scrubbed"`
	// AdminReadsScrubbed counts admins' reads (admin:events:view) whose
	// filter named the person and now names the pseudonym or "[erased]".
	AdminReadsScrubbed int64 `json:"admin_reads_scrubbed"`
	// Counts is the rows changed per table: "user_events_p202607" (deleted),
	// "user_events_p202607:scrubbed", "user_events_p202607:admin_reads",
	// "project_events:scrubbed", "project_events:mentions",
	// "river_job:hook_jobs", "ingest_requests:keys", ...
	Counts   map[string]int64 `json:"counts"`
	Attempts int              `json:"attempts"`
	// Error is the last failed attempt's error, until the request is done;
	// for a superseded request, why it was stuck and which request
	// replaced it.
	Error string `json:"error,omitempty"`
	// EventsFound is whether any event named the person when the request
	// was made: their own user events in any table, or events they acted
	// in. False usually means a mistyped id; the request is stored anyway.
	EventsFound bool `json:"events_found"`
	// Supersedes is the stuck request this one replaced (now failed), or 0.
	Supersedes int64 `json:"supersedes,omitempty"`
	// BlockedBy is, while Status is blocked, the legal hold that stops
	// the request; it runs when the last hold on it is released.
	BlockedBy int64 `json:"blocked_by,omitempty"`
	// JobState is, while the request is open, the state of its River job:
	// available, pending, running, retryable or scheduled while it is
	// live; cancelled, discarded or completed when it ended, deleted when
	// no job row is left. Empty once the request is done or failed.
	JobState string `json:"job_state,omitempty"`
	// Stuck is true when the request is open but no River job of it is
	// live: nothing will carry it out. Requesting the person's erasure
	// again fails it and starts a new request.
	Stuck bool `json:"stuck"`
}

// liveJobStates are the River job states in which a job will still run.
var liveJobStates = map[string]bool{
	"available": true, "pending": true, "running": true, "retryable": true, "scheduled": true,
}

// open reports whether the request is still to be carried out.
func (e *ErasureRequest) open() bool {
	return e.Status == ErasurePending || e.Status == ErasureRunning || e.Status == ErasureRetrying
}

// stuckReason says, for an error, why a request whose job is in state is
// stuck.
func stuckReason(state string) string {
	switch state {
	case "deleted":
		return "its River job was deleted"
	case "completed":
		return "its River job completed without finishing the request"
	default: // cancelled, discarded
		return "its River job was " + state
	}
}

func (p *ErasureParams) validate() error {
	if p.UserID == "" {
		return invalid("user_id", ErrEmptySubject, "the person to erase is required")
	}
	if err := checkText("user_id", p.UserID, MaxIDBytes); err != nil {
		return err
	}
	if p.Reason == "" {
		return invalid("reason", ErrEmptyReason, "say why the data is erased (a ticket, \"account deleted\")")
	}
	if err := checkText("reason", p.Reason, MaxReasonBytes); err != nil {
		return err
	}
	return checkText("requested_by", p.RequestedBy, MaxIDBytes)
}

// RequestErasureTx stores an erasure request inside tx and enqueues its
// job in the same transaction: both commit or neither does.
//
// When the person already has an open request (pending, running or
// retrying) whose River job is live, it returns that one with created
// false and enqueues nothing. When the open request is stuck (its job was
// cancelled, discarded or deleted, or completed without finishing it),
// that request is marked failed with the reason and the new request's id,
// and a new request, whose Supersedes names the stuck one, is stored and
// enqueued (created true): a request never stays dead.
//
// EventsFound records whether any event names the person now; a request
// for an id no event names is stored all the same.
func (l *Log) RequestErasureTx(ctx context.Context, tx pgx.Tx, p ErasureParams) (req ErasureRequest, created bool, err error) {
	if err := p.validate(); err != nil {
		return ErasureRequest{}, false, err
	}
	if l.enqueuer == nil {
		return ErasureRequest{}, false, ErrNoEnqueuer
	}
	found, err := l.personHasEvents(ctx, tx, p.UserID)
	if err != nil {
		return ErasureRequest{}, false, fmt.Errorf("request erasure: look for events: %w", err)
	}
	// A concurrent request for the same person either commits first (the
	// insert then does nothing and the open one is read) or finishes
	// before the read (the insert is tried again). A stuck open request is
	// failed first, which frees the person for the insert.
	var supersedes pgtype.Int8
	for range 4 {
		row, err := l.q.ErasureRequestCreate(ctx, tx, db.ErasureRequestCreateParams{
			UserID: p.UserID, Reason: p.Reason, RequestedBy: text(p.RequestedBy), RequestedAt: l.now().UTC(),
			EventsFound: found, Supersedes: supersedes,
		})
		if err == nil {
			// A request a legal hold stops is stored blocked, without a
			// job: releasing the hold enqueues it.
			hold, err := l.holdBlocking(ctx, tx, p.UserID)
			if err != nil {
				return ErasureRequest{}, false, fmt.Errorf("request erasure: look for holds: %w", err)
			}
			if hold != 0 {
				if _, err := l.q.ErasureRequestBlock(ctx, tx, db.ErasureRequestBlockParams{HoldID: hold, ID: row.ID}); err != nil {
					return ErasureRequest{}, false, fmt.Errorf("request erasure: %w", err)
				}
			} else if err := l.enqueuer.EnqueueErasureTx(ctx, tx, row.ID); err != nil {
				return ErasureRequest{}, false, fmt.Errorf("request erasure: enqueue: %w", err)
			}
			if supersedes.Valid {
				if err := l.q.ErasureRequestNoteSuccessor(ctx, tx, db.ErasureRequestNoteSuccessorParams{
					Successor: row.ID, ID: supersedes.Int64,
				}); err != nil {
					return ErasureRequest{}, false, fmt.Errorf("request erasure: %w", err)
				}
			}
			got, err := l.q.ErasureRequestGetWithJob(ctx, tx, row.ID)
			if err != nil {
				return ErasureRequest{}, false, fmt.Errorf("request erasure: %w", err)
			}
			return erasureRequest(&got.ErasureRequest, got.JobState), true, nil
		}
		if !isNoRows(err) {
			return ErasureRequest{}, false, fmt.Errorf("request erasure: %w", err)
		}
		open, err := l.q.ErasureRequestOpenByUser(ctx, tx, p.UserID)
		if isNoRows(err) {
			continue
		}
		if err != nil {
			return ErasureRequest{}, false, fmt.Errorf("request erasure: %w", err)
		}
		req := erasureRequest(&open.ErasureRequest, open.JobState)
		if !req.Stuck {
			return req, false, nil
		}
		_, err = l.q.ErasureRequestSupersede(ctx, tx, db.ErasureRequestSupersedeParams{
			Error: stuckReason(open.JobState), ID: req.ID,
		})
		switch {
		case err == nil:
			supersedes = pgtype.Int8{Int64: req.ID, Valid: true}
		case !isNoRows(err): // no row: no longer stuck; read again
			return ErasureRequest{}, false, fmt.Errorf("request erasure: supersede request %d: %w", req.ID, err)
		}
	}
	return ErasureRequest{}, false, errors.New("request erasure: a concurrent request kept changing; try again")
}

// personHasEvents reports whether any event names user: their own user
// events in any table (attached partitions, the default one, detached
// monthly tables), and user or project events they acted in.
func (l *Log) personHasEvents(ctx context.Context, tx pgx.Tx, user string) (bool, error) {
	found, err := l.q.PersonEventExists(ctx, tx, user)
	if err != nil || found {
		return found, err
	}
	parts, err := l.q.PartitionList(ctx, tx)
	if err != nil {
		return false, err
	}
	for _, p := range parts {
		if p.Attached {
			continue // seen through user_events
		}
		// In a savepoint: a table dropped meanwhile must not abort tx.
		err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
			return sp.QueryRow(ctx, tableSQL("person_event_exists", p.Name, nil), pgx.NamedArgs{"user": user}).Scan(&found)
		})
		if hasCode(err, pgerrcode.UndefinedTable) {
			continue
		}
		if err != nil || found {
			return found, err
		}
	}
	return false, nil
}

// RequestErasure is RequestErasureTx in a transaction of its own.
func (l *Log) RequestErasure(ctx context.Context, p ErasureParams) (req ErasureRequest, created bool, err error) {
	err = pgx.BeginFunc(ctx, l.db, func(tx pgx.Tx) error {
		req, created, err = l.RequestErasureTx(ctx, tx, p)
		return err
	})
	return req, created, unavailable(err)
}

// ErasureRequest returns the request with that id, or ErrNotFound; an
// open one with the state of its River job (JobState, Stuck).
func (l *Log) ErasureRequest(ctx context.Context, id int64) (ErasureRequest, error) {
	row, err := l.q.ErasureRequestGetWithJob(ctx, l.db, id)
	if err != nil {
		return ErasureRequest{}, notFound(err, "erasure request %d", id)
	}
	return erasureRequest(&row.ErasureRequest, row.JobState), nil
}

// ErasureRequests lists requests newest first, at most limit (100 when
// not positive), those of userID only when it is not empty; open ones with
// the state of their River job (JobState, Stuck).
func (l *Log) ErasureRequests(ctx context.Context, userID string, limit int) ([]ErasureRequest, error) {
	out, err := l.erasureRequests(ctx, userID, limit)
	return out, wrapped(err, "erasure requests")
}

func (l *Log) erasureRequests(ctx context.Context, userID string, limit int) ([]ErasureRequest, error) {
	if limit <= 0 {
		limit = 100
	}
	if err := checkText("user_id", userID, MaxIDBytes); err != nil {
		return nil, err
	}
	rows, err := l.q.ErasureRequestList(ctx, l.db, db.ErasureRequestListParams{
		UserID: text(userID), BeforeTime: firstPage.time, BeforeID: firstPage.id, Max: int32(min(limit, 10_000)),
	})
	if err != nil {
		return nil, err
	}
	out := make([]ErasureRequest, len(rows))
	for i := range rows {
		out[i] = erasureRequest(&rows[i].ErasureRequest, rows[i].JobState)
	}
	return out, nil
}

// Pseudonym is what actor_id becomes in the events a person acted in when
// they are erased and Opts.PseudonymSecret is set: "anon:" and 32 hex
// digits of HMAC-SHA256(secret, userID). The same person always gets the
// same pseudonym, so their actions stay linked to each other, and nobody
// without the secret can tell whose they were. Empty without a secret.
func (l *Log) Pseudonym(userID string) string {
	if len(l.pseudonymKey) == 0 {
		return ""
	}
	mac := hmac.New(sha256.New, l.pseudonymKey)
	mac.Write([]byte(userID))
	return "anon:" + hex.EncodeToString(mac.Sum(nil)[:16])
}

// RunErasureOpts configures one attempt of an erasure job.
type RunErasureOpts struct {
	// FinalAttempt marks the attempt after which River gives up: a failure
	// then leaves the request failed instead of retrying.
	FinalAttempt bool
	// Budget is how long the attempt works before it hands over: once it
	// has run this long and changed at least one row, it stops before its
	// next batch and returns ErrErasureYielded. Its batches are committed
	// and counted, so the next attempt resumes. An attempt that has changed
	// nothing yet keeps going (handing over would make no progress). No
	// budget when zero.
	Budget time.Duration
	// Batch is the batch size to start from, such as a previous attempt's
	// ErasureReport.BatchSize; Opts.ErasureBatch when zero or larger.
	Batch int
	// StatementTimeout is the statement_timeout of each of the attempt's
	// transactions (SET LOCAL, whatever the role's is); a batch statement
	// that runs out of it is run again with half the batch.
	// DefaultErasureStatementTimeout when zero.
	StatementTimeout time.Duration
	// LockTimeout is the lock_timeout of each of the attempt's
	// transactions; DefaultErasureLockTimeout when zero.
	LockTimeout time.Duration
}

// ErasureReport is what one attempt changed.
type ErasureReport struct {
	Request ErasureRequest
	// Counts is the rows this attempt changed per table (keys as in
	// ErasureRequest.Counts); empty when there was nothing left to do.
	Counts map[string]int64
	// BatchSize is the batch size the attempt ended at: where it started,
	// halved once for each batch statement that ran out of its statement
	// timeout. The next attempt may start from it (RunErasureOpts.Batch).
	BatchSize int
}

// Rows is the total rows this attempt changed.
func (r *ErasureReport) Rows() int64 {
	var n int64
	for _, c := range r.Counts {
		n += c
	}
	return n
}

// RunErasure carries out request id; the erasure job calls it. It
//
//   - deletes the person's user events from every table that holds user
//     events: each attached partition, the default partition, and
//     monthly tables left detached by retention but not yet dropped;
//   - first, in admins' reads (admin:events:view) of other accounts,
//     replaces the filter's user and actor when they are the person, and
//     its ip when it is a network (a /24 or narrower, a /48 or narrower
//     for IPv6) holding an address the person used, by Pseudonym(user)
//     or, without a secret, "[erased]" (first, because the person's
//     addresses are known only from the events deleted next);
//   - removes IP, user agent, location and the tag's personal additional
//     keys from other accounts' user events and from project events the
//     person acted in (the events stay: they are the service's history),
//     and replaces actor_id by Pseudonym(user) when a secret is set;
//   - replaces the person's id by the pseudonym or "[erased]" under the
//     keys that name an account (person_ref) in every event, and renders
//     those descriptions again;
//   - before any of that, erases the attempt errors River recorded for the
//     hook jobs of events that name the person, and rewrites idempotency
//     keys that name them so retries still replay (sweepJobsAndKeys);
//   - works in batches of at most Opts.ErasureBatch rows, each in its own
//     transaction that also adds its counts to the request, so a killed
//     attempt keeps exact counts and the next attempt resumes; a batch
//     statement that runs out of the statement timeout is rolled back and
//     run again with half the batch (down to one row: only a single row
//     that times out fails the attempt);
//   - sweeps every table again until a sweep finds nothing, so events
//     recorded while it ran are covered, then marks the request done.
//
// One attempt works at a time: the attempt holds a session advisory lock
// on the request, on a connection of its own that runs every statement
// of the attempt, each in a transaction that sets its own statement and
// lock timeouts (SET LOCAL: nothing stays on the pooled connection). A
// second attempt while one holds the lock returns ErrErasureBusy at once
// and changes and records nothing. With opts.Budget, an attempt that has
// run that long and made progress stops between two batches and returns
// ErrErasureYielded (nothing is recorded as failed; run it again).
//
// Running it again after success changes nothing and reports zero rows.
// A failure is recorded on the request (status retrying, or failed when
// opts.FinalAttempt) and returned. A request that failed for good stays
// failed: running it again returns ErrErasureFailed (a new request for the
// person starts afresh). The Log must be built on a *pgxpool.Pool
// (ErrNeedsPool otherwise).
func (l *Log) RunErasure(ctx context.Context, id int64, opts RunErasureOpts) (*ErasureReport, error) {
	rep := &ErasureReport{Counts: map[string]int64{}}
	pool, ok := l.db.(*pgxpool.Pool)
	if !ok {
		return rep, fmt.Errorf("erasure %d: %w", id, ErrNeedsPool)
	}
	e := l.newEraser(id, opts, rep)
	rep.BatchSize = e.batch
	conn, err := l.lockErasure(ctx, pool, id)
	if errors.Is(err, ErrErasureBusy) {
		return rep, fmt.Errorf("erasure %d: %w", id, err)
	}
	if err != nil {
		return rep, l.erasureFailed(ctx, e, opts, fmt.Errorf("lock: %w", err))
	}
	// Unlocked after the outcome is recorded, so no other attempt starts
	// before this one's failure is written.
	defer l.unlockErasure(ctx, conn, id)
	e.conn = conn.Conn()
	row, err := e.run(ctx)
	rep.BatchSize = e.batch
	var blocked *blockedError
	switch {
	case errors.As(err, &blocked):
		// What was done is committed and counted; the rest runs when the
		// hold is released (ReleaseHold enqueues the request again).
		row, err := l.q.ErasureRequestBlock(ctx, l.db, db.ErasureRequestBlockParams{HoldID: blocked.hold, ID: id})
		if err != nil && !isNoRows(err) {
			return rep, l.erasureFailed(ctx, e, opts, fmt.Errorf("record the hold: %w", err))
		}
		if err == nil {
			rep.Request = erasureRequest(&row, "")
		}
		return rep, nil
	case errors.Is(err, ErrNotFound) || errors.Is(err, ErrErasureFailed):
		return rep, err // nothing was attempted, nothing to record
	case errors.Is(err, ErrErasureYielded):
		if r, gerr := l.q.ErasureRequestGet(ctx, e.conn, id); gerr == nil {
			rep.Request = erasureRequest(&r, "")
		}
		return rep, fmt.Errorf("erasure %d: %w", id, err)
	case err != nil:
		return rep, l.erasureFailed(ctx, e, opts, err)
	}
	l.observer.ErasureFinished(time.Since(e.start), nil)
	rep.Request = erasureRequest(&row, "")
	return rep, nil
}

// erasureFailed records attempt e's failure err on its request (status
// retrying, or failed after the final attempt) and returns it. It is
// recorded even when ctx was cancelled (a shutdown, a timeout), and left
// alone when a later attempt has started since.
func (l *Log) erasureFailed(ctx context.Context, e *eraser, opts RunErasureOpts, err error) error {
	l.observer.ErasureFinished(time.Since(e.start), err)
	status := ErasureRetrying
	if opts.FinalAttempt {
		status = ErasureFailed
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if ferr := l.q.ErasureRequestFail(fctx, l.db, db.ErasureRequestFailParams{
		Status: string(status), Error: err.Error(), ID: e.id, Attempts: e.attempts,
	}); ferr != nil {
		l.logger.Error("erasure: recording the failure failed", "request", e.id, "err", ferr)
	}
	if r, gerr := l.q.ErasureRequestGet(fctx, l.db, e.id); gerr == nil {
		e.rep.Request = erasureRequest(&r, "")
	}
	return fmt.Errorf("erasure %d: %w", e.id, err)
}

// lockErasure takes request id's advisory lock (ErasureRequestTryLock) on
// a pooled connection it keeps for the attempt; ErrErasureBusy when
// another session holds it.
func (l *Log) lockErasure(ctx context.Context, pool *pgxpool.Pool, id int64) (*pgxpool.Conn, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	locked, err := l.q.ErasureRequestTryLock(ctx, conn, id)
	if err != nil || !locked {
		conn.Release()
		if err == nil {
			err = ErrErasureBusy
		}
		return nil, err
	}
	return conn, nil
}

// unlockErasure releases the lock and returns the connection to the pool.
// A connection that cannot say it released the lock is closed instead,
// which ends its session and the lock with it: no pooled connection keeps
// a request locked.
func (l *Log) unlockErasure(ctx context.Context, conn *pgxpool.Conn, id int64) {
	defer conn.Release()
	if conn.Conn().IsClosed() {
		return // the session, and its lock, are gone
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if unlocked, err := l.q.ErasureRequestUnlock(uctx, conn, id); err != nil || !unlocked {
		l.logger.Warn("erasure: could not release the request's lock; closing its connection", "request", id, "err", err)
		_ = conn.Conn().Close(uctx)
	}
}

// newEraser readies one attempt of request id.
func (l *Log) newEraser(id int64, opts RunErasureOpts, rep *ErasureReport) *eraser {
	batch := l.erasureBatch
	if opts.Batch > 0 && opts.Batch < batch {
		batch = opts.Batch
	}
	stmt, lock := opts.StatementTimeout, opts.LockTimeout
	if stmt <= 0 {
		stmt = DefaultErasureStatementTimeout
	}
	if lock <= 0 {
		lock = DefaultErasureLockTimeout
	}
	refKeys, refTags := l.registry.accountKeys()
	return &eraser{l: l, id: id, keys: l.registry.personalKeysJSON(), refKeys: refKeys, refTags: refTags, batch: batch, rep: rep, addrs: map[string]bool{},
		start: time.Now(), budget: opts.Budget, statementTimeout: stmt,
		timeouts: db.ErasureTimeoutsSetLocalParams{StatementTimeout: pgMillis(stmt), LockTimeout: pgMillis(lock)}}
}

// run carries out the attempt on e.conn, which holds the request's lock.
func (e *eraser) run(ctx context.Context) (db.ErasureRequest, error) {
	var row db.ErasureRequest
	var wasDone bool
	err := e.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		row, err = e.l.q.ErasureRequestGet(ctx, tx, e.id)
		if err != nil {
			return notFound(err, "erasure request %d", e.id)
		}
		if ErasureStatus(row.Status) == ErasureFailed {
			return ErrErasureFailed
		}
		e.attempts = pgtype.Int4{Int32: row.Attempts, Valid: true}
		if wasDone = ErasureStatus(row.Status) == ErasureDone; wasDone {
			return nil
		}
		if ErasureStatus(row.Status) == ErasureBlocked {
			return &blockedError{hold: row.BlockedBy.Int64}
		}
		if err := e.checkHolds(ctx, tx, row.UserID); err != nil {
			return err
		}
		row, err = e.l.q.ErasureRequestStart(ctx, tx, db.ErasureRequestStartParams{Now: e.l.now().UTC(), ID: e.id})
		if isNoRows(err) {
			return ErrErasureFailed // failed (superseded) since it was read
		}
		if err != nil {
			return fmt.Errorf("start: %w", err)
		}
		e.attempts = pgtype.Int4{Int32: row.Attempts, Valid: true}
		return nil
	})
	if err != nil {
		return row, err
	}
	e.user, e.pseudonym = row.UserID, text(e.l.Pseudonym(row.UserID))
	if err := e.sweepUntilClean(ctx); err != nil {
		return row, err
	}
	if wasDone && e.rep.Rows() == 0 {
		return row, nil // nothing changed, not even completed_at
	}
	err = e.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		row, err = e.l.q.ErasureRequestComplete(ctx, tx, db.ErasureRequestCompleteParams{Now: e.l.now().UTC(), ID: e.id})
		return err
	})
	return row, err
}

// inTx runs fn in a transaction on the attempt's connection, under the
// attempt's own statement and lock timeouts (SET LOCAL).
func (e *eraser) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, e.conn, func(tx pgx.Tx) error {
		if err := e.l.q.ErasureTimeoutsSetLocal(ctx, tx, e.timeouts); err != nil {
			return fmt.Errorf("set timeouts: %w", err)
		}
		if err := e.l.q.ErasureMarkLocal(ctx, tx, strconv.FormatInt(e.id, 10)); err != nil {
			return fmt.Errorf("mark the erasure: %w", err)
		}
		if e.user != "" {
			if err := e.checkHolds(ctx, tx, e.user); err != nil {
				return err
			}
		}
		return fn(tx)
	})
}

// checkHolds returns a *blockedError when an open legal hold stops
// erasing user. It takes the person's hold lock shared, so a hold placed
// meanwhile waits for this transaction or is seen by it: every batch
// either commits before the hold or does not run.
func (e *eraser) checkHolds(ctx context.Context, tx pgx.Tx, user string) error {
	if err := e.l.q.HoldPersonLockShared(ctx, tx, user); err != nil {
		return fmt.Errorf("hold lock: %w", err)
	}
	hold, err := e.l.holdBlocking(ctx, tx, user)
	if err != nil {
		return fmt.Errorf("look for holds: %w", err)
	}
	if hold != 0 {
		return &blockedError{hold: hold}
	}
	return nil
}

// mustYield reports whether the attempt has used its budget and made
// progress, so it hands over before its next batch.
func (e *eraser) mustYield() bool {
	return e.budget > 0 && e.rep.Rows() > 0 && time.Since(e.start) >= e.budget
}

// timedOut reports whether err is the server cancelling a statement at
// statement_timeout (query_canceled while ctx is still live: a cancelled
// ctx is the attempt's own end, not a slow batch).
func timedOut(ctx context.Context, err error) bool {
	return ctx.Err() == nil && hasCode(err, pgerrcode.QueryCanceled)
}

// eraser is one attempt of an erasure.
type eraser struct {
	l *Log
	// conn holds the request's advisory lock and runs every statement of
	// the attempt.
	conn *pgx.Conn
	id   int64
	// attempts is the request's attempt count this attempt set (invalid
	// until it started), so its failure never overwrites a later one's.
	attempts  pgtype.Int4
	user      string
	pseudonym pgtype.Text
	keys      json.RawMessage // tag → personal additional keys
	// refKeys and refTags: the keys that name an account, by tag, and the
	// tags that have any (accountKeys).
	refKeys json.RawMessage
	refTags []string
	// batch is the current batch size, halved when a batch times out.
	batch int
	rep   *ErasureReport
	// start and budget bound the attempt (RunErasureOpts.Budget).
	start  time.Time
	budget time.Duration
	// statementTimeout and timeouts are the attempt's own settings.
	statementTimeout time.Duration
	timeouts         db.ErasureTimeoutsSetLocalParams
	// addrs holds the addresses the person used (their own user events
	// and the events they acted in), gathered before each sweep deletes
	// or scrubs anything; admin reads filtering on them are scrubbed.
	addrs map[string]bool
}

// erasedValue replaces the person's id or address in an admin read's
// filter when no pseudonym secret is set.
const erasedValue = "[erased]"

// erasedName is what replaces user's id or address in admin reads'
// filters: their pseudonym, or "[erased]" without a secret.
func (l *Log) erasedName(user string) string {
	if p := l.Pseudonym(user); p != "" {
		return p
	}
	return erasedValue
}

// userEventTables lists every table that may hold user events: the
// monthly partitions, attached or left detached, the default one, and
// held_user_events (what legal holds keep past a month).
func (l *Log) userEventTables(ctx context.Context, q db.DBTX) ([]string, error) {
	parts, err := l.q.PartitionList(ctx, q)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(parts), len(parts)+1)
	for i, p := range parts {
		names[i] = p.Name
	}
	return append(names, heldTable), nil
}

func (e *eraser) sweepUntilClean(ctx context.Context) error {
	for {
		changed, err := e.sweep(ctx)
		if err != nil || changed == 0 {
			return err
		}
	}
}

// sweep runs every statement over every table until each finds nothing,
// and returns the rows it changed.
//
// Admin reads go first: whether an admin read's network was the person's
// is known only from the addresses in the person's events, which the
// statements after it delete or scrub. So the first attempt scrubs every
// admin read before it touches any of the person's events, and an attempt
// killed once it had started deleting had already finished that scrub.
func (e *eraser) sweep(ctx context.Context) (int64, error) {
	var tables []string
	err := e.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		tables, err = e.l.userEventTables(ctx, tx)
		return err
	})
	if err != nil {
		return 0, err
	}
	if err := e.gatherAddresses(ctx, tables); err != nil {
		return 0, err
	}
	addrs := make([]string, 0, len(e.addrs))
	for a := range e.addrs {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	replacement := e.l.erasedName(e.user)
	total, err := e.sweepJobsAndKeys(ctx, replacement)
	if err != nil {
		return total, err
	}
	for _, t := range tables {
		n, err := e.drain(ctx, t+":admin_reads", countAdminReads, func(tx pgx.Tx) (int64, error) {
			tag, err := tx.Exec(ctx, tableSQL("admin_reads_scrub", t, nil), pgx.NamedArgs{
				"user": e.user, "batch": e.batch, "replacement": replacement, "addresses": addrs, "admin_read_tag": TagAdminEventsView})
			return tag.RowsAffected(), err
		})
		total += n
		if err != nil {
			return total, err
		}
	}
	for _, t := range tables {
		n, err := e.drain(ctx, t, countDeleted, func(tx pgx.Tx) (int64, error) {
			tag, err := tx.Exec(ctx, tableSQL("person_events_delete", t, nil), pgx.NamedArgs{"user": e.user, "batch": e.batch})
			return tag.RowsAffected(), err
		})
		total += n
		if err != nil {
			return total, err
		}
		n, err = e.drain(ctx, t+":scrubbed", countUserScrubbed, func(tx pgx.Tx) (int64, error) {
			tag, err := tx.Exec(ctx, tableSQL("acted_events_scrub", t, nil), pgx.NamedArgs{
				"user": e.user, "batch": e.batch, "personal_keys": e.keys, "pseudonym": e.pseudonym})
			return tag.RowsAffected(), err
		})
		total += n
		if err != nil {
			return total, err
		}
	}
	n, err := e.drain(ctx, "project_events:scrubbed", countProjectScrubbed, func(tx pgx.Tx) (int64, error) {
		return e.l.q.ProjectEventScrubActor(ctx, tx, db.ProjectEventScrubActorParams{
			PersonalKeys: e.keys, Pseudonym: e.pseudonym, ActorID: e.user, Max: int32(e.batch),
		})
	})
	total += n
	if err != nil {
		return total, err
	}
	// Other events that name the person as an account (a collaborator
	// added, an invitee): the name becomes the pseudonym or "[erased]",
	// in additional and in the description. (A person whose id is the
	// replacement itself is left named: it would match again forever.)
	if len(e.refTags) == 0 || replacement == e.user {
		return total, nil
	}
	for _, t := range append(slices.Clone(tables), "project_events") {
		n, err := e.drain(ctx, t+":mentions", countMentions, func(tx pgx.Tx) (int64, error) {
			return e.scrubMentions(ctx, tx, t, replacement)
		})
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// sweepJobsAndKeys erases the person from River's hook jobs and from the
// idempotency keys of ingest, and returns the rows it changed. It runs
// before anything else of a sweep: whether a hook job's event names the
// person is known only while the event does.
//
// Hook jobs (auditlog_hook_jobs_scrub, migration 10), in every state: to
// run, running, and finished ones River has not deleted yet. Their args
// are jobs.HookArgs, the event's key (hook name, model, event id, time),
// never its content, so they hold nothing of the person and are not
// rewritten; only a string argument equal to the person's id, which
// auditlog never writes, would become replacement. What can hold personal
// data is the errors River records of failed attempts: a handler's error
// is free text and may quote what it was sending. The recorded errors of
// a job whose event names the person's id (subject, actor, mention) or is
// gone, or that name the person, are erased: each keeps when it happened
// and which attempt it was, its text becomes "[erased]" and its trace
// goes. An attempt that fails while the erasure runs may record its error
// after the last sweep; verification finds it if it names the person, and
// erasing again clears it.
//
// A pending hook job of an erased event is left to run, not cancelled:
// the worker reads the event by its key when it runs, so for the person's
// own events, deleted, it finds none and completes without calling the
// handler (jobs.HookWorker: "hook skipped: its event is gone"), and for
// another account's event that named the person it sees the event as the
// erasure left it and serves that account. Cancelling would mean writing
// River's job states behind its back, to stop jobs that are harmless.
//
// Idempotency keys (IngestRequestsErase): a key is the client's own text
// and may name the person ("signup-alice-1"); it becomes "erased:sha256:"
// and its SHA-256 (auditlog_erased_key), which Ingest also looks up, so a
// retry of the request still replays its answer and records nothing
// (deleting the row would let a retry record the person's events again).
// The answers are counts, never personal (IngestResult); one holding the
// id, which auditlog never writes, gets the replacement. An expired row
// already holding the rewritten form (the same key erased before and used
// again after its 24 hours) is deleted first: it answers nothing any more
// (IngestRequestsEraseCollisions).
func (e *eraser) sweepJobsAndKeys(ctx context.Context, replacement string) (int64, error) {
	total, err := e.drain(ctx, "river_job:hook_jobs", countOther, func(tx pgx.Tx) (int64, error) {
		return e.l.q.HookJobsScrub(ctx, tx, db.HookJobsScrubParams{
			Person: e.user, RefKeys: e.refKeys, Replacement: replacement, Max: int32(e.batch)})
	})
	if err != nil {
		return total, err
	}
	n, err := e.drain(ctx, "ingest_requests:keys", countOther, func(tx pgx.Tx) (int64, error) {
		dropped, err := e.l.q.IngestRequestsEraseCollisions(ctx, tx, db.IngestRequestsEraseCollisionsParams{
			Person: e.user, Max: int32(e.batch), ExpiredBefore: e.l.now().UTC().Add(-IdempotencyKeyTTL)})
		if err != nil {
			return 0, err
		}
		rewritten, err := e.l.q.IngestRequestsErase(ctx, tx, db.IngestRequestsEraseParams{
			Person: e.user, Replacement: replacement, Max: int32(e.batch)})
		return dropped + rewritten, err
	})
	return total + n, err
}

// scrubMentions replaces, in up to e.batch events of table, the person's
// id under the keys that name an account by replacement, and renders
// their descriptions again from the result.
func (e *eraser) scrubMentions(ctx context.Context, tx pgx.Tx, table, replacement string) (int64, error) {
	rows, err := tx.Query(ctx, tableSQL("mentions_select", table, nil), pgx.NamedArgs{
		"user": e.user, "batch": e.batch, "ref_keys": e.refKeys, "ref_tags": e.refTags})
	if err != nil {
		return 0, err
	}
	var times []time.Time
	var ids []int64
	var additionals []json.RawMessage
	var descriptions []string
	var tm time.Time
	var id int64
	var tag string
	var additional json.RawMessage
	_, err = pgx.ForEachRow(rows, []any{&tm, &id, &tag, &additional}, func() error {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(additional, &m); err != nil {
			return fmt.Errorf("event %d: %w", id, err)
		}
		for _, kc := range e.l.registry.KeyClasses(tag) {
			var v string
			if kc.Class == KeyPersonRef && json.Unmarshal(m[kc.Key], &v) == nil && v == e.user {
				m[kc.Key], _ = json.Marshal(replacement)
			}
		}
		scrubbed, err := json.Marshal(m)
		if err != nil {
			return err
		}
		desc, err := e.l.registry.Describe(tag, scrubbed)
		if err != nil {
			return fmt.Errorf("event %d: %w", id, err)
		}
		times, ids = append(times, tm), append(ids, id)
		additionals, descriptions = append(additionals, scrubbed), append(descriptions, desc)
		return nil
	})
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	tagged, err := tx.Exec(ctx, tableSQL("mentions_update", table, nil), pgx.NamedArgs{
		"times": times, "ids": ids, "additionals": additionals, "descriptions": descriptions})
	return tagged.RowsAffected(), err
}

// gatherAddresses adds to e.addrs the addresses the person used: in
// their own user events and the user and project events they acted in.
func (e *eraser) gatherAddresses(ctx context.Context, tables []string) error {
	add := func(rows pgx.Rows) error {
		addrs, err := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, a := range addrs {
			e.addrs[a] = true
		}
		return err
	}
	for _, t := range tables {
		err := e.inTx(ctx, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, tableSQL("person_addresses", t, nil), pgx.NamedArgs{"user": e.user})
			if err != nil {
				return err
			}
			return add(rows)
		})
		if hasCode(err, pgerrcode.UndefinedTable) { // dropped meanwhile
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: addresses: %w", t, err)
		}
	}
	var addrs []string
	err := e.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		addrs, err = e.l.q.ProjectEventAddressesByActor(ctx, tx, e.user)
		return err
	})
	if err != nil {
		return fmt.Errorf("project_events: addresses: %w", err)
	}
	for _, a := range addrs {
		e.addrs[a] = true
	}
	return nil
}

// countKind says which total of the request a batch adds to.
type countKind int

const (
	countDeleted countKind = iota
	countUserScrubbed
	countProjectScrubbed
	countAdminReads
	countMentions // only in the request's per-table counts
	countOther    // hook jobs, idempotency keys: only in the per-table counts
)

// drain runs stmt in batches of e.batch rows until one changes nothing.
// Each batch commits with its count added to the request's total of kind
// and to counts[key]. A batch that runs out of the statement timeout is
// rolled back and run again with half the batch; only a batch of one row
// that times out fails. A table that disappears (retention dropped it
// meanwhile) has nothing left. Before each batch, an attempt that has used
// its budget and made progress stops with ErrErasureYielded.
func (e *eraser) drain(ctx context.Context, key string, kind countKind, stmt func(pgx.Tx) (int64, error)) (int64, error) {
	var total int64
	for {
		if e.mustYield() {
			return total, ErrErasureYielded
		}
		var n int64
		err := e.inTx(ctx, func(tx pgx.Tx) error {
			var err error
			if n, err = stmt(tx); err != nil || n == 0 {
				return err
			}
			c := db.ErasureRequestAddCountParams{ID: e.id, CountKey: key, Rows: n}
			switch kind {
			case countDeleted:
				c.Deleted = n
			case countUserScrubbed:
				c.UserScrubbed = n
			case countProjectScrubbed:
				c.ProjectScrubbed = n
			case countAdminReads:
				c.AdminReadsScrubbed = n
			}
			return e.l.q.ErasureRequestAddCount(ctx, tx, c)
		})
		switch {
		case hasCode(err, pgerrcode.UndefinedTable):
			return total, nil
		case timedOut(ctx, err) && e.batch > 1:
			from := e.batch
			e.batch /= 2
			e.l.logger.WarnContext(ctx, "erasure batch ran out of its statement timeout; halving the batch",
				"request", e.id, "table", key, "from", from, "to", e.batch, "statement_timeout", e.statementTimeout.String())
			continue
		case timedOut(ctx, err):
			return total, fmt.Errorf("%s: even a batch of one row ran out of the statement timeout (%s): %w", key, e.statementTimeout, err)
		case err != nil:
			return total, fmt.Errorf("%s: %w", key, err)
		}
		if n == 0 {
			return total, nil
		}
		total += n
		e.rep.Counts[key] += n
	}
}

// MaxLeftovers bounds ErasureVerification.Leftovers; LeftoversMore counts
// the rest.
const MaxLeftovers = 100

// ErasureVerification is what VerifyErasure found.
type ErasureVerification struct {
	Request ErasureRequest `json:"request"`
	// Clean is true when the request is done and nothing personal of the
	// person is left anywhere.
	Clean bool `json:"clean"`
	// UserEventsLeft counts the person's own user events, in any table
	// (partitions, default, detached), whatever their age.
	UserEventsLeft int64 `json:"user_events_left"`
	// ActedUserEventsPersonal counts other accounts' user events the
	// person acted in that still carry IP, user agent, location or a
	// personal additional key.
	ActedUserEventsPersonal int64 `json:"acted_user_events_personal"`
	// ProjectEventsPersonal is the same for project events.
	ProjectEventsPersonal int64 `json:"project_events_personal"`
	// ActorIDsLeft counts events that still name the person as actor
	// although a pseudonym secret is configured.
	ActorIDsLeft int64 `json:"actor_ids_left"`
	// AdminReadsLeft counts other accounts' admin reads whose filter still
	// names the person as user or actor.
	AdminReadsLeft int64 `json:"admin_reads_left"`
	// MentionsLeft counts events (any subject's) whose keys that name an
	// account (person_ref) still name the person.
	MentionsLeft int64 `json:"mentions_left"`
	// HookJobsLeft counts River hook jobs (any state) with an argument
	// holding the person's id, or a recorded attempt error not erased
	// that names the person or belongs to a job whose event names them.
	HookJobsLeft int64 `json:"hook_jobs_left"`
	// IdempotencyKeysLeft counts ingest idempotency keys that name the
	// person, or whose stored answer holds their id.
	IdempotencyKeysLeft int64 `json:"idempotency_keys_left"`
	// Leftovers names, for at most MaxLeftovers of what the counts above
	// found, the table, the row and the column or key.
	Leftovers []Leftover `json:"leftovers"`
	// LeftoversMore counts the rows found that Leftovers does not list.
	LeftoversMore int64 `json:"leftovers_more"`
	// Problems says, for people, what is not clean: each table and what it
	// holds, naming the rows and keys Leftovers lists.
	Problems []string `json:"problems"`
}

// Leftover is one place where verification found the person named or
// their personal data kept.
type Leftover struct {
	// Table is a table of user events (user_events_p202607,
	// user_events_default, a detached month), project_events, river_job
	// or ingest_requests.
	Table string `json:"table"`
	// ID is the row: the event's id, the River job's id, or for
	// ingest_requests the token's id and the key, as "3/KEY".
	ID string `json:"id"`
	// Key is the column or key that holds it: user_id, actor_id, ip,
	// user_agent, location, additional.KEY (additional.filter.user for an
	// admin read's filter), args.KEY or errors[N] (a River job's argument
	// or recorded attempt error), key or response.KEY (an idempotency
	// key, its stored answer).
	Key string `json:"key"`
}

// row names the leftover's row for people: "event 12", "job 7", "token 3
// key \"k-1\"".
func (o Leftover) row() string {
	switch o.Table {
	case "river_job":
		return "job " + o.ID
	case "ingest_requests":
		token, key, _ := strings.Cut(o.ID, "/")
		return fmt.Sprintf("token %s key %q", token, key)
	default:
		return "event " + o.ID
	}
}

// String is the leftover for people: "project_events event 12
// additional.target_user".
func (o Leftover) String() string { return o.Table + " " + o.row() + " " + o.Key }

// room is how many more leftovers v lists.
func (v *ErasureVerification) room() int32 { return int32(max(MaxLeftovers-len(v.Leftovers), 0)) }

// found records one check's finding: n rows of table hold what, those of
// items (at most v.room()) listed by row and key, in Leftovers and in the
// problem.
func (v *ErasureVerification) found(table string, n int64, what string, items []Leftover) {
	if n == 0 {
		return
	}
	rows := map[string]bool{}
	named := make([]string, len(items))
	for i, it := range items {
		rows[it.ID] = true
		named[i] = it.row() + " (" + it.Key + ")"
	}
	v.Leftovers = append(v.Leftovers, items...)
	more := max(n-int64(len(rows)), 0)
	v.LeftoversMore += more
	p := fmt.Sprintf("%s holds %d %s", table, n, what)
	if len(named) > 0 {
		p += ": " + strings.Join(named, ", ")
	}
	if more > 0 {
		p += fmt.Sprintf(" and %d more", more)
	}
	v.Problems = append(v.Problems, p)
}

// VerifyErasure checks request id against the data as it is now: no user
// event of the person exists anywhere (every partition, the default one and
// detached tables, whatever their age), no event the person acted in
// still carries IP, user agent, location or a personal additional key
// (nor, with a pseudonym secret, their id), no admin read's filter names
// the person as user or actor, no event names them under a key that
// names an account (person_ref), no River hook job holds their id in its
// arguments or an attempt error naming them (or of an event naming them)
// that is not erased, and no idempotency key of ingest names them nor its
// answer holds their id. Each thing left is counted, and named by table,
// row and key in Leftovers and Problems. An admin read's filter on the
// person's network cannot be checked: once the person's events are gone
// nothing says which addresses were theirs; nor can a hook job's error
// whose event is gone that holds their data without their id.
func (l *Log) VerifyErasure(ctx context.Context, id int64) (*ErasureVerification, error) {
	v, err := l.verifyErasure(ctx, id)
	return v, unavailable(err)
}

func (l *Log) verifyErasure(ctx context.Context, id int64) (*ErasureVerification, error) {
	req, err := l.ErasureRequest(ctx, id)
	if err != nil {
		return nil, err
	}
	v := &ErasureVerification{Request: req, Leftovers: []Leftover{}, Problems: []string{}}
	actors := []string{req.UserID}
	pseudonym := l.Pseudonym(req.UserID)
	if pseudonym != "" {
		actors = append(actors, pseudonym)
	}
	keys := l.registry.personalKeysJSON()
	if err := l.verify(ctx, v, actors, pseudonym, keys); err != nil {
		return nil, fmt.Errorf("verify erasure %d: %w", id, err)
	}
	if req.Status != ErasureDone {
		v.Problems = append(v.Problems, fmt.Sprintf("the request is %s, not done", req.Status))
	}
	v.Clean = len(v.Problems) == 0
	return v, nil
}

// eventLeftovers reads the (event id, field) rows of statement sql over
// table as leftovers.
func eventLeftovers(ctx context.Context, tx pgx.Tx, table, sql string, args pgx.NamedArgs) ([]Leftover, error) {
	rows, err := tx.Query(ctx, sql, args)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Leftover, error) {
		var id int64
		o := Leftover{Table: table}
		err := row.Scan(&id, &o.Key)
		o.ID = strconv.FormatInt(id, 10)
		return o, err
	})
}

// verify counts what of v's person is left: in every table of user
// events (a table dropped meanwhile is skipped), then in project events,
// River's hook jobs and ingest's idempotency keys; where something is
// left, it lists the rows and keys (up to MaxLeftovers in all). Each count
// and list runs in a short transaction of its own with the erasure's
// timeouts: a database whose statement_timeout is too tight for an
// erasure's batches is as tight for these counts, and no lock on a table
// is held past its count (maintenance's DDL would wait for it).
func (l *Log) verify(ctx context.Context, v *ErasureVerification, actors []string, pseudonym string, keys json.RawMessage) error {
	req := v.Request
	read := func(fn func(tx pgx.Tx) error) error {
		return pgx.BeginFunc(ctx, l.db, func(tx pgx.Tx) error {
			if err := l.q.ErasureTimeoutsSetLocal(ctx, tx, db.ErasureTimeoutsSetLocalParams{
				StatementTimeout: pgMillis(DefaultErasureStatementTimeout), LockTimeout: pgMillis(DefaultErasureLockTimeout),
			}); err != nil {
				return err
			}
			return fn(tx)
		})
	}
	tables, err := l.userEventTables(ctx, l.db)
	if err != nil {
		return err
	}
	// inTable runs one table's count; false when the table was dropped
	// meanwhile.
	inTable := func(sql string, args pgx.NamedArgs, dest ...any) (bool, error) {
		err := read(func(tx pgx.Tx) error { return tx.QueryRow(ctx, sql, args).Scan(dest...) })
		if hasCode(err, pgerrcode.UndefinedTable) {
			return false, nil
		}
		return err == nil, err
	}
	// list reads up to v.room() leftovers of one table's statement (none
	// when the list is full; a table dropped meanwhile lists nothing).
	list := func(table, stmt string, args pgx.NamedArgs) ([]Leftover, error) {
		if v.room() == 0 {
			return nil, nil
		}
		args["max"] = v.room()
		var out []Leftover
		err := read(func(tx pgx.Tx) (err error) {
			out, err = eventLeftovers(ctx, tx, table, tableSQL(stmt, table, nil), args)
			return err
		})
		if hasCode(err, pgerrcode.UndefinedTable) {
			return nil, nil
		}
		return out, err
	}
	// The filters and mentions name the replacement, which is the id
	// itself for a person whose id is "[erased]" (or their pseudonym).
	replaced := l.erasedName(req.UserID) != req.UserID
	for _, t := range tables {
		var own, acted, named int64
		args := pgx.NamedArgs{"user": req.UserID, "actors": actors, "personal_keys": keys, "pseudonymised": pseudonym != ""}
		found, err := inTable(tableSQL("person_events_left", t, nil), args, &own, &acted, &named)
		if err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
		if !found {
			continue // dropped meanwhile
		}
		v.UserEventsLeft += own
		v.ActedUserEventsPersonal += acted
		v.ActorIDsLeft += named
		if own+acted+named > 0 {
			items, err := list(t, "person_events_left_list", args)
			if err != nil {
				return fmt.Errorf("%s: %w", t, err)
			}
			var ownItems, actedItems, namedItems []Leftover
			for _, it := range items {
				switch it.Key {
				case "user_id":
					ownItems = append(ownItems, it)
				case "actor_id":
					namedItems = append(namedItems, it)
				default:
					actedItems = append(actedItems, it)
				}
			}
			v.found(t, own, "of the person's user events", ownItems)
			v.found(t, acted, "events the person acted in with personal fields", actedItems)
			v.found(t, named, "events still naming the person as actor", namedItems)
		}
		if !replaced {
			continue
		}
		var reads int64
		args = pgx.NamedArgs{"user": req.UserID, "admin_read_tag": TagAdminEventsView}
		found, err = inTable(tableSQL("admin_reads_left", t, nil), args, &reads)
		if err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
		if !found || reads == 0 {
			continue
		}
		v.AdminReadsLeft += reads
		items, err := list(t, "admin_reads_left_list", args)
		if err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
		v.found(t, reads, "admin reads whose filter names the person", items)
	}
	refKeys, refTags := l.registry.accountKeys()
	if len(refTags) > 0 && replaced {
		for _, t := range append(slices.Clone(tables), "project_events") {
			var n int64
			args := pgx.NamedArgs{"user": req.UserID, "ref_keys": refKeys, "ref_tags": refTags}
			found, err := inTable(tableSQL("mentions_left", t, nil), args, &n)
			if err != nil {
				return fmt.Errorf("%s: %w", t, err)
			}
			if !found || n == 0 {
				continue
			}
			v.MentionsLeft += n
			items, err := list(t, "mentions_left_list", args)
			if err != nil {
				return fmt.Errorf("%s: %w", t, err)
			}
			v.found(t, n, "events naming the person as an account (person_ref keys)", items)
		}
	}
	if err := l.verifyProjectEvents(ctx, v, read, actors, pseudonym, keys); err != nil {
		return err
	}
	if err := l.verifyHookJobs(ctx, v, read, refKeys, replaced); err != nil {
		return fmt.Errorf("river_job: %w", err)
	}
	if err := l.verifyIdempotencyKeys(ctx, v, read, replaced); err != nil {
		return fmt.Errorf("ingest_requests: %w", err)
	}
	return nil
}

// verifyProjectEvents counts and lists the personal fields left in the
// project events the person acted in and, with a pseudonym secret, those
// still naming them as actor.
func (l *Log) verifyProjectEvents(ctx context.Context, v *ErasureVerification, read func(func(pgx.Tx) error) error,
	actors []string, pseudonym string, keys json.RawMessage) error {
	var items []Leftover
	if err := read(func(tx pgx.Tx) (err error) {
		v.ProjectEventsPersonal, err = l.q.ProjectEventCountPersonalByActor(ctx, tx, db.ProjectEventCountPersonalByActorParams{
			ActorIds: actors, PersonalKeys: keys,
		})
		if err != nil || v.ProjectEventsPersonal == 0 || v.room() == 0 {
			return err
		}
		rows, err := l.q.ProjectEventPersonalFieldsByActor(ctx, tx, db.ProjectEventPersonalFieldsByActorParams{
			PersonalKeys: keys, ActorIds: actors, Max: v.room(),
		})
		for _, r := range rows {
			items = append(items, Leftover{Table: "project_events", ID: strconv.FormatInt(r.ID, 10), Key: r.Field})
		}
		return err
	}); err != nil {
		return err
	}
	v.found("project_events", v.ProjectEventsPersonal, "events the person acted in with personal fields", items)
	if pseudonym == "" {
		return nil
	}
	var n int64
	items = nil
	if err := read(func(tx pgx.Tx) (err error) {
		n, err = l.q.ProjectEventCountByActor(ctx, tx, v.Request.UserID)
		if err != nil || n == 0 || v.room() == 0 {
			return err
		}
		ids, err := l.q.ProjectEventIDsByActor(ctx, tx, db.ProjectEventIDsByActorParams{ActorID: v.Request.UserID, Max: v.room()})
		for _, id := range ids {
			items = append(items, Leftover{Table: "project_events", ID: strconv.FormatInt(id, 10), Key: "actor_id"})
		}
		return err
	}); err != nil {
		return err
	}
	v.ActorIDsLeft += n
	v.found("project_events", n, "events still naming the person as actor", items)
	return nil
}

// verifyHookJobs counts and lists River's hook jobs that still name the
// person (auditlog_hook_jobs_left): their arguments only when replaced
// (the erasure writes the replacement there, which for some people is
// their id).
func (l *Log) verifyHookJobs(ctx context.Context, v *ErasureVerification, read func(func(pgx.Tx) error) error,
	refKeys json.RawMessage, replaced bool) error {
	var items []Leftover
	err := read(func(tx pgx.Tx) (err error) {
		v.HookJobsLeft, err = l.q.HookJobsLeftCount(ctx, tx, db.HookJobsLeftCountParams{
			Person: v.Request.UserID, RefKeys: refKeys, CheckArgs: replaced,
		})
		if err != nil || v.HookJobsLeft == 0 || v.room() == 0 {
			return err
		}
		rows, err := l.q.HookJobsLeftList(ctx, tx, db.HookJobsLeftListParams{
			Person: v.Request.UserID, RefKeys: refKeys, CheckArgs: replaced, Max: v.room(),
		})
		for _, r := range rows {
			items = append(items, Leftover{Table: "river_job", ID: strconv.FormatInt(r.JobID, 10), Key: r.Field})
		}
		return err
	})
	if err != nil {
		return err
	}
	v.found("river_job", v.HookJobsLeft, "hook jobs naming the person", items)
	return nil
}

// verifyIdempotencyKeys counts and lists the idempotency keys that name
// the person, and the answers that hold their id (only when replaced, as
// for hook jobs' arguments).
func (l *Log) verifyIdempotencyKeys(ctx context.Context, v *ErasureVerification, read func(func(pgx.Tx) error) error, replaced bool) error {
	var items []Leftover
	err := read(func(tx pgx.Tx) (err error) {
		v.IdempotencyKeysLeft, err = l.q.IngestRequestsLeftCount(ctx, tx, db.IngestRequestsLeftCountParams{
			Person: v.Request.UserID, CheckResponse: replaced,
		})
		if err != nil || v.IdempotencyKeysLeft == 0 || v.room() == 0 {
			return err
		}
		rows, err := l.q.IngestRequestsLeftList(ctx, tx, db.IngestRequestsLeftListParams{
			Person: v.Request.UserID, CheckResponse: replaced, Max: v.room(),
		})
		for _, r := range rows {
			items = append(items, Leftover{Table: "ingest_requests", ID: strconv.FormatInt(r.TokenID, 10) + "/" + r.Key, Key: r.Field})
		}
		return err
	})
	if err != nil {
		return err
	}
	v.found("ingest_requests", v.IdempotencyKeysLeft, "idempotency keys naming the person", items)
	return nil
}

// accountKeys maps every tag with keys that name an account (person_ref,
// its own or catalog-wide) to them, with "*" for the catalog-wide ones, as
// the mention statements take it, and lists those tags.
func (r *Registry) accountKeys() (json.RawMessage, []string) {
	m := map[string][]string{}
	var tags []string
	for _, spec := range r.Tags() {
		var keys []string
		for _, kc := range r.KeyClasses(spec.Tag) {
			if kc.Class == KeyPersonRef {
				keys = append(keys, kc.Key)
			}
		}
		if len(keys) > 0 {
			m[spec.Tag] = keys
			tags = append(tags, spec.Tag)
		}
	}
	b, _ := json.Marshal(m) // a map of strings always marshals
	return b, tags
}

// personalKeysJSON maps every tag that has personal additional keys to
// them, as the erasure statements take it.
func (r *Registry) personalKeysJSON() json.RawMessage {
	m := map[string][]string{}
	for _, spec := range r.Tags() {
		if keys := r.personalKeys(spec.Tag); len(keys) > 0 {
			m[spec.Tag] = keys // sorted
		}
	}
	// "*": the catalog-wide personal keys, for events of tags the catalog
	// no longer holds (auditlog_tag_keys adds them to every tag's).
	r.mu.RLock()
	var shared []string
	for k, c := range r.keys {
		if c == KeyPersonal {
			shared = append(shared, k)
		}
	}
	r.mu.RUnlock()
	if len(shared) > 0 {
		sort.Strings(shared)
		m["*"] = shared
	}
	b, _ := json.Marshal(m) // a map of strings always marshals
	return b
}
