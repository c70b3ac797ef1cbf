// Package faulttest is the harness of the fault suite in faults/: it runs
// the real auditlog binary as a subprocess that a test can kill -9 and
// start again (Binary, Proc), starts and crashes a private PostgreSQL
// cluster of the test's own (Cluster), keeps the ledger of acknowledged
// events that writers record under unique markers and counts what is in
// the database for them (Ledger, Writers, CountMarkers), counts the
// database writes a test makes after its fault as human steps (Admin), and
// reports each scenario's figures (Figure.Report), to the test log and to
// the summary file that `make faults` prints.
//
// Heavy scenarios run only when AUDITLOG_FAULTS=heavy (`make faults` sets
// it); `go test ./...` and `make test` run the fast ones.
package faulttest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// ModeEnv names the environment variable that selects the heavy
// scenarios: AUDITLOG_FAULTS=heavy.
const ModeEnv = "AUDITLOG_FAULTS"

// DeadlineEnv names the environment variable that overrides how long a
// scenario waits for the service to recover before it fails (a Go
// duration): 10 minutes with AUDITLOG_FAULTS=heavy, 2 minutes otherwise.
const DeadlineEnv = "AUDITLOG_FAULTS_DEADLINE"

// MaxRecovery is the longest a recovery may take: `make faults` fails on
// a figure at or over it, whatever the deadline.
const MaxRecovery = 10 * time.Minute

// Heavy reports whether the heavy scenarios run (AUDITLOG_FAULTS=heavy).
func Heavy() bool { return strings.EqualFold(os.Getenv(ModeEnv), "heavy") }

// RequireHeavy skips tb unless AUDITLOG_FAULTS=heavy.
func RequireHeavy(tb testing.TB) {
	tb.Helper()
	if !Heavy() {
		tb.Skipf("a heavy fault scenario: run it with `make faults` (%s=heavy)", ModeEnv)
	}
}

// Scale returns heavy when the heavy scenarios run, else fast: the size
// of a scenario's data or the length of its writing.
func Scale[T any](fast, heavy T) T {
	if Heavy() {
		return heavy
	}
	return fast
}

// Deadline is how long a scenario waits for the service to recover by
// itself before it fails.
func Deadline() time.Duration {
	if v := os.Getenv(DeadlineEnv); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			return d
		}
	}
	return Scale(2*time.Minute, MaxRecovery)
}

// Eventually calls cond every poll until it reports true, and returns
// how long that took. It fails tb when cond returns an error or when
// timeout passes first; what names what was awaited.
func Eventually(tb testing.TB, timeout, poll time.Duration, what string, cond func() (bool, error)) time.Duration {
	tb.Helper()
	start := time.Now()
	for {
		ok, err := cond()
		if err != nil {
			tb.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			tb.Fatalf("%s did not happen within %s (no human step was taken: the service must recover by itself)", what, timeout)
		}
		time.Sleep(poll)
	}
}

// Context returns a context for a scenario, cancelled when tb ends.
func Context(tb testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	return ctx
}

// MonthStart returns the first instant of t's UTC month.
func MonthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// Partition returns the name of the monthly partition holding t, as
// service.PartitionName does.
func Partition(t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("user_events_p%04d%02d", t.Year(), int(t.Month()))
}
