-- The subject access export (service.Log.ExportSubject): every event that
-- names a person, in five disjoint streams, each paged newest first by its
-- own keyset (far future, max id on the first page) and merged by the
-- caller into one timeline. Disjoint: the actor stream of user events
-- leaves out the person's own, and the mention streams leave out events
-- they are the subject or actor of, so each event comes once. User
-- events are read inside the retention window only (min_time, its start).
--
-- Each stream returns the whole row and mentioned_as: the keys of
-- additional that name an account (@ref_keys: tag → keys, as erasure's
-- mention statements take them) whose value is the person, sorted; empty
-- when there are none.

-- ExportUserEventsAsSubject: the person's own user events.
-- Index: user_events_user_time_idx (each partition's *_user_id_time_id_idx).
-- name: ExportUserEventsAsSubject :many
SELECT sqlc.embed(e), m.mentioned_as
FROM user_events e
CROSS JOIN LATERAL (SELECT ARRAY(SELECT k FROM unnest(auditlog_tag_keys(e.tag, @ref_keys::jsonb)) k
                                 WHERE e.additional ->> k = @user_id::text ORDER BY k)::text[] AS mentioned_as) m
WHERE e.user_id = @user_id::text
  AND e.time >= @min_time::timestamptz
  AND (e.time, e.id) < (@before_time::timestamptz, @before_id::bigint)
ORDER BY e.time DESC, e.id DESC
LIMIT @max::integer;

-- ExportUserEventsAsActor: other accounts' user events the person acted
-- in (an admin changing someone's e-mail address).
-- Index: user_events_actor_time_idx (each partition's *_actor_id_time_idx).
-- name: ExportUserEventsAsActor :many
SELECT sqlc.embed(e), m.mentioned_as
FROM user_events e
CROSS JOIN LATERAL (SELECT ARRAY(SELECT k FROM unnest(auditlog_tag_keys(e.tag, @ref_keys::jsonb)) k
                                 WHERE e.additional ->> k = @user_id::text ORDER BY k)::text[] AS mentioned_as) m
WHERE e.actor_id = @user_id::text
  AND e.user_id <> @user_id::text
  AND e.time >= @min_time::timestamptz
  AND (e.time, e.id) < (@before_time::timestamptz, @before_id::bigint)
ORDER BY e.time DESC, e.id DESC
LIMIT @max::integer;

-- ExportUserEventsMentioning: other accounts' user events, by someone
-- else, whose additional names the person (@ref_tags: the tags that have
-- keys naming an account). No index holds additional's values (exports
-- are rare; an index over additional would cost every insert), so this
-- is a scan of the window, newest first along the primary key, filtered;
-- each page resumes where the last one stopped, so an export reads the
-- window once in all, whatever the number of mentions (about 0.45 s per
-- million events, measured; see the README's export section).
-- Index: user_events_pkey, read backward (each partition's *_pkey); the
-- planner may take *_tag_time_idx instead when @ref_tags' events are few.
-- name: ExportUserEventsMentioning :many
SELECT sqlc.embed(e), m.mentioned_as
FROM user_events e
CROSS JOIN LATERAL (SELECT ARRAY(SELECT k FROM unnest(auditlog_tag_keys(e.tag, @ref_keys::jsonb)) k
                                 WHERE e.additional ->> k = @user_id::text ORDER BY k)::text[] AS mentioned_as) m
WHERE e.tag = ANY(@ref_tags::text[])
  AND cardinality(m.mentioned_as) > 0
  AND e.user_id <> @user_id::text
  AND e.actor_id IS DISTINCT FROM @user_id::text
  AND e.time >= @min_time::timestamptz
  AND (e.time, e.id) < (@before_time::timestamptz, @before_id::bigint)
ORDER BY e.time DESC, e.id DESC
LIMIT @max::integer;

-- ExportProjectEventsAsActor: the project events the person acted in.
-- Index: project_events_actor_time_idx.
-- name: ExportProjectEventsAsActor :many
SELECT sqlc.embed(e), m.mentioned_as
FROM project_events e
CROSS JOIN LATERAL (SELECT ARRAY(SELECT k FROM unnest(auditlog_tag_keys(e.tag, @ref_keys::jsonb)) k
                                 WHERE e.additional ->> k = @user_id::text ORDER BY k)::text[] AS mentioned_as) m
WHERE e.actor_id = @user_id::text
  AND (e.time, e.id) < (@before_time::timestamptz, @before_id::bigint)
ORDER BY e.time DESC, e.id DESC
LIMIT @max::integer;

-- ExportProjectEventsMentioning: project events, by someone else, whose
-- additional names the person; like ExportUserEventsMentioning, a scan,
-- of every project event (they are kept forever), once per export.
-- Index: project_events_pkey, read backward; the planner may take
-- project_events_tag_time_idx instead when @ref_tags' events are few.
-- name: ExportProjectEventsMentioning :many
SELECT sqlc.embed(e), m.mentioned_as
FROM project_events e
CROSS JOIN LATERAL (SELECT ARRAY(SELECT k FROM unnest(auditlog_tag_keys(e.tag, @ref_keys::jsonb)) k
                                 WHERE e.additional ->> k = @user_id::text ORDER BY k)::text[] AS mentioned_as) m
WHERE e.tag = ANY(@ref_tags::text[])
  AND cardinality(m.mentioned_as) > 0
  AND e.actor_id IS DISTINCT FROM @user_id::text
  AND (e.time, e.id) < (@before_time::timestamptz, @before_id::bigint)
ORDER BY e.time DESC, e.id DESC
LIMIT @max::integer;
