-- Append-only events, enforced by the database for every role, the owner's
-- ordinary statements included: an UPDATE may only scrub erasable columns
-- (actor_id, ip, user_agent, location, description, additional) and only
-- inside an erasure's transaction (auditlog.erasure_id, set by the
-- erasure); a DELETE only inside an erasure or a maintenance transaction
-- (auditlog.maintenance, which moves rows out of the default partition);
-- TRUNCATE never. Partition DDL (DETACH, DROP) is not a row change and
-- stays retention's. Each refusal names its rule.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION auditlog_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    erasure text := coalesce(current_setting('auditlog.erasure_id', true), '');
    erasable text[] := ARRAY['actor_id', 'ip', 'user_agent', 'location', 'description', 'additional'];
    changed text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'auditlog: % is append-only: TRUNCATE is refused (rule no_truncate)', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'retention drops expired months as partitions; erasure removes a person';
    END IF;
    IF TG_OP = 'DELETE' THEN
        IF erasure <> '' OR coalesce(current_setting('auditlog.maintenance', true), '') = 'on' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'auditlog: % is append-only: DELETE of event % outside an erasure (rule delete_only_by_erasure)', TG_TABLE_NAME, OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF erasure = '' THEN
        RAISE EXCEPTION 'auditlog: % is append-only: UPDATE of event % outside an erasure (rule update_only_by_erasure)', TG_TABLE_NAME, OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT string_agg(k, ', ' ORDER BY k) INTO changed
    FROM jsonb_each(to_jsonb(NEW)) n(k, v)
    WHERE NOT (k = ANY (erasable)) AND v IS DISTINCT FROM to_jsonb(OLD) -> k;
    IF changed IS NOT NULL THEN
        RAISE EXCEPTION 'auditlog: % is append-only: an erasure may only scrub erasable columns, not % of event % (rule scrub_only)', TG_TABLE_NAME, changed, OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.ip IS NOT NULL AND NEW.ip IS DISTINCT FROM OLD.ip)
       OR (NEW.user_agent IS NOT NULL AND NEW.user_agent IS DISTINCT FROM OLD.user_agent)
       OR (NEW.location IS NOT NULL AND NEW.location IS DISTINCT FROM OLD.location) THEN
        RAISE EXCEPTION 'auditlog: % is append-only: an erasure scrubs ip, user_agent and location of event % to NULL only (rule scrub_to_null)', TG_TABLE_NAME, OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER user_events_append_only BEFORE UPDATE OR DELETE ON user_events
    FOR EACH ROW EXECUTE FUNCTION auditlog_append_only();
CREATE TRIGGER project_events_append_only BEFORE UPDATE OR DELETE ON project_events
    FOR EACH ROW EXECUTE FUNCTION auditlog_append_only();
CREATE TRIGGER user_events_no_truncate BEFORE TRUNCATE ON user_events
    FOR EACH STATEMENT EXECUTE FUNCTION auditlog_append_only();
CREATE TRIGGER project_events_no_truncate BEFORE TRUNCATE ON project_events
    FOR EACH STATEMENT EXECUTE FUNCTION auditlog_append_only();

-- +goose Down
DROP TRIGGER project_events_no_truncate ON project_events;
DROP TRIGGER user_events_no_truncate ON user_events;
DROP TRIGGER project_events_append_only ON project_events;
DROP TRIGGER user_events_append_only ON user_events;
DROP FUNCTION auditlog_append_only();
