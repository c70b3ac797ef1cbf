-- Import of an existing service's history (auditlog import). Every
-- imported event keeps its name in the system it came from: import_keys
-- holds (source, source_id) once, written in the transaction that records
-- the event, so a rerun or a resumed import records nothing twice; it
-- holds the source's own event ids only (no personal data) and outlives
-- the events' retention, so an expired source event is never imported
-- later either. import_runs keeps each run's position in its input and its
-- counts, committed with each batch, so a killed run resumes where it
-- stopped with the same totals.

-- +goose Up
CREATE TABLE import_keys (
    source    text COLLATE "C" NOT NULL,
    source_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (source, source_id)
);
COMMENT ON TABLE import_keys IS
    'auditlog: the (source, source_id) of every imported event, once: what makes an import exactly-once';

CREATE TABLE import_runs (
    run         text PRIMARY KEY,
    position    bigint      NOT NULL DEFAULT 0,
    counts      jsonb       NOT NULL DEFAULT '{}',
    started_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    finished_at timestamptz,
    CHECK (jsonb_typeof(counts) = 'object')
);
COMMENT ON TABLE import_runs IS
    'auditlog: each import run''s position in its input and its counts so far, for resuming a killed run';

-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'auditlog_reader') THEN
        GRANT SELECT ON import_keys, import_runs TO auditlog_reader;
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP TABLE import_runs;
DROP TABLE import_keys;
