// Package migrations holds auditlog's schema: goose SQL migrations (also
// the schema sqlc compiles the queries in sql/ against) and one Go
// migration that installs River's tables, so a single `auditlog migrate up`
// prepares everything and `migrate down` to zero removes everything.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/rivermigrate"
)

//go:embed *.sql
var sqlFiles embed.FS

// RiverVersion is the River schema version that migration 2 installs.
// Upgrading River to a release with a newer schema means adding a goose
// migration that moves River's line from this version to the new one.
const RiverVersion = 8

// riverGoVersion is the goose version of the Go migration installing River.
const riverGoVersion = 2

// NewProvider returns a goose provider over the embedded migrations. It
// holds a PostgreSQL advisory lock while migrating, so several processes
// running `migrate up` at once apply each migration once.
func NewProvider(db *sql.DB, logger *slog.Logger) (*goose.Provider, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, err
	}
	opts := []goose.ProviderOption{
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
		goose.WithGoMigrations(goose.NewGoMigration(riverGoVersion,
			&goose.GoFunc{RunDB: riverUp},
			&goose.GoFunc{RunDB: riverDown},
		)),
	}
	if logger != nil {
		opts = append(opts, goose.WithSlog(logger))
	}
	return goose.NewProvider(goose.DialectPostgres, db, sqlFiles, opts...)
}

// River's migrations cannot share one transaction (one adds an enum value
// that a later one uses), so migration 2 runs outside goose's transaction
// and River applies each of its versions in a transaction of its own;
// re-running it after a failure resumes where it stopped.
func riverMigrator(db *sql.DB) (*rivermigrate.Migrator[*sql.Tx], error) {
	return rivermigrate.New(riverdatabasesql.New(db), &rivermigrate.Config{
		Logger: slog.New(slog.DiscardHandler),
	})
}

func riverUp(ctx context.Context, db *sql.DB) error {
	m, err := riverMigrator(db)
	if err != nil {
		return err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, &rivermigrate.MigrateOpts{TargetVersion: RiverVersion}); err != nil {
		return fmt.Errorf("install river schema: %w", err)
	}
	return nil
}

func riverDown(ctx context.Context, db *sql.DB) error {
	m, err := riverMigrator(db)
	if err != nil {
		return err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionDown, &rivermigrate.MigrateOpts{TargetVersion: -1}); err != nil {
		return fmt.Errorf("remove river schema: %w", err)
	}
	return nil
}

// ErrNotMigrated: the database's schema is missing or older than this
// binary's migrations; `auditlog migrate up` brings it up to date.
var ErrNotMigrated = errors.New("run `auditlog migrate up`")

// Check reports whether the database pool points at holds every
// migration this binary has, with an error wrapping ErrNotMigrated that
// says so when not. A newer schema (a newer binary migrated it) is
// accepted.
func Check(ctx context.Context, pool *pgxpool.Pool) error {
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('goose_db_version') IS NOT NULL").Scan(&exists); err != nil {
		return fmt.Errorf("check the schema: %w", err)
	}
	if !exists {
		return fmt.Errorf("the database holds no auditlog schema: %w first", ErrNotMigrated)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer func() { _ = db.Close() }()
	p, err := NewProvider(db, nil)
	if err != nil {
		return err
	}
	current, target, err := p.GetVersions(ctx)
	if err != nil {
		return fmt.Errorf("check the schema: %w", err)
	}
	if current < target {
		return fmt.Errorf("the schema is at version %d and this binary needs %d: %w", current, target, ErrNotMigrated)
	}
	return nil
}

// DropVersionTable drops goose's bookkeeping table, for `migrate down` to
// version 0, which leaves nothing of auditlog behind.
func DropVersionTable(ctx context.Context, db *sql.DB) error {
	_, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS goose_db_version")
	return err
}
