-- The two event models decided in PyPI's 2019 audit-log meeting.
--
-- user_events holds personal data (IP, user agent, location). It is range
-- partitioned on time, one partition per UTC calendar month named
-- user_events_pYYYYMM, so retention drops whole months instead of deleting
-- rows. user_events_default catches rows whose month has no partition; the
-- recording API refuses such rows, so it stays empty in normal operation.
--
-- project_events is the history of a project and is kept forever. Its
-- personal columns are erasable without deleting the event.
--
-- Both tables draw ids from one sequence, so (time, id) orders events of
-- both models in one timeline (the admin view pages across both).

-- +goose Up
CREATE SEQUENCE event_id_seq AS bigint;

CREATE TABLE user_events (
    id               bigint      NOT NULL DEFAULT nextval('event_id_seq'),
    time             timestamptz NOT NULL DEFAULT now(),
    tag              text COLLATE "C" NOT NULL,
    user_id          text        NOT NULL,
    actor_id         text,
    auth_method      text,
    token_id         text,
    actor_two_factor boolean,
    ip               inet,
    user_agent       text,
    location         jsonb,
    description      text        NOT NULL,
    additional       jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (time, id),
    CHECK (jsonb_typeof(additional) = 'object'),
    CHECK (location IS NULL OR jsonb_typeof(location) = 'object')
) PARTITION BY RANGE (time);

COMMENT ON TABLE user_events IS
    'auditlog: account events; personal data; monthly partitions dropped after the retention window';

-- One user's newest events (the security history page).
CREATE INDEX user_events_user_time_idx ON user_events (user_id, time DESC, id DESC);
-- By IP; a btree on inet also serves CIDR containment (ip <<= '10.0.0.0/8').
CREATE INDEX user_events_ip_idx ON user_events (ip) WHERE ip IS NOT NULL;
-- By actor (what an admin or a token did to accounts).
CREATE INDEX user_events_actor_time_idx ON user_events (actor_id, time DESC) WHERE actor_id IS NOT NULL;
-- By tag, or a tag prefix (tag is COLLATE "C", so a prefix is a btree range), and time.
CREATE INDEX user_events_tag_time_idx ON user_events (tag, time DESC);

CREATE TABLE user_events_default PARTITION OF user_events DEFAULT;

-- Partitions for the current UTC month and the next three, so recording
-- works as soon as the migration ran. Partition maintenance (auditlog
-- partitions maintain, and the River retention job) keeps them ahead later.
-- +goose StatementBegin
DO $$
DECLARE
    month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
BEGIN
    FOR i IN 0..3 LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF user_events FOR VALUES FROM (%L) TO (%L)',
            'user_events_p' || to_char(month + make_interval(months => i), 'YYYYMM'),
            (month + make_interval(months => i))::timestamp AT TIME ZONE 'UTC',
            (month + make_interval(months => i + 1))::timestamp AT TIME ZONE 'UTC');
    END LOOP;
END
$$;
-- +goose StatementEnd

CREATE TABLE project_events (
    id               bigint      NOT NULL DEFAULT nextval('event_id_seq'),
    time             timestamptz NOT NULL DEFAULT now(),
    tag              text COLLATE "C" NOT NULL,
    project_id       text        NOT NULL,
    actor_id         text,
    auth_method      text,
    token_id         text,
    actor_two_factor boolean,
    ip               inet,
    user_agent       text,
    location         jsonb,
    description      text        NOT NULL,
    additional       jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (time, id),
    CHECK (jsonb_typeof(additional) = 'object'),
    CHECK (location IS NULL OR jsonb_typeof(location) = 'object')
);

COMMENT ON TABLE project_events IS
    'auditlog: project history; kept forever; personal columns erasable in place';

CREATE INDEX project_events_project_time_idx ON project_events (project_id, time DESC, id DESC);
CREATE INDEX project_events_actor_time_idx ON project_events (actor_id, time DESC) WHERE actor_id IS NOT NULL;
CREATE INDEX project_events_ip_idx ON project_events (ip) WHERE ip IS NOT NULL;
CREATE INDEX project_events_tag_time_idx ON project_events (tag, time DESC);

-- +goose Down
DROP TABLE project_events;
DROP TABLE user_events;
DROP SEQUENCE event_id_seq;
