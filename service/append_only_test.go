package service_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

// The event tables are append-only for every role, the owner's ordinary
// statements included: each refusal is an insufficient_privilege error
// naming its rule, and nothing changes.
func TestEventsAreAppendOnly(t *testing.T) {
	t.Parallel()
	f := dbtest.NewFixture(t, dbtest.FixtureOpts{})
	user := f.Record(t, service.ModelUser, dbtest.SignIn("alice", f.Now))
	project := f.Record(t, service.ModelProject, service.EventParams{Tag: "project:release:add", Subject: "demo", ActorID: "alice",
		IP: "192.0.2.1", Additional: json.RawMessage(`{"version": "1.0"}`)})
	// A month made by a maintenance pass, after the migrations.
	ahead := dbtest.MonthStart(f.Now).AddDate(0, service.DefaultPartitionsAhead+1, 0)
	further := dbtest.Must(service.New(f.Pool, &service.Opts{Clock: dbtest.Clock(f.Now), PartitionsAhead: service.DefaultPartitionsAhead + 1}))
	rep, err := further.MaintainPartitions(f.Ctx, f.Pool, service.MaintainOpts{})
	require.NoError(t, err)
	require.Contains(t, rep.Created, service.PartitionName(ahead))
	run := func(setting, sql string, args ...any) error {
		return pgx.BeginFunc(f.Ctx, f.Pool, func(tx pgx.Tx) error {
			if setting != "" {
				if _, err := tx.Exec(f.Ctx, "SELECT set_config('auditlog.erasure_id', $1, true)", setting); err != nil {
					return err
				}
			}
			_, err := tx.Exec(f.Ctx, sql, args...)
			return err
		})
	}
	for _, tc := range []struct {
		name, erasure, sql string
		args               []any
		rule               string
	}{
		{"update of a tag", "", `UPDATE user_events SET tag = 'account:create' WHERE id = $1`, []any{user.ID}, "update_only_by_erasure"},
		{"update of an IP", "", `UPDATE project_events SET ip = NULL WHERE id = $1`, []any{project.ID}, "update_only_by_erasure"},
		{"an erasure changing a tag", "7", `UPDATE project_events SET tag = 'project:create' WHERE id = $1`, []any{project.ID}, "scrub_only"},
		{"an erasure changing the time", "7", `UPDATE user_events SET time = time - interval '1 second' WHERE id = $1`, []any{user.ID}, "scrub_only"},
		{"an erasure writing an IP", "7", `UPDATE project_events SET ip = '10.0.0.1' WHERE id = $1`, []any{project.ID}, "scrub_to_null"},
		{"a delete", "", `DELETE FROM user_events WHERE id = $1`, []any{user.ID}, "delete_only_by_erasure"},
		{"a delete of project history", "", `DELETE FROM project_events`, nil, "delete_only_by_erasure"},
		{"truncate", "", `TRUNCATE user_events`, nil, "no_truncate"},
		{"truncate of project history", "", `TRUNCATE project_events`, nil, "no_truncate"},
		{"truncate of one month", "", `TRUNCATE ` + service.PartitionName(f.Now), nil, "no_truncate"},
		{"truncate of the default partition", "", `TRUNCATE user_events_default`, nil, "no_truncate"},
		{"truncate of a month a pass made", "", `TRUNCATE ` + service.PartitionName(ahead), nil, "no_truncate"},
		{"truncate of the held events", "", `TRUNCATE held_user_events`, nil, "no_truncate"},
	} {
		err := run(tc.erasure, tc.sql, tc.args...)
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr), "%s: %v", tc.name, err)
		require.Equal(t, "42501", pgErr.Code, tc.name)
		require.Contains(t, pgErr.Message, "(rule "+tc.rule+")", tc.name)
	}
	require.Equal(t, 1, dbtest.Count(t, f.Pool, `SELECT count(*) FROM user_events WHERE id = $1 AND tag = 'account:login:success'`, user.ID))
	require.Equal(t, 1, dbtest.Count(t, f.Pool, `SELECT count(*) FROM project_events WHERE id = $1 AND ip IS NOT NULL`, project.ID))

	// What an erasure does is allowed: scrubbing to NULL, rewriting the
	// description and additional, deleting.
	require.NoError(t, run("7", `UPDATE project_events SET ip = NULL, actor_id = 'erased-1', additional = '{}', description = 'x' WHERE id = $1`, project.ID))
	require.NoError(t, run("7", `DELETE FROM user_events WHERE id = $1`, user.ID))
}
