package service_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// TestIndexesServeTheReaders checks that each lookup the readers make can
// be answered from an index (with sequential scans disabled, the plan
// names the index in an Index Cond), including CIDR containment on the
// btree over ip and a tag prefix on the "C"-collated tag.
func TestIndexesServeTheReaders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.tx.Exec(b.ctx, "SET LOCAL enable_seqscan = off")
	require.NoError(t, err)
	cases := []struct{ query, index, cond string }{
		// Partitions name their copies of the parent's indexes after the columns.
		{"SELECT id FROM user_events WHERE user_id = 'u' ORDER BY time DESC, id DESC LIMIT 50", "_user_id_time_id_idx", "(user_id = 'u'::text)"},
		{"SELECT id FROM user_events WHERE ip <<= '10.0.0.0/8'::cidr", "_ip_idx", "(ip >= '10.0.0.0/8'::inet)"},
		{"SELECT id FROM user_events WHERE actor_id = 'a' ORDER BY time DESC LIMIT 50", "_actor_id_time_idx", "(actor_id = 'a'::text)"},
		{"SELECT id FROM user_events WHERE tag >= 'account:login:' AND tag < 'account:login;'", "_tag_time_idx", "(tag >= 'account:login:'::text)"},
		{"SELECT id FROM project_events WHERE project_id = 'p' ORDER BY time DESC, id DESC LIMIT 50", "project_events_project_time_idx", "(project_id = 'p'::text)"},
		{"SELECT id FROM project_events WHERE ip <<= '2001:db8::/32'::cidr", "project_events_ip_idx", "(ip >= '2001:db8::/32'::inet)"},
		{"SELECT id FROM project_events WHERE actor_id = 'a' ORDER BY time DESC LIMIT 50", "project_events_actor_time_idx", "(actor_id = 'a'::text)"},
	}
	for _, tc := range cases {
		rows, err := b.tx.Query(b.ctx, "EXPLAIN "+tc.query)
		require.NoError(t, err)
		plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		text := strings.Join(plan, "\n")
		require.NotContains(t, text, "Seq Scan", tc.query)
		require.Contains(t, text, tc.index, tc.query)
		require.Contains(t, text, "Index Cond: ", tc.query)
		require.Contains(t, text, tc.cond, tc.query)
	}
}
