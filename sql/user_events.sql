-- Index: none (an insert).
-- name: UserEventInsert :one
INSERT INTO user_events (
    time, tag, user_id, actor_id, auth_method, token_id, actor_two_factor,
    ip, user_agent, location, description, additional, mac
) VALUES (
    @time::timestamptz, @tag::text, @user_id::text, sqlc.narg('actor_id')::text,
    sqlc.narg('auth_method')::text, sqlc.narg('token_id')::text,
    sqlc.narg('actor_two_factor')::boolean, sqlc.narg('ip')::inet,
    sqlc.narg('user_agent')::text, sqlc.narg('location')::jsonb,
    @description::text, @additional::jsonb, sqlc.narg('mac')::bytea
)
RETURNING id;

-- Index: none (COPY).
-- name: UserEventInsertMany :copyfrom
INSERT INTO user_events (
    time, tag, user_id, actor_id, auth_method, token_id, actor_two_factor,
    ip, user_agent, location, description, additional, mac
) VALUES (
    @time, @tag, @user_id, @actor_id, @auth_method, @token_id, @actor_two_factor,
    @ip, @user_agent, @location, @description, @additional, @mac
);

-- UserEventListByUser is one user's security history, newest first. The
-- caller always passes the retention window's start as min_time, so the
-- answer never depends on when retention last ran; the keyset starts at
-- (far future, max id) on the first page.
-- Index: user_events_user_time_idx (each partition's *_user_id_time_id_idx).
-- name: UserEventListByUser :many
SELECT id, time, tag, user_id, actor_id, auth_method, token_id, actor_two_factor,
       ip, user_agent, location, description, additional, mac
FROM user_events
WHERE user_id = @user_id::text
  AND time >= @min_time::timestamptz
  AND time < @max_time::timestamptz
  AND (time, id) < (@before_time::timestamptz, @before_id::bigint)
  AND (sqlc.narg('tag')::text IS NULL OR tag = sqlc.narg('tag'))
  AND (sqlc.narg('tag_from')::text IS NULL OR (tag >= sqlc.narg('tag_from') AND tag < sqlc.narg('tag_to')::text))
ORDER BY time DESC, id DESC
LIMIT @max::integer;

-- UserEventList is the admin query over user events. Every filter is
-- optional except the window (min_time) and the keyset. Callers run it with
-- plan_cache_mode = force_custom_plan so each filter combination is planned
-- with its own index.
-- Index: by filter: user_events_user_time_idx, user_events_actor_time_idx, user_events_ip_idx, user_events_tag_time_idx, else user_events_pkey (each partition's copy).
-- name: UserEventList :many
SELECT id, time, tag, user_id, actor_id, auth_method, token_id, actor_two_factor,
       ip, user_agent, location, description, additional, mac
FROM user_events
WHERE time >= @min_time::timestamptz
  AND time < @max_time::timestamptz
  AND (time, id) < (@before_time::timestamptz, @before_id::bigint)
  AND (sqlc.narg('user_id')::text IS NULL OR user_id = sqlc.narg('user_id'))
  AND (sqlc.narg('actor_id')::text IS NULL OR actor_id = sqlc.narg('actor_id'))
  AND (sqlc.narg('tag')::text IS NULL OR tag = sqlc.narg('tag'))
  AND (sqlc.narg('tag_from')::text IS NULL OR (tag >= sqlc.narg('tag_from') AND tag < sqlc.narg('tag_to')::text))
  AND (sqlc.narg('ip_net')::cidr IS NULL OR ip <<= sqlc.narg('ip_net'))
ORDER BY time DESC, id DESC
LIMIT @max::integer;

-- UserEventCountFailuresSinceSuccess counts a user's failed sign-ins after
-- their latest successful one (all of them when there is none), inside the
-- window.
-- Index: user_events_user_time_idx.
-- name: UserEventCountFailuresSinceSuccess :one
SELECT count(*) FROM user_events f
WHERE f.user_id = @user_id::text
  AND f.tag = @failure_tag::text
  AND f.time >= @min_time::timestamptz
  AND f.time > COALESCE((SELECT max(s.time) FROM user_events s
                         WHERE s.user_id = @user_id::text AND s.tag = @success_tag::text
                           AND s.time >= @min_time::timestamptz), '-infinity');

-- UserEventLoginHistory answers, in one pass over the user's successful
-- sign-ins since min_time other than event exclude_id, the three questions
-- of the new-location signal: any at all, any from inside net, any from
-- country (false when country is null).
-- Index: user_events_user_time_idx.
-- name: UserEventLoginHistory :one
SELECT count(*) > 0 AS signed_in,
       COALESCE(bool_or(ip <<= @net::cidr), false)::boolean AS from_network,
       COALESCE(bool_or(location ->> 'country' = sqlc.narg('country')::text), false)::boolean AS from_country
FROM user_events
WHERE user_id = @user_id::text AND tag = @success_tag::text
  AND time >= @min_time::timestamptz AND id <> @exclude_id::bigint;

-- UserEventFailureCounts counts the user's failed sign-ins and recorded
-- failure bursts since a time (the burst signal).
-- Index: user_events_user_time_idx.
-- name: UserEventFailureCounts :one
SELECT count(*) FILTER (WHERE tag = @failure_tag::text) AS failures,
       count(*) FILTER (WHERE tag = @burst_tag::text) AS bursts
FROM user_events
WHERE user_id = @user_id::text
  AND tag IN (@failure_tag::text, @burst_tag::text)
  AND time >= @since::timestamptz;

-- UserEventGet reads one event by its key (hook jobs load their event).
-- Index: user_events_pkey.
-- name: UserEventGet :one
SELECT id, time, tag, user_id, actor_id, auth_method, token_id, actor_two_factor,
       ip, user_agent, location, description, additional, mac
FROM user_events WHERE time = @time::timestamptz AND id = @id::bigint;

-- SignalsLockUser serialises one person's sign-in signals for the rest of
-- the transaction: two sign-ins at once from a new place give one notice,
-- and a burst is recorded once.
-- Index: none (an advisory lock).
-- name: SignalsLockUser :exec
SELECT pg_advisory_xact_lock(hashtextextended('auditlog:signals:' || @user_id::text, 0));

-- PlanCustomInTransaction plans every statement of the transaction for
-- its own parameters (the admin query: each filter combination wants its
-- own index).
-- Index: none (a setting).
-- name: PlanCustomInTransaction :exec
SELECT set_config('plan_cache_mode', 'force_custom_plan', true);
