package service_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

// The subject access export holds exactly alice's user events inside the
// window and the project events she acted in, with every field.
func TestExportSubject(t *testing.T) {
	t.Parallel()
	b := dbtest.NewErasure(t, dbtest.ErasureOpts{})
	var buf bytes.Buffer
	n, err := b.Log.ExportSubject(b.Ctx, "alice", &buf)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	require.Len(t, lines, n)
	var ids []int64
	for _, line := range lines {
		var e service.Event
		require.NoError(t, json.Unmarshal([]byte(line), &e))
		ids = append(ids, e.ID)
		if e.Model == service.ModelUser {
			require.Equal(t, "alice", e.UserID)
			require.Equal(t, "192.0.2.10", e.IP.String())
			require.NotEmpty(t, e.UserAgent)
			require.Equal(t, "DE", e.Location.Country)
		} else {
			require.Equal(t, "alice", e.ActorID)
		}
	}
	slices.Sort(ids)
	want := slices.Clone(b.Exported)
	slices.Sort(want)
	require.Equal(t, want, ids)
	require.Contains(t, buf.String(), `"email":"carol@example.com"`, "personal keys are the person's own data here")

	_, err = b.Log.ExportSubject(b.Ctx, "", &buf)
	require.ErrorIs(t, err, service.ErrEmptySubject)
}
