package web_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/service"
	"github.com/auditlog/auditlog/web"
)

// Page size and filters are bounded, and bad filters are a clear 400.
func TestBadRequests(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	for _, path := range []string{
		"/api/v1/me/events?limit=1000",
		"/api/v1/me/events?limit=0",
		"/api/v1/me/events?since=yesterday",
		"/api/v1/me/events?cursor=not-a-cursor",
		"/api/v1/me/events?tag=" + strings.Repeat("a", 300),
		"/api/v1/me/events?tag=Not_A_Tag",
		"/api/v1/admin/events?ip=999.1.1.1",
		"/api/v1/admin/events?tag_prefix=%27%3B%20DROP%20TABLE%20user_events%3B--",
		"/admin/export?format=xml",
	} {
		who := "user"
		if strings.Contains(path, "admin") {
			who = "admin"
		}
		status, body := b.get(t, who, path)
		require.Equal(t, http.StatusBadRequest, status, "%s: %s", path, body)
		if strings.HasPrefix(path, "/api/") {
			var e map[string]string
			require.NoError(t, json.Unmarshal([]byte(body), &e))
			require.NotEmpty(t, e["error"])
		}
	}
	status, _ := b.get(t, "admin", "/api/v1/admin/events")
	require.Equal(t, http.StatusOK, status, "user_events is still there")
	_, page := b.get(t, "admin", "/admin/events?user=alice&cursor=x1")
	require.Contains(t, page, "400", "a bad cursor on a page is a 400 page too")
	_, page = b.get(t, "admin", "/admin/events?user=alice&ip=192.0.2.0/24")
	require.Contains(t, page, `href="/admin/export?format=csv&amp;ip=192.0.2.0%2F24&amp;user=alice"`, "export links keep the filters")
}

// Pages carry an opaque cursor; following it gives the next 50 without
// repeats.
func TestPaging(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	batch := make([]service.EventParams, 120)
	for i := range batch {
		batch[i] = service.EventParams{Tag: "account:login:failure", Subject: "alice", ActorID: "alice",
			Time: time.Now().Add(-time.Duration(i+1) * time.Minute), Additional: json.RawMessage(`{"reason": "bad password"}`)}
	}
	_, err := b.log.RecordUserMany(b.ctx, batch)
	require.NoError(t, err)
	seen := map[float64]bool{}
	path := "/api/v1/me/events"
	pages := 0
	for {
		_, body := b.get(t, "user", path)
		var page struct {
			Events     []map[string]any `json:"events"`
			NextCursor string           `json:"next_cursor"`
			Failed     int              `json:"failed_logins_since_success"`
			Retention  int              `json:"retention_days"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &page))
		require.LessOrEqual(t, len(page.Events), web.PageSize)
		require.Equal(t, 90, page.Retention)
		require.Equal(t, 0, page.Failed, "the failures are older than the last success")
		for _, e := range page.Events {
			id := e["id"].(float64)
			require.False(t, seen[id])
			seen[id] = true
		}
		pages++
		if page.NextCursor == "" {
			break
		}
		path = "/api/v1/me/events?cursor=" + url.QueryEscape(page.NextCursor)
	}
	require.Equal(t, 3, pages)
	require.Len(t, seen, 122)

	_, err = b.log.RecordUser(b.ctx, service.EventParams{Tag: "account:login:failure", Subject: "alice",
		Additional: json.RawMessage(`{"reason": "bad 2FA code"}`)})
	require.NoError(t, err)
	_, page := b.get(t, "user", "/me")
	require.Contains(t, page, "1 failed sign-in attempt since your last successful sign-in")
	require.Contains(t, page, "Events older than 90 days are deleted.")
}
