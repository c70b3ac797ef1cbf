// Package dbtest gives tests and benchmarks their own PostgreSQL databases.
//
// The server comes from DATABASE_URL or, when it is unset, from
// scripts/postgres.sh (which finds, starts or installs one), so `go test
// ./...` works with or without make. Each test process migrates one
// template database; a test then either borrows a transaction on a shared
// clone that is rolled back when the test ends (Tx), or gets a fresh clone
// of its own, dropped when the test ends (Pool). Nothing depends on what a
// previous run left behind: every database is created by this process and
// named after it.
//
// It also holds the one copy of what the packages' tests share: a fixed
// clock (Now, Clock), the sign-in they record (SignIn), rows written past
// the API (InsertRaw), counts (Count), polling on the test's goroutine
// (Eventually), a Log over a database of the test's own (NewFixture),
// the erasure tests' people and places (NewErasure) and the checkout's
// root (ModuleRoot).
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/auditlog/auditlog/migrations"
	"github.com/auditlog/auditlog/service"
)

var (
	serverOnce sync.Once
	serverURL  string
	serverErr  error

	templateOnce sync.Once
	templateName string
	templateErr  error

	sharedOnce sync.Once
	sharedPool *pgxpool.Pool
	sharedErr  error

	mu      sync.Mutex
	created []string // databases this process made, dropped by Main
)

// ServerURL returns the URL of the PostgreSQL server to create databases on.
func ServerURL() (string, error) {
	serverOnce.Do(func() {
		if u := os.Getenv("DATABASE_URL"); u != "" {
			serverURL = u
			return
		}
		root, err := ModuleRoot()
		if err != nil {
			serverErr = err
			return
		}
		cmd := exec.Command("bash", filepath.Join(root, "scripts", "postgres.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			serverErr = fmt.Errorf("scripts/postgres.sh: %w", err)
			return
		}
		serverURL = strings.TrimSpace(string(out))
	})
	return serverURL, serverErr
}

// ModuleRoot returns the directory of the go.mod at or above the working
// directory (a test runs in its package's directory): the checkout's
// root, where scripts/ and cmd/ are.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("dbtest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Config returns a pool configuration for database name on the server.
func Config(name string) (*pgxpool.Config, error) {
	u, err := ServerURL()
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		return nil, fmt.Errorf("dbtest: parse server URL: %w", err)
	}
	if name != "" {
		cfg.ConnConfig.Database = name
	}
	return cfg, nil
}

// DatabaseURL returns a connection string for database name on the server,
// for code that takes a URL (the CLI's DATABASE_URL).
func DatabaseURL(name string) (string, error) {
	u, err := ServerURL()
	if err != nil {
		return "", err
	}
	if parsed, err := url.Parse(u); err == nil && (parsed.Scheme == "postgres" || parsed.Scheme == "postgresql") {
		parsed.Path = "/" + name
		return parsed.String(), nil
	}
	return u + " dbname=" + name, nil // keyword=value form
}

// EmptyDatabase creates a database with no schema at all, dropped when the
// test ends, and returns its name.
func EmptyDatabase(tb testing.TB) string {
	tb.Helper()
	ctx := context.Background()
	name := uniqueName("empty")
	if err := adminExec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatal(err)
	}
	remember(name)
	tb.Cleanup(func() {
		if err := DropDatabase(context.Background(), name); err != nil {
			tb.Errorf("drop %s: %v", name, err)
		}
	})
	return name
}

func adminExec(ctx context.Context, sql string) error {
	cfg, err := Config("")
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		return fmt.Errorf("dbtest: connect: %w", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func uniqueName(kind string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("auditlog_test_%s_%d_%s", kind, os.Getpid(), hex.EncodeToString(b[:]))
}

// Template returns the name of this process's migrated template database.
func Template() (string, error) {
	templateOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		name := uniqueName("tpl")
		if err := adminExec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			templateErr = fmt.Errorf("dbtest: create template: %w", err)
			return
		}
		remember(name)
		if err := Migrate(ctx, name); err != nil {
			templateErr = err
			return
		}
		templateName = name
	})
	return templateName, templateErr
}

// Migrate prepares database name as `auditlog migrate up` does: every
// migration, then the monthly partitions from the retention window's start
// to three months ahead.
func Migrate(ctx context.Context, name string) error {
	cfg, err := Config(name)
	if err != nil {
		return err
	}
	sqlDB := stdlib.OpenDB(*cfg.ConnConfig)
	defer sqlDB.Close()
	p, err := migrations.NewProvider(sqlDB, nil)
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("dbtest: migrate %s: %w", name, err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	log, err := service.New(pool, nil)
	if err != nil {
		return fmt.Errorf("dbtest: %w", err)
	}
	if _, err := log.EnsurePartitions(ctx, pool, service.DefaultPartitionsAhead); err != nil {
		return fmt.Errorf("dbtest: %w", err)
	}
	return nil
}

func remember(name string) {
	mu.Lock()
	created = append(created, name)
	mu.Unlock()
}

// CreateDatabase clones the migrated template into a new database and
// returns its name. The caller drops it (Pool does this in t.Cleanup).
func CreateDatabase(ctx context.Context) (string, error) {
	tpl, err := Template()
	if err != nil {
		return "", err
	}
	name := uniqueName("db")
	err = adminExec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s",
		pgx.Identifier{name}.Sanitize(), pgx.Identifier{tpl}.Sanitize()))
	if err != nil {
		return "", fmt.Errorf("dbtest: clone template: %w", err)
	}
	remember(name)
	return name, nil
}

// DropDatabase drops database name, closing its sessions.
func DropDatabase(ctx context.Context, name string) error {
	return adminExec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", pgx.Identifier{name}.Sanitize()))
}

// Pool returns a pool on a fresh migrated database of the test's own,
// closed and dropped when the test ends. Use it when the test commits,
// runs a River client or does DDL.
func Pool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	return PoolWith(tb, nil)
}

// PoolWith is Pool with configure applied to the pool's configuration
// first (a query tracer, a connection limit); configure may be nil.
func PoolWith(tb testing.TB, configure func(*pgxpool.Config)) *pgxpool.Pool {
	tb.Helper()
	ctx := context.Background()
	name, err := CreateDatabase(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	cfg, err := Config(name)
	if err != nil {
		tb.Fatal(err)
	}
	if configure != nil {
		configure(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		pool.Close()
		if err := DropDatabase(context.Background(), name); err != nil {
			tb.Errorf("drop %s: %v", name, err)
		}
	})
	return pool
}

// Tx returns a transaction on a database shared by this process's tests,
// rolled back when the test ends, so nothing it writes is seen by others.
func Tx(tb testing.TB) pgx.Tx {
	tb.Helper()
	sharedOnce.Do(func() {
		ctx := context.Background()
		name, err := CreateDatabase(ctx)
		if err != nil {
			sharedErr = err
			return
		}
		cfg, err := Config(name)
		if err != nil {
			sharedErr = err
			return
		}
		sharedPool, sharedErr = pgxpool.NewWithConfig(ctx, cfg)
	})
	if sharedErr != nil {
		tb.Fatal(sharedErr)
	}
	tx, err := sharedPool.Begin(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx
}

// Main runs the tests, then drops every database this process created.
// Call it from TestMain: os.Exit(dbtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if sharedPool != nil {
		sharedPool.Close()
	}
	mu.Lock()
	names := created
	mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := len(names) - 1; i >= 0; i-- {
		if err := DropDatabase(ctx, names[i]); err != nil {
			fmt.Fprintf(os.Stderr, "dbtest: drop %s: %v\n", names[i], err)
		}
	}
	return code
}
