package faults

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/faulttest"
	"github.com/auditlog/auditlog/service"
)

// handFault is what a DBA does to the current month while it is written
// to; it returns the markers of the acknowledged events the statement
// itself destroyed (none for a detach).
type handFault func(t *testing.T, db *faulttest.Database, month string) map[string]bool

// TestFaultMonthDetachedByHand detaches the current month by hand while
// two Go writers (service.Log.RecordUser) and two HTTP writers (POST
// /api/v1/events to `auditlog serve`) record one event at a time into it.
// Writers must be refused with a typed, retryable error
// (ErrPartitionUnavailable in Go; 503 with Retry-After over HTTP) and
// retry; no event may reach user_events_default; a pass started at once
// must attach the month again; every acknowledged event is then present
// exactly once. Recovery: from the detach to the month attached again.
func TestFaultMonthDetachedByHand(t *testing.T) {
	handPartitionFault(t, "month detached by hand", "DETACH", func(t *testing.T, db *faulttest.Database, month string) map[string]bool {
		db.MustExec(t, fmt.Sprintf("ALTER TABLE user_events DETACH PARTITION %s", month))
		return nil
	})
}

// TestFaultPartitionDroppedByHand drops the current month's partition by
// hand while it is written to, as TestFaultMonthDetachedByHand detaches
// it: the same expectations, except for the events the DROP itself
// destroyed (the DBA's doing, listed inside the DROP's transaction and
// reported), and a pass must create the month again. The figure's note
// says how long refusals lasted.
func TestFaultPartitionDroppedByHand(t *testing.T) {
	handPartitionFault(t, "partition dropped by hand", "DROP", func(t *testing.T, db *faulttest.Database, month string) map[string]bool {
		ctx := context.Background()
		dropped := map[string]bool{}
		// Lock first, so the rows listed are exactly the rows dropped.
		err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "LOCK TABLE user_events IN ACCESS EXCLUSIVE MODE"); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, fmt.Sprintf("SELECT actor_id FROM %s WHERE actor_id IS NOT NULL", month))
			if err != nil {
				return err
			}
			markers, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			for _, m := range markers {
				dropped[m] = true
			}
			_, err = tx.Exec(ctx, fmt.Sprintf("DROP TABLE %s", month))
			return err
		})
		require.NoError(t, err)
		return dropped
	})
}

func handPartitionFault(t *testing.T, scenario, statement string, fault handFault) {
	ctx := faulttest.Context(t)
	db := faulttest.NewDatabase(t)
	trapDefault(t, db)
	log := newLog(t, db)
	baseline := recordBaseline(t, log, "faults-base", faulttest.Scale(200, 5000))
	env := serveEnv(db)
	srv, base, tokens := serve(t, db, env, "faults-a", "faults-b")
	awaitStartupPass(t, db)

	month := faulttest.Partition(time.Now())
	at := time.Now().UTC().Truncate(time.Microsecond)
	ledger := faulttest.NewLedger()
	partitionRefusal := func(err error) bool { return errors.Is(err, service.ErrPartitionUnavailable) }
	client := &http.Client{Timeout: time.Minute}
	writers := []*faulttest.Writers{
		faulttest.StartWriters(2, "faults-w-go", ledger, faulttest.GoUserWriter(log, "faults-writer", at, partitionRefusal), nil),
		faulttest.StartWriters(1, "faults-w-http-a", ledger, faulttest.HTTPWriter(client, base, tokens[0], faulttest.UserEvents("faults-writer", at, 1)), nil),
		faulttest.StartWriters(1, "faults-w-http-b", ledger, faulttest.HTTPWriter(client, base, tokens[1], faulttest.UserEvents("faults-writer", at, 1)), nil),
	}
	stop := func() {
		for _, w := range writers {
			w.Stop(faulttest.Deadline())
		}
	}
	defer stop()
	write := faulttest.Scale(time.Second, 5*time.Second)
	sleep(write)
	before := ledger.Acked()

	faultAt := time.Now()
	dropped := fault(t, db, month)
	db.AfterFault()
	// The month must come back, attached, by itself; no event may reach
	// the default partition meanwhile.
	recovered := faulttest.Eventually(t, faulttest.Deadline(), 10*time.Millisecond, month+" attached again", func() (bool, error) {
		if defaultHits(t, db) > 0 {
			return false, errors.New("an event reached user_events_default")
		}
		_, attached, err := faulttest.PartitionState(ctx, db.Pool, month)
		return attached, err
	})
	recoveredAt := faultAt.Add(recovered)
	faulttest.Eventually(t, faulttest.Deadline(), 10*time.Millisecond, "an event acknowledged after the month came back", func() (bool, error) {
		return len(ledger.AckedAfter(recoveredAt)) > 0, nil
	})
	sleep(write)
	stop()
	require.False(t, srv.Exited(), "serve must keep running")

	present, err := faulttest.CountMarkers(ctx, db.Pool, "faults-w-")
	require.NoError(t, err)
	kept := func(m string) bool { return !dropped[m] }
	tally := ledger.Tally(present, kept)
	for m := range dropped {
		require.Zero(t, present[m], "an event the DROP destroyed is back: %s", m)
	}
	wrongly := wronglyDeleted(t, db, baseline, "faults-base", kept)
	earlier := baseline.Tally(present, kept).Acknowledged
	refused, first, last := ledger.Refusals()
	failures, samples := ledger.Failures()
	refusing := "none"
	if refused > 0 {
		refusing = "from the first to the last " + last.Sub(first).Round(time.Millisecond).String()
	}
	note := fmt.Sprintf("recovery: from the %s to %s attached again; refusals: %s (%d attempts refused; all attempts: %s)",
		statement, month, refusing, refused, ledger.Summary())
	if dropped != nil {
		note += fmt.Sprintf("; %d events acknowledged before the DROP were destroyed by it (not counted above)", len(dropped))
	}
	faulttest.Figure{
		Scenario: scenario, Acknowledged: tally.Acknowledged + earlier, Lost: tally.Lost, Duplicated: tally.Duplicated,
		WronglyDeleted: wrongly, HumanSteps: db.HumanSteps(t),
		Recover: recovered, LongestInsert: ledger.LongestAttempt(), Note: note,
	}.Report(t)

	require.Zero(t, defaultHits(t, db), "no event may reach user_events_default")
	require.Zero(t, failures, "writers may see typed retryable refusals only: %v", samples)
	require.Zero(t, tally.Lost, "every acknowledged event present: %v", tally.Samples)
	require.Zero(t, tally.Duplicated, "no event twice: %v", tally.Samples)
	require.Greater(t, before, 0, "the writers wrote before the fault")
	require.Zero(t, wrongly, "other people's events from before are all there")
	require.Zero(t, db.HumanSteps(t))
}
