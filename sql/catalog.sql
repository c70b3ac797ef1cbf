-- CatalogMark records the catalog a kind of process (migrate, serve)
-- starts with. Index: catalog_marks_pkey.
-- name: CatalogMark :exec
INSERT INTO catalog_marks (process, catalog, fingerprint, marked_at)
VALUES (@process::text, @catalog::text, @fingerprint::text, @marked_at::timestamptz)
ON CONFLICT (process) DO UPDATE
SET catalog = EXCLUDED.catalog, fingerprint = EXCLUDED.fingerprint, marked_at = EXCLUDED.marked_at;

-- CatalogMarkLatest is the newest mark of the given processes. Index: none
-- (one row per kind of process).
-- name: CatalogMarkLatest :one
SELECT process, catalog, fingerprint, marked_at FROM catalog_marks
WHERE process = ANY(@processes::text[])
ORDER BY marked_at DESC
LIMIT 1;
