-- auditlog_holds_personal is the one definition of "this event still holds
-- personal data": an IP, a user agent, a location, or one of the
-- additional keys its tag registers as personal (personal_keys maps each
-- tag to its personal keys, as erasure passes it). Erasure's statements,
-- over project_events and over every table of user events, and its
-- verification all ask it.

-- auditlog_personal_keys is the one definition of which additional keys
-- are personal in an event of tag: personal_keys maps each tag to its
-- personal keys, and "*" to the catalog-wide ones (which also cover tags
-- no longer in the catalog).

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION auditlog_personal_keys(tag text, personal_keys jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY(SELECT jsonb_array_elements_text(COALESCE(personal_keys -> tag, '[]') || COALESCE(personal_keys -> '*', '[]')))
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION auditlog_holds_personal(ip inet, user_agent text, location jsonb, tag text, additional jsonb, personal_keys jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ip IS NOT NULL OR user_agent IS NOT NULL OR location IS NOT NULL
        OR jsonb_exists_any(additional, auditlog_personal_keys(tag, personal_keys))
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION auditlog_holds_personal(inet, text, jsonb, text, jsonb, jsonb);
DROP FUNCTION auditlog_personal_keys(text, jsonb);
