package faulttest

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Querier runs a query: a *pgxpool.Pool, a *pgx.Conn or a pgx.Tx.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// CountMarkers counts, for every actor_id that starts with prefix, the
// user events carrying it that a reader sees: in user_events' attached
// partitions and its default partition. A marker is unique to one
// recorded event, so an acknowledged marker must count exactly 1.
func CountMarkers(ctx context.Context, q Querier, prefix string) (map[string]int, error) {
	rows, err := q.Query(ctx, `SELECT actor_id, count(*) FROM user_events
		WHERE actor_id >= $1 AND actor_id < $1 || chr(1114111) GROUP BY actor_id`, prefix)
	if err != nil {
		return nil, fmt.Errorf("count markers: %w", err)
	}
	out := map[string]int{}
	for rows.Next() {
		var m string
		var n int
		if err := rows.Scan(&m, &n); err != nil {
			return nil, err
		}
		out[m] = n
	}
	return out, rows.Err()
}

// Ledger records what writers were told: every acknowledged event by its
// marker and when it was acknowledged, every refused or failed attempt,
// and the longest attempt. Safe for concurrent use.
type Ledger struct {
	mu     sync.Mutex
	acked  map[string]time.Time
	counts map[string]int // attempts by outcome detail ("201", "503+Retry-After", "ErrPartitionUnavailable", …)
	// abandoned counts units a writer gave up unacknowledged when it
	// was stopped.
	abandoned int

	attempts, refusals, failures int
	failureSamples               []string
	firstRefusal, lastRefusal    time.Time
	longestAttempt, longestAck   time.Duration
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{acked: map[string]time.Time{}, counts: map[string]int{}}
}

// Ack records that the events with markers were acknowledged (committed,
// as the writer was told) at.
func (l *Ledger) Ack(at time.Time, markers ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range markers {
		l.acked[m] = at
	}
}

func (l *Ledger) ackUnit(at time.Time, took time.Duration, markers []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range markers {
		l.acked[m] = at
	}
	l.longestAck = max(l.longestAck, took)
}

func (l *Ledger) abandon() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.abandoned++
}

// Abandoned returns how many units (events, batches) writers gave up
// unacknowledged when they were stopped.
func (l *Ledger) Abandoned() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.abandoned
}

func (l *Ledger) attempt(o Outcome, latency time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempts++
	l.counts[o.Detail]++
	l.longestAttempt = max(l.longestAttempt, latency)
	now := time.Now()
	switch o.Kind {
	case Refused:
		l.refusals++
		if l.firstRefusal.IsZero() {
			l.firstRefusal = now
		}
		l.lastRefusal = now
	case Failed:
		l.failures++
		sample := o.Detail + ": " + o.Err
		if len(l.failureSamples) < 5 && !slices.Contains(l.failureSamples, sample) {
			l.failureSamples = append(l.failureSamples, sample)
		}
	}
}

// Acked returns how many events were acknowledged.
func (l *Ledger) Acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// AckedAfter returns the markers acknowledged after t.
func (l *Ledger) AckedAfter(t time.Time) map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]bool{}
	for m, at := range l.acked {
		if at.After(t) {
			out[m] = true
		}
	}
	return out
}

// FirstAckAfter returns when the first event acknowledged after t was
// acknowledged; zero when none was.
func (l *Ledger) FirstAckAfter(t time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for _, at := range l.acked {
		if at.After(t) && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first
}

// Refusals returns how many attempts were refused with a typed,
// retryable error, and the first and last of them.
func (l *Ledger) Refusals() (n int, first, last time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refusals, l.firstRefusal, l.lastRefusal
}

// Failures returns how many attempts failed with anything but a typed,
// retryable error, and up to five distinct ones.
func (l *Ledger) Failures() (int, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failures, append([]string(nil), l.failureSamples...)
}

// Attempts returns the number of attempts by outcome detail.
func (l *Ledger) Attempts() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.counts))
	for k, v := range l.counts {
		out[k] = v
	}
	return out
}

// LongestAttempt is the longest single write (one call or request).
func (l *Ledger) LongestAttempt() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.longestAttempt
}

// LongestAck is the longest time from an event's first attempt to its
// acknowledgement, retries included.
func (l *Ledger) LongestAck() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.longestAck
}

// Tally compares the ledger with what is in the database.
type Tally struct {
	// Acknowledged events considered (all, or those the filter kept).
	Acknowledged int
	// Lost are acknowledged events that are not in the database.
	Lost int
	// Duplicated counts extra copies: a marker present n > 1 times adds
	// n − 1, acknowledged or not.
	Duplicated int
	// Unacknowledged events are present although no writer was told they
	// were recorded (an attempt abandoned when the writers stopped).
	Unacknowledged int
	// Samples names a few lost or duplicated markers.
	Samples []string
}

func (t Tally) String() string {
	return fmt.Sprintf("acknowledged %d, lost %d, duplicated %d, present unacknowledged %d",
		t.Acknowledged, t.Lost, t.Duplicated, t.Unacknowledged)
}

// Tally compares the acknowledged markers (those keep reports true for;
// all when keep is nil) with present, the counts CountMarkers returned.
func (l *Ledger) Tally(present map[string]int, keep func(marker string) bool) Tally {
	l.mu.Lock()
	defer l.mu.Unlock()
	var t Tally
	for m := range l.acked {
		if keep != nil && !keep(m) {
			continue
		}
		t.Acknowledged++
		if present[m] == 0 {
			t.Lost++
			if len(t.Samples) < 5 {
				t.Samples = append(t.Samples, "lost "+m)
			}
		}
	}
	for m, n := range present {
		if n > 1 {
			t.Duplicated += n - 1
			if len(t.Samples) < 10 {
				t.Samples = append(t.Samples, fmt.Sprintf("%d copies of %s", n, m))
			}
		}
		if _, ok := l.acked[m]; !ok {
			t.Unacknowledged++
		}
	}
	sort.Strings(t.Samples)
	return t
}

// Summary describes the attempts in one line: outcomes by detail,
// failures' samples.
func (l *Ledger) Summary() string {
	counts := l.Attempts()
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s×%d", k, counts[k])
	}
	if n, samples := l.Failures(); n > 0 {
		fmt.Fprintf(&b, "; %d failed attempts, e.g. %s", n, strings.Join(samples, " | "))
	}
	return b.String()
}
