package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

// requireNoConnectionDetail checks that s names none of what the outage
// URLs hold.
func requireNoConnectionDetail(t *testing.T, s, port string) {
	t.Helper()
	details := []string{"127.0.0.1", dbtest.OutageUser, dbtest.OutageDatabase, "failed to connect", "dial"}
	if port != "" {
		details = append(details, port)
	}
	for _, detail := range details {
		require.NotContains(t, s, detail)
	}
}

// Real outages, each produced against a real server or socket, are
// ErrUnavailable, and their cause is a few words without the host, port,
// user or database.
func TestOutagesAreUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	refusing, refusingPort := dbtest.Refusing(t)
	hangingUp, hangingUpPort := dbtest.HangingUp(t)

	// A session the server ends (pg_terminate_backend: 57P01), and the
	// same connection used again (the driver has closed it).
	live := dbtest.Pool(t)
	conn, err := live.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	var pid int
	require.NoError(t, conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid))
	_, err = live.Exec(ctx, "SELECT pg_terminate_backend($1, 10000)", pid)
	require.NoError(t, err)
	_, terminated := conn.Exec(ctx, "SELECT 1")
	_, closed := conn.Exec(ctx, "SELECT 1")

	// A database dropped under its pool: new connections find none (3D000).
	gone := dbtest.Pool(t)
	name := gone.Config().ConnConfig.Database
	require.NoError(t, dbtest.DropDatabase(ctx, name))
	gone.Reset()
	_, dropped := gone.Exec(ctx, "SELECT 1")

	// A pool whose only connection is taken: the deadline runs out while
	// waiting for one.
	busy := dbtest.PoolWith(t, func(c *pgxpool.Config) { c.MaxConns = 1 })
	held, err := busy.Acquire(ctx)
	require.NoError(t, err)
	defer held.Release()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, acquire := busy.Exec(short, "SELECT 1")

	for _, tc := range []struct {
		name, port string
		causes     []string // the first, or one of the others for a race on the socket
		err        error
	}{
		{"connection refused", refusingPort, []string{"connection refused"}, execErr(dbtest.OpenPool(t, refusing))},
		{"accepted and closed", hangingUpPort, []string{"connection closed by the server"}, execErr(dbtest.OpenPool(t, hangingUp))},
		{"session terminated", "", []string{"the server ended the session (shutdown or administrator command)", "connection closed by the server"}, terminated},
		{"connection closed", "", []string{"connection closed by the server"}, closed},
		{"database dropped", "", []string{"the database does not exist"}, dropped},
		{"no pool connection in time", "", []string{"no connection free in time"}, acquire},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Error(t, tc.err)
			require.True(t, service.IsUnavailable(tc.err), "%v", tc.err)
			cause := service.UnavailableCause(tc.err)
			require.Contains(t, tc.causes, cause, "%v", tc.err)
			requireNoConnectionDetail(t, cause, tc.port)
			require.NotContains(t, cause, name)
			require.NotContains(t, cause, "SQLSTATE")
		})
	}
}

func execErr(pool *pgxpool.Pool) error {
	_, err := pool.Exec(context.Background(), "SELECT 1")
	return err
}

// Errors of a statement on a database that answers are not outages: a
// constraint violation, a statement timeout, a statement that ran past
// the caller's deadline, a cancelled call, and errors that are not the
// database's at all.
func TestStatementErrorsAreNotUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	_, err := pool.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY, n int CHECK (n > 0))")
	require.NoError(t, err)
	_, err = pool.Exec(ctx, "INSERT INTO t VALUES (1, 1)")
	require.NoError(t, err)
	stmt := func(ctx context.Context, sql string) error {
		_, err := pool.Exec(ctx, sql)
		require.Error(t, err, sql)
		return err
	}
	// A connection taken beforehand: the deadline can only run out
	// during the statement (or before it starts), never in the pool.
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	past, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, pastDeadline := conn.Exec(past, "SELECT pg_sleep(5)")
	cancelled, cancelNow := context.WithCancel(ctx)
	cancelNow()
	log := dbtest.Must(service.New(pool, nil))
	_, invalid := log.RecordUser(ctx, service.EventParams{Tag: "no:such:tag", Subject: "u"})
	_, notFound := log.EventAt(ctx, service.ModelProject, time.Now(), 1)
	for name, err := range map[string]error{
		"unique violation":  stmt(ctx, "INSERT INTO t VALUES (1, 1)"),
		"check violation":   stmt(ctx, "INSERT INTO t VALUES (2, 0)"),
		"statement timeout": stmt(ctx, "SET statement_timeout = 10; SELECT pg_sleep(5)"),
		"past the deadline": pastDeadline,
		"cancelled":         stmt(cancelled, "SELECT 1"),
		"undefined table":   stmt(ctx, "SELECT * FROM no_such_table"),
		"validation":        invalid,
		"not found":         notFound,
		"EOF of a reader":   fmt.Errorf("read: %w", io.EOF),
	} {
		require.Error(t, err, name)
		require.False(t, service.IsUnavailable(err), "%s: %v", name, err)
	}
}

