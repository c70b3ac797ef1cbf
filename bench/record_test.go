package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

// events returns n realistic user events dated inside the current month,
// before now.
func events(n int, now time.Time) []service.EventParams { return seededEvents(n, now, 1) }

// seededEvents is events from the random sequence seed names: a bulk load
// records batches of different events with one batch's memory.
func seededEvents(n int, now time.Time, seed uint64) []service.EventParams {
	rng := rand.New(rand.NewPCG(seed, 2))
	monthStart := dbtest.MonthStart(now)
	span := now.Sub(monthStart)
	tags := []struct {
		tag string
		add json.RawMessage
	}{
		{"account:login:success", nil},
		{"account:login:failure", json.RawMessage(`{"reason":"bad password"}`)},
		{"account:api_token:added", json.RawMessage(`{"token_name":"ci-upload","scopes":["upload"]}`)},
		{"account:two_factor:method_added", json.RawMessage(`{"method":"webauthn","label":"YubiKey 5"}`)},
	}
	out := make([]service.EventParams, n)
	yes := true
	for i := range out {
		t := tags[rng.IntN(len(tags))]
		user := fmt.Sprintf("user-%d", rng.IntN(10000))
		out[i] = service.EventParams{
			Tag: t.tag, Subject: user, ActorID: user, AuthMethod: "webauthn", ActorTwoFactor: &yes,
			Time:       monthStart.Add(time.Duration(rng.Int64N(int64(span)))),
			IP:         netip.AddrFrom4([4]byte{10, byte(rng.IntN(256)), byte(rng.IntN(256)), byte(1 + rng.IntN(254))}).String(),
			UserAgent:  "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
			Location:   &service.Location{Country: "DE", Region: "Berlin", City: "Berlin"},
			Additional: t.add,
		}
	}
	return out
}

// baselineRow is what a hand-written INSERT or COPY would send for p: the
// same values auditlog stores, prepared outside the timed region.
func baselineRow(p *service.EventParams, description string) []any {
	ip := netip.MustParseAddr(p.IP)
	loc, _ := json.Marshal(p.Location)
	add := p.Additional
	if add == nil {
		add = json.RawMessage(`{}`)
	}
	return []any{p.Time.UTC().Truncate(time.Microsecond), p.Tag, p.Subject, p.ActorID, p.AuthMethod, nil,
		*p.ActorTwoFactor, ip, p.UserAgent, loc, description, add}
}

var columns = []string{"time", "tag", "user_id", "actor_id", "auth_method", "token_id",
	"actor_two_factor", "ip", "user_agent", "location", "description", "additional"}

const bareInsert = `INSERT INTO user_events (time, tag, user_id, actor_id, auth_method, token_id,
	actor_two_factor, ip, user_agent, location, description, additional)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`

type benchBundle struct {
	ctx  context.Context
	pool *pgxpool.Pool
	log  *service.Log
	now  time.Time
}

func setup(b *testing.B) *benchBundle { return setupWith(b, nil) }

// setupWith is setup with the Log built with opts (nil: the defaults).
func setupWith(b *testing.B, opts *service.Opts) *benchBundle {
	b.Helper()
	pool := dbtest.Pool(b)
	return &benchBundle{ctx: context.Background(), pool: pool, log: dbtest.Must(service.New(pool, opts)), now: time.Now().UTC()}
}

// integrityOpts returns Opts with a fresh integrity key: every event the
// Log records gets its record mark (an HMAC), and Checkpoint can append.
func integrityOpts(b *testing.B) *service.Opts {
	b.Helper()
	file, _, err := service.GenerateIntegrityKey("bench.test")
	if err != nil {
		b.Fatal(err)
	}
	return &service.Opts{Integrity: dbtest.Must(service.ParseIntegrityKey(file))}
}

// BenchmarkRecordTx: one event per transaction through RecordUserTx versus
// a bare hand-written INSERT of the same row in its own transaction. The
// two alternate (and swap which goes first), so both see the same table
// size and machine state.
func BenchmarkRecordTx(b *testing.B) { benchRecordTx(b, nil) }

// BenchmarkRecordTxIntegrity is BenchmarkRecordTx with the Log built with
// an integrity key, so each event also gets its record mark (HMAC-SHA256
// over its fixed fields, stored in mac). The baseline is the same bare
// INSERT, which computes no mark.
func BenchmarkRecordTxIntegrity(b *testing.B) { benchRecordTx(b, integrityOpts(b)) }

