-- Index: none (an insert).
-- name: ProjectEventInsert :one
INSERT INTO project_events (
    time, tag, subject_kind, project_id, actor_id, auth_method, token_id, actor_two_factor,
    ip, user_agent, location, description, additional, mac
) VALUES (
    @time::timestamptz, @tag::text, @subject_kind::text, @project_id::text, sqlc.narg('actor_id')::text,
    sqlc.narg('auth_method')::text, sqlc.narg('token_id')::text,
    sqlc.narg('actor_two_factor')::boolean, sqlc.narg('ip')::inet,
    sqlc.narg('user_agent')::text, sqlc.narg('location')::jsonb,
    @description::text, @additional::jsonb, sqlc.narg('mac')::bytea
)
RETURNING id;

-- Index: none (COPY).
-- name: ProjectEventInsertMany :copyfrom
INSERT INTO project_events (
    time, tag, subject_kind, project_id, actor_id, auth_method, token_id, actor_two_factor,
    ip, user_agent, location, description, additional, mac
) VALUES (
    @time, @tag, @subject_kind, @project_id, @actor_id, @auth_method, @token_id, @actor_two_factor,
    @ip, @user_agent, @location, @description, @additional, @mac
);

-- ProjectEventListBySubject is one project's, organization's or team's
-- history, newest first.
-- Index: project_events_subject_time_idx.
-- name: ProjectEventListBySubject :many
SELECT id, time, tag, project_id, actor_id, auth_method, token_id, actor_two_factor,
       ip, user_agent, location, description, additional, subject_kind, mac
FROM project_events
WHERE subject_kind = @subject_kind::text
  AND project_id = @project_id::text
  AND time >= @min_time::timestamptz
  AND time < @max_time::timestamptz
  AND (time, id) < (@before_time::timestamptz, @before_id::bigint)
  AND (sqlc.narg('tag')::text IS NULL OR tag = sqlc.narg('tag'))
  AND (sqlc.narg('tag_from')::text IS NULL OR (tag >= sqlc.narg('tag_from') AND tag < sqlc.narg('tag_to')::text))
ORDER BY time DESC, id DESC
LIMIT @max::integer;

-- ProjectEventList is the admin query over project events; see UserEventList.
-- Index: by filter: project_events_subject_time_idx, project_events_actor_time_idx, project_events_ip_idx, project_events_tag_time_idx, else project_events_pkey.
-- name: ProjectEventList :many
SELECT id, time, tag, project_id, actor_id, auth_method, token_id, actor_two_factor,
       ip, user_agent, location, description, additional, subject_kind, mac
FROM project_events
WHERE time >= @min_time::timestamptz
  AND time < @max_time::timestamptz
  AND (time, id) < (@before_time::timestamptz, @before_id::bigint)
  AND (sqlc.narg('subject_kind')::text IS NULL OR subject_kind = sqlc.narg('subject_kind'))
  AND (sqlc.narg('project_id')::text IS NULL OR project_id = sqlc.narg('project_id'))
  AND (sqlc.narg('actor_id')::text IS NULL OR actor_id = sqlc.narg('actor_id'))
  AND (sqlc.narg('tag')::text IS NULL OR tag = sqlc.narg('tag'))
  AND (sqlc.narg('tag_from')::text IS NULL OR (tag >= sqlc.narg('tag_from') AND tag < sqlc.narg('tag_to')::text))
  AND (sqlc.narg('ip_net')::cidr IS NULL OR ip <<= sqlc.narg('ip_net'))
ORDER BY time DESC, id DESC
LIMIT @max::integer;

-- ProjectEventGet reads one event by its key (hook jobs load their event).
-- Index: project_events_pkey.
-- name: ProjectEventGet :one
SELECT id, time, tag, project_id, actor_id, auth_method, token_id, actor_two_factor,
       ip, user_agent, location, description, additional, subject_kind, mac
FROM project_events WHERE time = @time::timestamptz AND id = @id::bigint;