// The SQLSTATEs that end or refuse a session are outages; the others are
// not. (Server errors the tests cannot provoke cheaply, as the server
// would send them.)
func TestServerCodesThatMeanAnOutage(t *testing.T) {
	t.Parallel()
	for code, want := range map[string]bool{
		"08000": true, "08001": true, "08003": true, "08006": true, "08P01": true,
		"57P01": true, "57P02": true, "57P03": true, "57P04": true, "53300": true, "3D000": true,
		"23505": false, "23514": false, "40001": false, "40P01": false, "57014": false, "55P03": false, "42P01": false, "53100": false,
	} {
		err := fmt.Errorf("query: %w", &pgconn.PgError{Severity: "FATAL", Code: code, Message: "x"})
		require.Equal(t, want, service.IsUnavailable(err), code)
	}
}

// Every exported recorder, reader and ingest call on a database that
// cannot be reached returns an error matching ErrUnavailable, never a
// *ValidationError.
func TestCallsOnAnUnreachableDatabaseAreErrUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, _ := dbtest.Refusing(t)
	log := dbtest.Must(service.New(dbtest.OpenPool(t, url), nil))
	user := service.EventParams{Tag: "account:login:success", Subject: "u"}
	project := service.EventParams{Tag: "project:create", Subject: "p"}
	ingest := []service.IngestEvent{{Tag: "account:login:success", UserID: "u"}}
	token := service.IngestToken{ID: 1, Name: "t"}
	calls := map[string]func() error{
		"RecordUser":     func() error { _, err := log.RecordUser(ctx, user); return err },
		"RecordProject":  func() error { _, err := log.RecordProject(ctx, project); return err },
		"RecordUserMany": func() error { _, err := log.RecordUserMany(ctx, []service.EventParams{user}); return err },
		"RecordProjectMany": func() error {
			_, err := log.RecordProjectMany(ctx, []service.EventParams{project})
			return err
		},
		"UserEvents":    func() error { _, err := log.UserEvents(ctx, "u", service.ListOpts{}); return err },
		"ProjectEvents": func() error { _, err := log.ProjectEvents(ctx, "p", service.ListOpts{}); return err },
		"Events":        func() error { _, err := log.Events(ctx, service.Filter{}); return err },
		"FailedLoginsSinceSuccess": func() error {
			_, err := log.FailedLoginsSinceSuccess(ctx, "u")
			return err
		},
		"EventAt":            func() error { _, err := log.EventAt(ctx, service.ModelProject, time.Now(), 1); return err },
		"ExportSubject":      func() error { _, err := log.ExportSubject(ctx, "u", io.Discard); return err },
		"AuthenticateIngest": func() error { _, err := log.AuthenticateIngest(ctx, "alin_"+strings.Repeat("x", 43)); return err },
		"CheckIngest":        func() error { return log.CheckIngest(ctx, ingest) },
		"Ingest": func() error {
			body, _ := json.Marshal(ingest)
			_, _, err := log.Ingest(ctx, token, "key", body, ingest)
			return err
		},
		"CreateIngestToken": func() error { _, err := log.CreateIngestToken(ctx, "t"); return err },
		"RevokeIngestToken": func() error { return log.RevokeIngestToken(ctx, "t") },
		"IngestTokens":      func() error { _, err := log.IngestTokens(ctx); return err },
		"PruneIngestKeys":   func() error { _, err := log.PruneIngestKeys(ctx); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call()
			require.ErrorIs(t, err, service.ErrUnavailable)
			var ve *service.ValidationError
			require.False(t, errors.As(err, &ve), "%v", err)
		})
	}

	// The Tx variants too, on a transaction whose connection the server
	// then ends.
	pool := dbtest.Pool(t)
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	var pid int
	require.NoError(t, tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid))
	_, err = pool.Exec(ctx, "SELECT pg_terminate_backend($1, 10000)", pid)
	require.NoError(t, err)
	_, err = log.RecordProjectTx(ctx, tx, project)
	require.ErrorIs(t, err, service.ErrUnavailable, "RecordProjectTx")
	_, _, err = log.RecordManyTx(ctx, tx, []service.EventParams{project})
	require.ErrorIs(t, err, service.ErrUnavailable, "RecordManyTx")
}

// An outage error keeps the driver's error for the log: both match.
func TestUnavailableKeepsTheCause(t *testing.T) {
	t.Parallel()
	url, port := dbtest.Refusing(t)
	log := dbtest.Must(service.New(dbtest.OpenPool(t, url), nil))
	_, err := log.UserEvents(context.Background(), "u", service.ListOpts{})
	require.ErrorIs(t, err, service.ErrUnavailable)
	var ce *pgconn.ConnectError
	require.ErrorAs(t, err, &ce)
	require.Contains(t, err.Error(), port, "the error itself, for the log, has the detail")
	requireNoConnectionDetail(t, service.UnavailableCause(err), port)
}
