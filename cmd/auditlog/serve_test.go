package main

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/service"
)

// syncBuffer is an io.Writer safe to read while another goroutine writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const testSecret = "a secret for the CLI tests, long enough"

// serve runs, the token command mints links that work against it, and it
// stops gracefully.
func TestServeAndToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	b.mustCLI(t, "demo")
	env := func(k string) string {
		switch k {
		case "DATABASE_URL":
			return b.url
		case "AUDITLOG_SECRET":
			return testSecret
		}
		return ""
	}
	var stdout syncBuffer
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0"}, env, &stdout, io.Discard) }()
	var base string
	deadline := time.Now().Add(20 * time.Second)
	for base == "" {
		require.True(t, time.Now().Before(deadline), "serve did not start: %q", stdout.String())
		if m := regexp.MustCompile(`serving on (http://\S+)`).FindStringSubmatch(stdout.String()); m != nil {
			base = m[1]
		}
		time.Sleep(20 * time.Millisecond)
	}

	var out strings.Builder
	require.NoError(t, run(b.ctx, []string{"token", "--user", "root", "--admin", "--ttl", "10m"}, env, &out, io.Discard))
	token := strings.TrimSpace(out.String())
	v, err := service.ParseViewerToken([]byte(testSecret), token, time.Now())
	require.NoError(t, err)
	require.Equal(t, service.Viewer{UserID: "root", Admin: true}, v)

	out.Reset()
	require.NoError(t, run(b.ctx, []string{"token", "--user", "erin", "--maintains", "tinyweb", "--login-url", base}, env, &out, io.Discard))
	link := strings.TrimSpace(out.String())
	require.True(t, strings.HasPrefix(link, base+"/login?token="), link)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	client := &http.Client{Jar: jar}
	resp, err := client.Get(link)
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(page), "This link signs you in as <b>erin</b>")
	resp, err = client.PostForm(base+"/login", url.Values{"token": {strings.TrimPrefix(link, base+"/login?token=")}})
	require.NoError(t, err)
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(page), "Your security history")
	resp, err = client.Get(base + "/projects/tinyweb")
	require.NoError(t, err)
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(page), "You maintain this project")

	req, _ := http.NewRequest("GET", base+"/api/v1/admin/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// /metrics, /healthz, /readyz answer; River UI is for admins only.
	for path, want := range map[string]int{"/metrics": 200, "/healthz": 200, "/readyz": 200, "/admin/jobs/": 401} {
		resp, err := http.Get(base + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, want, resp.StatusCode, path)
	}
	for who, want := range map[string]int{token: 200, erinToken(t, env): 403} {
		req, _ := http.NewRequest("GET", base+"/admin/jobs/", nil)
		req.Header.Set("Authorization", "Bearer "+who)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, want, resp.StatusCode)
		if want == 200 {
			require.Contains(t, string(body), "<html")
		}
	}

	// An ingest token records events through the API; they show in the
	// admin console.
	out.Reset()
	require.NoError(t, run(b.ctx, []string{"token", "--ingest", "crm"}, env, &out, io.Discard))
	ingest := strings.TrimSpace(out.String())
	req, _ = http.NewRequest("POST", base+"/api/v1/events", strings.NewReader(
		`{"events": [{"tag": "account:password:change", "user_id": "zed", "actor_id": "crm-bot", "ip": "192.0.2.44"}]}`))
	req.Header.Set("Authorization", "Bearer "+ingest)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	req, _ = http.NewRequest("GET", base+"/api/v1/admin/events?actor=crm-bot", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(page), `"user_id":"zed"`)
	out.Reset()
	require.NoError(t, run(b.ctx, []string{"token", "--revoke-ingest", "crm"}, env, &out, io.Discard))
	out.Reset()
	require.NoError(t, run(b.ctx, []string{"token", "--list-ingest"}, env, &out, io.Discard))
	require.Contains(t, out.String(), "crm\tcreated")
	require.Contains(t, out.String(), "revoked")

	cancel()
	select {
	case err := <-errc:
		require.NoError(t, err)
	case <-time.After(40 * time.Second):
		t.Fatal("serve did not stop")
	}

	err = run(b.ctx, []string{"token", "--user", "x"}, func(string) string { return "" }, io.Discard, io.Discard)
	require.Equal(t, 2, exitCode(err), "no secret: %v", err)
}

func erinToken(t *testing.T, env func(string) string) string {
	t.Helper()
	var out strings.Builder
	require.NoError(t, run(context.Background(), []string{"token", "--user", "erin", "--maintains", "tinyweb"}, env, &out, io.Discard))
	return strings.TrimSpace(out.String())
}
