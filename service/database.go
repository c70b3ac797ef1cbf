package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/auditlog/auditlog/db"
)

// This file is the one place that decides which database errors mean
// "the database cannot be reached right now" (ErrUnavailable) rather than
// "this statement failed". An outage is:
//
//   - any failed connection attempt (*pgconn.ConnectError): refused, reset,
//     timed out, the database gone (3D000), the server starting or stopping
//     (57P03), out of connection slots (53300), or refusing the login: the
//     service cannot reach its database, whatever the reason;
//   - a server error that ends the session or refuses it: class 08
//     (connection exception), 57P01 admin_shutdown, 57P02 crash_shutdown,
//     57P03 cannot_connect_now, 57P04 database_dropped, 53300
//     too_many_connections, 3D000 invalid_catalog_name;
//   - a connection the driver has closed (pgconn.ErrConnClosed), a network
//     error, or the server closing the connection mid-answer (EOF inside
//     the driver);
//   - a context deadline that ran out while waiting for a pool connection:
//     pgxpool returns the context's error as it is then, whereas a
//     statement that ran past the deadline comes back wrapped by pgconn as
//     a timeout, which is the statement's slowness, not an outage.
//
// Everything else is not: a constraint violation, a statement timeout
// (57014), a serialization failure, a syntax error, a cancelled context
// (the caller gave up).

// IsUnavailable reports whether err means the database cannot be reached
// right now: it matches ErrUnavailable (ErrPartitionUnavailable included),
// or it is a driver error that says so (see above). Nothing was changed by
// the call that failed with it, and it may be retried.
func IsUnavailable(err error) bool {
	return errors.Is(err, ErrUnavailable) || outage(err)
}

// unavailable returns err wrapped so that it also matches ErrUnavailable
// when it is an outage, and err itself otherwise (nil stays nil). The
// exported readers, recorders and ingest pass the errors of their database
// calls through it. There a bare EOF is an outage too: when the server
// dies in the middle of a COPY or a commit, pgx returns io.ErrUnexpectedEOF
// without its own wrapper (the fault suite's crash during ingest saw it).
// Such a call may or may not have committed; answering it as unavailable
// lets a client retry, which records nothing twice with an
// Idempotency-Key.
func unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	if !outage(err) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// outage classifies a driver error; see the file's comment.
func outage(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return true
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		return outageCode(pgErr.Code)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// context.DeadlineExceeded is also a net.Error: decide here.
		return !pgconn.Timeout(err)
	}
	if errors.Is(err, pgconn.ErrConnClosed) {
		return true
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		// Only inside the driver's own errors (they tell whether a retry
		// is safe): an EOF from elsewhere is not the database's.
		_, fromDriver := errors.AsType[interface {
			error
			SafeToRetry() bool
		}](err)
		return fromDriver
	}
	return false
}

// outageCode reports whether a server error's SQLSTATE says the session
// cannot be had or has ended.
func outageCode(code string) bool {
	if pgerrcode.IsConnectionException(code) {
		return true
	}
	switch code {
	case pgerrcode.AdminShutdown, pgerrcode.CrashShutdown, pgerrcode.CannotConnectNow, pgerrcode.DatabaseDropped,
		pgerrcode.TooManyConnections, pgerrcode.InvalidCatalogName:
		return true
	}
	return false
}

// UnavailableCause says in a few words why err failed, for an
// unauthenticated answer such as /readyz: it never holds the database's
// host, port, user or name, nor the driver's text (log err itself for
// those). An error that is not a database error is "failed".
func UnavailableCause(err error) string {
	if err == nil {
		return "ok"
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch code := pgErr.Code; {
		case code == pgerrcode.InvalidCatalogName || code == pgerrcode.DatabaseDropped:
			return "the database does not exist"
		case code == pgerrcode.AdminShutdown:
			return "the server ended the session (shutdown or administrator command)"
		case code == pgerrcode.CrashShutdown:
			return "the server is recovering from a crash"
		case code == pgerrcode.CannotConnectNow:
			return "the server is not accepting connections yet (starting up or shutting down)"
		case code == pgerrcode.TooManyConnections:
			return "the server has no connection slot free"
		case pgerrcode.IsInvalidAuthorizationSpecification(code):
			return "the server refused the login"
		case pgerrcode.IsConnectionException(code):
			return "connection failure (SQLSTATE " + code + ")"
		default:
			return "query failed (SQLSTATE " + code + ")"
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err):
		if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
			return "connecting timed out"
		}
		return "no connection free in time"
	case pgconn.Timeout(err) || isNetTimeout(err):
		return "timed out"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, pgconn.ErrConnClosed):
		return "connection closed by the server"
	}
	if _, ok := errors.AsType[*net.DNSError](err); ok {
		return "host name not found"
	}
	if outage(err) {
		return "cannot connect"
	}
	return "failed"
}

