package jobs

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/auditlog/auditlog/service"
)

// Enqueuer implements service.Enqueuer with an insert-only River client:
// jobs go into the caller's transaction with InsertTx, and whichever
// process runs the workers (auditlog worker or serve) picks them up.
type Enqueuer struct {
	client *river.Client[pgx.Tx]
}

// NewEnqueuer returns an Enqueuer over pool.
func NewEnqueuer(pool *pgxpool.Pool) (*Enqueuer, error) {
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{})
	if err != nil {
		return nil, fmt.Errorf("river insert client: %w", err)
	}
	return &Enqueuer{client: client}, nil
}

// EnqueueErasureTx inserts the erasure job of request requestID in tx.
func (e *Enqueuer) EnqueueErasureTx(ctx context.Context, tx pgx.Tx, requestID int64) error {
	_, err := e.client.InsertTx(ctx, tx, ErasureArgs{RequestID: requestID}, nil)
	return err
}

// EnqueueHookTx inserts hook's job for event e in tx.
func (e *Enqueuer) EnqueueHookTx(ctx context.Context, tx pgx.Tx, hook string, ev *service.Event) error {
	_, err := e.client.InsertTx(ctx, tx, HookArgs{Hook: hook, Model: ev.Model, EventID: ev.ID, Time: ev.Time}, nil)
	return err
}

// EnqueueMaintenance inserts a partition-maintenance job in a statement of
// its own. The job is unique while one is queued or running, so a burst of
// requests from several processes enqueues one pass.
func (e *Enqueuer) EnqueueMaintenance(ctx context.Context) error {
	if _, err := e.client.Insert(ctx, PartitionMaintenanceArgs{}, nil); err != nil {
		return fmt.Errorf("enqueue partition maintenance: %w", err)
	}
	return nil
}
