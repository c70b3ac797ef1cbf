package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/web"
)

// BenchmarkIngestHTTP: 100 batches of 500 user events posted by 8
// concurrent clients to POST /api/v1/events on an in-process server
// (ingest-token check, JSON decoding, validation, COPY, idempotency key,
// commit), against raw pgx CopyFrom of the same prepared rows in the same
// batches by 8 concurrent goroutines. Each arm starts from an empty table
// after a checkpoint; they alternate (base, ours, ours, base).
// ratio_vs_copy = our throughput / COPY throughput.
func BenchmarkIngestHTTP(b *testing.B) {
	const (
		batches, size, clients = 100, 500, 8
	)
	bb := setup(b)
	ps := events(batches*size, bb.now)
	rows := make([][]any, len(ps))
	bodies := make([][]byte, batches)
	for i := range ps {
		desc, err := bb.log.Registry().Describe(ps[i].Tag, ps[i].Additional)
		if err != nil {
			b.Fatal(err)
		}
		rows[i] = baselineRow(&ps[i], desc)
	}
	type wire struct {
		Tag            string          `json:"tag"`
		Time           time.Time       `json:"time"`
		UserID         string          `json:"user_id"`
		ActorID        string          `json:"actor_id"`
		AuthMethod     string          `json:"auth_method"`
		ActorTwoFactor *bool           `json:"actor_two_factor"`
		IP             string          `json:"ip"`
		UserAgent      string          `json:"user_agent"`
		Location       any             `json:"location"`
		Additional     json.RawMessage `json:"additional,omitempty"`
	}
	for k := range batches {
		evs := make([]wire, size)
		for j := range evs {
			p := ps[k*size+j]
			evs[j] = wire{Tag: p.Tag, Time: p.Time, UserID: p.Subject, ActorID: p.ActorID, AuthMethod: p.AuthMethod,
				ActorTwoFactor: p.ActorTwoFactor, IP: p.IP, UserAgent: p.UserAgent, Location: p.Location, Additional: p.Additional}
		}
		var err error
		if bodies[k], err = json.Marshal(map[string]any{"events": evs}); err != nil {
			b.Fatal(err)
		}
	}
	token, err := bb.log.CreateIngestToken(bb.ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	// One token posts from all clients at once, as `serve --ingest-concurrency 8` allows.
	h, err := web.New(web.Options{Log: bb.log, Secret: []byte("benchmark secret, 32 bytes long!"), IngestConcurrency: clients})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}

	// parallel runs job(k) for every batch k on 8 goroutines.
	parallel := func(job func(k int)) time.Duration {
		b.StopTimer()
		for _, sql := range []string{truncateEvents, "TRUNCATE ingest_requests", "CHECKPOINT"} {
			if _, err := bb.pool.Exec(bb.ctx, sql); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		b.StartTimer()
		next := make(chan int)
		var wg sync.WaitGroup
		start := time.Now()
		for range clients {
			wg.Go(func() {
				for k := range next {
					job(k)
				}
			})
		}
		for k := range batches {
			next <- k
		}
		close(next)
		wg.Wait()
		return time.Since(start)
	}
	round := 0
	ours := func() time.Duration {
		round++
		return parallel(func(k int) {
			req, _ := http.NewRequest("POST", srv.URL+"/api/v1/events", bytes.NewReader(bodies[k]))
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", fmt.Sprintf("r%d-b%d", round, k))
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				b.Errorf("batch %d: %d %s", k, resp.StatusCode, body)
			}
		})
	}
	base := func() time.Duration {
		return parallel(func(k int) {
			n, err := bb.pool.CopyFrom(bb.ctx, pgx.Identifier{"user_events"}, columns, pgx.CopyFromRows(rows[k*size:(k+1)*size]))
			if err != nil || n != size {
				b.Errorf("batch %d: copied %d: %v", k, n, err)
			}
		})
	}
	var oursT, baseT time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		baseT += base()
		oursT += ours()
		oursT += ours()
		baseT += base()
	}
	b.StopTimer()
	if n := dbtest.Count(b, bb.pool, "SELECT count(*) FROM user_events"); n != len(ps) {
		b.Fatalf("the last arm left %d events, want %d", n, len(ps))
	}
	total := float64(2 * len(ps) * b.N)
	b.ReportMetric(baseT.Seconds()/oursT.Seconds(), "ratio_vs_copy")
	b.ReportMetric(total/oursT.Seconds(), "events/s")
	b.ReportMetric(total/baseT.Seconds(), "baseline_events/s")
}
