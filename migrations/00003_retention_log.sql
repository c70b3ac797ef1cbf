-- One row per expired month that retention removed: which partition, which
-- month, about how many rows, when, and under which window. Kept forever:
-- it holds no personal data.

-- +goose Up
CREATE TABLE retention_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partition_name text        NOT NULL,
    month          date        NOT NULL,
    rows_estimated bigint      NOT NULL,
    dropped_at     timestamptz NOT NULL,
    retention      interval    NOT NULL,
    reason         text        NOT NULL
);

COMMENT ON TABLE retention_log IS
    'auditlog: expired user_events months removed by partition maintenance';
COMMENT ON COLUMN retention_log.rows_estimated IS
    'from the planner statistics (reltuples, n_live_tup) so a drop stays O(1); exact for rows deleted from the default partition';
COMMENT ON COLUMN retention_log.reason IS
    'expired (a monthly partition past the window), orphan (a detached partition finished), default (expired rows deleted from user_events_default)';

-- +goose Down
DROP TABLE retention_log;
