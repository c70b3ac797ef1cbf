-- ErasureRequestCreate stores a request unless the person already has an
-- open one (pending, running, retrying or blocked by a legal hold); it
-- then returns no row.
-- Index: none (an insert; erasure_requests_open_user_idx refuses a second open request).
-- name: ErasureRequestCreate :one
INSERT INTO erasure_requests (user_id, reason, requested_by, requested_at, events_found, supersedes)
VALUES (@user_id::text, @reason::text, sqlc.narg('requested_by')::text, @requested_at::timestamptz,
        @events_found::boolean, sqlc.narg('supersedes')::bigint)
ON CONFLICT (user_id) WHERE status IN ('pending', 'running', 'retrying', 'blocked') DO NOTHING
RETURNING *;

-- ErasureRequestOpenByUser returns the person's open request and the state
-- of its River job.
-- Index: erasure_requests_open_user_idx.
-- name: ErasureRequestOpenByUser :one
SELECT sqlc.embed(erasure_requests), auditlog_erasure_job_state(id)::text AS job_state
FROM erasure_requests
WHERE user_id = @user_id::text AND status IN ('pending', 'running', 'retrying', 'blocked');

-- ErasureRequestSupersede fails a stuck request (open, and no River job of
-- it is live) so a new one can take its place; no row when it is no longer
-- stuck.
-- Index: erasure_requests_pkey.
-- name: ErasureRequestSupersede :one
UPDATE erasure_requests
SET status = 'failed', error = @error::text
WHERE id = @id::bigint AND status IN ('pending', 'running', 'retrying')
  AND auditlog_erasure_job_state(id) NOT IN ('available', 'pending', 'running', 'retryable', 'scheduled')
RETURNING *;

-- ErasureRequestNoteSuccessor adds which request replaced a superseded one
-- to its error.
-- Index: erasure_requests_pkey.
-- name: ErasureRequestNoteSuccessor :exec
UPDATE erasure_requests
SET error = error || '; superseded by request ' || @successor::bigint
WHERE id = @id::bigint;

-- PersonEventExists reports whether any event names the person: their user
-- events (attached partitions and the default one; detached tables are
-- checked one by one), user events and project events they acted in.
-- Index: user_events_user_time_idx, user_events_actor_time_idx, project_events_actor_time_idx.
-- name: PersonEventExists :one
SELECT (EXISTS (SELECT 1 FROM user_events WHERE user_id = @user_id::text)
    OR EXISTS (SELECT 1 FROM user_events WHERE actor_id = @user_id::text)
    OR EXISTS (SELECT 1 FROM project_events WHERE actor_id = @user_id::text))::boolean AS found;

-- Index: erasure_requests_pkey.
-- name: ErasureRequestGet :one
SELECT * FROM erasure_requests WHERE id = @id::bigint;

-- ErasureRequestGetWithJob is the request and, while it is open, the state
-- of its River job (empty once it is done or failed).
-- Index: erasure_requests_pkey.
-- name: ErasureRequestGetWithJob :one
SELECT sqlc.embed(erasure_requests),
       (CASE WHEN status IN ('pending', 'running', 'retrying') THEN auditlog_erasure_job_state(id) ELSE '' END)::text AS job_state
FROM erasure_requests WHERE id = @id::bigint;

-- ErasureRequestList pages requests newest first, optionally of one person,
-- with the state of the River job of each open one.
-- Index: erasure_requests_requested_idx.
-- name: ErasureRequestList :many
SELECT sqlc.embed(erasure_requests),
       (CASE WHEN status IN ('pending', 'running', 'retrying') THEN auditlog_erasure_job_state(id) ELSE '' END)::text AS job_state
FROM erasure_requests
WHERE (sqlc.narg('user_id')::text IS NULL OR user_id = sqlc.narg('user_id'))
  AND (requested_at, id) < (@before_time::timestamptz, @before_id::bigint)
ORDER BY requested_at DESC, id DESC
LIMIT @max::integer;

