-- Roles: auditlog_writer may record and read (what serve and ingest
-- need), auditlog_reader may read; the owner (the role that runs
-- migrations) keeps everything else: retention, erasure, checkpoints,
-- maintenance. Both are group roles (NOLOGIN): grant them to the login
-- roles of the processes (README, "Roles"). Roles belong to the whole
-- server, so this creates them only when they do not exist yet and the
-- migrating role may (superuser or CREATEROLE); otherwise it prints the
-- SQL to run. The grants are this database's and are always made when
-- the roles exist. Going down revokes them; the roles stay (other
-- databases of the server may use them).

-- +goose Up
-- +goose StatementBegin
DO $$
DECLARE
    may boolean := (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user);
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['auditlog_reader', 'auditlog_writer'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            IF may THEN
                BEGIN
                    EXECUTE format('CREATE ROLE %I NOLOGIN', r);
                EXCEPTION WHEN duplicate_object OR unique_violation THEN
                    NULL; -- another database's migration made it meanwhile
                END;
            ELSE
                RAISE NOTICE 'auditlog: no privilege to create roles; as a superuser run: CREATE ROLE % NOLOGIN; then migrate up again for the grants', r;
            END IF;
        END IF;
    END LOOP;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'auditlog_reader') THEN
        GRANT SELECT ON user_events, project_events, retention_log, erasure_requests, catalog_marks,
            integrity_trees, integrity_leaves, integrity_hashes, integrity_checkpoints, integrity_changes, integrity_state
            TO auditlog_reader;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'auditlog_writer') THEN
        GRANT auditlog_reader TO auditlog_writer;
        -- Recording (the signals' derived events and admin reads too).
        GRANT INSERT ON user_events, project_events TO auditlog_writer;
        GRANT USAGE ON SEQUENCE event_id_seq TO auditlog_writer;
        -- Ingest: tokens are checked, requests claimed and answered.
        GRANT SELECT ON ingest_tokens TO auditlog_writer;
        GRANT SELECT, INSERT, UPDATE, DELETE ON ingest_requests TO auditlog_writer;
        -- serve records the catalog it runs; an admin opens an erasure
        -- request from the console (the owner's worker carries it out).
        GRANT SELECT, INSERT, UPDATE ON catalog_marks TO auditlog_writer;
        GRANT SELECT, INSERT, UPDATE ON erasure_requests TO auditlog_writer;
        GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO auditlog_writer;
        -- Jobs: hooks, erasures and maintenance are enqueued with the
        -- event (River's tables); the worker runs them as the owner.
        GRANT SELECT, INSERT, UPDATE ON river_job TO auditlog_writer;
        GRANT SELECT ON river_queue, river_leader TO auditlog_writer;
        -- The schema check every process makes before it starts.
        GRANT SELECT ON goose_db_version TO auditlog_reader;
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'auditlog_writer') THEN
        REVOKE ALL ON ALL TABLES IN SCHEMA public FROM auditlog_writer;
        REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM auditlog_writer;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'auditlog_reader') THEN
        REVOKE ALL ON ALL TABLES IN SCHEMA public FROM auditlog_reader;
    END IF;
END
$$;
-- +goose StatementEnd
