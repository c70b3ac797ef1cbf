package service_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

// TestTableStatements runs every statement of sql/tables.tmpl against a
// real schema, in the order maintenance and erasure use them, so a
// statement that no longer parses or names a wrong column fails here and
// not in a pass. A statement added to the file without a case here fails
// the test too.
func TestTableStatements(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	month := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	next := month.AddDate(0, 1, 0)
	name := service.PartitionName(month)
	guard := "user_events_default_guard_test"
	person := pgx.NamedArgs{"user": "alice", "batch": 10}
	run := func(tx pgx.Tx, stmt, table string, vals map[string]any, args ...any) {
		t.Helper()
		_, err := tx.Exec(ctx, service.TableSQL(stmt, table, vals), args...)
		require.NoError(t, err, stmt)
	}
	cases := []struct {
		stmt  string
		table string
		vals  map[string]any
		args  []any
	}{
		{"partition_create", name, map[string]any{"from": month, "to": next}, nil},
		{"partition_holds_rows_in_window", name, map[string]any{"cutoff": month}, nil},
		{"person_event_exists", name, nil, []any{person}},
		{"person_events_delete", name, nil, []any{person}},
		{"acted_events_scrub", name, nil, []any{pgx.NamedArgs{"user": "alice", "batch": 10, "personal_keys": `{}`, "pseudonym": nil}}},
		{"person_events_left", name, nil, []any{pgx.NamedArgs{"user": "alice", "actors": []string{"alice"}, "personal_keys": `{}`, "pseudonymised": false}}},
		{"person_events_left_list", name, nil, []any{pgx.NamedArgs{"user": "alice", "actors": []string{"alice"}, "personal_keys": `{}`,
			"pseudonymised": true, "max": 10}}},
		{"person_addresses", name, nil, []any{pgx.NamedArgs{"user": "alice"}}},
		{"admin_reads_scrub", name, nil, []any{pgx.NamedArgs{"user": "alice", "batch": 10, "replacement": "[erased]",
			"addresses": []string{"192.0.2.1"}, "admin_read_tag": service.TagAdminEventsView}}},
		{"admin_reads_left", name, nil, []any{pgx.NamedArgs{"user": "alice", "admin_read_tag": service.TagAdminEventsView}}},
		{"admin_reads_left_list", name, nil, []any{pgx.NamedArgs{"user": "alice", "admin_read_tag": service.TagAdminEventsView, "max": 10}}},
		{"mentions_select", name, nil, []any{pgx.NamedArgs{"user": "alice", "batch": 10, "ref_keys": `{"*": ["target_user"]}`, "ref_tags": []string{"project:role:add"}}}},
		{"mentions_left", "project_events", nil, []any{pgx.NamedArgs{"user": "alice", "ref_keys": `{}`, "ref_tags": []string{}}}},
		{"mentions_left_list", name, nil, []any{pgx.NamedArgs{"user": "alice", "ref_keys": `{"*": ["target_user"]}`,
			"ref_tags": []string{"project:role:add"}, "max": 10}}},
		{"mentions_update", "project_events", nil, []any{pgx.NamedArgs{"times": []time.Time{month}, "ids": []int64{1},
			"additionals": []json.RawMessage{json.RawMessage(`{}`)}, "descriptions": []string{"d"}}}},
		{"held_copy", name, map[string]any{"columns": []string{"time", "id", "tag", "user_id", "description", "additional"}},
			[]any{pgx.NamedArgs{"users": []string{"alice"}, "month_start": month, "month_end": next}}},
		{"partition_lock", name, nil, nil},
		{"partition_detach", name, nil, nil},
		{"default_move_month", name, map[string]any{"columns": []string{"time", "id", "tag", "user_id", "description", "additional"}},
			[]any{pgx.NamedArgs{"month_start": month, "month_end": next}}},
		{"partition_attach", name, map[string]any{"from": month, "to": next}, nil},
		{"partition_lock", name, nil, nil},
		{"partition_detach", name, nil, nil},
		{"partition_drop", name, nil, nil},
		{"partition_create_detached", name, nil, nil},
		{"default_copy_month", name, nil, []any{pgx.NamedArgs{"month_start": month, "month_end": next}}},
		{"partition_attach", name, map[string]any{"from": month, "to": next}, nil},
		{"default_guard_add", "", map[string]any{"guard": guard, "from": month, "to": next}, nil},
		{"default_guard_drop", "", map[string]any{"guard": guard}, nil},
	}
	seen := map[string]bool{"maintenance_begin": true}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, c := range cases {
			run(tx, c.stmt, c.table, c.vals, c.args...)
			seen[c.stmt] = true
		}
		return nil
	})
	require.NoError(t, err)
	for _, n := range service.TableStatementNames() {
		require.True(t, seen[n], "statement %s has no case here", n)
	}

	// The transaction opener sets its three timeouts for that transaction.
	// They are read in the same round trip as the opener: under an idle
	// timeout of 1ms, a client that pauses inside the transaction (a busy
	// test machine) loses its session.
	begin := service.TableSQL("maintenance_begin", "", map[string]any{
		"lock": 1500 * time.Millisecond, "statement": time.Minute, "idle": 0 * time.Second})
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	results, err := conn.Conn().PgConn().Exec(ctx, begin+"; SELECT current_setting('lock_timeout'), current_setting('statement_timeout'), "+
		"current_setting('idle_in_transaction_session_timeout'); ROLLBACK").ReadAll()
	require.NoError(t, err)
	settings := results[len(results)-2].Rows
	require.Len(t, settings, 1)
	require.Equal(t, []string{"1500ms", "1min", "1ms"}, []string{string(settings[0][0]), string(settings[0][1]), string(settings[0][2])},
		"0 becomes 1ms: no limit is never meant")
}

// TestTableStatementQuoting: a marker is the only way a value enters a
// statement, and each kind is quoted one way.
func TestTableStatementQuoting(t *testing.T) {
	t.Parallel()
	got := service.TableSQL("partition_create", `user_events_p209901"; DROP TABLE user_events; --`, map[string]any{
		"from": time.Date(2099, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 3600)), "to": time.Date(2099, 2, 1, 0, 0, 0, 0, time.UTC)})
	require.Equal(t, `CREATE TABLE "user_events_p209901""; DROP TABLE user_events; --" PARTITION OF user_events `+
		`FOR VALUES FROM ('2098-12-31T23:00:00Z'::timestamptz) TO ('2099-02-01T00:00:00Z'::timestamptz);
CREATE TRIGGER auditlog_no_truncate BEFORE TRUNCATE ON "user_events_p209901""; DROP TABLE user_events; --" `+
		`FOR EACH STATEMENT EXECUTE FUNCTION auditlog_append_only()`, got)
	require.Panics(t, func() { service.TableSQL("partition_create", "t", map[string]any{"from": time.Now()}) }, "a missing value")
	require.Panics(t, func() { service.TableSQL("partition_drop", "t", map[string]any{"from": time.Now()}) }, "a value without a marker")
	require.Panics(t, func() { service.TableSQL("no_such_statement", "t", nil) })
	require.False(t, strings.Contains(service.TableSQL("person_events_delete", "t", nil), "--"), "comments are dropped")
}
