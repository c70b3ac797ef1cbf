-- Imports (migration 15).

-- ImportKeysClaim stores the (source, source_id) pairs not imported yet
-- and returns them: only those events are recorded, in the same
-- transaction. A pair given twice is claimed once.
-- Index: import_keys_pkey.
-- name: ImportKeysClaim :many
INSERT INTO import_keys (source, source_id)
SELECT unnest(@sources::text[]), unnest(@source_ids::text[])
ON CONFLICT (source, source_id) DO NOTHING
RETURNING source, source_id;

-- Index: import_runs_pkey.
-- name: ImportRunGet :one
SELECT * FROM import_runs WHERE run = @run::text;

-- ImportRunSave records a run's position and counts, in the transaction
-- of the batch that reached them.
-- Index: import_runs_pkey.
-- name: ImportRunSave :exec
INSERT INTO import_runs (run, position, counts, started_at, updated_at, finished_at)
VALUES (@run::text, @position::bigint, @counts::jsonb, @now::timestamptz, @now::timestamptz, sqlc.narg('finished_at')::timestamptz)
ON CONFLICT (run) DO UPDATE
SET position = EXCLUDED.position, counts = EXCLUDED.counts, updated_at = EXCLUDED.updated_at, finished_at = EXCLUDED.finished_at;

-- ImportRunRestart starts a finished run over (a rerun of the same
-- input): position 0, no counts.
-- Index: import_runs_pkey.
-- name: ImportRunRestart :exec
UPDATE import_runs SET position = 0, counts = '{}', started_at = @now::timestamptz, updated_at = @now::timestamptz, finished_at = NULL
WHERE run = @run::text;