// benchRecordTx runs BenchmarkRecordTx with the Log built with opts.
func benchRecordTx(b *testing.B, opts *service.Opts) {
	bb := setupWith(b, opts)
	ps := events(4096, bb.now)
	rows := make([][]any, len(ps))
	for i := range ps {
		desc, err := bb.log.Registry().Describe(ps[i].Tag, ps[i].Additional)
		if err != nil {
			b.Fatal(err)
		}
		rows[i] = baselineRow(&ps[i], desc)
	}
	baseline := func(k int) time.Duration {
		start := time.Now()
		tx, err := bb.pool.Begin(bb.ctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tx.Exec(bb.ctx, bareInsert, rows[k]...); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(bb.ctx); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	auditlog := func(k int) time.Duration {
		start := time.Now()
		tx, err := bb.pool.Begin(bb.ctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := bb.log.RecordUserTx(bb.ctx, tx, ps[k]); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(bb.ctx); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	var ours, base time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i % len(ps)
		if i%2 == 0 {
			base += baseline(k)
			ours += auditlog(k)
		} else {
			ours += auditlog(k)
			base += baseline(k)
		}
	}
	b.StopTimer()
	requireMarks(b, bb, opts)
	b.ReportMetric(float64(ours)/float64(base), "ratio_vs_insert")
	b.ReportMetric(float64(b.N)/ours.Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/base.Seconds(), "baseline_events/s")
}

// BenchmarkRecordMany: 100,000 events through RecordUserMany (validation,
// description rendering, COPY) versus raw pgx CopyFrom of the same rows
// into the same table, twice each per iteration (base, ours, ours, base).
func BenchmarkRecordMany(b *testing.B) { benchRecordMany(b, nil) }

// BenchmarkRecordManyIntegrity is BenchmarkRecordMany with the Log built
// with an integrity key: each event's record mark is computed and copied
// with it. The baseline is the same raw COPY, which computes no mark.
func BenchmarkRecordManyIntegrity(b *testing.B) { benchRecordMany(b, integrityOpts(b)) }

// benchRecordMany runs BenchmarkRecordMany with the Log built with opts.
func benchRecordMany(b *testing.B, opts *service.Opts) {
	const n = 100_000
	bb := setupWith(b, opts)
	ps := events(n, bb.now)
	rows := make([][]any, n)
	for i := range ps {
		desc, err := bb.log.Registry().Describe(ps[i].Tag, ps[i].Additional)
		if err != nil {
			b.Fatal(err)
		}
		rows[i] = baselineRow(&ps[i], desc)
	}
	// Each arm starts from an empty table right after a checkpoint and a
	// garbage collection, so neither pays for the other's dirty pages or
	// garbage; the arms alternate which
	// goes first.
	reset := func() {
		b.StopTimer()
		if _, err := bb.pool.Exec(bb.ctx, truncateEvents); err != nil {
			b.Fatal(err)
		}
		if _, err := bb.pool.Exec(bb.ctx, "CHECKPOINT"); err != nil {
			b.Fatal(err)
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
	auditlog := func() time.Duration {
		reset()
		start := time.Now()
		got, err := bb.log.RecordUserMany(bb.ctx, ps)
		took := time.Since(start)
		if err != nil || got != n {
			b.Fatalf("recorded %d: %v", got, err)
		}
		b.StopTimer()
		requireMarks(b, bb, opts)
		b.StartTimer()
		return took
	}
	var ours, base time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		base += baseline()
		ours += auditlog()
		ours += auditlog()
		base += baseline()
	}
	b.StopTimer()
	b.ReportMetric(base.Seconds()/ours.Seconds(), "ratio_vs_copy")
	b.ReportMetric(float64(2*n*b.N)/ours.Seconds(), "events/s")
	b.ReportMetric(float64(2*n*b.N)/base.Seconds(), "baseline_events/s")
}

// requireMarks stops the benchmark unless the Log's rows in user_events
// carry record marks exactly when opts has an integrity key (the
// baseline's rows never do).
func requireMarks(b *testing.B, bb *benchBundle, opts *service.Opts) {
	b.Helper()
	var marked int
	if err := bb.pool.QueryRow(bb.ctx, "SELECT count(mac) FROM user_events").Scan(&marked); err != nil {
		b.Fatal(err)
	}
	if want := opts != nil && opts.Integrity != nil; (marked > 0) != want {
		b.Fatalf("%d rows with a record mark; integrity on: %v", marked, want)
	}
}

// truncateEvents empties user_events between runs, as the benchmark's
// owner of a throwaway database: the append-only trigger refuses TRUNCATE,
// so it runs with triggers off (session_replication_role = replica) and
// puts the setting back.
const truncateEvents = "SET session_replication_role = replica; TRUNCATE user_events; RESET session_replication_role"