-- ErasureRequestStart marks one attempt of the job as running; the first
-- attempt sets started_at. A failed request (final) is not started, nor a
-- blocked one (its hold's release enqueues it again): no row.
-- Index: erasure_requests_pkey.
-- name: ErasureRequestStart :one
UPDATE erasure_requests
SET status = 'running', started_at = COALESCE(started_at, @now::timestamptz), attempts = attempts + 1
WHERE id = @id::bigint AND status NOT IN ('failed', 'blocked')
RETURNING *;

-- ErasureRequestAddCount adds rows changed in one table to the request, in
-- the same transaction as the change itself, so the counts stay exact when
-- a job is killed between batches.
-- Index: erasure_requests_pkey.
-- name: ErasureRequestAddCount :exec
UPDATE erasure_requests
SET user_events_deleted = user_events_deleted + @deleted::bigint,
    user_events_scrubbed = user_events_scrubbed + @user_scrubbed::bigint,
    project_events_scrubbed = project_events_scrubbed + @project_scrubbed::bigint,
    admin_reads_scrubbed = admin_reads_scrubbed + @admin_reads_scrubbed::bigint,
    counts = jsonb_set(counts, ARRAY[@count_key::text],
        to_jsonb(COALESCE((counts ->> @count_key)::bigint, 0) + @rows::bigint))
WHERE id = @id::bigint;

-- Index: erasure_requests_pkey.
-- name: ErasureRequestComplete :one
UPDATE erasure_requests
SET status = 'done', completed_at = @now::timestamptz, error = NULL
WHERE id = @id::bigint
RETURNING *;

-- ErasureRequestFail records a failed attempt: status retrying while River
-- will try again, failed after the last attempt. A done or failed request
-- (final; a superseded one may still have a stray attempt) is left alone,
-- and so is one a later attempt has started since (attempts, when given,
-- is the count the failed attempt set).
-- Index: erasure_requests_pkey.
-- name: ErasureRequestFail :exec
UPDATE erasure_requests
SET status = @status::text, error = @error::text
WHERE id = @id::bigint AND status NOT IN ('done', 'failed')
  AND (sqlc.narg('attempts')::integer IS NULL OR attempts = sqlc.narg('attempts')::integer);

-- ErasureRequestTryLock takes, without waiting, the session advisory lock
-- one attempt of the request holds while it works, so two attempts never
-- work at once; false when another session holds it. The session ends, and
-- the lock with it, when the attempt's process dies.
-- Index: none (an advisory lock).
-- name: ErasureRequestTryLock :one
SELECT pg_try_advisory_lock(hashtextextended('auditlog:erasure:' || @id::bigint, 0))::boolean AS locked;

-- ErasureRequestUnlock releases ErasureRequestTryLock's lock.
-- Index: none (an advisory lock).
-- name: ErasureRequestUnlock :one
SELECT pg_advisory_unlock(hashtextextended('auditlog:erasure:' || @id::bigint, 0))::boolean AS unlocked;

-- ErasureTimeoutsSetLocal sets the erasure's own statement and lock
-- timeouts for the current transaction only (SET LOCAL): whatever the
-- role's or the database's are, and nothing stays on the pooled connection.
-- It also has the server check every second that the client is still
-- there while a statement runs, so the statement of a killed worker ends
-- (and its request's lock with it) at once rather than at its timeout.
-- Index: none (settings).
-- name: ErasureTimeoutsSetLocal :exec
SELECT set_config('statement_timeout', @statement_timeout::text, true),
       set_config('lock_timeout', @lock_timeout::text, true),
       set_config('client_connection_check_interval', '1s', true);

-- ErasureMarkLocal names the erasure the current transaction carries out
-- (SET LOCAL auditlog.erasure_id): the integrity trigger of migration 11
-- then records the changes it makes as ones verification accepts.
-- Index: none (a setting).
-- name: ErasureMarkLocal :exec
SELECT set_config('auditlog.erasure_id', @id::text, true);

-- ProjectEventScrubActor removes the personal fields of up to max project
-- events the person acted in (as actor_id or, once pseudonymised, as the
-- pseudonym): IP, user agent, location and the additional keys their tag
-- registers as personal (personal_keys maps tag → keys). With a
-- pseudonym, actor_id is replaced by it too. The event stays.
-- Index: project_events_actor_time_idx.
-- name: ProjectEventScrubActor :execrows
UPDATE project_events p
SET ip = NULL, user_agent = NULL, location = NULL,
    additional = p.additional - auditlog_tag_keys(p.tag, @personal_keys::jsonb),
    actor_id = COALESCE(sqlc.narg('pseudonym')::text, p.actor_id)
FROM (
    SELECT s.time, s.id FROM project_events s
    WHERE (s.actor_id = @actor_id::text OR s.actor_id = sqlc.narg('pseudonym')::text)
      AND ((sqlc.narg('pseudonym')::text IS NOT NULL AND s.actor_id = @actor_id::text)
           OR auditlog_holds_personal(s.ip, s.user_agent, s.location, s.tag, s.additional, @personal_keys::jsonb))
    LIMIT @max::integer
) batch
WHERE p.time = batch.time AND p.id = batch.id;

-- ProjectEventCountPersonalByActor counts project events acted in by any
-- of actor_ids that still carry a personal field (erasure verification).
-- Index: project_events_actor_time_idx.
-- name: ProjectEventCountPersonalByActor :one
SELECT count(*) FROM project_events s
WHERE s.actor_id = ANY(@actor_ids::text[])
  AND auditlog_holds_personal(s.ip, s.user_agent, s.location, s.tag, s.additional, @personal_keys::jsonb);

-- Index: project_events_actor_time_idx.
-- name: ProjectEventCountByActor :one
SELECT count(*) FROM project_events WHERE actor_id = @actor_id::text;

-- ProjectEventAddressesByActor lists the addresses the person used in the
-- project events they acted in (erasure of admin reads on their network).
-- Index: project_events_actor_time_idx.
-- name: ProjectEventAddressesByActor :many
SELECT DISTINCT host(ip)::text FROM project_events
WHERE actor_id = @actor_id::text AND ip IS NOT NULL;

-- ProjectEventPersonalFieldsByActor lists what
-- ProjectEventCountPersonalByActor counts, as up to max (event id, field)
-- rows: each personal field still held (auditlog_personal_fields).
-- Index: project_events_actor_time_idx.
-- name: ProjectEventPersonalFieldsByActor :many
SELECT s.id, f.field::text AS field
FROM project_events s
CROSS JOIN LATERAL unnest(auditlog_personal_fields(s.ip, s.user_agent, s.location, s.tag, s.additional, @personal_keys::jsonb)) AS f(field)
WHERE s.actor_id = ANY(@actor_ids::text[])
LIMIT @max::integer;

-- ProjectEventIDsByActor lists up to max of the project events actor_id
-- acted in (erasure verification, with a pseudonym secret).
-- Index: project_events_actor_time_idx.
-- name: ProjectEventIDsByActor :many
SELECT id FROM project_events WHERE actor_id = @actor_id::text LIMIT @max::integer;

-- HookJobsScrub is one batch of erasure over River's hook jobs
-- (auditlog_hook_jobs_scrub, migration 10): the person's id in their args
-- becomes the replacement, and the attempt errors of a job whose event
-- names the person or is gone, or that name the person, are erased. It
-- returns the jobs changed.
-- Index: river_job_kind.
-- name: HookJobsScrub :one
SELECT auditlog_hook_jobs_scrub(@person::text, @ref_keys::jsonb, @replacement::text, @max::integer)::bigint AS changed;

-- HookJobsLeftCount counts the hook jobs that still name the person
-- (auditlog_hook_jobs_left, migration 10; args only with check_args).
-- Index: river_job_kind.
-- name: HookJobsLeftCount :one
SELECT count(DISTINCT l.job_id)::bigint AS jobs
FROM auditlog_hook_jobs_left(@person::text, @ref_keys::jsonb, @check_args::boolean) l;

-- HookJobsLeftList lists up to max (job id, field) rows of what
-- HookJobsLeftCount counts.
-- Index: river_job_kind.
-- name: HookJobsLeftList :many
SELECT l.job_id::bigint AS job_id, l.field::text AS field
FROM auditlog_hook_jobs_left(@person::text, @ref_keys::jsonb, @check_args::boolean) l
ORDER BY l.job_id, l.field
LIMIT @max::integer;

-- IngestRequestsEraseCollisions deletes, for up to max idempotency keys
-- that name the person, the expired row (older than the keep time, so it
-- answers nothing) already holding the key IngestRequestsErase rewrites
-- it to: a key erased once, kept past its 24 hours, and used again.
-- Index: ingest_requests_pkey.
-- name: IngestRequestsEraseCollisions :execrows
DELETE FROM ingest_requests h
USING (SELECT s.token_id, auditlog_erased_key(s.key) AS erased_key
       FROM ingest_requests s
       WHERE auditlog_key_names(s.key, @person::text)
       LIMIT @max::integer) b
WHERE h.token_id = b.token_id AND h.key = b.erased_key AND h.created_at < @expired_before::timestamptz;

-- IngestRequestsErase, in up to max idempotency keys, rewrites a key that
-- names the person to auditlog_erased_key (Ingest finds it by the key a
-- retry sends, so a retried request still records nothing twice) and, in
-- an answer holding their id (none does: answers are counts), replaces it
-- by the replacement unless the two are the same. A key whose rewritten
-- form a live row already holds is left (only a client sending such keys
-- itself could cause it).
-- Index: none (the keys of the last 24 hours, read whole).
-- name: IngestRequestsErase :execrows
UPDATE ingest_requests r
SET key = CASE WHEN b.key_names THEN auditlog_erased_key(r.key) ELSE r.key END,
    response = CASE WHEN b.response_names THEN auditlog_jsonb_replace(r.response, @person::text, @replacement::text) ELSE r.response END
FROM (SELECT c.token_id, c.key, c.key_names, c.response_names
      FROM (SELECT s.token_id, s.key,
                   CASE WHEN auditlog_key_names(s.key, @person::text)
                        THEN NOT EXISTS (SELECT 1 FROM ingest_requests h
                                         WHERE h.token_id = s.token_id AND h.key = auditlog_erased_key(s.key))
                        ELSE false END AS key_names,
                   @person::text <> @replacement::text AND auditlog_json_holds(s.response, @person::text) AS response_names
            FROM ingest_requests s) c
      WHERE c.key_names OR c.response_names
      LIMIT @max::integer) b
WHERE r.token_id = b.token_id AND r.key = b.key;

-- IngestRequestsLeftCount counts the idempotency keys that still name the
-- person, or (with check_response) whose answer holds their id.
-- Index: none (the keys of the last 24 hours, read whole).
-- name: IngestRequestsLeftCount :one
SELECT count(*) FROM ingest_requests s
WHERE auditlog_key_names(s.key, @person::text)
   OR (@check_response::boolean AND auditlog_json_holds(s.response, @person::text));

-- IngestRequestsLeftList lists up to max (token id, key, field) rows of
-- what IngestRequestsLeftCount counts: field "key", or "response.KEY".
-- Index: none (the keys of the last 24 hours, read whole).
-- name: IngestRequestsLeftList :many
SELECT s.token_id, s.key, f.field::text AS field
FROM ingest_requests s
CROSS JOIN LATERAL (
    SELECT 'key' WHERE auditlog_key_names(s.key, @person::text)
    UNION ALL
    SELECT 'response.' || a.key
    FROM jsonb_each(CASE WHEN jsonb_typeof(s.response) = 'object' THEN s.response ELSE '{}' END) a
    WHERE @check_response::boolean AND auditlog_json_holds(a.value, @person::text)
    UNION ALL
    SELECT 'response' WHERE @check_response::boolean AND jsonb_typeof(s.response) <> 'object' AND auditlog_json_holds(s.response, @person::text)
) AS f(field)
LIMIT @max::integer;
