package warehousetest

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Schema is the DDL CreateSchema runs: Warehouse's ip_addresses, the five
// per-parent event tables and the parents they reference.
//
//go:embed schema.sql
var Schema string

// Tables lists the five event tables HasEvents gives Warehouse.
var Tables = []string{"user_events", "project_events", "file_events", "organization_events", "team_events"}

// CreateSchema creates Warehouse's audit-event tables in the (empty)
// database pool is connected to.
func CreateSchema(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, Schema); err != nil {
		return fmt.Errorf("warehousetest: create schema: %w", err)
	}
	return nil
}
