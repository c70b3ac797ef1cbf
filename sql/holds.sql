-- Legal holds (migration 14).

-- HoldPlace stores an open hold unless the subject already has one; it
-- then returns no row.
-- Index: none (an insert; legal_holds_open_idx refuses a second open hold).
-- name: HoldPlace :one
INSERT INTO legal_holds (subject_kind, subject_id, reason, placed_by, placed_at, until)
VALUES (@subject_kind::text, @subject_id::text, @reason::text, @placed_by::text, @placed_at::timestamptz, sqlc.narg('until')::timestamptz)
ON CONFLICT (subject_kind, subject_id) WHERE released_at IS NULL DO NOTHING
RETURNING *;

-- Index: legal_holds_open_idx.
-- name: HoldOpenBySubject :one
SELECT * FROM legal_holds
WHERE subject_kind = @subject_kind::text AND subject_id = @subject_id::text AND released_at IS NULL;

-- Index: legal_holds_pkey.
-- name: HoldGet :one
SELECT * FROM legal_holds WHERE id = @id::bigint;

-- HoldRelease releases an open hold; no row when it is not open.
-- Index: legal_holds_pkey.
-- name: HoldRelease :one
UPDATE legal_holds SET released_by = @released_by::text, released_at = @released_at::timestamptz
WHERE id = @id::bigint AND released_at IS NULL
RETURNING *;

-- HoldList pages holds newest first, open ones only when asked.
-- Index: legal_holds_placed_idx.
-- name: HoldList :many
SELECT * FROM legal_holds
WHERE (NOT @open_only::boolean OR released_at IS NULL)
  AND (placed_at, id) < (@before_time::timestamptz, @before_id::bigint)
ORDER BY placed_at DESC, id DESC
LIMIT @max::integer;

-- HeldPeople lists the people under an open hold.
-- Index: legal_holds_open_idx.
-- name: HeldPeople :many
SELECT subject_id FROM legal_holds WHERE subject_kind = 'user' AND released_at IS NULL ORDER BY subject_id;

-- HoldPersonLock takes the transaction's lock on holds of one person:
-- placing a hold takes it exclusive, each erasure batch shared, so a
-- batch either sees the hold or commits before it is placed.
-- Index: none (an advisory lock).
-- name: HoldPersonLock :exec
SELECT pg_advisory_xact_lock(hashtextextended('auditlog:hold:' || @user_id::text, 0));

-- Index: none (an advisory lock).
-- name: HoldPersonLockShared :exec
SELECT pg_advisory_xact_lock_shared(hashtextextended('auditlog:hold:' || @user_id::text, 0));

-- HoldBlockingErasure is the oldest open hold that stops erasing the
-- person: one on them, or one on a project or an organization (its teams
-- included) whose events they acted in. No row when none does.
-- Index: legal_holds_open_idx, project_events_subject_time_idx.
-- name: HoldBlockingErasure :one
SELECT h.id FROM legal_holds h
WHERE h.released_at IS NULL AND (
    (h.subject_kind = 'user' AND h.subject_id = @user_id::text)
    OR (h.subject_kind = 'project' AND EXISTS (
        SELECT 1 FROM project_events p
        WHERE p.subject_kind = 'project' AND p.project_id = h.subject_id AND p.actor_id = @user_id::text))
    OR (h.subject_kind = 'organization' AND EXISTS (
        SELECT 1 FROM project_events p
        WHERE ((p.subject_kind = 'organization' AND p.project_id = h.subject_id)
            OR (p.subject_kind = 'team' AND left(p.project_id, length(h.subject_id) + 1) = h.subject_id || '/'))
          AND p.actor_id = @user_id::text)))
ORDER BY h.id
LIMIT 1;

-- ErasureRequestBlock marks an open request blocked by a hold; no row when
-- it is not open.
-- Index: erasure_requests_pkey.
-- name: ErasureRequestBlock :one
UPDATE erasure_requests SET status = 'blocked', blocked_by = @hold_id::bigint
WHERE id = @id::bigint AND status IN ('pending', 'running', 'retrying', 'blocked')
RETURNING *;

-- ErasureRequestsBlocked lists the blocked requests, oldest first.
-- Index: erasure_requests_open_user_idx.
-- name: ErasureRequestsBlocked :many
SELECT * FROM erasure_requests WHERE status = 'blocked' ORDER BY id;

-- ErasureRequestUnblock makes a blocked request pending again (its job is
-- enqueued in the same transaction); no row when it is not blocked.
-- Index: erasure_requests_pkey.
-- name: ErasureRequestUnblock :one
UPDATE erasure_requests SET status = 'pending', blocked_by = NULL
WHERE id = @id::bigint AND status = 'blocked'
RETURNING *;

-- HeldEventList is the admin query over held user events: the admin
-- filters of UserEventList, and no window (they are held past it).
-- Index: by filter: held_user_events_user_idx, held_user_events_actor_idx, else held_user_events_time_idx.
-- name: HeldEventList :many
SELECT id, time, tag, user_id, actor_id, auth_method, token_id, actor_two_factor,
       ip, user_agent, location, description, additional, mac
