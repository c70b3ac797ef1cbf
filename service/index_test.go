package service_test

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

// queryLog records the statements a pool sends, with their arguments.
type queryLog struct {
	mu   sync.Mutex
	sent []sentQuery
}

type sentQuery struct {
	sql  string
	args []any
}

func (q *queryLog) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.sent = append(q.sent, sentQuery{sql: data.SQL, args: data.Args})
	return ctx
}

func (q *queryLog) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// take returns and forgets the statements sent since the last call.
func (q *queryLog) take() []sentQuery {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.sent
	q.sent = nil
	return out
}

// TestIndexesServeTheReaders checks that each lookup the readers make can
// be answered from an index: the statements are the ones the readers
// really send (recorded on their connection, with their arguments), and
// with sequential scans disabled each plan names the expected index in an
// Index Cond, including CIDR containment on the btree over ip and a tag
// prefix on the "C"-collated tag.
func TestIndexesServeTheReaders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sent := &queryLog{}
	pool := dbtest.PoolWith(t, func(cfg *pgxpool.Config) { cfg.ConnConfig.Tracer = sent })
	log := dbtest.Must(service.New(pool, nil))
	// Rows in the current month, so the planner weighs each filter's
	// selectivity as it would in production: many people, networks,
	// actors, tags and projects, each a small part of the whole.
	for _, stmt := range []string{
		`INSERT INTO user_events (time, tag, user_id, actor_id, ip, description, additional)
		 SELECT now() - make_interval(secs => g), 'account:t' || (g % 200), 'user-' || (g % 2000), 'actor-' || (g % 2000),
		        ('172.16.' || (g % 250) || '.' || (g % 200))::inet, 'd', '{}'
		 FROM generate_series(1, 20000) g`,
		`INSERT INTO project_events (time, tag, project_id, actor_id, ip, description, additional)
		 SELECT now() - make_interval(secs => g), 'project:t' || (g % 200), 'project-' || (g % 2000), 'actor-' || (g % 2000),
		        ('2001:db9::' || to_hex(g))::inet, 'd', '{}'
		 FROM generate_series(1, 20000) g`,
		`ANALYZE user_events`, `ANALYZE project_events`,
	} {
		_, err := pool.Exec(ctx, stmt)
		require.NoError(t, err)
	}
	read := func(fn func() (*service.Page, error)) {
		t.Helper()
		_, err := fn()
		require.NoError(t, err)
	}
	export := func() {
		_, err := log.ExportSubject(ctx, "u", io.Discard)
		require.NoError(t, err)
	}
	cases := []struct {
		what  string
		call  func()
		query string // the sqlc name the statement starts with
		index string
		cond  string
	}{
		// Partitions name their copies of the parent's indexes after the columns.
		{"a person's history", func() { read(func() (*service.Page, error) { return log.UserEvents(ctx, "u", service.ListOpts{}) }) },
			"UserEventListByUser", "_user_id_time_id_idx", "(user_id = 'u'::text)"},
		{"admin: a network", func() {
			read(func() (*service.Page, error) { return log.Events(ctx, service.Filter{IP: "10.0.0.0/8"}) })
		},
			"UserEventList", "_ip_idx", "(ip >= '10.0.0.0/8'::inet)"},
		{"admin: an actor", func() { read(func() (*service.Page, error) { return log.Events(ctx, service.Filter{ActorID: "a"}) }) },
			"UserEventList", "_actor_id_time_idx", "(actor_id = 'a'::text)"},
		{"admin: a tag prefix", func() {
			read(func() (*service.Page, error) {
				return log.Events(ctx, service.Filter{ListOpts: service.ListOpts{TagPrefix: "account:login:"}})
			})
		}, "UserEventList", "_tag_time_idx", "(tag >= 'account:login:'::text)"},
		{"a project's history", func() { read(func() (*service.Page, error) { return log.ProjectEvents(ctx, "p", service.ListOpts{}) }) },
			"ProjectEventListBySubject", "project_events_subject_time_idx", "(project_id = 'p'::text)"},
		{"an organization's history", func() {
			read(func() (*service.Page, error) { return log.OrganizationEvents(ctx, "o", service.ListOpts{}) })
		}, "ProjectEventListBySubject", "project_events_subject_time_idx", "(subject_kind = 'organization'::text)"},
		{"admin: a team, kept-forever events", func() {
			read(func() (*service.Page, error) { return log.Events(ctx, service.Filter{TeamID: "o/t"}) })
		}, "ProjectEventList", "project_events_subject_time_idx", "(project_id = 'o/t'::text)"},
		{"admin: a network, project events", func() {
			read(func() (*service.Page, error) { return log.Events(ctx, service.Filter{IP: "2001:db8::/32"}) })
		}, "ProjectEventList", "project_events_ip_idx", "(ip >= '2001:db8::/32'::inet)"},
		{"admin: an actor, project events", func() { read(func() (*service.Page, error) { return log.Events(ctx, service.Filter{ActorID: "a"}) }) },
			"ProjectEventList", "project_events_actor_time_idx", "(actor_id = 'a'::text)"},
		// The subject access export's streams that an index serves (its
		// mention streams are a scan: see sql/export.sql).
		{"export: as subject", export, "ExportUserEventsAsSubject", "_user_id_time_id_idx", "(user_id = 'u'::text)"},
		{"export: as actor", export, "ExportUserEventsAsActor", "_actor_id_time_idx", "(actor_id = 'u'::text)"},
		{"export: as actor, project events", export, "ExportProjectEventsAsActor", "project_events_actor_time_idx", "(actor_id = 'u'::text)"},
	}
	for _, tc := range cases {
		sent.take()
		tc.call()
		var q *sentQuery
		for _, s := range sent.take() {
			if strings.HasPrefix(s.sql, "-- name: "+tc.query+" ") {
				q = &s
				break
			}
		}
		require.NotNil(t, q, "%s: the reader sent no %s", tc.what, tc.query)
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
				return err
			}
			// An unnamed statement is planned for its arguments, as the
			// readers' statements are (the admin query forces custom plans).
			rows, err := tx.Query(ctx, "EXPLAIN "+q.sql, append([]any{pgx.QueryExecModeExec}, q.args...)...)
			if err != nil {
				return err
			}
			plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			text := strings.Join(plan, "\n")
			require.NotContains(t, text, "Seq Scan", tc.what)
			require.Contains(t, text, tc.index, tc.what)
			require.Contains(t, text, "Index Cond: ", tc.what)
			require.Contains(t, text, tc.cond, tc.what)
			return nil
		})
		require.NoError(t, err, tc.what)
	}
}
