-- auditlog_holds_personal is the one definition of "this event still holds
-- personal data": an IP, a user agent, a location, or one of the
-- additional keys its tag registers as personal (personal_keys maps each
-- tag to its personal keys, as erasure passes it). Erasure's statements,
-- over project_events and over every table of user events, and its
-- verification all ask it.

-- auditlog_tag_keys is the one reading of a map of tag to keys, as erasure
-- passes them (its personal keys, or the keys that name an account): the
-- tag's own and those under "*", the catalog-wide ones (which also cover
-- tags no longer in the catalog).

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION auditlog_tag_keys(tag text, keys_by_tag jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY(SELECT jsonb_array_elements_text(COALESCE(keys_by_tag -> tag, '[]') || COALESCE(keys_by_tag -> '*', '[]')))
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION auditlog_holds_personal(ip inet, user_agent text, location jsonb, tag text, additional jsonb, personal_keys jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ip IS NOT NULL OR user_agent IS NOT NULL OR location IS NOT NULL
        OR jsonb_exists_any(additional, auditlog_tag_keys(tag, personal_keys))
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION auditlog_holds_personal(inet, text, jsonb, text, jsonb, jsonb);
DROP FUNCTION auditlog_tag_keys(text, jsonb);
