-- PartitionList lists the partitions attached to user_events with their
-- bounds as PostgreSQL prints them (FOR VALUES FROM (...) TO (...), or
-- DEFAULT).
-- name: PartitionList :many
SELECT c.relname::text AS name,
       pg_get_expr(c.relpartbound, c.oid)::text AS bound
FROM pg_catalog.pg_inherits i
JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
WHERE p.relname = 'user_events'
  AND p.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = current_schema())
ORDER BY c.relname;
