-- Erasure hardening: a request whose River job is gone can be seen and
-- superseded; a request for an id that no event names is recorded as such;
-- admin reads whose filter named the person are counted.
--
-- River's tables come from the Go migration 00002, so sqlc does not know
-- river_job. The job state of a request is read through a function, which
-- sqlc only sees by its signature; PostgreSQL checks its body here, after
-- river_job exists.

-- +goose Up
ALTER TABLE erasure_requests
    ADD COLUMN events_found boolean NOT NULL DEFAULT true,
    ADD COLUMN supersedes bigint REFERENCES erasure_requests (id),
    ADD COLUMN admin_reads_scrubbed bigint NOT NULL DEFAULT 0;

COMMENT ON COLUMN erasure_requests.events_found IS
    'whether any event named the person when the request was made (their user events in any table, events they acted in); true for requests older than this column';
COMMENT ON COLUMN erasure_requests.supersedes IS
    'the stuck request (open, its River job cancelled, discarded, deleted or finished) this one replaced; that one is failed';
COMMENT ON COLUMN erasure_requests.admin_reads_scrubbed IS
    'admin:events:view events whose filter named the person (user, actor, or a narrow network of theirs) and now names the pseudonym or "[erased]"';

-- auditlog_erasure_job_state is the state of the River job of erasure
-- request $1: a live state (available, pending, running, retryable,
-- scheduled) when it has a live job, else the newest job's final state
-- (cancelled, discarded, completed), or 'deleted' when no job row is left.
-- +goose StatementBegin
CREATE FUNCTION auditlog_erasure_job_state(bigint) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT COALESCE((
        SELECT j.state::text
        FROM river_job j
        WHERE j.kind = 'auditlog_erasure'
          AND j.args @> jsonb_build_object('request_id', $1)
        ORDER BY j.state IN ('available', 'pending', 'running', 'retryable', 'scheduled') DESC, j.id DESC
        LIMIT 1), 'deleted')
$$;
-- +goose StatementEnd

-- auditlog_try_inet is $1 as inet, or NULL when it is not an address or
-- network: a malformed filter in one admin read must not fail an erasure.
-- +goose StatementBegin
CREATE FUNCTION auditlog_try_inet(text) RETURNS inet
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
    RETURN $1::inet;
EXCEPTION WHEN data_exception THEN
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION auditlog_try_inet(text);
DROP FUNCTION auditlog_erasure_job_state(bigint);
ALTER TABLE erasure_requests
    DROP COLUMN admin_reads_scrubbed,
    DROP COLUMN supersedes,
    DROP COLUMN events_found;
