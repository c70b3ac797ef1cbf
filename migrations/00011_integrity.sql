-- Tamper evidence (docs/integrity.md).
--
-- mac: an HMAC the recording process computes over the event's fields
-- that erasure never changes (service/integrity.go), with the log's
-- integrity key: a row written behind the service's back (a superuser's
-- INSERT, a back-dated or moved row) has none that checks. NULL when the
-- log runs without integrity.
--
-- Leaves: each event, once appended by a checkpoint, is one leaf of a
-- Merkle tree (RFC 6962 hashing, golang.org/x/mod/sumdb/tlog): one tree
-- per month of user events ('user-YYYYMM', dropped with the month) and one
-- for everything kept forever ('kept'). A leaf holds commitments to the
-- event's erasable values (salted hashes) and the salts; erasure zeroes the
-- salts of what it changes, so a commitment still proves the leaf and
-- reveals nothing. integrity_leaves and integrity_hashes (the tree's
-- stored hashes) are partitioned by tree, so a month's leaves are dropped
-- as whole tables with the month.
--
-- Checkpoints are signed notes (golang.org/x/mod/sumdb/note) holding every
-- tree's size and root, the time, and the hash of the previous checkpoint.
-- integrity_changes lists what erasure changed (deleted events, scrubbed
-- slots): verification accepts exactly those changes.

-- +goose Up
ALTER TABLE user_events ADD COLUMN mac bytea;
ALTER TABLE project_events ADD COLUMN mac bytea;
-- Finding the events a checkpoint has not appended yet: ids only grow,
-- so a BRIN on id costs next to nothing on insert.
CREATE INDEX user_events_id_brin ON user_events USING brin (id);
CREATE INDEX project_events_id_brin ON project_events USING brin (id);

CREATE TABLE integrity_trees (
    tree        text COLLATE "C" PRIMARY KEY,
    month       date,
    size        bigint      NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL,
    sealed_at   timestamptz,
    CHECK (tree = 'kept' OR tree ~ '^user-[0-9]{6}$')
);
COMMENT ON TABLE integrity_trees IS
    'auditlog: the Merkle trees of the integrity log and how many leaves each holds';

CREATE TABLE integrity_leaves (
    tree        text COLLATE "C" NOT NULL,
    n           bigint      NOT NULL,
    event_id    bigint      NOT NULL,
    event_time  timestamptz NOT NULL,
    model       text        NOT NULL,
    commitments bytea       NOT NULL,
    salts       bytea       NOT NULL,
    PRIMARY KEY (tree, n)
) PARTITION BY LIST (tree);
CREATE INDEX integrity_leaves_event_idx ON integrity_leaves (event_id);
COMMENT ON TABLE integrity_leaves IS
    'auditlog: one leaf per appended event: commitments to its erasable values and their salts (zeroed by erasure)';

CREATE TABLE integrity_hashes (
    tree text COLLATE "C" NOT NULL,
    idx  bigint NOT NULL,
    hash bytea  NOT NULL,
    PRIMARY KEY (tree, idx)
) PARTITION BY LIST (tree);
COMMENT ON TABLE integrity_hashes IS
    'auditlog: the stored hashes of each Merkle tree (tlog layout)';

CREATE TABLE integrity_checkpoints (
    id         bigserial   PRIMARY KEY,
    created_at timestamptz NOT NULL,
    note       text        NOT NULL
);
COMMENT ON TABLE integrity_checkpoints IS
    'auditlog: signed checkpoints: every tree''s size and root, chained by the previous checkpoint''s hash';

CREATE TABLE integrity_changes (
    event_id   bigint      NOT NULL,
    kind       text        NOT NULL CHECK (kind IN ('deleted', 'scrubbed')),
    slots      integer     NOT NULL,
    erasure_id bigint      NOT NULL,
    at         timestamptz NOT NULL,
    PRIMARY KEY (event_id, erasure_id)
);
COMMENT ON TABLE integrity_changes IS
    'auditlog: what each erasure changed in appended events (deleted, or the slots scrubbed): the changes verification accepts';

