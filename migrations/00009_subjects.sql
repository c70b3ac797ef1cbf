-- Organizations and teams: subjects whose history is kept forever, like a
-- project's. Their events live in project_events beside the projects' and
-- subject_kind says which kind of subject project_id names: 'project',
-- 'organization', or 'team' (whose id is "ORG/TEAM"). One kept-forever
-- table keeps one erasure, one admin query and one set of indexes for
-- every subject that is never dropped (docs/architecture.md).
--
-- Adding a column with a constant default rewrites nothing (PostgreSQL 11
-- and later); the new index replaces project_events_project_time_idx,
-- whose queries now also name the kind.

-- +goose Up
ALTER TABLE project_events
    ADD COLUMN subject_kind text COLLATE "C" NOT NULL DEFAULT 'project'
        CONSTRAINT project_events_subject_kind_check CHECK (subject_kind IN ('project', 'organization', 'team'));
COMMENT ON COLUMN project_events.subject_kind IS
    'auditlog: which kind of subject project_id names: project, organization or team (ORG/TEAM)';
CREATE INDEX project_events_subject_time_idx ON project_events (subject_kind, project_id, time DESC, id DESC);
DROP INDEX project_events_project_time_idx;
COMMENT ON TABLE project_events IS
    'auditlog: the history of projects, organizations and teams; kept forever; personal columns erasable in place';

-- +goose Down
CREATE INDEX project_events_project_time_idx ON project_events (project_id, time DESC, id DESC);
DROP INDEX project_events_subject_time_idx;
ALTER TABLE project_events DROP COLUMN subject_kind;
COMMENT ON TABLE project_events IS
    'auditlog: project history; kept forever; personal columns erasable in place';
