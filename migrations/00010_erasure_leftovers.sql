-- Erasure reaches the last places that can name a person besides the
-- events: River's hook jobs (their arguments and the errors their attempts
-- recorded) and the idempotency keys of HTTP ingest; its verification
-- names each row and key left.
--
-- River's tables come from the Go migration 00002, so sqlc does not know
-- river_job: the statements over it are functions here, which sqlc only
-- sees by their signatures (as auditlog_erasure_job_state in 00006).

-- +goose Up

-- auditlog_text_names reports whether text t names person: holds the id
-- with no letter or digit right before or after it ("alice" is named in
-- "mail to alice@example.com bounced", not in "malice"). Never null.
-- +goose StatementBegin
CREATE FUNCTION auditlog_text_names(t text, person text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(t ~ ('(^|[^[:alnum:]])' || regexp_replace(person, '([^[:alnum:]])', '\\\1', 'g') || '($|[^[:alnum:]])'), false)
$$;
-- +goose StatementEnd

-- auditlog_json_holds reports whether doc holds the string value at any
-- depth (itself included). Never null.
-- +goose StatementBegin
CREATE FUNCTION auditlog_json_holds(doc jsonb, value text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(jsonb_path_exists(doc, 'strict $.** ? (@ == $v)', jsonb_build_object('v', value)), false)
$$;
-- +goose StatementEnd

-- auditlog_jsonb_replace is doc with every string equal to old, at any
-- depth, replaced by new; keys and other values stay.
-- +goose StatementBegin
CREATE FUNCTION auditlog_jsonb_replace(doc jsonb, old text, new text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    CASE jsonb_typeof(doc)
    WHEN 'string' THEN
        IF doc #>> '{}' = old THEN
            RETURN to_jsonb(new);
        END IF;
        RETURN doc;
    WHEN 'object' THEN
        RETURN (SELECT COALESCE(jsonb_object_agg(e.key, auditlog_jsonb_replace(e.value, old, new)), '{}')
                FROM jsonb_each(doc) e);
    WHEN 'array' THEN
        RETURN (SELECT COALESCE(jsonb_agg(auditlog_jsonb_replace(e.value, old, new) ORDER BY e.n), '[]')
                FROM jsonb_array_elements(doc) WITH ORDINALITY e(value, n));
    ELSE
        RETURN doc;
    END CASE;
END
$$;
-- +goose StatementEnd

-- auditlog_erased_key is what erasure makes of an idempotency key that
-- names a person: "erased:sha256:" and the hex SHA-256 of the key, which
-- Ingest looks up when a request's own key is not stored (service/ingest.go
-- computes the same), so a retried request still records nothing twice.
-- +goose StatementBegin
CREATE FUNCTION auditlog_erased_key(key text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 'erased:sha256:' || encode(sha256(convert_to(key, 'UTF8')), 'hex')
$$;
-- +goose StatementEnd

-- auditlog_key_names reports whether an idempotency key names person
-- (auditlog_text_names) and is not one erasure already rewrote.
-- +goose StatementBegin
CREATE FUNCTION auditlog_key_names(key text, person text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT key !~ '^erased:sha256:[0-9a-f]{64}$' AND auditlog_text_names(key, person)
$$;
-- +goose StatementEnd

-- auditlog_personal_fields names what auditlog_holds_personal finds: "ip",
-- "user_agent", "location" and "additional.KEY" for each personal key the
-- event holds (erasure verification's leftovers).
-- +goose StatementBegin
CREATE FUNCTION auditlog_personal_fields(ip inet, user_agent text, location jsonb, tag text, additional jsonb, personal_keys jsonb)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (CASE WHEN ip IS NOT NULL THEN ARRAY['ip'] ELSE ARRAY[]::text[] END)
        || (CASE WHEN user_agent IS NOT NULL THEN ARRAY['user_agent'] ELSE ARRAY[]::text[] END)
        || (CASE WHEN location IS NOT NULL THEN ARRAY['location'] ELSE ARRAY[]::text[] END)
        || ARRAY(SELECT 'additional.' || k FROM unnest(auditlog_tag_keys(tag, personal_keys)) k
                 WHERE jsonb_exists(additional, k) ORDER BY k)
$$;
-- +goose StatementEnd

-- auditlog_attempt_erased reports whether one of a River job's recorded
-- attempt errors ({"at", "attempt", "error", "trace"}) was erased: its
-- error is "[erased]" and its trace empty.
-- +goose StatementBegin
CREATE FUNCTION auditlog_attempt_erased(attempt jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(attempt ->> 'error' = '[erased]' AND COALESCE(attempt ->> 'trace', '') = '', false)
$$;
-- +goose StatementEnd

-- auditlog_hook_event_names reports whether the event a hook job's args
-- point at ({"model", "event_id", "time"}, jobs.HookArgs) names person's
-- id: as the subject (user events), as the actor or under a key that
-- names an account (ref_keys, tag → keys). (An event erasure left with
-- the person's pseudonym names nobody: a hook reading it sees nothing of
-- theirs.) NULL when no such event is stored (erased, dropped by
-- retention, left in a detached table) or the args are not an event's key.
-- +goose StatementBegin
CREATE FUNCTION auditlog_hook_event_names(args jsonb, person text, ref_keys jsonb) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    event_time timestamptz;
    event_id bigint;
    names boolean;
BEGIN
    BEGIN
        event_time := (args ->> 'time')::timestamptz;
        event_id := (args ->> 'event_id')::bigint;
    EXCEPTION WHEN data_exception THEN
        RETURN NULL;
    END;
    IF event_time IS NULL OR event_id IS NULL THEN
        RETURN NULL;
    END IF;
    IF args ->> 'model' = 'user' THEN
        SELECT e.user_id = person OR e.actor_id = person
               OR EXISTS (SELECT 1 FROM unnest(auditlog_tag_keys(e.tag, ref_keys)) k WHERE e.additional ->> k = person)
        INTO names FROM user_events e WHERE e.time = event_time AND e.id = event_id;
    ELSIF args ->> 'model' = 'project' THEN
        SELECT e.actor_id = person
               OR EXISTS (SELECT 1 FROM unnest(auditlog_tag_keys(e.tag, ref_keys)) k WHERE e.additional ->> k = person)
        INTO names FROM project_events e WHERE e.time = event_time AND e.id = event_id;
    ELSE
        RETURN NULL;
    END IF;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN COALESCE(names, false);
END
$$;
-- +goose StatementEnd

-- auditlog_hook_jobs_scrub is erasure's statement over River's hook jobs
-- (kind auditlog_hook, any state): in up to batch_size of them it
--   - replaces, in args other than "hook" and "model" (a hook's name and
--     "user"/"project", never a person), every string equal to person by
--     replacement (none are written: jobs.HookArgs holds the event's key
--     only; this is for a stray write), unless the two are the same;
--   - erases the errors its attempts recorded (each keeps "at" and
--     "attempt"; "error" becomes "[erased]", "trace" empty) when one names
--     person, when the job's event names them (auditlog_hook_event_names),
--     or when the job's event is gone: a handler's error is free text and
--     may quote whatever it was sending, and a job whose event is gone has
--     nothing left to debug.
-- It returns the jobs it changed; a job changed once is not matched again.
-- Index: river_job_kind.
-- +goose StatementBegin
CREATE FUNCTION auditlog_hook_jobs_scrub(person text, ref_keys jsonb, replacement text, batch_size integer) RETURNS bigint
LANGUAGE sql AS $$
    WITH found AS (
        SELECT j.id,
               person <> replacement AND auditlog_json_holds(j.args - 'hook' - 'model', person) AS args_name,
               CASE WHEN EXISTS (SELECT 1 FROM unnest(j.errors) a WHERE NOT auditlog_attempt_erased(a))
                    THEN EXISTS (SELECT 1 FROM unnest(j.errors) a
                                 WHERE auditlog_text_names(a ->> 'error', person) OR auditlog_text_names(a ->> 'trace', person))
                         OR COALESCE(auditlog_hook_event_names(j.args, person, ref_keys), true)
                    ELSE false END AS errors_personal
        FROM river_job j
        WHERE j.kind = 'auditlog_hook'
    ), batch AS (
        SELECT * FROM found WHERE args_name OR errors_personal LIMIT batch_size
    ), changed AS (
        UPDATE river_job j
        SET args = CASE WHEN b.args_name
                        THEN j.args || auditlog_jsonb_replace(j.args - 'hook' - 'model', person, replacement)
                        ELSE j.args END,
            errors = CASE WHEN b.errors_personal
                          THEN ARRAY(SELECT a || '{"error": "[erased]", "trace": ""}'::jsonb
                                     FROM unnest(j.errors) WITH ORDINALITY u(a, n) ORDER BY u.n)
                          ELSE j.errors END
        FROM batch b
        WHERE j.id = b.id
        RETURNING 1
    )
    SELECT count(*) FROM changed
$$;
-- +goose StatementEnd

-- auditlog_hook_jobs_left is erasure verification's over River's hook
-- jobs: one row per job and field still naming person, "args.KEY" for an
-- argument (other than "hook" and "model") holding their id, "errors[N]"
-- for a recorded attempt error not erased that names them or whose job's
-- event names them. (A job whose event is gone, with its errors, names
-- nobody the check can tell.)
-- Index: river_job_kind.
-- +goose StatementBegin
CREATE FUNCTION auditlog_hook_jobs_left(person text, ref_keys jsonb, check_args boolean)
RETURNS TABLE (job_id bigint, field text)
LANGUAGE sql STABLE AS $$
    SELECT j.id, 'args.' || a.key
    FROM river_job j
    CROSS JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(j.args) = 'object' THEN j.args ELSE '{}' END) a
    WHERE j.kind = 'auditlog_hook' AND check_args AND a.key NOT IN ('hook', 'model') AND auditlog_json_holds(a.value, person)
    UNION ALL
    SELECT j.id, 'errors[' || (u.n - 1) || ']'
    FROM river_job j
    CROSS JOIN LATERAL unnest(j.errors) WITH ORDINALITY u(a, n)
    WHERE j.kind = 'auditlog_hook' AND NOT auditlog_attempt_erased(u.a)
      AND (auditlog_text_names(u.a ->> 'error', person) OR auditlog_text_names(u.a ->> 'trace', person)
           OR COALESCE(auditlog_hook_event_names(j.args, person, ref_keys), false))
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION auditlog_hook_jobs_left(text, jsonb, boolean);
DROP FUNCTION auditlog_hook_jobs_scrub(text, jsonb, text, integer);
DROP FUNCTION auditlog_hook_event_names(jsonb, text, jsonb);
DROP FUNCTION auditlog_attempt_erased(jsonb);
DROP FUNCTION auditlog_personal_fields(inet, text, jsonb, text, jsonb, jsonb);
DROP FUNCTION auditlog_key_names(text, text);
DROP FUNCTION auditlog_erased_key(text);
DROP FUNCTION auditlog_jsonb_replace(jsonb, text, text);
DROP FUNCTION auditlog_json_holds(jsonb, text);
DROP FUNCTION auditlog_text_names(text, text);
