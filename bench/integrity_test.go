package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

// bulkBatch is how many events one RecordUserMany call of a bulk load
// records.
const bulkBatch = 100_000

// BenchmarkCheckpoint: 1,000,000 user events recorded through
// RecordUserMany with an integrity key (outside the timer, in batches of
// 100,000), then one Log.Checkpoint that appends all of them as leaves of
// the month's tree (salts, commitments, tree hashes, COPY of leaves and
// hashes) and signs a checkpoint, in one transaction. The backlog a
// worker that has not run for a while finds. There is no baseline: the
// metric is the rate.
//
// Metrics: events/s (leaves appended per second), seconds, and
// peak_rss_MiB (this process's peak resident memory during the
// checkpoint; Linux only). The time each query took is logged.
func BenchmarkCheckpoint(b *testing.B) {
	const n = 1_000_000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		bb, qt := setupTraced(b)
		recorded := recordBulk(b, bb, n, nil)
		exec := mustExec(b, bb.pool)
		exec("VACUUM ANALYZE")
		exec("CHECKPOINT")
		temp := tempMB(b, bb)
		runtime.GC()
		rss := resetPeakRSS()
		qt.reset()
		b.StartTimer()
		start := time.Now()
		res, err := bb.log.Checkpoint(bb.ctx)
		took := time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		queries := qt.String()
		temp = tempMB(b, bb) - temp
		var appended int64
		for _, k := range res.Appended {
			appended += k
		}
		if appended != n || len(res.Unmarked) != 0 {
			b.Fatalf("appended %v (%d unmarked), want %d", res.Appended, len(res.Unmarked), n)
		}
		b.Logf("recorded %d events in %.1f s (%.0f/s) before the timer; checkpoint: %.1f s, %.0f MB of temporary files; queries: %s",
			n, recorded.Seconds(), float64(n)/recorded.Seconds(), took.Seconds(), temp, queries)
		b.ReportMetric(float64(n)/took.Seconds(), "events/s")
		b.ReportMetric(took.Seconds(), "seconds")
		if rss {
			b.ReportMetric(peakRSS(), "peak_rss_MiB")
		}
	}
}

// BenchmarkVerify: 2,000,000 user events recorded through RecordUserMany
// with an integrity key and appended by a checkpoint after every 100,000
// (as the worker's minute checkpoints would), all outside the timer; then
// one Log.Verify over them (every leaf's commitments and hash recomputed
// from its event, the tree rebuilt, every checkpoint's signature, chain
// and roots checked, the unappended events looked for). Baseline: plain
// SHA-256 over the same leaves' canonical bytes
// (service.LeafBytesForBenchmark, checked against the signed root),
// prepared outside the timer in pages of 10,000 and hashed in the same
// process. The two alternate which goes first.
//
// Metrics: events/s (leaves verified per second), baseline_events/s,
// ratio_vs_sha256 (ours / baseline rate), seconds, peak_rss_MiB (during
// Verify; Linux only). The time each of Verify's queries took is logged.
func BenchmarkVerify(b *testing.B) {
	const n = 2_000_000
	b.StopTimer()
	bb, qt := setupTraced(b)
	exec := mustExec(b, bb.pool)
	var checkpoints time.Duration
	recorded := recordBulk(b, bb, n, func() {
		start := time.Now()
		if _, err := bb.log.Checkpoint(bb.ctx); err != nil {
			b.Fatal(err)
		}
		checkpoints += time.Since(start)
	})
	exec("VACUUM ANALYZE")
	cp, err := bb.log.LatestCheckpoint(bb.ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("recorded and appended %d events in %.1f s before the timer, %.1f s of it in the checkpoint after every %d (%.0f events/s); queries: %s",
		n, recorded.Seconds(), checkpoints.Seconds(), bulkBatch, float64(n)/checkpoints.Seconds(), qt)

	verify := func() time.Duration {
		exec("CHECKPOINT")
		temp := tempMB(b, bb)
		runtime.GC()
		rss := resetPeakRSS()
		qt.reset()
		b.StartTimer()
		start := time.Now()
		rep, err := bb.log.Verify(bb.ctx, service.VerifyOpts{})
		took := time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		queries := qt.String()
		if !rep.Clean || rep.Leaves != n || rep.Pending != 0 {
			b.Fatalf("verify: clean %v, %d leaves, %d pending, findings %v", rep.Clean, rep.Leaves, rep.Pending, rep.Findings)
		}
		if rss {
			b.ReportMetric(peakRSS(), "peak_rss_MiB")
		}
		b.Logf("verify: %.1f s, %.0f MB of temporary files; queries: %s", took.Seconds(), tempMB(b, bb)-temp, queries)
		return took
	}
	baseline := func() time.Duration {
		return sha256Leaves(b, bb, cp)
	}
	var ours, base time.Duration
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			ours += verify()
			base += baseline()
		} else {
			base += baseline()
			ours += verify()
		}
	}
	rate, baseRate := float64(n*b.N)/ours.Seconds(), float64(n*b.N)/base.Seconds()
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(baseRate, "baseline_events/s")
	b.ReportMetric(rate/baseRate, "ratio_vs_sha256")
	b.ReportMetric(ours.Seconds()/float64(b.N), "seconds")
}

