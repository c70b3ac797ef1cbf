package faulttest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
)

func TestLedgerTally(t *testing.T) {
	t.Parallel()
	l := NewLedger()
	now := time.Now()
	l.Ack(now, "m-1", "m-2", "m-3", "m-4")
	present := map[string]int{"m-1": 1, "m-2": 2, "m-4": 1, "m-9": 1, "m-8": 3}

	all := l.Tally(present, nil)
	require.Equal(t, 4, all.Acknowledged)
	require.Equal(t, 1, all.Lost, "m-3 is missing")
	require.Equal(t, 3, all.Duplicated, "one extra m-2, two extra m-8 (acknowledged or not)")
	require.Equal(t, 2, all.Unacknowledged, "m-8 and m-9")
	require.Contains(t, all.Samples, "lost m-3")

	some := l.Tally(present, func(m string) bool { return m != "m-3" })
	require.Equal(t, 3, some.Acknowledged)
	require.Zero(t, some.Lost, "a marker the filter leaves out is not lost")

	clean := l.Tally(map[string]int{"m-1": 1, "m-2": 1, "m-3": 1, "m-4": 1}, nil)
	require.Equal(t, Tally{Acknowledged: 4}, clean)
}

func TestLedgerAttempts(t *testing.T) {
	t.Parallel()
	l := NewLedger()
	l.attempt(Outcome{Kind: Acked, Detail: "201"}, 5*time.Millisecond)
	l.attempt(Outcome{Kind: Refused, Detail: "503+Retry-After"}, 2*time.Millisecond)
	l.attempt(Outcome{Kind: Failed, Detail: "500", Err: "internal error"}, 40*time.Millisecond)
	l.attempt(Outcome{Kind: Failed, Detail: "500", Err: "internal error"}, time.Millisecond)
	n, first, last := l.Refusals()
	require.Equal(t, 1, n)
	require.False(t, first.IsZero())
	require.Equal(t, first, last)
	failures, samples := l.Failures()
	require.Equal(t, 2, failures)
	require.Equal(t, []string{"500: internal error"}, samples, "samples are distinct")
	require.Equal(t, 40*time.Millisecond, l.LongestAttempt())
	require.Equal(t, "201×1, 500×2, 503+Retry-After×1; 2 failed attempts, e.g. 500: internal error", l.Summary())

	before := time.Now()
	l.ackUnit(before.Add(time.Second), 3*time.Second, []string{"u-e000", "u-e001"})
	require.Len(t, l.AckedAfter(before), 2)
	require.Equal(t, before.Add(time.Second), l.FirstAckAfter(before))
	require.True(t, l.FirstAckAfter(before.Add(2*time.Second)).IsZero())
	require.Equal(t, 3*time.Second, l.LongestAck())
}

func TestBatchMarkers(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"u"}, BatchMarkers(1)("u"))
	require.Equal(t, []string{"u-e000", "u-e001", "u-e002"}, BatchMarkers(3)("u"))
	evs := UserEvents("alice", time.Date(2026, 11, 2, 3, 4, 5, 0, time.UTC), 2)("u")
	require.Equal(t, []IngestEvent{
		{Tag: "account:password:change", Time: "2026-11-02T03:04:05Z", UserID: "alice", ActorID: "u-e000"},
		{Tag: "account:password:change", Time: "2026-11-02T03:04:05Z", UserID: "alice", ActorID: "u-e001"},
	}, evs)
}

func TestFigureLine(t *testing.T) {
	t.Parallel()
	f := Figure{Scenario: "s", Acknowledged: 10, Recover: 1500 * time.Millisecond, LongestInsert: 12 * time.Millisecond, Note: "a\tb\nc"}
	require.Equal(t, "s\t10\t0\t0\t0\t0\t1.50\t12\ta b c", f.Line())
	require.Equal(t, "s\t0\t0\t0\t0\t0\t-\t-\t", Figure{Scenario: "s", Recover: -1}.Line())
}

// TestSummaryScript runs scripts/faults-summary.awk, which `make faults`
// ends with: it passes figures that are all zero and fails on any lost,
// duplicated, wrongly deleted or human-step figure, or a recovery of 10
// minutes or more.
func TestSummaryScript(t *testing.T) {
	t.Parallel()
	awk, err := exec.LookPath("awk")
	if err != nil {
		t.Skip("no awk")
	}
	root, err := dbtest.ModuleRoot()
	require.NoError(t, err)
	script := filepath.Join(root, "scripts", "faults-summary.awk")
	good := Figure{Scenario: "good", Acknowledged: 5, Recover: 2 * time.Second, LongestInsert: time.Millisecond}
	for name, tc := range map[string]struct {
		lines []string
		fails string
	}{
		"all zero":        {lines: []string{good.Line(), Figure{Scenario: "no outage", Recover: -1}.Line()}},
		"lost":            {lines: []string{good.Line(), Figure{Scenario: "bad", Lost: 1}.Line()}, fails: "bad: lost is 1"},
		"duplicated":      {lines: []string{Figure{Scenario: "bad", Duplicated: 2}.Line()}, fails: "bad: duplicated is 2"},
		"wrongly deleted": {lines: []string{Figure{Scenario: "bad", WronglyDeleted: 3}.Line()}, fails: "bad: wrongly deleted is 3"},
		"human steps":     {lines: []string{Figure{Scenario: "bad", HumanSteps: 1}.Line()}, fails: "bad: human steps is 1"},
		"slow recovery":   {lines: []string{Figure{Scenario: "bad", Recover: MaxRecovery}.Line()}, fails: "bad: recovery took 600.00 s"},
		"nothing":         {fails: "no scenario wrote a figure"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "faults.tsv")
			text := strings.Join(tc.lines, "\n")
			if text != "" {
				text += "\n"
			}
			require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
			out, err := exec.Command(awk, "-f", script, path).CombinedOutput()
			if tc.fails == "" {
				require.NoError(t, err, "%s", out)
				require.Contains(t, string(out), "| good | 5 | 0 | 0 | 0 | 0 | 2.00 s | 1 ms |")
				return
			}
			require.Error(t, err, "%s", out)
			require.Contains(t, string(out), tc.fails)
		})
	}
}
