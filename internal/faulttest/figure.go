package faulttest

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// SummaryEnv names the environment variable holding the path of the
// summary file every scenario appends its figure line to (`make faults`
// sets it and prints the file as a table at the end).
const SummaryEnv = "AUDITLOG_FAULTS_SUMMARY"

// Figure is one scenario's result: what was acknowledged and what became
// of it, how many steps a human took (always zero: the scenarios never
// repair anything), how long the service took to recover by itself and
// the longest single insert a writer saw.
type Figure struct {
	Scenario     string
	Acknowledged int
	Lost         int
	Duplicated   int
	// WronglyDeleted counts events that existed before the fault and had
	// to survive it (other people's events, in-window months) but are
	// gone.
	WronglyDeleted int
	HumanSteps     int
	// Recover is the time to recover, measured as the scenario's note
	// says; negative when the scenario has no outage to recover from.
	Recover time.Duration
	// LongestInsert is the longest single write attempt; zero when the
	// scenario has no writers.
	LongestInsert time.Duration
	// Note says what Recover measures and anything else worth a line.
	Note string
}

var summaryMu sync.Mutex

// Line returns the figure as one tab-separated summary line: scenario,
// acknowledged, lost, duplicated, wrongly deleted, human steps, seconds to
// recover ("-" when there was nothing to recover from), longest insert in
// milliseconds ("-" without writers), note (scripts/faults-summary.awk
// reads it).
func (f Figure) Line() string {
	rec := "-"
	if f.Recover >= 0 {
		rec = fmt.Sprintf("%.2f", f.Recover.Seconds())
	}
	longest := "-"
	if f.LongestInsert > 0 {
		longest = fmt.Sprintf("%.0f", float64(f.LongestInsert.Microseconds())/1000)
	}
	note := strings.NewReplacer("\t", " ", "\n", " ").Replace(f.Note)
	return fmt.Sprintf("%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s", f.Scenario, f.Acknowledged, f.Lost, f.Duplicated,
		f.WronglyDeleted, f.HumanSteps, rec, longest, note)
}

// Report logs the figure with tb.Log and appends its line to the summary
// file when AUDITLOG_FAULTS_SUMMARY names one.
func (f Figure) Report(tb testing.TB) {
	tb.Helper()
	rec := "n/a"
	if f.Recover >= 0 {
		rec = f.Recover.Round(10 * time.Millisecond).String()
	}
	tb.Logf("figures: %s: acknowledged %d, lost %d, duplicated %d, wrongly deleted %d, human steps %d, recovered in %s, longest insert %s; %s",
		f.Scenario, f.Acknowledged, f.Lost, f.Duplicated, f.WronglyDeleted, f.HumanSteps, rec,
		f.LongestInsert.Round(time.Millisecond), f.Note)
	path := os.Getenv(SummaryEnv)
	if path == "" {
		return
	}
	summaryMu.Lock()
	defer summaryMu.Unlock()
	file, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		tb.Errorf("summary file: %v", err)
		return
	}
	defer file.Close()
	if _, err := fmt.Fprintln(file, f.Line()); err != nil {
		tb.Errorf("summary file: %v", err)
	}
}
