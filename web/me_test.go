package web_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/service"
)

// On my own history, an event someone else did to my account shows their
// network and device, not their raw IP and user agent; my own sign-ins show
// mine.
func TestOwnerDoesNotSeeTheActorsIP(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	_, err := b.log.RecordUser(b.ctx, service.EventParams{Tag: "account:email:add", Subject: "alice", ActorID: "root",
		AuthMethod: "webauthn", IP: "203.0.113.66", UserAgent: "Mozilla/5.0 (Windows NT 10.0) Chrome/140.0",
		Additional: json.RawMessage(`{"email": "alice@work.example"}`)})
	require.NoError(t, err)
	_, body := b.get(t, "user", "/api/v1/me/events")
	for _, e := range events(t, body) {
		if e["actor_id"] == "root" {
			require.NotContains(t, e, "ip")
			require.NotContains(t, e, "user_agent")
			require.Equal(t, "203.0.113.0/24", e["network"])
			require.Equal(t, "Chrome on Windows", e["device"])
			require.Contains(t, e["additional"], "email", "alice's own e-mail address is hers to see")
		} else {
			require.Equal(t, "192.0.2.10", e["ip"])
		}
	}
	require.NotContains(t, body, "203.0.113.66")
	_, page := b.get(t, "user", "/me")
	require.NotContains(t, page, "203.0.113.66")
	_, body = b.get(t, "admin", "/api/v1/admin/events?user=alice")
	require.Contains(t, body, "203.0.113.66", "admins see it")
}
