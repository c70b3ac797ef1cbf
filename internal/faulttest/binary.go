package faulttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/dbtest"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildPath string
	buildErr  error
)

// Binary returns the path of the auditlog binary, built once per test
// process from this checkout into a temporary directory (go build
// ./cmd/auditlog); Cleanup removes it.
func Binary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		root, err := dbtest.ModuleRoot()
		if err != nil {
			buildErr = err
			return
		}
		if buildDir, err = os.MkdirTemp("", "auditlog-faults-bin-"); err != nil {
			buildErr = err
			return
		}
		goTool := "go"
		if p, err := exec.LookPath("go"); err == nil {
			goTool = p
		}
		path := filepath.Join(buildDir, "auditlog")
		cmd := exec.Command(goTool, "build", "-o", path, "./cmd/auditlog")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/auditlog: %w\n%s", err, out)
			return
		}
		buildPath = path
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return buildPath
}

// Cleanup removes what the harness left on disk (the built binary). Call
// it from TestMain after the tests.
func Cleanup() {
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
}

// Env is the environment of an auditlog subprocess: the test's own
// environment without DATABASE_URL and AUDITLOG_* (so nothing of the
// caller's configuration leaks in), plus vars ("KEY=value").
func Env(vars ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DATABASE_URL=") || strings.HasPrefix(kv, "AUDITLOG_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, vars...)
}

