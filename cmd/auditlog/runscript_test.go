package main

import (
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
)

// TestRunScript runs scripts/run.sh (make run) with a binary built from
// this package: it prints login links only once serve listens. With the
// port taken it fails and prints none; with the port free the links come
// after serve's "serving on" line, the server answers, and SIGTERM sent to
// the script stops serve gracefully. The first run makes the integrity key
// (.auditlog-signing-key, mode 0600), the next reuses it, and serve's
// workers sign a checkpoint with it. The scripts run from a copy, so the
// key is made there rather than in this checkout.
func TestRunScript(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "auditlog")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	root := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(root, "scripts"), 0o755))
	for _, name := range []string{"run.sh", "postgres.sh"} {
		text, err := os.ReadFile(filepath.Join("..", "..", "scripts", name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(root, "scripts", name), text, 0o755))
	}
	script := filepath.Join(root, "scripts", "run.sh")
	keyFile := filepath.Join(root, ".auditlog-signing-key")
	b := setup(t)
	command := func(addr string) *exec.Cmd {
		cmd := exec.Command("bash", script)
		cmd.Env = append(os.Environ(), "AUDITLOG_BIN="+bin, "DATABASE_URL="+b.url, "AUDITLOG_SECRET="+testSecret,
			"AUDITLOG_ADDR="+addr, "AUDITLOG_LOG_LEVEL=warn")
		// Its own process group, so that a failed test can stop serve too.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return cmd
	}

	t.Run("port taken", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		cmd := command(ln.Addr().String())
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		require.True(t, errors.As(err, &exit), "run.sh must fail when the port is taken: %v\n%s", err, out)
		require.NotZero(t, exit.ExitCode())
		require.Contains(t, string(out), "address already in use", "serve's error is shown")
		require.Contains(t, string(out), "no login links printed")
		require.NotContains(t, string(out), "login?token=")
		require.Contains(t, string(out), "== integrity key: "+keyFile)
	})
	info, err := os.Stat(keyFile)
	require.NoError(t, err, "the first run made the integrity key")
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	key, err := os.ReadFile(keyFile)
	require.NoError(t, err)

	t.Run("port free", func(t *testing.T) {
		var stdout, stderr dbtest.SyncBuffer
		cmd := command("127.0.0.1:0")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Start())
		waitc := make(chan error, 1)
		go func() { waitc <- cmd.Wait() }()
		stopped := false
		t.Cleanup(func() { // when the test failed before the script stopped
			if !stopped {
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-waitc
			}
		})
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(stdout.String(), "the public:") {
			select {
			case err := <-waitc:
				stopped = true
				t.Fatalf("run.sh exited (%v) before printing links:\n%s\n%s", err, stdout.String(), stderr.String())
			case <-time.After(20 * time.Millisecond):
			}
			require.True(t, time.Now().Before(deadline), "no links printed:\n%s\n%s", stdout.String(), stderr.String())
		}
		text := stdout.String()
		serving := regexp.MustCompile(`(?m)^auditlog serving on (http://\S+)$`).FindStringSubmatchIndex(text)
		require.NotNil(t, serving, text)
		base := text[serving[2]:serving[3]]
		links := regexp.MustCompile(`(http://\S+)/login\?token=`).FindAllStringSubmatchIndex(text, -1)
		require.Len(t, links, 4, text)
		for _, l := range links {
			require.Greater(t, l[0], serving[1], "a link printed before serve listened:\n%s", text)
			require.Equal(t, base, text[l[2]:l[3]], "the links point at the address serve listens on")
		}

		resp, err := http.Get(base + "/healthz")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)

		// The same key, and serve's workers checkpoint with it at once
		// (the demo's events marked by it): the checkpoint is served.
		again, err := os.ReadFile(keyFile)
		require.NoError(t, err)
		require.Equal(t, key, again, "the key is made once")
		dbtest.Eventually(t, func() bool {
			return dbtest.Count(t, b.pool, "SELECT count(*) FROM integrity_checkpoints") > 0
		}, 30*time.Second, 50*time.Millisecond, "no checkpoint signed")
		resp, err = http.Get(base + "/api/v1/checkpoints/latest")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		verify := exec.Command(bin, "verify")
		verify.Env = append(os.Environ(), "DATABASE_URL="+b.url, "AUDITLOG_SIGNING_KEY="+keyFile)
		vout, err := verify.CombinedOutput()
		require.NoError(t, err, "%s", vout)
		require.Contains(t, string(vout), "verify: clean")

		// SIGTERM to the script reaches serve, which stops; the script
		// exits with serve's status.
		require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
		select {
		case err := <-waitc:
			stopped = true
			require.NoError(t, err, "run.sh after SIGTERM:\n%s", stderr.String())
		case <-time.After(60 * time.Second):
			t.Fatalf("run.sh did not stop on SIGTERM:\n%s", stderr.String())
		}
		_, err = http.Get(base + "/healthz")
		require.Error(t, err, "serve still answers after the script exited")
	})
}
