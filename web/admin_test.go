package web_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/service"
)

// Every admin read is itself recorded in the admin's own history.
func TestAdminReadIsRecorded(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	status, _ := b.get(t, "admin", "/api/v1/admin/events?user=alice&tag_prefix=account:")
	require.Equal(t, http.StatusOK, status)
	status, _ = b.get(t, "admin", "/admin/export?format=csv&ip=192.0.2.0/24")
	require.Equal(t, http.StatusOK, status)
	p, err := b.log.UserEvents(b.ctx, "root", service.ListOpts{Tag: "admin:events:view"})
	require.NoError(t, err)
	require.Len(t, p.Events, 2)
	type read struct {
		Format string            `json:"format"`
		Filter map[string]string `json:"filter"`
	}
	var last, first read
	require.NoError(t, json.Unmarshal(p.Events[0].Additional, &last))
	require.NoError(t, json.Unmarshal(p.Events[1].Additional, &first))
	require.Equal(t, read{Format: "csv", Filter: map[string]string{"ip": "192.0.2.0/24"}}, last)
	require.Equal(t, read{Format: "json", Filter: map[string]string{"user": "alice", "tag_prefix": "account:"}}, first)
	require.Equal(t, "root", p.Events[0].ActorID)
	// An admin on a project page sees everything, so that read is recorded too.
	status, _ = b.get(t, "admin", "/api/v1/projects/tinyweb/events")
	require.Equal(t, http.StatusOK, status)
	p, err = b.log.UserEvents(b.ctx, "root", service.ListOpts{Tag: "admin:events:view"})
	require.NoError(t, err)
	require.Len(t, p.Events, 3)
	var latest read
	require.NoError(t, json.Unmarshal(p.Events[0].Additional, &latest))
	require.Equal(t, read{Format: "project", Filter: map[string]string{"project": "tinyweb"}}, latest)
	// A refused read is not recorded (nothing was shown).
	status, _ = b.get(t, "user", "/api/v1/admin/events")
	require.Equal(t, http.StatusForbidden, status)
	p, err = b.log.UserEvents(b.ctx, "alice", service.ListOpts{Tag: "admin:events:view"})
	require.NoError(t, err)
	require.Empty(t, p.Events)
}
