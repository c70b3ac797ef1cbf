package web_test

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/service"
)

// screenshotDir is where the browser test saves its screenshots
// (git-ignored); AUDITLOG_SCREENSHOTS overrides it (docs/ for the README).
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("AUDITLOG_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("..", ".screenshots")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// chromium finds Debian's chromium (make test installs it when missing).
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Fatal("no chromium found: `make test` installs Debian's chromium package; or apt-get install chromium")
	return ""
}

// A real browser signs in through a login link, reads the security
// history, pages to older events, and opens a project page as the public,
// where no IP address is anywhere in the DOM; then an admin places a legal
// hold from the console and releases it.
func TestBrowser(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	batch := make([]service.EventParams, 70)
	for i := range batch {
		batch[i] = service.EventParams{Tag: "account:login:success", Subject: "alice", ActorID: "alice", AuthMethod: "webauthn",
			Time: time.Now().Add(-time.Duration(i+1) * time.Hour), IP: "192.0.2.77",
			UserAgent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) Safari/605.1.15", Location: &service.Location{Country: "FR", City: "Paris"}}
	}
	batch[3] = service.EventParams{Tag: "account:api_token:added", Subject: "alice", ActorID: "alice", AuthMethod: "webauthn",
		Time: time.Now().Add(-3*time.Hour - time.Minute), IP: "192.0.2.77", Additional: json.RawMessage(`{"token_name": "ci-upload"}`)}
	_, err := b.log.RecordUserMany(b.ctx, batch)
	require.NoError(t, err)
	_, err = b.log.RecordProject(b.ctx, service.EventParams{Tag: "project:release:add", Subject: "tinyweb", ActorID: "alice",
		AuthMethod: "api_token", TokenID: "ci-upload", IP: "192.0.2.77", Additional: json.RawMessage(`{"version": "1.1.0"}`)})
	require.NoError(t, err)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	dir := screenshotDir(t)
	run := func(actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		require.NoError(t, chromedp.Do(ctx, actions...))
	}
	read := func(a chromedp.Action[string]) string {
		t.Helper()
		s, err := chromedp.Run(ctx, a)
		require.NoError(t, err)
		return s
	}
	// waitLocation waits until the page's address satisfies ok; reading it
	// while a navigation is under way may fail, which counts as not yet.
	waitLocation := func(what string, ok func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			loc, err := chromedp.Run(ctx, chromedp.Location())
			if err == nil && ok(loc) {
				return
			}
			require.True(t, time.Now().Before(deadline), what)
			time.Sleep(50 * time.Millisecond)
		}
	}
	shoot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), png, 0o644))
	}

	// The login link opens a page that signs in only when its button is
	// pressed.
	run(chromedp.Navigate(b.srv.URL+"/login?token="+url.QueryEscape(b.tokens["user"])),
		chromedp.WaitVisible(chromedp.ID("sign-in")))
	require.Contains(t, read(chromedp.Text(chromedp.CSS("main"))), "This link signs you in as alice")
	require.Contains(t, read(chromedp.Text(chromedp.CSS("header"))), "not signed in", "opening the link signs nobody in")
	run(chromedp.Click(chromedp.ID("sign-in")), chromedp.WaitVisible(chromedp.CSS("table.events")))
	require.True(t, strings.HasSuffix(read(chromedp.Location()), "/me"), "the button lands on the history")
	history := read(chromedp.Text(chromedp.CSS("main")))
	shoot("me.png")

	run(chromedp.Click(chromedp.ID("next")))
	waitLocation("the next page did not load", func(l string) bool { return strings.Contains(l, "cursor=") })
	run(chromedp.WaitVisible(chromedp.CSS("table.events")))
	older := read(chromedp.Text(chromedp.CSS("main")))

	run(chromedp.Click(chromedp.CSS("header form button"))) // sign out
	waitLocation("signing out did not leave the page", func(l string) bool { return !strings.Contains(l, "/me") })
	run(chromedp.Navigate(b.srv.URL+"/projects/tinyweb"), chromedp.WaitVisible(chromedp.CSS("table.events")))
	project := read(chromedp.Text(chromedp.CSS("main")))
	header := read(chromedp.Text(chromedp.CSS("header")))
	projectHTML := read(chromedp.OuterHTML(chromedp.CSS("html")))
	shoot("project-public.png")

	require.Contains(t, history, "Your security history")
	require.Contains(t, history, "Events older than 90 days are deleted.")
	require.Contains(t, history, "Created API token ci-upload")
	require.Contains(t, history, "Paris, FR")
	require.Contains(t, history, "Safari on macOS")
	require.Contains(t, older, "Signed in", "the second page lists older events")
	require.NotEqual(t, history, older)
	require.Contains(t, project, "Released version 1.1.0")
	require.Contains(t, header, "not signed in")
	require.NotContains(t, projectHTML, "192.0.2.77")
	require.NotContains(t, projectHTML, "198.51.100.20")
	require.NotContains(t, projectHTML, "ci-upload")
	require.NotContains(t, projectHTML, "192.0.2.", "no IP of any kind in the public DOM")

	// An admin places a legal hold from the console's form and releases
	// it with its button; the page lists it open, then released.
	run(chromedp.Navigate(b.srv.URL+"/login?token="+url.QueryEscape(b.tokens["admin"])), chromedp.WaitVisible(chromedp.ID("sign-in")))
	run(chromedp.Click(chromedp.ID("sign-in")))
	waitLocation("signing in did not leave the login page", func(l string) bool { return !strings.Contains(l, "/login") })
	run(chromedp.Navigate(b.srv.URL+"/admin/holds"), chromedp.WaitVisible(chromedp.CSS(`form[action="/admin/holds"]`)))
	run(chromedp.SendKeys(chromedp.CSS(`input[name="subject"]`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`input[name="reason"]`), "case 2026-114"),
		chromedp.Click(chromedp.CSS(`form[action="/admin/holds"] button`)),
		chromedp.WaitVisible(chromedp.CSS("tr.hold-open")))
	placed := read(chromedp.Text(chromedp.CSS("main")))
	shoot("admin-holds.png")
	require.Contains(t, placed, "case 2026-114")
	holds, err := b.log.Holds(b.ctx, true, 10)
	require.NoError(t, err)
	require.Len(t, holds, 1)
	require.Equal(t, "root", holds[0].PlacedBy)
	run(chromedp.Click(chromedp.CSS(`tr.hold-open form button`)), chromedp.WaitVisible(chromedp.CSS("tr.hold-released")))
	holds, err = b.log.Holds(b.ctx, true, 10)
	require.NoError(t, err)
	require.Empty(t, holds, "released from the page")
}
