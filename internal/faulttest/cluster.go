package faulttest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a private PostgreSQL cluster of one test: initdb into a
// temporary directory, a postmaster on a free port of 127.0.0.1 (TCP
// only), trust authentication for the postgres role. As root, initdb and
// the server run as the postgres OS user, as scripts/postgres.sh does
// (initdb refuses root). Crash stops it the way a crash would; Start
// brings it back through crash recovery. It is stopped and removed when
// the test ends.
type Cluster struct {
	tb      testing.TB
	bindir  string
	dir     string // the temporary directory: data/ and server.log
	port    int
	cred    *syscall.Credential
	cmd     *exec.Cmd
	done    chan struct{}
	logFile *os.File
}

// StartCluster initialises and starts a private cluster.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	bindir, err := postgresBindir()
	if err != nil {
		tb.Skipf("no private PostgreSQL cluster: %v", err)
	}
	c := &Cluster{tb: tb, bindir: bindir}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			tb.Fatalf("as root the private cluster runs as the postgres OS user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	if c.dir, err = os.MkdirTemp("", "auditlog-faults-pg-"); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(c.dir) })
	// The cluster's owner must enter the directory; data/ is its alone.
	if err := os.Chmod(c.dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	data := filepath.Join(c.dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		tb.Fatal(err)
	}
	if c.cred != nil {
		if err := os.Chown(data, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			tb.Fatal(err)
		}
	}
	initdb := exec.Command(filepath.Join(bindir, "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
		"--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		tb.Fatalf("initdb: %v\n%s", err, out)
	}
	if c.logFile, err = os.Create(filepath.Join(c.dir, "server.log")); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		c.stop(syscall.SIGINT) // fast shutdown
		_ = c.logFile.Close()
		if tb.Failed() {
			if b, err := os.ReadFile(c.logFile.Name()); err == nil {
				keepLog(tb, "postgres", string(b))
				tb.Logf("private cluster log (last 4 KiB):\n%s", tail(string(b), 4096))
			}
		}
	})
	c.port = freePort(tb)
	c.Start()
	return c
}

// URL returns the connection URL of the cluster's postgres database.
func (c *Cluster) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// Start starts the postmaster (again, after Crash: PostgreSQL replays its
// WAL first) and waits until it accepts connections.
func (c *Cluster) Start() {
	c.tb.Helper()
	if c.done != nil {
		select {
		case <-c.done:
		default:
			c.tb.Fatal("private cluster: Start while it runs")
		}
	}
	fmt.Fprintf(c.logFile, "=== faulttest: start at %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(filepath.Join(c.bindir, "postgres"), "-D", filepath.Join(c.dir, "data"),
		"-p", strconv.Itoa(c.port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
		"-c", "max_connections=200")
	cmd.Stdout, cmd.Stderr = c.logFile, c.logFile
	// Killed (immediate shutdown) with the test process if that dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	if err := cmd.Start(); err != nil {
		c.tb.Fatalf("start the private cluster: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	c.cmd, c.done = cmd, done
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, c.URL())
		if err == nil {
			_, err = conn.Exec(ctx, "SELECT 1")
			_ = conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return
		}
		select {
		case <-done:
			c.tb.Fatalf("the private cluster exited while starting (see its log at %s)", c.logFile.Name())
		default:
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("the private cluster does not accept connections: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Crash stops the cluster as a crash does: an immediate shutdown
// (SIGQUIT to the postmaster, as `pg_ctl stop -m immediate`), which ends
// every backend at once and writes no checkpoint, so the next Start runs
// crash recovery. It returns once the postmaster is gone.
func (c *Cluster) Crash() {
	c.tb.Helper()
	fmt.Fprintf(c.logFile, "=== faulttest: crash (immediate shutdown) at %s\n", time.Now().Format(time.RFC3339Nano))
	if !c.stop(syscall.SIGQUIT) {
		c.tb.Fatal("the private cluster did not stop after SIGQUIT")
	}
}

// stop signals the postmaster and waits for it; SIGKILL after 30 s.
func (c *Cluster) stop(sig syscall.Signal) bool {
	if c.cmd == nil {
		return true
	}
	select {
	case <-c.done:
		return true
	default:
	}
	_ = c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
		return true
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
		return false
	}
}

// postgresBindir finds the newest installed PostgreSQL 15+ server
// binaries, as scripts/postgres.sh does.
func postgresBindir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	type cand struct {
		dir string
		v   int
	}
	var cands []cand
	for _, d := range dirs {
		v, err := strconv.Atoi(strings.SplitN(filepath.Base(filepath.Dir(d)), ".", 2)[0])
		if err != nil || v < 15 {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			cands = append(cands, cand{d, v})
		}
	}
	if len(cands) == 0 {
		if p, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
		return "", fmt.Errorf("no PostgreSQL 15+ server binaries (initdb) in /usr/lib/postgresql/*/bin or on PATH")
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].v > cands[j].v })
	return cands[0].dir, nil
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
