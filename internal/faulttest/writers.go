package faulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/auditlog/auditlog/service"
)

// OutcomeKind classifies one write attempt.
type OutcomeKind int

// The kinds of outcome.
const (
	// Acked: the writer was told its events were recorded.
	Acked OutcomeKind = iota
	// Refused: a typed, retryable refusal (service.ErrUnavailable and
	// what wraps it in Go; 503 or 429 with Retry-After over HTTP).
	// Nothing was recorded; the writer retries the same events.
	Refused
	// Failed: any other error (a raw SQLSTATE, a 500, a broken
	// connection). The writer retries the same events too, but the
	// scenario counts it.
	Failed
)

// Outcome is the result of one write attempt.
type Outcome struct {
	Kind OutcomeKind
	// Detail names the outcome for the summary: "201", "503+Retry-After",
	// "ErrPartitionUnavailable", "error".
	Detail string
	// Err is the error's text, for failures.
	Err string
	// RetryAfter is the server's hint; the writer waits for it, at most
	// MaxRetryWait.
	RetryAfter time.Duration
}

// MaxRetryWait caps a writer's wait after a refusal with Retry-After, so
// that a recovery is measured to within a quarter of a second.
const MaxRetryWait = 250 * time.Millisecond

// WriteFunc records unit's events once (one attempt). unit names the
// event, or a batch whose events Writers.Markers lists.
type WriteFunc func(ctx context.Context, unit string) Outcome

// Writers are goroutines that record one unit at a time in a loop, each
// unit under fresh markers, retrying a unit (same markers, same
// idempotency key) until it is acknowledged, and keep a Ledger.
type Writers struct {
	ledger  *Ledger
	write   WriteFunc
	markers func(unit string) []string
	stop    atomic.Bool
	abandon atomic.Bool
	wg      sync.WaitGroup
}

// StartWriters starts n writers of units named prefix-wNN-SEQ. markers
// lists the event markers a unit records (nil: the unit alone).
func StartWriters(n int, prefix string, ledger *Ledger, write WriteFunc, markers func(unit string) []string) *Writers {
	if markers == nil {
		markers = func(u string) []string { return []string{u} }
	}
	w := &Writers{ledger: ledger, write: write, markers: markers}
	for i := range n {
		w.wg.Add(1)
		go w.run(fmt.Sprintf("%s-w%02d", prefix, i))
	}
	return w
}

func (w *Writers) run(name string) {
	defer w.wg.Done()
	for seq := 0; !w.stop.Load(); seq++ {
		unit := fmt.Sprintf("%s-%07d", name, seq)
		first := time.Now()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			start := time.Now()
			o := w.write(ctx, unit)
			cancel()
			w.ledger.attempt(o, time.Since(start))
			if o.Kind == Acked {
				now := time.Now()
				w.ledger.ackUnit(now, now.Sub(first), w.markers(unit))
				break
			}
			if w.abandon.Load() {
				w.ledger.abandon()
				return
			}
			pause := 20 * time.Millisecond
			if o.RetryAfter > 0 {
				pause = min(o.RetryAfter, MaxRetryWait)
			}
			time.Sleep(pause)
		}
	}
}

// Stop asks the writers to stop after their current unit, which each
// keeps retrying until it is acknowledged or timeout passes (then it is
// abandoned and counted), and waits for them.
func (w *Writers) Stop(timeout time.Duration) {
	w.stop.Store(true)
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		w.abandon.Store(true)
		<-done
	}
}

// GoUserWriter records each unit as one user event through the Go API
// (service.Log.RecordUser) for user, dated at, with the unit as its
// actor_id marker. retryable says which errors are typed retryable
// refusals (errors.Is(err, service.ErrUnavailable) when nil).
func GoUserWriter(log *service.Log, user string, at time.Time, retryable func(error) bool) WriteFunc {
	if retryable == nil {
		retryable = func(err error) bool { return errors.Is(err, service.ErrUnavailable) }
	}
	return func(ctx context.Context, unit string) Outcome {
		_, err := log.RecordUser(ctx, service.EventParams{
			Tag: service.TagAccountPasswordChange, Subject: user, ActorID: unit, Time: at,
		})
		switch {
		case err == nil:
			return Outcome{Kind: Acked, Detail: "recorded"}
		case retryable(err):
			detail := "ErrUnavailable"
			if errors.Is(err, service.ErrPartitionUnavailable) {
				detail = "ErrPartitionUnavailable"
			}
			return Outcome{Kind: Refused, Detail: detail}
		default:
			return Outcome{Kind: Failed, Detail: "error", Err: err.Error()}
		}
	}
}

// IngestEvent is one event of an ingest body, with the read API's names.
type IngestEvent struct {
	Tag     string `json:"tag"`
	Time    string `json:"time,omitempty"`
	UserID  string `json:"user_id"`
	ActorID string `json:"actor_id"`
}

// HTTPWriter posts each unit to POST base/api/v1/events with the ingest
// token, the unit as its Idempotency-Key, and the body events(unit)
// returns: a retry sends the same key and body. 201 and 200 acknowledge
// it; 503 or 429 with Retry-After are typed refusals; anything else
// (another status, a broken connection) fails the attempt.
func HTTPWriter(client *http.Client, base, token string, events func(unit string) []IngestEvent) WriteFunc {
	return func(ctx context.Context, unit string) Outcome {
		body, err := json.Marshal(map[string]any{"events": events(unit)})
		if err != nil {
			return Outcome{Kind: Failed, Detail: "marshal", Err: err.Error()}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/events", bytes.NewReader(body))
		if err != nil {
			return Outcome{Kind: Failed, Detail: "request", Err: err.Error()}
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", unit)
		resp, err := client.Do(req)
		if err != nil {
			return Outcome{Kind: Failed, Detail: "connection error", Err: err.Error()}
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		status := strconv.Itoa(resp.StatusCode)
		switch resp.StatusCode {
		case http.StatusCreated, http.StatusOK:
			return Outcome{Kind: Acked, Detail: status}
		case http.StatusServiceUnavailable, http.StatusTooManyRequests:
			if ra := resp.Header.Get("Retry-After"); ra != "" {
				secs, _ := strconv.Atoi(ra)
				return Outcome{Kind: Refused, Detail: status + "+Retry-After", RetryAfter: time.Duration(max(secs, 0)) * time.Second}
			}
			return Outcome{Kind: Failed, Detail: status + " without Retry-After", Err: string(msg)}
		default:
			return Outcome{Kind: Failed, Detail: status, Err: string(msg)}
		}
	}
}

// UserEvents returns an HTTPWriter body function: n user events of user
// dated at (zero: now) whose markers are unit (n = 1) or unit-eNNN.
func UserEvents(user string, at time.Time, n int) func(unit string) []IngestEvent {
	return func(unit string) []IngestEvent {
		evs := make([]IngestEvent, n)
		for i, m := range BatchMarkers(n)(unit) {
			evs[i] = IngestEvent{Tag: service.TagAccountPasswordChange, UserID: user, ActorID: m}
			if !at.IsZero() {
				evs[i].Time = at.UTC().Format(time.RFC3339Nano)
			}
		}
		return evs
	}
}

// BatchMarkers returns the markers of a unit of n events: the unit itself
// when n is 1, else unit-e000 … unit-e(n-1).
func BatchMarkers(n int) func(unit string) []string {
	return func(unit string) []string {
		if n == 1 {
			return []string{unit}
		}
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s-e%03d", unit, i)
		}
		return out
	}
}