// sha256Leaves reads every leaf of cp's only tree with its event, builds
// its canonical bytes outside the timer, and returns how long plain
// SHA-256 over them took. It stops the benchmark unless the bytes hash to
// the root cp signs, so the baseline hashes exactly what Verify does.
func sha256Leaves(b *testing.B, bb *benchBundle, cp *service.Checkpoint) time.Duration {
	b.Helper()
	var head service.TreeHead
	for _, t := range cp.Trees {
		if t.Size > 0 {
			head = t
		}
	}
	rows, err := bb.pool.Query(bb.ctx, `SELECT l.n, l.salts, e.id, e.time, e.tag, e.user_id, e.actor_id, e.auth_method,
			e.token_id, e.actor_two_factor, e.ip, e.user_agent, e.location, e.description, e.additional
		FROM integrity_leaves l JOIN user_events e ON e.id = l.event_id
		WHERE l.tree = $1 ORDER BY l.n`, head.Tree)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var (
		took   time.Duration
		sink   [sha256.Size]byte
		stored []tlog.Hash // the tree rebuilt from the bytes, to check them
		page   = make([][]byte, 0, 10_000)
		count  int64
	)
	mem := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	hashPage := func() {
		b.StartTimer()
		start := time.Now()
		for _, data := range page {
			h := sha256.Sum256(data)
			sink[0] ^= h[0]
		}
		took += time.Since(start)
		b.StopTimer()
		for _, data := range page {
			more, err := tlog.StoredHashesForRecordHash(count, tlog.RecordHash(data), mem)
			if err != nil {
				b.Fatal(err)
			}
			stored = append(stored, more...)
			count++
		}
		page = page[:0]
	}
	for rows.Next() {
		var (
			leaf                          int64
			salts                         []byte
			e                             = service.Event{Model: service.ModelUser}
			actor, auth, token, userAgent *string
			ip                            *netip.Addr
			location                      json.RawMessage
			additional                    json.RawMessage
		)
		if err := rows.Scan(&leaf, &salts, &e.ID, &e.Time, &e.Tag, &e.UserID, &actor, &auth, &token, &e.ActorTwoFactor,
			&ip, &userAgent, &location, &e.Description, &additional); err != nil {
			b.Fatal(err)
		}
		e.Time = e.Time.UTC()
		e.ActorID, e.AuthMethod, e.TokenID, e.UserAgent = deref(actor), deref(auth), deref(token), deref(userAgent)
		if ip != nil {
			e.IP = *ip
		}
		if len(location) > 0 {
			e.Location = &service.Location{}
			if err := json.Unmarshal(location, e.Location); err != nil {
				b.Fatal(err)
			}
		}
		e.Additional = additional
		page = append(page, service.LeafBytesForBenchmark(&e, salts))
		if len(page) == cap(page) {
			hashPage()
		}
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	hashPage()
	if count != head.Size {
		b.Fatalf("read %d leaves, the checkpoint signs %d", count, head.Size)
	}
	if root, err := tlog.TreeHash(count, mem); err != nil || root != head.Root {
		b.Fatalf("the baseline's bytes hash to %v (%v), the checkpoint signs %v", root, err, head.Root)
	}
	runtime.KeepAlive(sink)
	return took
}

// tempMB is how many MB of temporary files (sorts, hashes spilled to
// disk) bb's database has written, by pg_stat_database. It closes the
// pool's connections first, so their backends report what they wrote.
func tempMB(b *testing.B, bb *benchBundle) float64 {
	b.Helper()
	bb.pool.Reset()
	time.Sleep(500 * time.Millisecond)
	var written int64
	if err := bb.pool.QueryRow(bb.ctx, "SELECT temp_bytes FROM pg_stat_database WHERE datname = current_database()").Scan(&written); err != nil {
		b.Fatal(err)
	}
	return float64(written) / 1e6
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// recordBulk records n events into bb's Log through RecordUserMany in
// batches of bulkBatch, each of different events, calling after (when not
// nil) after each batch. It returns how long that took.
func recordBulk(b *testing.B, bb *benchBundle, n int, after func()) time.Duration {
	b.Helper()
	start := time.Now()
	for k := 0; k < n; k += bulkBatch {
		ps := seededEvents(min(bulkBatch, n-k), bb.now, uint64(k/bulkBatch+1))
		if got, err := bb.log.RecordUserMany(bb.ctx, ps); err != nil || got != int64(len(ps)) {
			b.Fatalf("recorded %d of %d: %v", got, len(ps), err)
		}
		if after != nil {
			after()
		}
	}
	return time.Since(start)
}

// setupTraced is setupWith(b, integrityOpts(b)) on a pool whose queries
// are timed.
func setupTraced(b *testing.B) (*benchBundle, *queryTimes) {
	b.Helper()
	qt := &queryTimes{}
	pool := dbtest.PoolWith(b, func(c *pgxpool.Config) { c.ConnConfig.Tracer = qt })
	log := dbtest.Must(service.New(pool, integrityOpts(b)))
	return &benchBundle{ctx: context.Background(), pool: pool, log: log, now: time.Now().UTC()}, qt
}

// queryTimes is a pgx tracer that adds up the time of each query (by its
// sqlc name) and COPY (by its table), from sending it to the last row
// read.
type queryTimes struct {
	mu    sync.Mutex
	took  map[string]time.Duration
	calls map[string]int
}

type queryStart struct {
	name string
	at   time.Time
}

type queryStartKey struct{}

func (q *queryTimes) start(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, queryStartKey{}, queryStart{name: name, at: time.Now()})
}

func (q *queryTimes) end(ctx context.Context) {
	s, ok := ctx.Value(queryStartKey{}).(queryStart)
	if !ok {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.took == nil {
		q.took, q.calls = map[string]time.Duration{}, map[string]int{}
	}
	q.took[s.name] += time.Since(s.at)
	q.calls[s.name]++
}

func (q *queryTimes) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	name, _, _ := strings.Cut(strings.TrimSpace(d.SQL), "\n")
	if rest, ok := strings.CutPrefix(name, "-- name: "); ok {
		name, _, _ = strings.Cut(rest, " ")
	} else if len(name) > 40 {
		name = name[:40]
	}
	return q.start(ctx, name)
}

func (q *queryTimes) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	q.end(ctx)
}

func (q *queryTimes) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceCopyFromStartData) context.Context {
	return q.start(ctx, "COPY "+d.TableName.Sanitize())
}

func (q *queryTimes) TraceCopyFromEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromEndData) {
	q.end(ctx)
}

func (q *queryTimes) reset() {
	q.mu.Lock()
	q.took, q.calls = nil, nil
	q.mu.Unlock()
}

// String lists the queries that took longest first.
func (q *queryTimes) String() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	names := make([]string, 0, len(q.took))
	for name := range q.took {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { return int(q.took[b] - q.took[a]) })
	var out []string
	for _, name := range names {
		out = append(out, fmt.Sprintf("%s %.2f s (%d×)", name, q.took[name].Seconds(), q.calls[name]))
	}
	return strings.Join(out, ", ")
}

// resetPeakRSS resets this process's peak resident set size, so peakRSS
// tells what came after; false where the kernel does not offer it
// (Linux's /proc/self/clear_refs).
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// peakRSS is this process's peak resident set size in MiB (VmHWM), 0 when
// unknown.
func peakRSS() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
