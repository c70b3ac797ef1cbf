-- PartitionList lists the monthly partitions of user_events, attached or
-- left detached (a table named user_events_pYYYYMM that is no longer a
-- partition), and the default partition, with the planner's row estimate
-- and their size on disk.
-- Index: none (the catalog).
-- name: PartitionList :many
SELECT c.relname::text AS name,
       (i.inhrelid IS NOT NULL)::boolean AS attached,
       GREATEST(c.reltuples, COALESCE(s.n_live_tup, 0), 0)::bigint AS rows_estimated,
       pg_total_relation_size(c.oid)::bigint AS total_bytes
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_inherits i
       ON i.inhrelid = c.oid
      AND i.inhparent = (SELECT p.oid FROM pg_catalog.pg_class p
                         WHERE p.relname = 'user_events' AND p.relnamespace = n.oid)
LEFT JOIN pg_catalog.pg_stat_user_tables s ON s.relid = c.oid
WHERE n.nspname = current_schema()
  AND c.relkind = 'r'
  AND (i.inhrelid IS NOT NULL OR c.relname ~ '^user_events_p[0-9]{6}$')
ORDER BY c.relname;

-- PartitionAttachmentList is PartitionList as a maintenance pass reads it:
-- no size on disk, and the live-tuple count of each table alone rather
-- than the statistics view of every table (several times cheaper; the
-- pass reads it inside its measured span).
-- Index: none (the catalog).
-- name: PartitionAttachmentList :many
SELECT c.relname::text AS name,
       (i.inhrelid IS NOT NULL)::boolean AS attached,
       GREATEST(c.reltuples, pg_catalog.pg_stat_get_live_tuples(c.oid), 0)::bigint AS rows_estimated
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_inherits i
       ON i.inhrelid = c.oid
      AND i.inhparent = (SELECT p.oid FROM pg_catalog.pg_class p
                         WHERE p.relname = 'user_events' AND p.relnamespace = n.oid)
WHERE n.nspname = current_schema()
  AND c.relkind = 'r'
  AND (i.inhrelid IS NOT NULL OR c.relname ~ '^user_events_p[0-9]{6}$')
ORDER BY c.relname;

-- DefaultPartitionMonths lists the UTC months of the rows that landed in
-- user_events_default (their month had no partition), with their counts.
-- Index: none (user_events_default, which maintenance keeps empty).
-- name: DefaultPartitionMonths :many
SELECT (date_trunc('month', time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')::timestamptz AS month, count(*) AS rows
FROM user_events_default
GROUP BY 1
ORDER BY 1;

-- Index: none (an insert).
-- name: RetentionLogInsert :exec
INSERT INTO retention_log (partition_name, month, rows_estimated, dropped_at, retention, reason, sealed_size, sealed_root)
VALUES (@partition_name::text, (sqlc.arg('month')::timestamptz AT TIME ZONE 'UTC')::date, @rows_estimated::bigint, @dropped_at::timestamptz,
        make_interval(secs => @retention_seconds::double precision), @reason::text,
        sqlc.narg('sealed_size')::bigint, sqlc.narg('sealed_root')::bytea);

-- DefaultPartitionRowCount counts the rows in user_events_default, which
-- maintenance keeps empty (so this stays cheap).
-- Index: none (user_events_default, kept empty).
-- name: DefaultPartitionRowCount :one
SELECT count(*) FROM user_events_default;

-- PartitionAttachedNames names the partitions attached to user_events
-- right now: the recording path's partition cache reads it on a miss, so
-- it reads no sizes or statistics.
-- Index: none (the catalog).
-- name: PartitionAttachedNames :many
SELECT c.relname::text AS name
FROM pg_catalog.pg_inherits i
JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = (SELECT p.oid FROM pg_catalog.pg_class p
                     JOIN pg_catalog.pg_namespace n ON n.oid = p.relnamespace
                     WHERE p.relname = 'user_events' AND n.nspname = current_schema())
ORDER BY 1;

-- DefaultPartitionGuards names the CHECK constraints that maintenance
-- keeps on user_events_default (user_events_default_guard_YYYYMM_YYYYMM):
-- each refuses the rows of the months that must have a partition of
-- their own.
-- Index: none (the catalog).
-- name: DefaultPartitionGuards :many
SELECT co.conname::text AS name
FROM pg_catalog.pg_constraint co
JOIN pg_catalog.pg_class c ON c.oid = co.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = 'user_events_default' AND n.nspname = current_schema()
  AND co.contype = 'c' AND co.conname LIKE 'user\_events\_default\_guard\_%'
ORDER BY 1;

-- MaintenanceTryLock takes the session advisory lock that keeps two
-- maintenance passes from overlapping (false: another pass holds it).
-- Index: none (an advisory lock).
-- name: MaintenanceTryLock :one
SELECT pg_try_advisory_lock(@key::bigint);

-- Index: none (an advisory lock).
-- name: MaintenanceUnlock :one
SELECT pg_advisory_unlock(@key::bigint);

-- TransactionReadOnly makes a plan's transaction read-only: a plan
-- changes nothing.
-- Index: none (a setting).
-- name: TransactionReadOnly :exec
SET TRANSACTION READ ONLY;

-- DefaultPartitionLock locks user_events_default against new rows (its
-- readers go on) while rows move out of it.
-- Index: none (a lock).
-- name: DefaultPartitionLock :exec
LOCK TABLE user_events_default IN SHARE ROW EXCLUSIVE MODE;

-- DefaultPartitionDeleteMonth deletes a month's rows from
-- user_events_default (moved into their partition, or expired). Index:
-- user_events_default's copy of the primary key (time, id).
-- Index: user_events_default_pkey (time, id).
-- name: DefaultPartitionDeleteMonth :execrows
DELETE FROM user_events_default WHERE time >= @month_start::timestamptz AND time < @month_end::timestamptz;

-- UserEventColumns lists user_events' columns in order (rows move back
-- into a detached table by column name).
-- Index: none (the catalog).
-- name: UserEventColumns :many
SELECT attname::text FROM pg_catalog.pg_attribute
WHERE attrelid = 'user_events'::regclass AND attnum > 0 AND NOT attisdropped
ORDER BY attnum;
