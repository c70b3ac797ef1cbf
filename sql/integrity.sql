-- Tamper evidence: the append position, trees, leaves, stored hashes and
-- checkpoints (docs/integrity.md).

-- IntegrityAdvance locks the append position and moves it: low_mark takes
-- the sequence value the last run saw once every transaction running then
-- has ended (or the position came from another cluster, a restore); the
-- position to wait for is then taken anew. Returns the low mark to append
-- above.
-- Index: integrity_state_pkey.
-- name: IntegrityAdvance :one
UPDATE integrity_state SET
    low_mark = CASE WHEN pending_xmax IS NOT NULL
                         AND (pg_snapshot_xmin(pg_current_snapshot()) > pending_xmax
                              OR pending_xmax > pg_snapshot_xmax(pg_current_snapshot()))
                    THEN greatest(low_mark, pending_seq) ELSE low_mark END,
    pending_seq = CASE WHEN pending_xmax IS NULL
                            OR pg_snapshot_xmin(pg_current_snapshot()) > pending_xmax
                            OR pending_xmax > pg_snapshot_xmax(pg_current_snapshot())
                       THEN coalesce(pg_sequence_last_value('event_id_seq'::regclass), 0) ELSE pending_seq END,
    pending_xmax = CASE WHEN pending_xmax IS NULL
                             OR pg_snapshot_xmin(pg_current_snapshot()) > pending_xmax
                             OR pending_xmax > pg_snapshot_xmax(pg_current_snapshot())
                        THEN pg_snapshot_xmax(pg_current_snapshot()) ELSE pending_xmax END
RETURNING low_mark::bigint;

-- IntegrityLowMark is the append position without moving it.
-- Index: integrity_state_pkey.
-- name: IntegrityLowMark :one
SELECT low_mark FROM integrity_state;

-- IntegrityMaxID is the highest event id drawn so far.
-- Index: none (the sequence).
-- name: IntegrityMaxID :one
SELECT coalesce(pg_sequence_last_value('event_id_seq'::regclass), 0)::bigint;

-- IntegrityPendingUserEvents lists the user events with ids in (after,
-- upto] that no leaf holds yet, oldest id first. Paging by id range keeps
-- each page's cost to its range: a LIMIT over "id > after" would read,
-- anti-join and sort everything above it for every page.
-- Index: user_events_id_brin, integrity_leaves_event_idx.
-- name: IntegrityPendingUserEvents :many
SELECT e.id, e.time, e.tag, e.user_id, e.actor_id, e.auth_method, e.token_id, e.actor_two_factor,
       e.ip, e.user_agent, e.location, e.description, e.additional, e.mac
FROM user_events e
WHERE e.id > @after::bigint AND e.id <= @upto::bigint
  AND NOT EXISTS (SELECT 1 FROM integrity_leaves l
                  WHERE l.event_id = e.id AND l.event_id > @after::bigint AND l.event_id <= @upto::bigint)
ORDER BY e.id;

-- IntegrityPendingProjectEvents is the same for the kept-forever events.
-- Index: project_events_id_brin, integrity_leaves_event_idx.
-- name: IntegrityPendingProjectEvents :many
SELECT e.id, e.time, e.tag, e.project_id, e.actor_id, e.auth_method, e.token_id, e.actor_two_factor,
       e.ip, e.user_agent, e.location, e.description, e.additional, e.subject_kind, e.mac
FROM project_events e
WHERE e.id > @after::bigint AND e.id <= @upto::bigint
  AND NOT EXISTS (SELECT 1 FROM integrity_leaves l
                  WHERE l.event_id = e.id AND l.event_id > @after::bigint AND l.event_id <= @upto::bigint)
ORDER BY e.id;

-- Index: none (a function call).
-- name: IntegrityTreeCreate :exec
SELECT auditlog_integrity_tree_create(@tree::text, sqlc.narg('month')::date, @created_at::timestamptz);

-- Index: none (a function call).
-- name: IntegrityTreeDrop :exec
SELECT auditlog_integrity_tree_drop(@tree::text);

-- Index: integrity_trees_pkey.
-- name: IntegrityTrees :many
SELECT tree, month, size, created_at, sealed_at FROM integrity_trees ORDER BY tree;

-- IntegrityTreeLock reads one tree for appending, locked.
-- Index: integrity_trees_pkey.
-- name: IntegrityTreeLock :one
SELECT tree, month, size, created_at, sealed_at FROM integrity_trees WHERE tree = @tree::text FOR UPDATE;

-- Index: integrity_trees_pkey.
-- name: IntegrityTreeSetSize :exec
UPDATE integrity_trees SET size = @size::bigint WHERE tree = @tree::text;

-- Index: integrity_trees_pkey.
-- name: IntegrityTreeSeal :exec
UPDATE integrity_trees SET sealed_at = @sealed_at::timestamptz WHERE tree = @tree::text;

-- Index: integrity_trees_pkey.
-- name: IntegrityTreeDelete :exec
DELETE FROM integrity_trees WHERE tree = @tree::text;

