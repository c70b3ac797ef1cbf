package warehousetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// FillOpts says how much history Fill writes and where it lies in time.
// Zero values take the defaults noted.
type FillOpts struct {
	Events   int // events over all five tables (required, > 0)
	Users    int // default max(10, Events/50)
	Projects int // default max(5, Events/200); each has 3 releases of 2 files
	Orgs     int // default max(2, Events/2000); each has 3 teams
	IPs      int // rows of ip_addresses; default max(20, min(20000, Events/100))
	Workers  int // connections writing events at once; default 2

	// OldFraction is the share of each user-event tag dated before Cutoff
	// (default 1/3; set NoOld for none).
	OldFraction float64
	NoOld       bool
	Cutoff      time.Time // default Now minus 90 days
	Now         time.Time // default time.Now(); every event is before it
	Since       time.Time // earliest event; default Now minus 8 years

	Seed uint64 // same seed and options, same rows (ids included)
}

// Counts is what Fill wrote.
type Counts struct {
	Events map[string]int            // table → rows
	Tags   map[string]map[string]int // table → tag → rows
	// Old is table → tag → rows whose time is before Cutoff. User events
	// get OldFraction of each tag; the other tables are spread evenly over
	// Since..Now, so their share is (Cutoff-Since)/(Now-Since).
	Old  map[string]map[string]int
	NoIP map[string]int // table → rows with no ip_address_id

	IPAddresses, BannedIPs, IPsWithoutGeo int
	Users, Projects, Releases, Files      int
	Orgs, Teams                           int

	Cutoff, Now, Since time.Time // as used (UTC, whole microseconds)
}

// Total is the number of events over all tables.
func (c Counts) Total() int {
	n := 0
	for _, v := range c.Events {
		n += v
	}
	return n
}

// UserOld is the user events dated before Cutoff, per tag.
func (c Counts) UserOld() map[string]int { return c.Old["user_events"] }

// OldTotal is the number of rows of table dated before Cutoff.
func (c Counts) OldTotal(table string) int {
	n := 0
	for _, v := range c.Old[table] {
		n += v
	}
	return n
}

// noIPEvery: every event whose row number (1-based, per table) is a
// multiple of it has no IP address, like Warehouse's events from before
// IPs were tracked.
const noIPEvery = 50

// tableShare splits Events between the tables.
var tableShare = map[string]float64{
	"user_events":         0.60,
	"project_events":      0.15,
	"file_events":         0.20,
	"organization_events": 0.03,
	"team_events":         0.02,
}

// sourceTable is the temporary table Fill draws each event table's
// source rows from.
var sourceTable = map[string]string{
	"user_events":         "warehousetest_fill.u",
	"project_events":      "warehousetest_fill.p",
	"file_events":         "warehousetest_fill.f",
	"organization_events": "warehousetest_fill.o",
	"team_events":         "warehousetest_fill.t",
}