func isNetTimeout(err error) bool {
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

func mapEvents[T any](rows []T, conv func(*T) Event) []Event {
	out := make([]Event, len(rows))
	for i := range rows {
		out[i] = conv(&rows[i])
	}
	return out
}

func userEvent(r *db.UserEvent) Event {
	return Event{
		ID: r.ID, Model: ModelUser, Time: r.Time.UTC(), Tag: r.Tag, UserID: r.UserID,
		ActorID: r.ActorID.String, AuthMethod: r.AuthMethod.String, TokenID: r.TokenID.String,
		ActorTwoFactor: boolPtr(r.ActorTwoFactor), IP: addr(r.Ip), UserAgent: r.UserAgent.String,
		Location: decodeLocation(r.Location), Description: r.Description, Additional: r.Additional,
	}
}

// heldEvent maps a row of held_user_events (user_events' columns).
func heldEvent(r *db.HeldUserEvent) Event {
	e := userEvent((*db.UserEvent)(r))
	e.Held = true
	return e
}

// projectEvent maps a row of project_events, which holds the events of
// every kept-forever subject: subject_kind is the event's model.
func projectEvent(r *db.ProjectEvent) Event {
	e := Event{
		ID: r.ID, Model: Model(r.SubjectKind), Time: r.Time.UTC(), Tag: r.Tag,
		ActorID: r.ActorID.String, AuthMethod: r.AuthMethod.String, TokenID: r.TokenID.String,
		ActorTwoFactor: boolPtr(r.ActorTwoFactor), IP: addr(r.Ip), UserAgent: r.UserAgent.String,
		Location: decodeLocation(r.Location), Description: r.Description, Additional: r.Additional,
	}
	e.setSubject(r.ProjectID)
	return e
}

func boolPtr(b pgtype.Bool) *bool {
	if !b.Valid {
		return nil
	}
	return &b.Bool
}

func addr(a *netip.Addr) netip.Addr {
	if a == nil {
		return netip.Addr{}
	}
	return *a
}

func decodeLocation(raw json.RawMessage) *Location {
	if len(raw) == 0 {
		return nil
	}
	var loc Location
	if json.Unmarshal(raw, &loc) != nil {
		return nil
	}
	return &loc
}

// erasureRequest converts a row; jobState is the state of its River job
// (auditlog_erasure_job_state), empty when not read.
func erasureRequest(r *db.ErasureRequest, jobState string) ErasureRequest {
	e := ErasureRequest{
		ID: r.ID, UserID: r.UserID, Reason: r.Reason, RequestedBy: r.RequestedBy.String,
		RequestedAt: r.RequestedAt.UTC(), Status: ErasureStatus(r.Status), StartedAt: utcPtr(r.StartedAt), CompletedAt: utcPtr(r.CompletedAt),
		UserEventsDeleted: r.UserEventsDeleted, UserEventsScrubbed: r.UserEventsScrubbed,
		ProjectEventsScrubbed: r.ProjectEventsScrubbed, AdminReadsScrubbed: r.AdminReadsScrubbed,
		Attempts: int(r.Attempts), Error: r.Error.String,
		EventsFound: r.EventsFound, Supersedes: r.Supersedes.Int64, BlockedBy: r.BlockedBy.Int64,
		Counts: map[string]int64{},
	}
	_ = json.Unmarshal(r.Counts, &e.Counts) // written only by ErasureRequestAddCount
	if e.open() {
		e.JobState = jobState
		e.Stuck = jobState != "" && !liveJobStates[jobState]
	}
	return e
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func text(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }

func boolean(b *bool) pgtype.Bool {
	if b == nil {
		return pgtype.Bool{}
	}
	return pgtype.Bool{Bool: *b, Valid: true}
}

// Conversions from the generated row types to the public ones: the only
// place a db type becomes a service type.

// ingestToken converts a listed token.
func ingestToken(r *db.IngestTokenListRow) IngestToken {
	return IngestToken{ID: r.ID, Name: r.Name, CreatedAt: r.CreatedAt.UTC(), RevokedAt: utcPtr(r.RevokedAt)}
}

// partition converts a listed partition; a monthly one gets its bounds
// and the time retention lets it be dropped.
func partition(r *db.PartitionListRow, retention time.Duration) Partition {
	p := Partition{Name: r.Name, Attached: r.Attached, Rows: r.RowsEstimated, Bytes: r.TotalBytes}
	if m, ok := parsePartitionName(r.Name); ok {
		p.From, p.To = m.Start(), (m + 1).Start()
		p.DroppableAt = p.To.Add(retention)
	}
	return p
}

// wrapped prefixes err (nil stays nil) with what an exported method was
// doing and marks an outage as ErrUnavailable (see unavailable): every
// exported method's errors read and classify alike.
func wrapped(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return unavailable(fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), err))
}

// Statement errors the service handles, by SQLSTATE name.

// isNoRows reports whether a :one query found no row.
func isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

// notFound is ErrNotFound, naming what was looked up, for a query that
// found no row; any other error is returned as unavailable(err).
func notFound(err error, format string, args ...any) error {
	if isNoRows(err) {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrNotFound)
	}
	return unavailable(err)
}

// hasCode reports whether err is a server error with SQLSTATE code (a
// pgerrcode constant).
func hasCode(err error, code string) bool {
	pgErr := pgError(err)
	return pgErr != nil && pgErr.Code == code
}

// pgError returns the server error err carries, or nil.
func pgError(err error) *pgconn.PgError {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr
	}
	return nil
}
