-- Index: none (an insert; ingest_tokens_active_name_idx refuses a second active name).
-- name: IngestTokenCreate :one
INSERT INTO ingest_tokens (name, token_hash, created_at)
VALUES (@name::text, @token_hash::bytea, @created_at::timestamptz)
RETURNING id;

-- IngestTokenByHash finds the active token with that hash.
-- Index: ingest_tokens_token_hash_key.
-- name: IngestTokenByHash :one
SELECT id, name FROM ingest_tokens
WHERE token_hash = @token_hash::bytea AND revoked_at IS NULL;

-- Index: ingest_tokens_active_name_idx.
-- name: IngestTokenRevoke :execrows
UPDATE ingest_tokens SET revoked_at = @revoked_at::timestamptz
WHERE name = @name::text AND revoked_at IS NULL;

-- Index: none (a few rows, read whole).
-- name: IngestTokenList :many
SELECT id, name, created_at, revoked_at FROM ingest_tokens ORDER BY name, id;

-- IngestRequestClaim stores an Idempotency-Key for a request, or takes
-- over one older than the keep time. It returns no row when the key is
-- held: by a committed request, or by one that commits while this insert
-- waits on it.
-- Index: ingest_requests_pkey.
-- name: IngestRequestClaim :one
INSERT INTO ingest_requests (token_id, key, request_sha256, created_at)
VALUES (@token_id::bigint, @key::text, @request_sha256::bytea, @now::timestamptz)
ON CONFLICT (token_id, key) DO UPDATE
    SET request_sha256 = EXCLUDED.request_sha256, response = '{}', created_at = EXCLUDED.created_at
    WHERE ingest_requests.created_at < @expired_before::timestamptz
RETURNING token_id;

-- Index: ingest_requests_pkey.
-- name: IngestRequestGet :one
SELECT request_sha256, response FROM ingest_requests
WHERE token_id = @token_id::bigint AND key = @key::text;

-- Index: ingest_requests_pkey.
-- name: IngestRequestAnswer :exec
UPDATE ingest_requests SET response = @response::jsonb
WHERE token_id = @token_id::bigint AND key = @key::text;

-- Index: ingest_requests_created_idx.
-- name: IngestRequestPrune :execrows
DELETE FROM ingest_requests WHERE created_at < @expired_before::timestamptz;

-- IngestRequestGetLive is the row of a key while it is kept: Ingest reads
-- the row erasure rewrote a key to (auditlog_erased_key) with it.
-- Index: ingest_requests_pkey.
-- name: IngestRequestGetLive :one
SELECT request_sha256, response FROM ingest_requests
WHERE token_id = @token_id::bigint AND key = @key::text AND created_at >= @expired_before::timestamptz;
