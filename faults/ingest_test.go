package faults

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/faulttest"
)

// TestFaultDatabaseCrashDuringIngest crashes PostgreSQL (an immediate
// shutdown of a private cluster the test owns) while eight clients post
// batches of 20 user events to `auditlog serve` with an Idempotency-Key
// each, retrying the same key and body after any error until they get 201
// or 200, then starts it again. Every acknowledged batch must be present
// exactly once; serve must recover without a restart; during the outage
// every answer must be 503 with Retry-After (any other status fails the
// scenario). Recovery: from the database accepting connections again to
// the first batch acknowledged.
//
// It is heavy (`make faults` only): it starts and crashes a private
// cluster, about 30 s. (It found that a statement cut short by the crash
// failed with a bare "unexpected EOF" answered as a 500; a bare EOF from a
// database call is an outage now, answered 503.)
func TestFaultDatabaseCrashDuringIngest(t *testing.T) {
	faulttest.RequireHeavy(t)
	ctx := faulttest.Context(t)
	cluster := faulttest.StartCluster(t)
	env := faulttest.Env("DATABASE_URL="+cluster.URL(), "AUDITLOG_SECRET="+secret)
	faulttest.MustRun(t, env, "migrate", "up")
	tokens := []string{
		faulttest.MustRun(t, env, "token", "--ingest", "faults-a"),
		faulttest.MustRun(t, env, "token", "--ingest", "faults-b"),
	}
	srv := faulttest.Start(t, env, "serve", "--addr", "127.0.0.1:0")
	base := srv.WaitOutput(faulttest.ServeURL, time.Minute)
	pid := srv.Pid()

	const batch = 20
	ledger := faulttest.NewLedger()
	client := &http.Client{Timeout: time.Minute}
	var writers []*faulttest.Writers
	for i, tok := range tokens { // four clients per token: its concurrency cap
		writers = append(writers, faulttest.StartWriters(4, fmt.Sprintf("faults-ingest-%d", i), ledger,
			faulttest.HTTPWriter(client, base, tok, faulttest.UserEvents("faults-writer", time.Time{}, batch)), faulttest.BatchMarkers(batch)))
	}
	stop := func() {
		for _, w := range writers {
			w.Stop(faulttest.Deadline())
		}
	}
	defer stop()
	sleep(faulttest.Scale(time.Second, 10*time.Second))

	before := ledger.Acked()
	crashed := time.Now()
	cluster.Crash()
	outage := faulttest.Scale(2*time.Second, 5*time.Second)
	sleep(outage)
	cluster.Start()
	up := time.Now()
	faulttest.Eventually(t, faulttest.Deadline(), 10*time.Millisecond, "a batch acknowledged after the restart", func() (bool, error) {
		return len(ledger.AckedAfter(up)) > 0, nil
	})
	recovered := ledger.FirstAckAfter(up).Sub(up)
	sleep(faulttest.Scale(time.Second, 10*time.Second))
	stop()
	require.False(t, srv.Exited(), "serve keeps running through the outage")
	require.Equal(t, pid, srv.Pid(), "serve was not restarted")

	pool, err := pgxpool.New(ctx, cluster.URL())
	require.NoError(t, err)
	defer pool.Close()
	present, err := faulttest.CountMarkers(context.Background(), pool, "faults-ingest")
	require.NoError(t, err)
	tally := ledger.Tally(present, nil)
	failures, samples := ledger.Failures()
	refused, _, _ := ledger.Refusals()
	faulttest.Figure{
		Scenario: "PostgreSQL crash during idempotent ingest", Acknowledged: tally.Acknowledged, Lost: tally.Lost,
		Duplicated: tally.Duplicated, Recover: recovered, LongestInsert: ledger.LongestAttempt(),
		Note: fmt.Sprintf("8 clients, batches of %d; the database down %s (crashed %s after the start, %d events acknowledged by then); recovery: from the database up again to the first batch acknowledged, serve not restarted; %d attempts refused with Retry-After; answers: %s",
			batch, (up.Sub(crashed)).Round(100*time.Millisecond), faulttest.Scale("1s", "10s"), before, refused, ledger.Summary()),
	}.Report(t)

	require.Zero(t, tally.Lost, "every acknowledged batch present: %v", tally.Samples)
	require.Zero(t, tally.Duplicated, "no event twice: %v", tally.Samples)
	require.Zero(t, failures, "during the outage ingest answers 503 with Retry-After, nothing else: %v", samples)
	require.Greater(t, before, 0)
}