func (o *FillOpts) defaults() error {
	if o.Events <= 0 {
		return errors.New("warehousetest: FillOpts.Events must be positive")
	}
	if o.Users <= 0 {
		o.Users = max(10, o.Events/50)
	}
	if o.Projects <= 0 {
		o.Projects = max(5, o.Events/200)
	}
	if o.Orgs <= 0 {
		o.Orgs = max(2, o.Events/2000)
	}
	if o.IPs <= 0 {
		o.IPs = max(20, min(20000, o.Events/100))
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.OldFraction == 0 && !o.NoOld {
		o.OldFraction = 1.0 / 3
	}
	if o.NoOld {
		o.OldFraction = 0
	}
	if o.OldFraction < 0 || o.OldFraction > 1 {
		return fmt.Errorf("warehousetest: OldFraction %v outside [0, 1]", o.OldFraction)
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	o.Now = o.Now.UTC().Truncate(time.Microsecond)
	if o.Cutoff.IsZero() {
		o.Cutoff = o.Now.AddDate(0, 0, -90)
	}
	o.Cutoff = o.Cutoff.UTC().Truncate(time.Microsecond)
	if o.Since.IsZero() {
		o.Since = o.Now.AddDate(-8, 0, 0)
	}
	o.Since = o.Since.UTC().Truncate(time.Microsecond)
	if !o.Since.Before(o.Cutoff) || !o.Cutoff.Before(o.Now) {
		return fmt.Errorf("warehousetest: want Since < Cutoff < Now, have %s, %s, %s", o.Since, o.Cutoff, o.Now)
	}
	return nil
}

// Fill writes parents, IP addresses and o.Events events into a database
// CreateSchema prepared, once. It keeps its working tables in a schema
// warehousetest_fill, dropped before it returns, and writes the event
// tables on o.Workers connections of pool at once.
func Fill(ctx context.Context, pool *pgxpool.Pool, o FillOpts) (Counts, error) {
	if err := o.defaults(); err != nil {
		return Counts{}, err
	}
	c := Counts{
		Events: map[string]int{}, Tags: map[string]map[string]int{},
		Old: map[string]map[string]int{}, NoIP: map[string]int{},
		Cutoff: o.Cutoff, Now: o.Now, Since: o.Since,
	}
	if _, err := pool.Exec(ctx, "CREATE SCHEMA warehousetest_fill"); err != nil {
		return c, fmt.Errorf("warehousetest: %w", err)
	}
	defer func() {
		_, _ = pool.Exec(context.WithoutCancel(ctx), "DROP SCHEMA IF EXISTS warehousetest_fill CASCADE")
	}()
	if err := fillParents(ctx, pool, o, &c); err != nil {
		return c, err
	}
	shares := make([]float64, len(Tables))
	for i, t := range Tables {
		shares[i] = tableShare[t]
	}
	var jobs []job
	for i, n := range allocate(o.Events, shares) {
		jobs = append(jobs, planTable(o, &c, Tables[i], n)...)
	}
	sort.SliceStable(jobs, func(i, j int) bool { return jobs[i].rows > jobs[j].rows })
	if err := run(ctx, pool, o.Workers, jobs); err != nil {
		return c, err
	}
	if _, err := pool.Exec(ctx, "ANALYZE ip_addresses, users, projects, releases, release_files, organizations, teams, "+strings.Join(Tables, ", ")); err != nil {
		return c, err
	}
	return c, nil
}

// job is one INSERT … SELECT of events.
type job struct {
	what string
	rows int64
	sql  string
	args []any
}

// run runs jobs on up to workers connections at once, biggest first.
func run(ctx context.Context, pool *pgxpool.Pool, workers int, jobs []job) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	queue := make(chan job, len(jobs))
	for _, j := range jobs {
		queue <- j
	}
	close(queue)
	errs := make(chan error, workers)
	for range workers {
		go func() {
			for j := range queue {
				if ctx.Err() != nil {
					break
				}
				if _, err := pool.Exec(ctx, j.sql, j.args...); err != nil {
					cancel()
					errs <- fmt.Errorf("warehousetest: %s: %w", j.what, err)
					return
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range workers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// seedArg is the seed as the bigint hashint8extended takes.
func seedArg(s uint64) int64 { return int64(s) }

// hashes selects g.i and h0..h7, eight independent hashes of it.
const hashes = `SELECT i, hashint8extended(i*8, $1::bigint) h0, hashint8extended(i*8+1, $1::bigint) h1,
	hashint8extended(i*8+2, $1::bigint) h2, hashint8extended(i*8+3, $1::bigint) h3,
	hashint8extended(i*8+4, $1::bigint) h4, hashint8extended(i*8+5, $1::bigint) h5,
	hashint8extended(i*8+6, $1::bigint) h6, hashint8extended(i*8+7, $1::bigint) h7`

func fillParents(ctx context.Context, conn *pgxpool.Pool, o FillOpts, c *Counts) error {
	since, span := o.Since, o.Now.Sub(o.Since).Microseconds()
	seed := seedArg(o.Seed)
	steps := []struct {
		sql  string
		args []any
	}{
		{`CREATE UNLOGGED TABLE warehousetest_fill.ip (n int PRIMARY KEY, id uuid, geoip_info jsonb)`, nil},
		{`CREATE UNLOGGED TABLE warehousetest_fill.u (n int PRIMARY KEY, id uuid, username text)`, nil},
		{`CREATE UNLOGGED TABLE warehousetest_fill.p (n int PRIMARY KEY, id uuid, name text, created timestamp)`, nil},
		{`CREATE UNLOGGED TABLE warehousetest_fill.r (n int PRIMARY KEY, id uuid, project_id uuid, project_name text, version text, created timestamp)`, nil},
		{`CREATE UNLOGGED TABLE warehousetest_fill.f (n int PRIMARY KEY, id uuid, release_id uuid, project_id uuid, project_name text, version text, filename text, packagetype text, created timestamp)`, nil},
		{`CREATE UNLOGGED TABLE warehousetest_fill.o (n int PRIMARY KEY, id uuid, name text)`, nil},
		{`CREATE UNLOGGED TABLE warehousetest_fill.t (n int PRIMARY KEY, id uuid, name text, organization_id uuid, org_name text)`, nil},

		// IP addresses: one in seven IPv6 (documentation prefix), the rest
		// spread over 81.0.0.0/8 and beyond; one in twenty without GeoIP.
		{`INSERT INTO warehousetest_fill.ip (n, id, geoip_info)
		  SELECT g.i, md5($1::bigint::text || ':ip:' || g.i)::uuid,
		         CASE WHEN g.i % 20 = 0 THEN NULL ELSE
		           (SELECT jsonb_strip_nulls(to_jsonb(x)) FROM (SELECT c.city, c.region, c.country_code, c.country_code3,
		                   c.country_name, c.continent_code, c.latitude, c.longitude) x) END
		  FROM (` + hashes + ` FROM generate_series(1, $2::bigint) i) g
		  JOIN (` + citiesSQL() + `) c ON c.k = abs(g.h0 % ` + fmt.Sprint(len(cities)) + `)`,
			[]any{seed, o.IPs}},
		{`INSERT INTO ip_addresses (id, ip_address, hashed_ip_address, geoip_info, is_banned, ban_reason, ban_date)
		  SELECT w.id, a.ip, encode(sha256(convert_to(host(a.ip) || ':' || $1::bigint::text, 'UTF8')), 'hex'), w.geoip_info,
		         w.n % 97 = 0,
		         CASE WHEN w.n % 97 = 0 THEN (CASE WHEN w.n % 2 = 0 THEN 'administrative' ELSE 'authentication-attempts' END)::banreason END,
		         CASE WHEN w.n % 97 = 0 THEN $2::timestamp + (abs(hashint8extended(w.n, $1::bigint) % $3::bigint)) * interval '1 microsecond' END
		  FROM warehousetest_fill.ip w,
		  LATERAL (SELECT CASE WHEN w.n % 7 = 0 THEN '2001:db8::'::inet + (w.n::bigint * 65537)
		                       ELSE '81.0.0.0'::inet + ((w.n::bigint * 7919) % 2130706432) END AS ip) a`,
			[]any{seed, since, span}},

		{`INSERT INTO warehousetest_fill.u (n, id, username)
		  SELECT g.i, md5($1::bigint::text || ':user:' || g.i)::uuid,
		         ` + pick("h0", firstNames...) + ` || ` + pick("h1", ".", "-", "_", "") + ` || ` + pick("h2", lastNames...) + ` || g.i
		  FROM (` + hashes + ` FROM generate_series(1, $2::bigint) i) g`, []any{seed, o.Users}},
		{`INSERT INTO users (id, username, name, date_joined)
		  SELECT id, username, initcap(regexp_replace(username, '[._-]|[0-9]+$', ' ', 'g')),
		         $1::timestamp + (abs(hashint8extended(n, 7) % $2::bigint)) * interval '1 microsecond'
		  FROM warehousetest_fill.u`, []any{since, span}},

		{`INSERT INTO warehousetest_fill.p (n, id, name, created)
		  SELECT g.i, md5($1::bigint::text || ':project:' || g.i)::uuid,
		         ` + pick("h0", projectWords...) + ` || ` + pick("h1", "-", "_", "") + ` || ` + pick("h2", projectWords2...) + ` || '-' || g.i,
		         $2::timestamp + (abs(g.h3 % $3::bigint)) * interval '1 microsecond'
		  FROM (` + hashes + ` FROM generate_series(1, $4::bigint) i) g`, []any{seed, since, span, o.Projects}},
		{`INSERT INTO projects (id, name, created) SELECT id, name, created FROM warehousetest_fill.p`, nil},
		{`INSERT INTO warehousetest_fill.r (n, id, project_id, project_name, version, created)
		  SELECT (p.n - 1) * 3 + r, md5($1::bigint::text || ':release:' || p.n || ':' || r)::uuid, p.id, p.name,
		         (r - 1) || '.' || (p.n % 13) || '.' || (p.n % 5), p.created + r * interval '17 days'
		  FROM warehousetest_fill.p p, generate_series(1, 3) r`, []any{seed}},
		{`INSERT INTO releases (id, project_id, version, canonical_version, created)
		  SELECT id, project_id, version, regexp_replace(version, '(\.0)+$', ''), created FROM warehousetest_fill.r`, nil},
		{`INSERT INTO warehousetest_fill.f (n, id, release_id, project_id, project_name, version, filename, packagetype, created)
		  SELECT (r.n - 1) * 2 + k, md5($1::bigint::text || ':file:' || r.n || ':' || k)::uuid, r.id, r.project_id, r.project_name, r.version,
		         CASE WHEN k = 1 THEN lower(regexp_replace(r.project_name, '[-_.]+', '_', 'g')) || '-' || r.version || '.tar.gz'
		              ELSE regexp_replace(r.project_name, '[-_.]+', '_', 'g') || '-' || r.version || '-py3-none-any.whl' END,
		         CASE WHEN k = 1 THEN 'sdist' ELSE 'bdist_wheel' END, r.created
		  FROM warehousetest_fill.r r, generate_series(1, 2) k`, []any{seed}},
		{`INSERT INTO release_files (id, release_id, packagetype, filename, upload_time)
		  SELECT id, release_id, packagetype, filename, created FROM warehousetest_fill.f`, nil},

		{`INSERT INTO warehousetest_fill.o (n, id, name)
		  SELECT g.i, md5($1::bigint::text || ':org:' || g.i)::uuid,
		         ` + pick("h0", orgWords...) + ` || ` + pick("h1", "-", "") + ` || ` + pick("h2", orgSuffixes...) + ` || g.i
		  FROM (` + hashes + ` FROM generate_series(1, $2::bigint) i) g`, []any{seed, o.Orgs}},
		{`INSERT INTO organizations (id, name, display_name, is_active, created)
		  SELECT id, name, initcap(regexp_replace(name, '-|[0-9]+$', ' ', 'g')), n % 10 <> 0,
		         $1::timestamp + (abs(hashint8extended(n, 11) % $2::bigint)) * interval '1 microsecond' FROM warehousetest_fill.o`,
			[]any{since, span}},
		{`INSERT INTO warehousetest_fill.t (n, id, name, organization_id, org_name)
		  SELECT (o.n - 1) * 3 + k, md5($1::bigint::text || ':team:' || o.n || ':' || k)::uuid,
		         (ARRAY['Maintainers', 'Release Managers', 'Core Developers'])[k], o.id, o.name
		  FROM warehousetest_fill.o o, generate_series(1, 3) k`, []any{seed}},
		{`INSERT INTO teams (id, name, organization_id, created)
		  SELECT t.id, t.name, t.organization_id, o.created FROM warehousetest_fill.t t JOIN organizations o ON o.id = t.organization_id`, nil},
		{`ANALYZE warehousetest_fill.ip, warehousetest_fill.u, warehousetest_fill.p, warehousetest_fill.r, warehousetest_fill.f, warehousetest_fill.o, warehousetest_fill.t`, nil},
	}
	for _, s := range steps {
		if _, err := conn.Exec(ctx, s.sql, s.args...); err != nil {
			return fmt.Errorf("warehousetest: %s: %w", firstLine(s.sql), err)
		}
	}
	c.IPAddresses = o.IPs
	c.BannedIPs = o.IPs / 97
	c.IPsWithoutGeo = o.IPs / 20
	c.Users, c.Projects, c.Releases, c.Files = o.Users, o.Projects, o.Projects*3, o.Projects*6
	c.Orgs, c.Teams = o.Orgs, o.Orgs*3
	return nil
}

// planTable records in c and returns the jobs that write n events into
// table: each tag gets its share, split at the cutoff, one INSERT … SELECT
// per side.
func planTable(o FillOpts, c *Counts, table string, n int) []job {
	specs := tagSpecs[table]
	weights := make([]float64, len(specs))
	for i, s := range specs {
		weights[i] = s.weight
	}
	oldShare := o.OldFraction
	if table != "user_events" {
		oldShare = float64(o.Cutoff.Sub(o.Since)) / float64(o.Now.Sub(o.Since))
	}
	c.Tags[table] = map[string]int{}
	c.Old[table] = map[string]int{}
	c.Events[table] = n
	c.NoIP[table] = n / noIPEvery
	var jobs []job
	next := int64(1)
	for i, k := range allocate(n, weights) {
		spec := specs[i]
		old := int(math.Round(float64(k) * oldShare))
		c.Tags[table][spec.tag] += k
		c.Old[table][spec.tag] += old
		sides := []struct {
			rows   int
			lo, hi time.Time
		}{{old, o.Since, o.Cutoff}, {k - old, o.Cutoff, o.Now}}
		for _, side := range sides {
			if side.rows == 0 {
				continue
			}
			first, last := next, next+int64(side.rows)-1
			next = last + 1
			jobs = append(jobs, job{
				what: table + " " + spec.tag,
				rows: last - first + 1,
				sql:  insertSQL(table, spec),
				args: []any{seedArg(o.Seed), first, last, spec.tag,
					side.lo, side.hi.Sub(side.lo).Microseconds(),
					o.Users, o.Projects, o.Orgs, o.Orgs * 3, o.IPs, sourceCount(o, table)},
			})
		}
	}
	return jobs
}

func sourceCount(o FillOpts, table string) int {
	switch table {
	case "user_events":
		return o.Users
	case "project_events":
		return o.Projects
	case "file_events":
		return o.Projects * 6
	case "organization_events":
		return o.Orgs
	default:
		return o.Orgs * 3
	}
}

// insertSQL is the INSERT … SELECT for rows $2..$3 of one tag of table.
// Each row has a source s, an acting user a, another user u2, a project p, an organization
// o and a team t to name in its payload, and an IP address ip unless its
// row number is a multiple of noIPEvery. Its additional is the tag's
// payload plus, as record_event adds them, geoip_info (when the IP has
// it) and user_agent_info.
func insertSQL(table string, spec tagSpec) string {
	ua := uaBrowser
	if spec.upload {
		ua = uaUpload
	}
	payload := spec.payload
	if payload == "" {
		payload = "NULL"
	}
	return `INSERT INTO ` + table + ` (id, source_id, tag, time, additional, ip_address_id)
SELECT md5($1::bigint::text || ':` + table + `:' || g.i)::uuid, s.id, $4::text,
       $5::timestamp + (abs(g.h4 % $6::bigint)) * interval '1 microsecond',
       nullif(coalesce(` + payload + `, '{}'::jsonb)
              || CASE WHEN ip.geoip_info IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('geoip_info', ip.geoip_info) END
              || CASE WHEN ip.id IS NULL THEN '{}'::jsonb ELSE ` + ua + ` END, '{}'::jsonb),
       ip.id
FROM (` + hashes + ` FROM generate_series($2::bigint, $3::bigint) i) g
JOIN ` + sourceTable[table] + ` s ON s.n = 1 + abs(g.h0 % $12::bigint)
JOIN warehousetest_fill.u a ON a.n = 1 + abs(g.h1 % $7::bigint)
JOIN warehousetest_fill.u u2 ON u2.n = 1 + abs(g.h6 % $7::bigint)
JOIN warehousetest_fill.p p ON p.n = 1 + abs(g.h2 % $8::bigint)
JOIN warehousetest_fill.o o ON o.n = 1 + abs(g.h2 % $9::bigint)
JOIN warehousetest_fill.t t ON t.n = 1 + abs(g.h3 % $10::bigint)
LEFT JOIN warehousetest_fill.ip ip ON ip.n = 1 + abs(g.h7 % $11::bigint) AND g.i % ` + fmt.Sprint(noIPEvery) + ` <> 0`
}

// allocate splits n into integers proportional to weights (largest
// remainder), summing to n exactly.
func allocate(n int, weights []float64) []int {
	total := 0.0
	for _, w := range weights {
		total += w
	}
	out := make([]int, len(weights))
	rem := make([]float64, len(weights))
	given := 0
	for i, w := range weights {
		x := float64(n) * w / total
		out[i] = int(math.Floor(x))
		rem[i] = x - float64(out[i])
		given += out[i]
	}
	for ; given < n; given++ {
		best := 0
		for i := range rem {
			if rem[i] > rem[best] {
				best = i
			}
		}
		out[best]++
		rem[best] = -1
	}
	return out
}

// pick is SQL choosing one of vals by hash column h of g.
func pick(h string, vals ...string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = quote(v)
	}
	return fmt.Sprintf("(ARRAY[%s]::text[])[1 + abs(g.%s %% %d)]", strings.Join(q, ", "), h, len(vals))
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