// Run runs `auditlog args...` to completion with env and returns its
// stdout and stderr, and its error (an *exec.ExitError for a non-zero
// exit).
func Run(tb testing.TB, env []string, args ...string) (stdout, stderr string, err error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), MaxRecovery)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(tb), args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// MustRun is Run that fails tb unless the command exits 0, and returns
// its stdout with surrounding space trimmed.
func MustRun(tb testing.TB, env []string, args ...string) string {
	tb.Helper()
	out, errOut, err := Run(tb, env, args...)
	if err != nil {
		tb.Fatalf("auditlog %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return strings.TrimSpace(out)
}

// Proc is a running auditlog subprocess (worker, serve): it can be killed
// with SIGKILL, as a crash would, and started again with Restart.
type Proc struct {
	tb   testing.TB
	env  []string
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *dbtest.SyncBuffer
	done chan struct{}
	runs int
}

// Start starts `auditlog args...` with env. The process is killed when
// the test ends; its output is logged if the test failed.
func Start(tb testing.TB, env []string, args ...string) *Proc {
	tb.Helper()
	p := &Proc{tb: tb, env: env, args: args}
	p.start()
	tb.Cleanup(func() {
		p.Kill()
		if tb.Failed() {
			keepLog(tb, "auditlog-"+args[0], p.Output())
			tb.Logf("output of auditlog %s (last 4 KiB):\n%s", strings.Join(args, " "), tail(p.Output(), 4096))
		}
	})
	return p
}

func (p *Proc) start() {
	p.tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(Binary(p.tb), p.args...)
	cmd.Env = p.env
	if p.out == nil {
		p.out = &dbtest.SyncBuffer{}
	}
	p.runs++
	fmt.Fprintf(p.out, "=== start %d of auditlog %s at %s\n", p.runs, strings.Join(p.args, " "), time.Now().Format(time.RFC3339Nano))
	cmd.Stdout, cmd.Stderr = p.out, p.out
	// Its own process group (a kill reaches it alone), and killed with
	// the test process if that dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		p.tb.Fatalf("start auditlog %s: %v", strings.Join(p.args, " "), err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
}

// Pid returns the process id of the current run.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// Kill sends SIGKILL (kill -9) and waits for the process to be gone. It
// does nothing when the process has already exited.
func (p *Proc) Kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	fmt.Fprintf(p.out, "=== killed with SIGKILL at %s\n", time.Now().Format(time.RFC3339Nano))
}

// Restart starts the same command again after the previous run ended
// (killed, as a supervisor would restart it).
func (p *Proc) Restart() {
	p.tb.Helper()
	if !p.Exited() {
		p.tb.Fatalf("auditlog %s: restart while it still runs", strings.Join(p.args, " "))
	}
	p.start()
}

// Exited reports whether the current run has ended.
func (p *Proc) Exited() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// Output returns everything the process wrote so far, over all its runs.
func (p *Proc) Output() string { return p.out.String() }

// WaitOutput waits until the output of the current run matches re and
// returns the first submatch (or the whole match); it fails the test when
// the process exits first or timeout passes.
func (p *Proc) WaitOutput(re *regexp.Regexp, timeout time.Duration) string {
	p.tb.Helper()
	p.mu.Lock()
	marker := fmt.Sprintf("=== start %d of ", p.runs)
	p.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for {
		out := p.Output()
		if i := strings.LastIndex(out, marker); i >= 0 {
			out = out[i:]
		}
		if m := re.FindStringSubmatch(out); m != nil {
			return m[len(m)-1]
		}
		if p.Exited() {
			p.tb.Fatalf("auditlog %s exited before printing %s:\n%s", strings.Join(p.args, " "), re, tail(p.Output(), 4096))
		}
		if time.Now().After(deadline) {
			p.tb.Fatalf("auditlog %s did not print %s within %s:\n%s", strings.Join(p.args, " "), re, timeout, tail(p.Output(), 4096))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ServeURL is the pattern of the line `auditlog serve` prints once it
// listens; WaitOutput(ServeURL, …) returns the base URL.
var ServeURL = regexp.MustCompile(`auditlog serving on (http://\S+)`)

// LogsEnv names the environment variable holding a directory where a
// failed scenario's subprocess and cluster logs are kept whole (`make
// faults` sets it to faults-logs/); the test log shows their last 4 KiB.
const LogsEnv = "AUDITLOG_FAULTS_LOGS"

// keepLog writes a failed test's log named name into AUDITLOG_FAULTS_LOGS.
func keepLog(tb testing.TB, name, text string) {
	dir := os.Getenv(LogsEnv)
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Logf("keep logs: %v", err)
		return
	}
	path := filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(tb.Name())+"-"+name+".log")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		tb.Logf("keep logs: %v", err)
		return
	}
	tb.Logf("the whole log is in %s", path)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// longestTimeout finds the longest job timeout in the worker's refusal of
// a rescue delay ("… the longest is 4m0s)").
var longestTimeout = regexp.MustCompile(`the longest is ([0-9][0-9a-zµ.]*)`)

// RescueAfter returns the rescue delay to run `auditlog worker` with
// (AUDITLOG_RESCUE_AFTER): want when the worker accepts it, or, when it
// refuses a delay not longer than its longest job timeout (so that River
// never rescues an attempt that still runs), 15 s more than that timeout.
// It asks the binary itself: the worker checks its flags before it
// connects, here to a port where nothing listens.
func RescueAfter(tb testing.TB, want time.Duration) time.Duration {
	tb.Helper()
	_, stderr, err := Run(tb, Env("DATABASE_URL=postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2",
		"AUDITLOG_RESCUE_AFTER="+want.String()), "worker")
	var exit *exec.ExitError
	if err == nil || !errors.As(err, &exit) || exit.ExitCode() != 2 {
		return want // accepted (it then failed to connect)
	}
	m := longestTimeout.FindStringSubmatch(stderr)
	if m == nil {
		tb.Fatalf("auditlog worker refuses AUDITLOG_RESCUE_AFTER=%s: %s", want, stderr)
	}
	longest, perr := time.ParseDuration(m[1])
	if perr != nil {
		tb.Fatalf("auditlog worker refuses AUDITLOG_RESCUE_AFTER=%s: %s", want, stderr)
	}
	tb.Logf("auditlog worker refuses a rescue delay of %s (its longest job timeout is %s); using %s", want, longest, longest+15*time.Second)
	return longest + 15*time.Second
}