-- The append position: events with id <= low_mark have all been seen;
-- pending_seq and pending_xmax move low_mark once every transaction that
-- was running at the last append has ended.
CREATE TABLE integrity_state (
    one          boolean PRIMARY KEY DEFAULT true CHECK (one),
    low_mark     bigint  NOT NULL DEFAULT 0,
    pending_seq  bigint  NOT NULL DEFAULT 0,
    pending_xmax xid8
);
INSERT INTO integrity_state DEFAULT VALUES;

ALTER TABLE retention_log
    ADD COLUMN sealed_size bigint,
    ADD COLUMN sealed_root bytea;

-- A tree's own partitions of integrity_leaves and integrity_hashes,
-- made when its first leaf is appended and dropped with its month.
-- +goose StatementBegin
CREATE FUNCTION auditlog_integrity_tree_create(tree_name text, tree_month date, created timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO integrity_trees (tree, month, created_at) VALUES (tree_name, tree_month, created)
    ON CONFLICT (tree) DO NOTHING;
    EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF integrity_leaves FOR VALUES IN (%L)',
                   'integrity_leaves_' || replace(tree_name, '-', '_'), tree_name);
    EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF integrity_hashes FOR VALUES IN (%L)',
                   'integrity_hashes_' || replace(tree_name, '-', '_'), tree_name);
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION auditlog_integrity_tree_drop(tree_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS %I', 'integrity_leaves_' || replace(tree_name, '-', '_'));
    EXECUTE format('DROP TABLE IF EXISTS %I', 'integrity_hashes_' || replace(tree_name, '-', '_'));
END
$$;
-- +goose StatementEnd

-- What erasure changes in an appended event, recorded as it happens: the
-- erasure's transactions set auditlog.erasure_id (SET LOCAL), and only
-- then is a DELETE or an UPDATE of an event a change verification
-- accepts: its leaf's salts of the changed slots are zeroed and the change
-- is listed. Without the setting nothing is recorded, so a change behind
-- the service's back shows as one. Slots (bits): 0 user_id, 1 actor_id,
-- 2 ip, 3 user_agent, 4 location, 5 description, 6 additional.
-- +goose StatementBegin
CREATE FUNCTION auditlog_integrity_change() RETURNS trigger
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

-- salts with the 16 bytes of each slot in mask zeroed.
-- +goose StatementBegin
CREATE FUNCTION auditlog_zero_salts(salts bytea, mask integer) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    out bytea := salts;
BEGIN
    FOR s IN 0..6 LOOP
        IF mask & (1 << s) <> 0 THEN
            out := overlay(out placing '\x00000000000000000000000000000000'::bytea from s * 16 + 1 for 16);
        END IF;
    END LOOP;
    RETURN out;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER user_events_integrity AFTER UPDATE OR DELETE ON user_events
    FOR EACH ROW EXECUTE FUNCTION auditlog_integrity_change();
CREATE TRIGGER project_events_integrity AFTER UPDATE OR DELETE ON project_events
    FOR EACH ROW EXECUTE FUNCTION auditlog_integrity_change();

-- +goose Down
DROP TRIGGER project_events_integrity ON project_events;
DROP TRIGGER user_events_integrity ON user_events;
DROP FUNCTION auditlog_zero_salts(bytea, integer);
DROP FUNCTION auditlog_integrity_change();
DROP FUNCTION auditlog_integrity_tree_drop(text);
DROP FUNCTION auditlog_integrity_tree_create(text, date, timestamptz);
ALTER TABLE retention_log DROP COLUMN sealed_size, DROP COLUMN sealed_root;
DROP TABLE integrity_state;
DROP TABLE integrity_changes;
DROP TABLE integrity_checkpoints;
DROP TABLE integrity_hashes;
DROP TABLE integrity_leaves;
DROP TABLE integrity_trees;
DROP INDEX project_events_id_brin;
DROP INDEX user_events_id_brin;
ALTER TABLE project_events DROP COLUMN mac;
ALTER TABLE user_events DROP COLUMN mac;