-- Index: none (COPY).
-- name: IntegrityLeafInsert :copyfrom
INSERT INTO integrity_leaves (tree, n, event_id, event_time, model, commitments, salts)
VALUES (@tree, @n, @event_id, @event_time, @model, @commitments, @salts);

-- Index: none (COPY).
-- name: IntegrityHashInsert :copyfrom
INSERT INTO integrity_hashes (tree, idx, hash) VALUES (@tree, @idx, @hash);

-- IntegrityHashes reads stored hashes of a tree by index.
-- Index: integrity_hashes_pkey.
-- name: IntegrityHashes :many
SELECT idx, hash FROM integrity_hashes WHERE tree = @tree::text AND idx = ANY(@idx::bigint[]);

-- IntegrityLeafByEvent finds the leaf of an event.
-- Index: integrity_leaves_event_idx.
-- name: IntegrityLeafByEvent :one
SELECT tree, n, event_id, event_time, model, commitments, salts FROM integrity_leaves WHERE event_id = @event_id::bigint;

-- IntegrityLeaves pages one tree's leaves in order.
-- Index: integrity_leaves_pkey.
-- name: IntegrityLeaves :many
SELECT tree, n, event_id, event_time, model, commitments, salts FROM integrity_leaves
WHERE tree = @tree::text AND n >= @from_n::bigint
ORDER BY n
LIMIT @max::integer;

-- IntegrityChanges lists what erasures changed, by event.
-- Index: integrity_changes_pkey.
-- name: IntegrityChanges :many
SELECT c.event_id, c.kind, c.slots, c.erasure_id, (r.status = 'done')::boolean AS erasure_done
FROM integrity_changes c LEFT JOIN erasure_requests r ON r.id = c.erasure_id
ORDER BY c.event_id;

-- Index: none (an insert).
-- name: IntegrityCheckpointInsert :one
INSERT INTO integrity_checkpoints (created_at, note) VALUES (@created_at::timestamptz, @note::text) RETURNING id;

-- Index: integrity_checkpoints_pkey.
-- name: IntegrityCheckpointLatest :one
SELECT id, created_at, note FROM integrity_checkpoints ORDER BY id DESC LIMIT 1;

-- Index: integrity_checkpoints_pkey.
-- name: IntegrityCheckpointGet :one
SELECT id, created_at, note FROM integrity_checkpoints WHERE id = @id::bigint;

-- Index: integrity_checkpoints_pkey.
-- name: IntegrityCheckpoints :many
SELECT id, created_at, note FROM integrity_checkpoints WHERE id >= @from_id::bigint ORDER BY id;

-- IntegrityUserEventsByID reads user events by id for verification, in
-- any partition (a moved event is found where it went): the ids joined
-- as a set and bounded by their range, which the BRIN on id narrows
-- ("id = ANY" would rescan the BRIN per id).
-- Index: user_events_id_brin (the range), then a hash join on the ids.
-- name: IntegrityUserEventsByID :many
SELECT e.id, e.time, e.tag, e.user_id, e.actor_id, e.auth_method, e.token_id, e.actor_two_factor,
       e.ip, e.user_agent, e.location, e.description, e.additional, e.mac, e.tableoid::regclass::text AS table_name
FROM unnest(@ids::bigint[]) AS i(id) JOIN user_events e ON e.id = i.id
WHERE e.id BETWEEN @lo::bigint AND @hi::bigint;

-- Index: project_events_id_brin (the range), then a hash join on the ids.
-- name: IntegrityProjectEventsByID :many
SELECT e.id, e.time, e.tag, e.project_id, e.actor_id, e.auth_method, e.token_id, e.actor_two_factor,
       e.ip, e.user_agent, e.location, e.description, e.additional, e.subject_kind, e.mac
FROM unnest(@ids::bigint[]) AS i(id) JOIN project_events e ON e.id = i.id
WHERE e.id BETWEEN @lo::bigint AND @hi::bigint;

-- IntegrityUnappended lists events no leaf holds, with their MAC, in both
-- tables: verification names each as not yet covered (a good MAC, above
-- the low mark) or inserted behind the service's back.
-- Index: none (verification reads every row: an anti-join).
-- name: IntegrityUnappended :many
SELECT e.id, e.time, e.tag, e.user_id AS subject, 'user'::text AS model, e.auth_method, e.token_id, e.actor_two_factor, e.mac
FROM user_events e WHERE NOT EXISTS (SELECT 1 FROM integrity_leaves l WHERE l.event_id = e.id)
UNION ALL
SELECT e.id, e.time, e.tag, e.project_id, e.subject_kind, e.auth_method, e.token_id, e.actor_two_factor, e.mac
FROM project_events e WHERE NOT EXISTS (SELECT 1 FROM integrity_leaves l WHERE l.event_id = e.id)
ORDER BY id;

-- Index: retention_log_pkey.
-- name: IntegritySeals :many
SELECT partition_name, month, sealed_size, sealed_root FROM retention_log WHERE sealed_size IS NOT NULL ORDER BY month;
