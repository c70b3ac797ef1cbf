package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
	"github.com/auditlog/auditlog/web"
)

// BenchmarkUserView10M: the newest-50 page of one person's security
// history, on 10,000,000 user events over 4 monthly partitions and 50,000
// people (about 200 events each).
//
//   - p50_ms, p99_ms: GET /api/v1/me/events through the whole handler (token
//     check, the page query, the failed-sign-in count, read-time rendering
//     of the descriptions that name an account with the host's display
//     names, JSON) on an in-process httptest server, for a person picked at
//     random each time, in the package-index catalog; names_per_page is how
//     many accounts a page resolved;
//   - ratio_vs_warehouse: the page query alone, ours (service.UserEvents)
//     against the same newest-50 query on a Warehouse-style table (one
//     unpartitioned table with the same rows, indexed on the subject only),
//     for the same people in the same order: baseline time / ours.
func BenchmarkUserView10M(b *testing.B) {
	const (
		total, people = 10_000_000, 50_000
		requests      = 2_000
	)
	ctx := context.Background()
	pool := dbtest.Pool(b)
	exec := mustExec(b, pool)
	now := time.Now().UTC()
	first := dbtest.MonthStart(now).AddDate(0, -3, 0)
	from := maxTime(first, now.Add(-service.DefaultRetention).Add(time.Hour)) // inside the window
	span := now.Sub(from).Microseconds()
	exec(`INSERT INTO user_events (time, tag, user_id, actor_id, auth_method, ip, user_agent, location, description, additional)
		SELECT $1::timestamptz + make_interval(secs => ((g - 1)::numeric * $3::bigint / $2::bigint) / 1e6),
		       CASE WHEN g % 10 = 0 THEN 'account:login:failure' WHEN g % 10 = 5 THEN 'account:role:add' ELSE 'account:login:success' END,
		       'user-' || (g % $4::int), 'user-' || (g % $4::int), 'password',
		       ('10.' || (g % 250) || '.' || (g / 250 % 250) || '.7')::inet,
		       'Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0',
		       '{"country": "DE", "city": "Berlin"}',
		       CASE WHEN g % 10 = 0 THEN 'Sign-in failed: incorrect password'
		            WHEN g % 10 = 5 THEN 'Became Maintainer of the project p-' || (g % 977) || ' (added by user-' || (g % 9973) || ')'
		            ELSE 'Signed in' END,
		       CASE WHEN g % 10 = 0 THEN '{"reason": "invalid_password"}'::jsonb
		            WHEN g % 10 = 5 THEN jsonb_build_object('role_name', 'Maintainer', 'project_name', 'p-' || (g % 977), 'submitted_by', 'user-' || (g % 9973))
		            ELSE '{}'::jsonb END
		FROM generate_series(1, $2::bigint) g`, from, total, span, people)
	exec(warehouseTableSQL)
	exec(warehouseCopySQL, from, now.Add(time.Hour))
	exec(`CREATE INDEX ON warehouse_user_events (user_id)`)
	exec(`VACUUM ANALYZE`)
	if parts := dbtest.Count(b, pool, `SELECT count(DISTINCT tableoid) FROM user_events`); parts < 4 {
		b.Fatalf("events span %d partitions, want 4", parts)
	}

	secret := []byte("benchmark secret, 32 bytes long!")
	// The package-index catalog, and display names from the host (an
	// in-memory directory here): a tenth of the events name an account,
	// rendered again at read time with its display name.
	catalog, err := service.BuiltinCatalog("package-index")
	if err != nil {
		b.Fatal(err)
	}
	reg, err := catalog.Registry()
	if err != nil {
		b.Fatal(err)
	}
	log := dbtest.Must(service.New(pool, &service.Opts{Registry: reg}))
	var renamed atomic.Int64
	h, err := web.New(web.Options{Log: log, Secret: secret, DisplayNames: func(_ context.Context, accounts []string) (map[string]string, error) {
		out := make(map[string]string, len(accounts))
		for _, a := range accounts {
			out[a] = "Person " + a
		}
		renamed.Add(int64(len(accounts)))
		return out, nil
	}})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	users := make([]string, requests)
	tokens := make([]string, requests)
	for i := range users {
		users[i] = fmt.Sprintf("user-%d", rng.IntN(people))
		if tokens[i], err = web.MintViewerToken(secret, web.Viewer{UserID: users[i]}, now, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	get := func(i int) {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/me/events", nil)
		req.Header.Set("Authorization", "Bearer "+tokens[i])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	warehouse := func(user string) {
		rows, err := pool.Query(ctx, `SELECT id, time, tag, user_id, actor_id, auth_method, token_id, actor_two_factor,
				ip, user_agent, location, description, additional
			FROM warehouse_user_events WHERE user_id = $1 AND time >= $2
			ORDER BY time DESC LIMIT 51`, user, now.Add(-service.DefaultRetention))
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		if rows.Err() != nil || n != 51 {
			b.Fatalf("warehouse page: %d rows, %v", n, rows.Err())
		}
	}
	ours := func(user string) {
		p, err := log.UserEvents(ctx, user, service.ListOpts{})
		if err != nil || len(p.Events) != web.PageSize {
			b.Fatalf("our page: %d events, %v", len(p.Events), err)
		}
	}
	// Warm both tables' indexes the same way before measuring.
	for i := range 200 {
		ours(users[i])
		warehouse(users[i])
		get(i)
	}

	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		lat := make([]time.Duration, requests)
		renamed.Store(0)
		for i := range requests {
			start := time.Now()
			get(i)
			lat[i] = time.Since(start)
		}
		slices.Sort(lat)
		named := renamed.Load()
		var oursQ, baseQ time.Duration
		for i, u := range users {
			// Alternate which goes first, so neither always finds the
			// other's pages in the cache.
			for k := range 2 {
				start := time.Now()
				if (i+k)%2 == 0 {
					ours(u)
					oursQ += time.Since(start)
				} else {
					warehouse(u)
					baseQ += time.Since(start)
				}
			}
		}
		b.ReportMetric(ms(lat[len(lat)/2]), "p50_ms")
		b.ReportMetric(ms(lat[len(lat)*99/100]), "p99_ms")
		b.ReportMetric(float64(named)/requests, "names_per_page")
		b.ReportMetric(ms(oursQ/requests), "ours_query_ms")
		b.ReportMetric(ms(baseQ/requests), "warehouse_query_ms")
		b.ReportMetric(baseQ.Seconds()/oursQ.Seconds(), "ratio_vs_warehouse")
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
