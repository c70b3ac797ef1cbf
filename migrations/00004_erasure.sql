-- GDPR erasure requests. A request is stored and its River job enqueued in
-- one transaction; the job deletes the person's user events, scrubs the
-- personal fields of events they acted in, and records what it did here.
--
-- The row itself is kept after completion as the record that the erasure
-- happened (who, when, why, how many rows): it holds the host's opaque user
-- id and the stated reason, never an IP, user agent or location.

-- +goose Up
CREATE TABLE erasure_requests (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id               text        NOT NULL,
    reason                text        NOT NULL,
    requested_by          text,
    requested_at          timestamptz NOT NULL,
    status                text        NOT NULL DEFAULT 'pending',
    started_at            timestamptz,
    completed_at          timestamptz,
    user_events_deleted   bigint      NOT NULL DEFAULT 0,
    user_events_scrubbed  bigint      NOT NULL DEFAULT 0,
    project_events_scrubbed bigint    NOT NULL DEFAULT 0,
    counts                jsonb       NOT NULL DEFAULT '{}',
    attempts              integer     NOT NULL DEFAULT 0,
    error                 text,
    CHECK (status IN ('pending', 'running', 'retrying', 'done', 'failed')),
    CHECK (jsonb_typeof(counts) = 'object')
);

COMMENT ON TABLE erasure_requests IS
    'auditlog: GDPR erasure requests and what each erasure removed; kept as the record of the erasure';
COMMENT ON COLUMN erasure_requests.counts IS
    'rows changed per table: the subject''s user events deleted from each partition, default or detached table; user events of other accounts and project events the subject acted in scrubbed (keys "<table>:scrubbed")';

-- At most one open request per person: a second request while one is open
-- returns the first.
CREATE UNIQUE INDEX erasure_requests_open_user_idx ON erasure_requests (user_id)
    WHERE status IN ('pending', 'running', 'retrying');
CREATE INDEX erasure_requests_requested_idx ON erasure_requests (requested_at DESC, id DESC);

-- +goose Down
DROP TABLE erasure_requests;
