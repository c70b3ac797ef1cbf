// Package warehousetest builds, in a PostgreSQL database of its own, the
// audit-event tables of PyPI's Warehouse and fills them with a realistic,
// reproducible history, so that an importer of Warehouse events can be
// tested against a database shaped like the real one.
//
// The schema (schema.sql, applied by CreateSchema) follows these files of
// github.com/pypi/warehouse:
//
//   - warehouse/events/models.py: the HasEvents mixin gives every parent
//     model a table named after its class, <class>_events (user_events,
//     project_events, file_events, organization_events, team_events), with
//     a uuid id, a source_id referencing the parent (deferrable, initially
//     deferred, cascading on delete) indexed as ix_<class>_events_source_id,
//     a tag, a time defaulting to now(), a jsonb additional and a nullable
//     ip_address_id referencing ip_addresses. record_event copies the IP's
//     geoip_info into additional.geoip_info and a parsed User-Agent into
//     additional.user_agent_info.
//   - warehouse/ip_addresses/models.py: ip_addresses with a unique inet
//     ip_address, a unique hashed_ip_address, geoip_info jsonb, and
//     is_banned, ban_reason and ban_date tied together by a check
//     constraint; bans_idx on is_banned. The geoip_info keys are those of
//     the GeoIPInfo dataclass in events/models.py (city, region,
//     country_code, country_code3, country_name, continent_code, latitude,
//     longitude).
//   - warehouse/accounts/models.py (users), warehouse/packaging/models.py
//     (projects, releases, release_files) and
//     warehouse/organizations/models.py (organizations, teams): the parents,
//     cut down to the columns that turn a source_id into a name (a file's
//     name and, through its release, its project and version).
//   - warehouse/db.py and warehouse/utils/db/types.py: uuid primary keys
//     defaulting to gen_random_uuid(), and naive timestamps holding UTC.
//
// Tags and additional payloads follow warehouse/events/tags.py and the
// record_event calls that use them (accounts/views.py, accounts/forms.py,
// manage/views, forklift/legacy.py, organizations/services.py).
//
// Fill writes everything with INSERT … SELECT over generate_series, so a
// million events take seconds. It decides in Go how many rows each table,
// tag and side of the cutoff gets, and returns those numbers (Counts), so a
// test knows exactly what an importer should bring over and what it should
// leave behind.
package warehousetest
