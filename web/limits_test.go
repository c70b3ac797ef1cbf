package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
	"github.com/auditlog/auditlog/web"
)

// sidePool is a second pool on the test's database, for the locks a test
// holds while the handler's own pool is busy.
func sidePool(t *testing.T, b *webBundle) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.NewWithConfig(b.ctx, b.pool.Config())
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// waitFor polls query (a count) on pool until it returns want. Queries
// of pg_locks must filter on the database: every test database is a copy
// of one template, so a table has the same oid in all of them.
func waitFor(t *testing.T, pool *pgxpool.Pool, want int, query string) {
	t.Helper()
	dbtest.Eventually(t, func() bool { return dbtest.Count(t, pool, query) == want }, 30*time.Second, 10*time.Millisecond,
		"waited in vain for %d from %s", want, query)
}

// lockTable begins a transaction on pool that holds table in ACCESS
// EXCLUSIVE mode; the transaction is rolled back when the test ends.
func lockTable(t *testing.T, pool *pgxpool.Pool, table string) pgx.Tx {
	t.Helper()
	tx, err := pool.Begin(context.Background())
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	_, err = tx.Exec(context.Background(), "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)
	return tx
}

// One ingest token may have at most Options.IngestConcurrency requests in
// progress: past it the answer is 429 with Retry-After, while other tokens
// are still served, and slots come back when requests end, whichever way.
func TestIngestConcurrencyPerToken(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	h, err := web.New(web.Options{Log: b.log, Secret: secret, IngestConcurrency: 2})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	capped := *b
	capped.srv = srv
	busy, err := b.log.CreateIngestToken(b.ctx, "busy")
	require.NoError(t, err)
	other, err := b.log.CreateIngestToken(b.ctx, "other")
	require.NoError(t, err)

	// Slots are released on early returns: more bad requests than slots,
	// one after the other, leave every slot free.
	for range 3 {
		require.Equal(t, http.StatusBadRequest, capped.post(t, busy, "", `{"events": [`).status)
	}

	// Two requests of "busy" wait in the database: their idempotency keys
	// need ingest_requests, which the test holds locked.
	side := sidePool(t, b)
	lock := lockTable(t, side, "ingest_requests")
	var wg sync.WaitGroup
	blocked := make([]ingestAnswer, 2)
	errs := make([]error, len(blocked))
	for i := range blocked {
		wg.Go(func() {
			blocked[i], errs[i] = capped.send(busy, fmt.Sprintf("k-%d", i), ingestBody(fmt.Sprintf(evRelease, 10+i)))
		})
	}
	waitFor(t, side, 2, `SELECT count(*)::int FROM pg_locks WHERE relation = 'ingest_requests'::regclass AND NOT granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)

	// A third request of the same token is refused at once, before its
	// body is read; another token is served.
	req, err := http.NewRequest("POST", srv.URL+"/api/v1/events", strings.NewReader(ingestBody(fmt.Sprintf(evRelease, 20))))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+busy)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var refused map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&refused))
	resp.Body.Close()
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, refused)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	require.Contains(t, refused["error"], "2 requests in progress")
	require.Equal(t, http.StatusCreated, capped.post(t, other, "", ingestBody(fmt.Sprintf(evRelease, 30))).status)

	require.NoError(t, lock.Commit(b.ctx))
	wg.Wait()
	for i, a := range blocked {
		require.NoError(t, errs[i], "blocked request %d", i)
		require.Equal(t, http.StatusCreated, a.status, "blocked request %d: %v", i, a.body)
	}
	// Both slots are free again.
	require.Equal(t, http.StatusCreated, capped.post(t, busy, "", ingestBody(fmt.Sprintf(evRelease, 40))).status)
	require.Equal(t, http.StatusCreated, capped.post(t, busy, "k-9", ingestBody(fmt.Sprintf(evRelease, 41))).status)
	require.Equal(t, 5, b.ingested(t), "two blocked, one of the other token, two after: the refused one recorded nothing")

	_, err = web.New(web.Options{Log: b.log, Secret: secret, IngestConcurrency: -1})
	require.ErrorContains(t, err, "IngestConcurrency")
	_, err = web.New(web.Options{Log: b.log, Secret: secret, WriteTimeout: -time.Second})
	require.ErrorContains(t, err, "WriteTimeout")
}

// An export runs as long as it needs on a server with short read and write
// timeouts: each page gets a fresh write deadline. Here the test holds
// project_events locked while the first page is read, until the deadline
// the whole answer would have had is past, and again while the second page
// is read, until a deadline set once for the first page is past.
func TestExportOutlivesServerTimeouts(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	const n = 2500 // three pages
	batch := make([]service.EventParams, n)
	for i := range batch {
		batch[i] = service.EventParams{Tag: "project:release:add", Subject: "big", ActorID: "erin",
			Time: time.Now().Add(-time.Duration(i+1) * time.Second), Additional: json.RawMessage(fmt.Sprintf(`{"version": "0.%d"}`, i))}
	}
	_, err := b.log.RecordProjectMany(b.ctx, batch)
	require.NoError(t, err)
	const timeout = time.Second
	h, err := web.New(web.Options{Log: b.log, Secret: secret, WriteTimeout: timeout})
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = timeout, timeout
	srv.Start()
	t.Cleanup(srv.Close)

	side := sidePool(t, b)
	const waiting = `SELECT count(*)::int FROM pg_locks WHERE relation = 'project_events'::regclass AND NOT granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`
	first := lockTable(t, side, "project_events")
	type answer struct {
		status int
		body   string
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("GET", srv.URL+"/admin/export?format=jsonl&project=big", nil)
		req.Header.Set("Authorization", "Bearer "+b.tokens["admin"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		done <- answer{status: resp.StatusCode, body: string(body), err: err}
	}()
	// The first page's query waits on the lock. The server read the
	// request's headers before it ran, so any deadline counted from then is
	// over once timeout has passed from now.
	waitFor(t, side, 1, waiting)
	time.Sleep(timeout + 100*time.Millisecond)
	// A second lock queues behind the export's query: when the first is
	// released, the first page is read and written, then the second page's
	// query waits on this one.
	second, err := side.Begin(b.ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = second.Rollback(context.Background()) })
	locked := make(chan error, 1)
	go func() {
		_, err := second.Exec(b.ctx, "LOCK TABLE project_events IN ACCESS EXCLUSIVE MODE")
		locked <- err
	}()
	waitFor(t, side, 2, waiting)
	require.NoError(t, first.Commit(b.ctx))
	require.NoError(t, <-locked)
	waitFor(t, side, 1, waiting)
	time.Sleep(timeout + 100*time.Millisecond)
	require.NoError(t, second.Commit(b.ctx))

	a := <-done
	require.NoError(t, a.err)
	require.Equal(t, http.StatusOK, a.status)
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(a.body))
	for sc.Scan() {
		var e map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e), "line %d", lines)
		lines++
	}
	require.Equal(t, n, lines, "every event, none cut short")
}
