package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/importer"
)

// BenchmarkImport: 1,000,000 user events as JSON Lines (the wire form of
// ingest with source and source_id, this month's sign-ins and account
// changes with IPs, user agents and locations) imported by importer.JSONL
// (the code `auditlog import` runs: decoding on every core, validation,
// the exactly-once claim of each (source, source_id) in import_keys, COPY,
// the run's position saved with each batch of 10,000) versus a raw COPY
// of the same rows, already decoded, into user_events. Both start from
// empty tables after a CHECKPOINT, in the same process, alternating
// (baseline, ours, ours, baseline).
//
// Metrics: ratio_vs_copy (our events/s over the COPY's; target ≥ 0.6),
// events/s and baseline_events/s.
func BenchmarkImport(b *testing.B) {
	const n = 1_000_000
	bb := setup(b)
	ps := seededEvents(n, bb.now, 11)
	var jsonl bytes.Buffer
	rows := make([][]any, n)
	for i := range ps {
		p := &ps[i]
		line, err := json.Marshal(map[string]any{"source": "bench", "source_id": fmt.Sprintf("e-%d", i), "tag": p.Tag,
			"user_id": p.Subject, "actor_id": p.ActorID, "auth_method": p.AuthMethod, "actor_two_factor": p.ActorTwoFactor,
			"ip": p.IP, "user_agent": p.UserAgent, "location": p.Location, "additional": p.Additional,
			"time": p.Time.Format(time.RFC3339Nano)})
		if err != nil {
			b.Fatal(err)
		}
		jsonl.Write(line)
		jsonl.WriteByte('\n')
		desc, err := bb.log.Registry().Describe(p.Tag, p.Additional)
		if err != nil {
			b.Fatal(err)
		}
		rows[i] = baselineRow(p, desc)
	}
	input := jsonl.Bytes()
	reset := func() {
		b.StopTimer()
		for _, sql := range []string{truncateEvents, "TRUNCATE import_keys, import_runs", "VACUUM ANALYZE import_keys", "CHECKPOINT"} {
			if _, err := bb.pool.Exec(bb.ctx, sql); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		b.StartTimer()
	}
	baseline := func() time.Duration {
		reset()
		start := time.Now()
		got, err := bb.pool.CopyFrom(bb.ctx, pgx.Identifier{"user_events"}, columns, pgx.CopyFromRows(rows))
		if err != nil || got != n {
			b.Fatalf("baseline copied %d: %v", got, err)
		}
		return time.Since(start)
	}
	ours := func() time.Duration {
		reset()
		start := time.Now()
		res, err := importer.JSONL(bb.ctx, bb.log, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(input)), nil },
			importer.Options{Run: "bench"})
		took := time.Since(start)
		if err != nil || res.Run.Counts.Recorded != n {
			b.Fatalf("imported %+v: %v", res, err)
		}
		return took
	}
	var our, base time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		base += baseline()
		our += ours()
		our += ours()
		base += baseline()
	}
	b.StopTimer()
	b.ReportMetric(base.Seconds()/our.Seconds(), "ratio_vs_copy")
	b.ReportMetric(float64(2*n*b.N)/our.Seconds(), "events/s")
	b.ReportMetric(float64(2*n*b.N)/base.Seconds(), "baseline_events/s")
	b.Logf("%d MB of JSON Lines", len(input)>>20)
}
