-- HTTP ingest for services not written in Go: tokens (only their SHA-256
-- is stored) and the Idempotency-Key of each accepted request with its
-- answer, kept 24 hours so a retried request records nothing twice.

-- +goose Up
CREATE TABLE ingest_tokens (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text        NOT NULL,
    token_hash bytea       NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);

COMMENT ON TABLE ingest_tokens IS
    'auditlog: tokens that may POST /api/v1/events; only the SHA-256 of each token is kept';

-- One active token per name; a revoked name may be issued again.
CREATE UNIQUE INDEX ingest_tokens_active_name_idx ON ingest_tokens (name) WHERE revoked_at IS NULL;

CREATE TABLE ingest_requests (
    token_id       bigint      NOT NULL REFERENCES ingest_tokens (id) ON DELETE CASCADE,
    key            text        NOT NULL,
    request_sha256 bytea       NOT NULL,
    response       jsonb       NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL,
    PRIMARY KEY (token_id, key)
);

COMMENT ON TABLE ingest_requests IS
    'auditlog: Idempotency-Key of each accepted ingest request and its answer, kept 24 hours';

CREATE INDEX ingest_requests_created_idx ON ingest_requests (created_at);

-- +goose Down
DROP TABLE ingest_requests;
DROP TABLE ingest_tokens;
