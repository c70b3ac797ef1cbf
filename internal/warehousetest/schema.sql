-- The part of PyPI Warehouse's schema that holds audit events, as its
-- SQLAlchemy models declare it (see doc.go for the files followed). Times
-- are "timestamp without time zone" holding UTC, as Warehouse stores them.

CREATE EXTENSION IF NOT EXISTS citext;

CREATE TYPE banreason AS ENUM ('authentication-attempts', 'administrative');

CREATE TABLE ip_addresses (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    ip_address inet NOT NULL UNIQUE,
    hashed_ip_address varchar UNIQUE,
    geoip_info jsonb,
    is_banned boolean NOT NULL DEFAULT false,
    ban_reason banreason,
    ban_date timestamp without time zone,
    CONSTRAINT ip_addresses_check CHECK (
        (is_banned AND ban_reason IS NOT NULL AND ban_date IS NOT NULL)
        OR (NOT is_banned AND ban_reason IS NULL AND ban_date IS NULL)
    )
);
COMMENT ON TABLE ip_addresses IS 'Tracks IP Addresses that have modified PyPI state';
COMMENT ON COLUMN ip_addresses.ip_address IS 'Structured IP Address value';
COMMENT ON COLUMN ip_addresses.hashed_ip_address IS 'Hash that represents an IP Address';
COMMENT ON COLUMN ip_addresses.geoip_info IS 'JSON containing GeoIP data associated with an IP Address';
CREATE INDEX bans_idx ON ip_addresses (is_banned);

-- Parents, reduced to what turns an event's source_id into a name.

CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username citext NOT NULL UNIQUE,
    name varchar(100) NOT NULL DEFAULT '',
    date_joined timestamp without time zone DEFAULT now(),
    CONSTRAINT users_valid_username_length CHECK (length(username) <= 50),
    CONSTRAINT users_valid_username CHECK (username ~* '^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$')
);

CREATE TABLE projects (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    -- Warehouse fills this with a trigger calling normalize_pep426_name.
    normalized_name text NOT NULL UNIQUE
        GENERATED ALWAYS AS (regexp_replace(lower(name), '(\.|_|-)+', '-', 'g')) STORED,
    created timestamp without time zone DEFAULT now()
);
CREATE INDEX ix_projects_created ON projects (created);

CREATE TABLE releases (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id uuid NOT NULL REFERENCES projects (id) ON UPDATE CASCADE ON DELETE CASCADE,
    version text NOT NULL,
    canonical_version text NOT NULL,
    created timestamp without time zone NOT NULL DEFAULT now(),
    UNIQUE (project_id, version)
);
CREATE INDEX release_project_created_idx ON releases (project_id, created DESC);
CREATE INDEX release_canonical_version_idx ON releases (canonical_version);

CREATE TABLE release_files (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    release_id uuid NOT NULL REFERENCES releases (id) ON UPDATE CASCADE ON DELETE CASCADE,
    packagetype text NOT NULL,
    filename text NOT NULL UNIQUE,
    upload_time timestamp without time zone NOT NULL DEFAULT now()
);
CREATE INDEX release_files_release_id_idx ON release_files (release_id);

CREATE TABLE organizations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    display_name text NOT NULL,
    normalized_name text NOT NULL UNIQUE
        GENERATED ALWAYS AS (regexp_replace(lower(name), '(\.|_|-)+', '-', 'g')) STORED,
    is_active boolean NOT NULL DEFAULT false,
    created timestamp without time zone NOT NULL DEFAULT now(),
    CONSTRAINT organizations_valid_name CHECK (name ~* '^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$'::text)
);

CREATE TABLE teams (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON UPDATE CASCADE ON DELETE CASCADE,
    created timestamp without time zone NOT NULL DEFAULT now(),
    CONSTRAINT teams_valid_name CHECK (name ~* '^([^\s/._-]|[^\s/._-].*[^\s/._-])$'::text)
);
CREATE INDEX teams_organization_id_idx ON teams (organization_id);
CREATE INDEX ix_teams_created ON teams (created);

-- One event table per parent, as HasEvents builds them: <class>_events with
-- source_id referencing the parent (deferred, cascading deletes) and an
-- optional ip_address_id.

CREATE TABLE user_events (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    source_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    tag varchar NOT NULL,
    time timestamp without time zone NOT NULL DEFAULT now(),
    additional jsonb,
    ip_address_id uuid REFERENCES ip_addresses (id) ON UPDATE CASCADE ON DELETE CASCADE
);
CREATE INDEX ix_user_events_source_id ON user_events (source_id);

CREATE TABLE project_events (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    source_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    tag varchar NOT NULL,
    time timestamp without time zone NOT NULL DEFAULT now(),
    additional jsonb,
    ip_address_id uuid REFERENCES ip_addresses (id) ON UPDATE CASCADE ON DELETE CASCADE
);
CREATE INDEX ix_project_events_source_id ON project_events (source_id);

CREATE TABLE file_events (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    source_id uuid NOT NULL REFERENCES release_files (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    tag varchar NOT NULL,
    time timestamp without time zone NOT NULL DEFAULT now(),
    additional jsonb,
    ip_address_id uuid REFERENCES ip_addresses (id) ON UPDATE CASCADE ON DELETE CASCADE
);
CREATE INDEX ix_file_events_source_id ON file_events (source_id);

CREATE TABLE organization_events (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    source_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    tag varchar NOT NULL,
    time timestamp without time zone NOT NULL DEFAULT now(),
    additional jsonb,
    ip_address_id uuid REFERENCES ip_addresses (id) ON UPDATE CASCADE ON DELETE CASCADE
);
CREATE INDEX ix_organization_events_source_id ON organization_events (source_id);

CREATE TABLE team_events (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    source_id uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    tag varchar NOT NULL,
    time timestamp without time zone NOT NULL DEFAULT now(),
    additional jsonb,
    ip_address_id uuid REFERENCES ip_addresses (id) ON UPDATE CASCADE ON DELETE CASCADE
);
CREATE INDEX ix_team_events_source_id ON team_events (source_id);