FROM held_user_events
WHERE time < @max_time::timestamptz
  AND time >= @min_time::timestamptz
  AND (time, id) < (@before_time::timestamptz, @before_id::bigint)
  AND (sqlc.narg('user_id')::text IS NULL OR user_id = sqlc.narg('user_id'))
  AND (sqlc.narg('actor_id')::text IS NULL OR actor_id = sqlc.narg('actor_id'))
  AND (sqlc.narg('tag')::text IS NULL OR tag = sqlc.narg('tag'))
  AND (sqlc.narg('tag_from')::text IS NULL OR (tag >= sqlc.narg('tag_from') AND tag < sqlc.narg('tag_to')::text))
  AND (sqlc.narg('ip_net')::cidr IS NULL OR ip <<= sqlc.narg('ip_net'))
ORDER BY time DESC, id DESC
LIMIT @max::integer;

-- HeldCount counts the held user events.
-- Index: held_user_events_pkey.
-- name: HeldCount :one
SELECT count(*) FROM held_user_events;

-- HeldReleasedDrop deletes the held user events no open hold covers any
-- more and the window has left behind, with their kept leaves (and those
-- of held events an erasure deleted), inside a
-- maintenance transaction (the append-only trigger allows it there). It
-- returns how many went.
-- Index: held_user_events_time_idx.
-- name: HeldReleasedDrop :one
WITH gone AS (
    DELETE FROM held_user_events h
    WHERE h.time < @cutoff::timestamptz
      AND NOT EXISTS (SELECT 1 FROM legal_holds l
                      WHERE l.released_at IS NULL AND l.subject_kind = 'user' AND l.subject_id IN (h.user_id, h.actor_id))
    RETURNING h.id
), leaves AS (
    -- Their leaves, and those of held events an erasure deleted (the
    -- recorded change vouches for them until now).
    DELETE FROM integrity_held_leaves l
    WHERE l.event_id IN (SELECT id FROM gone)
       OR (l.event_time < @cutoff::timestamptz
           AND EXISTS (SELECT 1 FROM integrity_changes c WHERE c.event_id = l.event_id AND c.kind = 'deleted')
           AND NOT EXISTS (SELECT 1 FROM held_user_events h WHERE h.id = l.event_id))
)
SELECT count(*) FROM gone;

-- IntegrityLeavesOfEvents reads a tree's leaves of the given events (the
-- held ones of a month about to be sealed).
-- Index: integrity_leaves_event_idx.
-- name: IntegrityLeavesOfEvents :many
SELECT * FROM integrity_leaves WHERE tree = @tree::text AND event_id = ANY(@ids::bigint[]) ORDER BY n;

-- Index: none (COPY).
-- name: IntegrityHeldLeafInsert :copyfrom
INSERT INTO integrity_held_leaves (event_id, tree, n, event_time, model, commitments, salts, hash, proof, checkpoint)
VALUES (@event_id, @tree, @n, @event_time, @model, @commitments, @salts, @hash, @proof, @checkpoint);

-- IntegrityHeldLeaves pages the kept leaves of held events by event id
-- (after: the last one of the page before; one event: its id - 1 and max
-- 1), with the held event when it is still there.
-- Index: integrity_held_leaves_pkey, held_user_events_pkey.
-- name: IntegrityHeldLeaves :many
SELECT l.event_id, l.tree, l.n, l.event_time, l.model, l.commitments, l.salts, l.hash, l.proof, l.checkpoint,
       (h.id IS NOT NULL)::boolean AS present,
       h.time, h.tag, h.user_id, h.actor_id, h.auth_method, h.token_id, h.actor_two_factor,
       h.ip, h.user_agent, h.location, h.description, h.additional
FROM integrity_held_leaves l LEFT JOIN held_user_events h ON h.id = l.event_id
WHERE l.event_id > @after::bigint
ORDER BY l.event_id
LIMIT @max::integer;

-- IntegrityHeldUnleaved lists held events no kept leaf holds, with what
-- their record mark covers.
-- Index: held_user_events_pkey, integrity_held_leaves_pkey.
-- name: IntegrityHeldUnleaved :many
SELECT h.id, h.time, h.tag, h.user_id, h.auth_method, h.token_id, h.actor_two_factor, h.mac
FROM held_user_events h
WHERE NOT EXISTS (SELECT 1 FROM integrity_held_leaves l WHERE l.event_id = h.id)
ORDER BY h.id
LIMIT 10000;

-- ErasureRequestsOpen lists the requests not yet carried out (pending,
-- running, retrying), oldest first.
-- Index: erasure_requests_open_user_idx.
-- name: ErasureRequestsOpen :many
SELECT * FROM erasure_requests WHERE status IN ('pending', 'running', 'retrying') ORDER BY id;

-- HoldsLapsed lists the open holds whose until has passed.
-- Index: legal_holds_open_idx.
-- name: HoldsLapsed :many
SELECT id FROM legal_holds WHERE released_at IS NULL AND until <= @now::timestamptz ORDER BY id;

-- HeldReleasedCount counts what HeldReleasedDrop would delete.
-- Index: held_user_events_time_idx.
-- name: HeldReleasedCount :one
SELECT count(*) FROM held_user_events h
WHERE h.time < @cutoff::timestamptz
  AND NOT EXISTS (SELECT 1 FROM legal_holds l
                  WHERE l.released_at IS NULL AND l.subject_kind = 'user' AND l.subject_id IN (h.user_id, h.actor_id));
