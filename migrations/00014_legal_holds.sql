-- Legal holds (docs/architecture.md, "Legal holds"). A hold on a person
-- keeps their user events past the retention window: before retention
-- drops a month, the rows of every person under an open hold (their own
-- events and those they acted in) are copied into held_user_events in the
-- drop's transaction, so the drop stays O(partitions) + O(held rows).
-- Held rows are dropped by a later pass once no open hold covers them and
-- they are outside the window. A hold on a project or an organization
-- (its teams included) freezes its events, which are kept forever anyway:
-- erasure does not scrub them while it is open. An erasure request that a
-- hold stops is 'blocked' (blocked_by names the hold) and goes back to
-- 'pending', with its job, when the last hold on it is released.
--
-- legal_holds is kept forever as the record of every hold: who placed and
-- released it, when and why. Its reason is an admin's text about an
-- investigation, shown to admins only.

-- +goose Up
CREATE TABLE legal_holds (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_kind text        NOT NULL CHECK (subject_kind IN ('user', 'project', 'organization')),
    subject_id   text        NOT NULL,
    reason       text        NOT NULL,
    placed_by    text        NOT NULL,
    placed_at    timestamptz NOT NULL,
    until        timestamptz,
    released_by  text,
    released_at  timestamptz,
    CHECK ((released_by IS NULL) = (released_at IS NULL))
);
-- At most one open hold per subject: placing a second returns the first.
CREATE UNIQUE INDEX legal_holds_open_idx ON legal_holds (subject_kind, subject_id) WHERE released_at IS NULL;
CREATE INDEX legal_holds_placed_idx ON legal_holds (placed_at DESC, id DESC);
COMMENT ON TABLE legal_holds IS
    'auditlog: legal holds on a person, a project or an organization; kept forever as the record of each hold';

-- The held user events: user_events' columns, the same rules (append-only,
-- recorded erasure changes), found by person, actor and time.
CREATE TABLE held_user_events (LIKE user_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS, PRIMARY KEY (id));
CREATE INDEX held_user_events_user_idx ON held_user_events (user_id, time DESC, id DESC);
CREATE INDEX held_user_events_actor_idx ON held_user_events (actor_id, time DESC) WHERE actor_id IS NOT NULL;
CREATE INDEX held_user_events_time_idx ON held_user_events (time DESC, id DESC);
COMMENT ON TABLE held_user_events IS
    'auditlog: user events of people under a legal hold, kept past the window from the drop of their month until the hold is released';

CREATE TRIGGER held_user_events_append_only BEFORE UPDATE OR DELETE ON held_user_events
    FOR EACH ROW EXECUTE FUNCTION auditlog_append_only();
CREATE TRIGGER held_user_events_no_truncate BEFORE TRUNCATE ON held_user_events
    FOR EACH STATEMENT EXECUTE FUNCTION auditlog_append_only();

-- A held event's leaf, kept when its month's tree is sealed and dropped:
-- the leaf as it was (commitments, salts, zeroed by erasure as in
-- integrity_leaves), its record hash, its inclusion proof in the sealed
-- tree (the tlog hashes, concatenated), checked against the seal in
-- retention_log, and the checkpoint whose tree head the seal is (for
-- proofs to outsiders).
CREATE TABLE integrity_held_leaves (
    event_id    bigint PRIMARY KEY,
    tree        text COLLATE "C" NOT NULL,
    n           bigint      NOT NULL,
    event_time  timestamptz NOT NULL,
    model       text        NOT NULL,
    commitments bytea       NOT NULL,
    salts       bytea       NOT NULL,
    hash        bytea       NOT NULL,
    proof       bytea       NOT NULL,
    checkpoint  bigint      NOT NULL
);
COMMENT ON TABLE integrity_held_leaves IS
    'auditlog: the leaves of held events whose month was sealed, with their inclusion proofs in the sealed tree';

-- Erasure's recorded changes reach a held event's kept leaf too.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION auditlog_integrity_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    erasure text := current_setting('auditlog.erasure_id', true);
    slots integer := 0;
BEGIN
    IF erasure IS NULL OR erasure = '' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        slots := 127;
    ELSE
        IF NEW.actor_id IS DISTINCT FROM OLD.actor_id THEN slots := slots | 2; END IF;
        IF NEW.ip IS DISTINCT FROM OLD.ip THEN slots := slots | 4; END IF;
        IF NEW.user_agent IS DISTINCT FROM OLD.user_agent THEN slots := slots | 8; END IF;
        IF NEW.location IS DISTINCT FROM OLD.location THEN slots := slots | 16; END IF;
        IF NEW.description IS DISTINCT FROM OLD.description THEN slots := slots | 32; END IF;
        IF NEW.additional IS DISTINCT FROM OLD.additional THEN slots := slots | 64; END IF;
        IF slots = 0 THEN
            RETURN NULL;
        END IF;
    END IF;
    IF TG_TABLE_NAME = 'held_user_events' THEN
        UPDATE integrity_held_leaves l SET salts = auditlog_zero_salts(l.salts, slots)
        WHERE l.event_id = OLD.id;
    ELSE
        UPDATE integrity_leaves l SET salts = auditlog_zero_salts(l.salts, slots)
        WHERE l.event_id = OLD.id;
    END IF;
    IF FOUND THEN
        INSERT INTO integrity_changes (event_id, kind, slots, erasure_id, at)
        VALUES (OLD.id, CASE TG_OP WHEN 'DELETE' THEN 'deleted' ELSE 'scrubbed' END, slots, erasure::bigint, now())
        ON CONFLICT (event_id, erasure_id) DO UPDATE
            SET slots = integrity_changes.slots | EXCLUDED.slots,
                kind = CASE WHEN EXCLUDED.kind = 'deleted' THEN 'deleted' ELSE integrity_changes.kind END;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER held_user_events_integrity AFTER UPDATE OR DELETE ON held_user_events
    FOR EACH ROW EXECUTE FUNCTION auditlog_integrity_change();

