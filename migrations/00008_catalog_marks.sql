-- Which event catalog each kind of process last ran with: `migrate up`
-- and `serve` record theirs, `worker` and `erase` compare theirs with it
-- and warn when they differ (they would then record, describe, show or
-- erase events by another catalog than the service's).

-- +goose Up
CREATE TABLE catalog_marks (
    process     text        PRIMARY KEY,
    catalog     text        NOT NULL,
    fingerprint text        NOT NULL,
    marked_at   timestamptz NOT NULL
);
COMMENT ON TABLE catalog_marks IS
    'auditlog: the event catalog (name, fingerprint) each kind of process last started with';

-- +goose Down
DROP TABLE catalog_marks;
