-- name: UserEventInsert :one
INSERT INTO user_events (
    time, tag, user_id, actor_id, auth_method, token_id, actor_two_factor,
    ip, user_agent, location, description, additional
) VALUES (
    @time::timestamptz, @tag::text, @user_id::text, sqlc.narg('actor_id')::text,
    sqlc.narg('auth_method')::text, sqlc.narg('token_id')::text,
    sqlc.narg('actor_two_factor')::boolean, sqlc.narg('ip')::inet,
    sqlc.narg('user_agent')::text, sqlc.narg('location')::jsonb,
    @description::text, @additional::jsonb
)
RETURNING id;

-- name: UserEventInsertMany :copyfrom
INSERT INTO user_events (
    time, tag, user_id, actor_id, auth_method, token_id, actor_two_factor,
    ip, user_agent, location, description, additional
) VALUES (
    @time, @tag, @user_id, @actor_id, @auth_method, @token_id, @actor_two_factor,
    @ip, @user_agent, @location, @description, @additional
);

-- UserEventListByUser is one user's security history, newest first. The
-- caller always passes the retention window's start as min_time, so the
-- answer never depends on when retention last ran; the keyset starts at
-- (far future, max id) on the first page.
-- name: UserEventListByUser :many
SELECT id, time, tag, user_id, actor_id, auth_method, token_id, actor_two_factor,
       ip, user_agent, location, description, additional
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
-- name: UserEventList :many
SELECT id, time, tag, user_id, actor_id, auth_method, token_id, actor_two_factor,
       ip, user_agent, location, description, additional
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
-- name: UserEventCountFailuresSinceSuccess :one
SELECT count(*) FROM user_events f
WHERE f.user_id = @user_id::text
  AND f.tag = 'account:login:failure'
  AND f.time >= @min_time::timestamptz
  AND f.time > COALESCE((SELECT max(s.time) FROM user_events s
                         WHERE s.user_id = @user_id::text AND s.tag = 'account:login:success'
                           AND s.time >= @min_time::timestamptz), '-infinity');

-- UserEventLoginFromNetwork reports whether the user signed in
-- successfully from inside net since min_time, other than event id.
-- name: UserEventLoginFromNetwork :one
SELECT EXISTS (
    SELECT 1 FROM user_events
    WHERE user_id = @user_id::text AND tag = 'account:login:success'
      AND time >= @min_time::timestamptz AND id <> @exclude_id::bigint
      AND ip <<= @net::cidr
) AS seen;

-- UserEventLoginFromCountry is the same by the location's country.
-- name: UserEventLoginFromCountry :one
SELECT EXISTS (
    SELECT 1 FROM user_events
    WHERE user_id = @user_id::text AND tag = 'account:login:success'
      AND time >= @min_time::timestamptz AND id <> @exclude_id::bigint
      AND location ->> 'country' = @country::text
) AS seen;

-- UserEventLoginAny reports whether the user signed in successfully at all
-- since min_time, other than event id (a first sign-in is not "new").
-- name: UserEventLoginAny :one
SELECT EXISTS (
    SELECT 1 FROM user_events
    WHERE user_id = @user_id::text AND tag = 'account:login:success'
      AND time >= @min_time::timestamptz AND id <> @exclude_id::bigint
) AS seen;

-- UserEventCountTagSince counts the user's events of a tag since a time.
-- name: UserEventCountTagSince :one
SELECT count(*) FROM user_events
WHERE user_id = @user_id::text AND tag = @tag::text AND time >= @since::timestamptz;

-- UserEventGet reads one event by its key (hook jobs load their event).
-- name: UserEventGet :one
SELECT id, time, tag, user_id, actor_id, auth_method, token_id, actor_two_factor,
       ip, user_agent, location, description, additional
FROM user_events WHERE time = @time::timestamptz AND id = @id::bigint;