-- TRUNCATE of one partition of user_events does not fire the statement
-- trigger of user_events (migration 12): every partition gets its own,
-- and partitions made later get it as they are made (sql/tables.tmpl).
-- +goose StatementBegin
DO $$
DECLARE
    part text;
BEGIN
    FOR part IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'user_events'::regclass LOOP
        EXECUTE format('CREATE TRIGGER auditlog_no_truncate BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION auditlog_append_only()', part);
    END LOOP;
END
$$;
-- +goose StatementEnd

-- Erasure requests a hold stops.
ALTER TABLE erasure_requests ADD COLUMN blocked_by bigint REFERENCES legal_holds (id);
ALTER TABLE erasure_requests DROP CONSTRAINT erasure_requests_status_check;
ALTER TABLE erasure_requests ADD CONSTRAINT erasure_requests_status_check
    CHECK (status IN ('pending', 'running', 'retrying', 'blocked', 'done', 'failed'));
DROP INDEX erasure_requests_open_user_idx;
CREATE UNIQUE INDEX erasure_requests_open_user_idx ON erasure_requests (user_id)
    WHERE status IN ('pending', 'running', 'retrying', 'blocked');

-- retention_log: held rows dropped once released and expired.
COMMENT ON COLUMN retention_log.reason IS
    'expired (a monthly partition past the window), orphan (a detached partition finished), default (expired rows deleted from user_events_default), released (held rows dropped after their hold was released)';

-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'auditlog_reader') THEN
        GRANT SELECT ON legal_holds, held_user_events, integrity_held_leaves TO auditlog_reader;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'auditlog_writer') THEN
        -- An admin places and releases holds from the console; releasing
        -- one re-opens the erasure requests it blocked.
        GRANT SELECT, INSERT, UPDATE ON legal_holds TO auditlog_writer;
        GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO auditlog_writer;
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
DECLARE
    part text;
BEGIN
    FOR part IN SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                WHERE t.tgname = 'auditlog_no_truncate' LOOP
        EXECUTE format('DROP TRIGGER auditlog_no_truncate ON %I', part);
    END LOOP;
END
$$;
-- +goose StatementEnd
DROP INDEX erasure_requests_open_user_idx;
CREATE UNIQUE INDEX erasure_requests_open_user_idx ON erasure_requests (user_id)
    WHERE status IN ('pending', 'running', 'retrying');
UPDATE erasure_requests SET status = 'pending' WHERE status = 'blocked';
ALTER TABLE erasure_requests DROP CONSTRAINT erasure_requests_status_check;
ALTER TABLE erasure_requests ADD CONSTRAINT erasure_requests_status_check
    CHECK (status IN ('pending', 'running', 'retrying', 'done', 'failed'));
ALTER TABLE erasure_requests DROP COLUMN blocked_by;
DROP TRIGGER held_user_events_integrity ON held_user_events;
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION auditlog_integrity_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    erasure text := current_setting('auditlog.erasure_id', true);
    slots integer := 0;
BEGIN
    IF erasure IS NULL OR erasure = '' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        slots := 127;
    ELSE
        IF NEW.actor_id IS DISTINCT FROM OLD.actor_id THEN slots := slots | 2; END IF;
        IF NEW.ip IS DISTINCT FROM OLD.ip THEN slots := slots | 4; END IF;
        IF NEW.user_agent IS DISTINCT FROM OLD.user_agent THEN slots := slots | 8; END IF;
        IF NEW.location IS DISTINCT FROM OLD.location THEN slots := slots | 16; END IF;
        IF NEW.description IS DISTINCT FROM OLD.description THEN slots := slots | 32; END IF;
        IF NEW.additional IS DISTINCT FROM OLD.additional THEN slots := slots | 64; END IF;
        IF slots = 0 THEN
            RETURN NULL;
        END IF;
    END IF;
    UPDATE integrity_leaves l SET salts = auditlog_zero_salts(l.salts, slots)
    WHERE l.event_id = OLD.id;
    IF FOUND THEN
        INSERT INTO integrity_changes (event_id, kind, slots, erasure_id, at)
        VALUES (OLD.id, CASE TG_OP WHEN 'DELETE' THEN 'deleted' ELSE 'scrubbed' END, slots, erasure::bigint, now())
        ON CONFLICT (event_id, erasure_id) DO UPDATE
            SET slots = integrity_changes.slots | EXCLUDED.slots,
                kind = CASE WHEN EXCLUDED.kind = 'deleted' THEN 'deleted' ELSE integrity_changes.kind END;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
DROP TABLE integrity_held_leaves;
DROP TABLE held_user_events;
DROP TABLE legal_holds;
