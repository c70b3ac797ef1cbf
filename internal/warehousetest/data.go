package warehousetest

import (
	"fmt"
	"strings"
)

// tagSpec is one Warehouse event tag: its share of its table's events
// and the SQL for the additional payload Warehouse records with it (NULL
// for none). upload marks tags written by an upload client rather than a
// browser.
type tagSpec struct {
	tag     string
	weight  float64
	payload string
	upload  bool
}

const (
	email = `(lower(s.username) || '@' || ` + `(ARRAY['gmail.com', 'example.org', 'fastmail.com', 'users.noreply.github.com'])[1 + abs(g.h6 % 4)])`
	// trusted is true for uploads through a trusted (OIDC) publisher.
	trusted     = `(abs(g.h6 % 10) < 3)`
	submittedBy = `(CASE WHEN ` + trusted + ` THEN 'OpenID created token' ELSE a.username END)`
	publisher   = `(CASE WHEN ` + trusted + ` THEN 'https://github.com/' || lower(a.username) || '/' || pname || '/blob/main/.github/workflows/release.yml' END)`
	version     = `((abs(g.h5 % 4)) || '.' || (abs(g.h6 % 13)) || '.' || (abs(g.h3 % 7)))`

	uaBrowser = `jsonb_build_object('user_agent_info', jsonb_build_object('installer', 'Browser',
		'device', (ARRAY['Other', 'Mac', 'iPhone', 'Other', 'K'])[1 + abs(g.h5 % 5)],
		'os', (ARRAY['Mac OS X', 'Windows', 'Linux', 'Ubuntu', 'iOS', 'Android'])[1 + abs(g.h6 % 6)],
		'user_agent', (ARRAY['Chrome', 'Firefox', 'Safari', 'Edge', 'Chrome Mobile'])[1 + abs(g.h3 % 5)]))`
	uaUpload = `jsonb_build_object('user_agent_info', jsonb_build_object(
		'installer', (ARRAY['twine', 'twine', 'twine', 'requests', 'maturin', 'uv'])[1 + abs(g.h5 % 6)],
		'implementation', 'CPython',
		'system', (ARRAY['Linux', 'Linux', 'Darwin', 'Windows'])[1 + abs(g.h3 % 4)]))`
)

func twoFactor(key string) string {
	return `(CASE abs(g.h5 % 5) WHEN 0 THEN jsonb_build_object('` + key + `', 'totp')
		WHEN 1 THEN jsonb_build_object('` + key + `', 'webauthn', 'label', ` + pick("h6", "YubiKey 5", "Touch ID", "Pixel passkey", "backup key") + `)
		ELSE jsonb_build_object('` + key + `', 'totp') END)`
}

var tagSpecs = map[string][]tagSpec{
	"user_events": {
		{"account:login:success", 40, `(CASE abs(g.h5 % 6)
			WHEN 0 THEN jsonb_build_object('two_factor_method', NULL, 'two_factor_label', NULL)
			WHEN 1 THEN jsonb_build_object('two_factor_method', 'webauthn', 'two_factor_label', ` + pick("h6", "YubiKey 5", "Touch ID", "Pixel passkey") + `)
			WHEN 2 THEN jsonb_build_object('two_factor_method', 'recovery-code', 'two_factor_label', NULL)
			ELSE jsonb_build_object('two_factor_method', 'totp', 'two_factor_label', NULL) END)`, false},
		{"account:login:failure", 10, `jsonb_build_object('reason', ` + pick("h5", "invalid_totp", "invalid_totp", "invalid_webauthn", "invalid_recovery_code", "burned_recovery_code") + `)`, false},
		{"account:login:new_device", 3, `jsonb_build_object('two_factor_method', ` + pick("h5", "totp", "webauthn", "totp") + `)`, false},
		{"account:two_factor:method_added", 2, twoFactor("method"), false},
		{"account:two_factor:method_removed", 1, twoFactor("method"), false},
		{"account:api_token:added", 4, `(CASE WHEN abs(g.h5 % 2) = 0
			THEN jsonb_build_object('description', ` + pick("h6", "ci", "laptop", "github actions", "release token") + `,
				'caveats', jsonb_build_array(jsonb_build_object('permissions', 'user', 'version', 1)))
			ELSE jsonb_build_object('description', 'upload ' || p.name,
				'caveats', jsonb_build_array(jsonb_build_object('permissions', jsonb_build_object('projects', jsonb_build_array(lower(p.name))), 'version', 1),
					jsonb_build_object('project_ids', jsonb_build_array(p.id::text)))) END)`, false},
		{"account:api_token:removed", 2, `jsonb_build_object('macaroon_id', md5(g.i::text || 'macaroon')::uuid::text, 'description', ` + pick("h6", "ci", "laptop", "github actions") + `, 'removed_by', s.username)`, false},
		{"account:api_token:removed_leak", 0.2, `jsonb_build_object('macaroon_id', md5(g.i::text || 'macaroon')::uuid::text, 'public_url', 'https://github.com/' || lower(s.username) || '/dotfiles/blob/main/.pypirc', 'permissions', 'user', 'description', 'laptop', 'origin', 'github')`, false},
		{"account:create", 2, `jsonb_build_object('email', ` + email + `)`, false},
		{"account:email:add", 2, `jsonb_build_object('email', ` + email + `)`, false},
		{"account:email:verified", 2, `jsonb_build_object('email', ` + email + `, 'primary', abs(g.h5 % 3) = 0)`, false},
		{"account:email:sent", 4, `jsonb_build_object('from_', 'PyPI <noreply@pypi.org>', 'to', ` + email + `, 'subject', ` + pick("h5", "Email verification", "Password reset", "Two-factor method added", "New API token added to your account", "Unrecognized login to your PyPI account") + `, 'redact_ip', true)`, false},
		{"account:password:change", 1, ``, false},
		{"account:password:reset:request", 1, ``, false},
		{"account:password:reset", 0.5, ``, false},
		{"account:recovery_codes:generated", 1, ``, false},
		{"account:role:add", 3, `jsonb_build_object('submitted_by', a.username, 'project_name', p.name, 'role_name', ` + pick("h5", "Owner", "Maintainer") + `)`, false},
		{"account:role:remove", 0.5, `jsonb_build_object('submitted_by', a.username, 'project_name', p.name, 'role_name', ` + pick("h5", "Owner", "Maintainer") + `)`, false},
		{"account:organization_role:add", 1, `jsonb_build_object('submitted_by_user_id', a.id::text, 'organization_name', o.name, 'role_name', ` + pick("h5", "Owner", "Manager", "Member", "Billing Manager") + `)`, false},
		{"account:team_role:add", 1, `jsonb_build_object('submitted_by_user_id', a.id::text, 'organization_name', t.org_name, 'team_name', t.name, 'role_name', 'Member')`, false},
	},
	"project_events": {
		{"project:release:add", 40, `jsonb_build_object('submitted_by', ` + submittedBy + `, 'canonical_version', ` + version + `,
			'publisher_url', ` + strings.ReplaceAll(publisher, "pname", "lower(s.name)") + `, 'uploaded_via_trusted_publisher', ` + trusted + `)`, true},
		{"project:create", 8, `jsonb_build_object('created_by', a.username)`, true},
		{"project:role:add", 8, `jsonb_build_object('submitted_by', a.username, 'role_name', ` + pick("h5", "Owner", "Maintainer") + `, 'target_user', u2.username)`, false},
		{"project:role:remove", 2, `jsonb_build_object('submitted_by', a.username, 'role_name', ` + pick("h5", "Owner", "Maintainer") + `, 'target_user', u2.username)`, false},
		{"project:release:yank", 2, `jsonb_build_object('submitted_by', a.username, 'canonical_version', ` + version + `, 'yanked_reason', ` + pick("h5", "", "broken wheel", "security issue") + `)`, false},
		{"project:release:remove", 1, `jsonb_build_object('submitted_by', a.username, 'canonical_version', ` + version + `)`, false},
		{"project:api_token:added", 3, `jsonb_build_object('description', 'upload ' || s.name, 'user', a.username)`, false},
		{"project:oidc:publisher-added", 2, `jsonb_build_object('publisher', 'GitHub', 'id', md5(g.i::text || 'publisher')::uuid::text,
			'specifier', 'release.yml @ ' || lower(a.username) || '/' || lower(s.name), 'url', 'https://github.com/' || lower(a.username) || '/' || lower(s.name),
			'submitted_by', a.username, 'reified_from_pending_publisher', false, 'constrained_from_existing_publisher', false)`, false},
	},
	"file_events": {
		{"file:add", 30, `jsonb_build_object('filename', s.filename, 'submitted_by', ` + submittedBy + `, 'canonical_version', s.version,
			'publisher_url', ` + strings.ReplaceAll(publisher, "pname", "lower(s.project_name)") + `, 'project_id', s.project_id::text, 'uploaded_via_trusted_publisher', ` + trusted + `)`, true},
		{"file:remove", 1, `jsonb_build_object('submitted_by', a.username, 'canonical_version', s.version, 'filename', s.filename, 'project_id', s.project_id::text, 'reason', ` + pick("h5", "malware", "requested by owner") + `)`, false},
	},
	"organization_events": {
		{"organization:create", 2, `jsonb_build_object('created_by_user_id', a.id::text, 'redact_ip', true)`, false},
		{"organization:team:create", 2, `jsonb_build_object('created_by_user_id', a.id::text, 'team_name', t.name)`, false},
		{"organization:organization_role:add", 5, `jsonb_build_object('submitted_by_user_id', a.id::text, 'role_name', ` + pick("h5", "Owner", "Manager", "Member") + `, 'target_user_id', u2.id::text)`, false},
		{"organization:organization_role:invite", 3, `jsonb_build_object('submitted_by_user_id', a.id::text, 'role_name', ` + pick("h5", "Owner", "Manager", "Member") + `, 'target_user_id', u2.id::text)`, false},
		{"organization:organization_project:add", 4, `jsonb_build_object('submitted_by_user_id', a.id::text, 'project_name', p.name)`, false},
	},
	"team_events": {
		{"team:create", 1, `jsonb_build_object('organization_name', s.org_name, 'team_name', s.name, 'created_by_user_id', a.id::text)`, false},
		{"team:team_role:add", 5, `jsonb_build_object('organization_name', s.org_name, 'team_name', s.name, 'submitted_by_user_id', a.id::text, 'role_name', 'Member', 'target_user_id', u2.id::text)`, false},
		{"team:team_project_role:add", 3, `jsonb_build_object('organization_name', s.org_name, 'team_name', s.name, 'submitted_by_user_id', a.id::text, 'project_name', p.name, 'role_name', ` + pick("h5", "Owner", "Maintainer") + `)`, false},
		{"team:rename", 0.5, `jsonb_build_object('organization_name', s.org_name, 'team_name', s.name, 'previous_team_name', s.name || ' (old)', 'renamed_by_user_id', a.id::text)`, false},
	},
}

type city struct {
	city, region, cc, cc3, country, continent string
	lat, lon                                  float64
}

// cities are the GeoIP records IP addresses get: GeoIPInfo's keys.
var cities = []city{
	{"Berlin", "BE", "DE", "DEU", "Germany", "EU", 52.52, 13.40},
	{"Munich", "BY", "DE", "DEU", "Germany", "EU", 48.14, 11.58},
	{"Paris", "IDF", "FR", "FRA", "France", "EU", 48.86, 2.35},
	{"London", "ENG", "GB", "GBR", "United Kingdom", "EU", 51.51, -0.13},
	{"Amsterdam", "NH", "NL", "NLD", "Netherlands", "EU", 52.37, 4.90},
	{"Warsaw", "14", "PL", "POL", "Poland", "EU", 52.23, 21.01},
	{"San Francisco", "CA", "US", "USA", "United States", "NA", 37.77, -122.42},
	{"Seattle", "WA", "US", "USA", "United States", "NA", 47.61, -122.33},
	{"New York", "NY", "US", "USA", "United States", "NA", 40.71, -74.01},
	{"Austin", "TX", "US", "USA", "United States", "NA", 30.27, -97.74},
	{"Toronto", "ON", "CA", "CAN", "Canada", "NA", 43.65, -79.38},
	{"São Paulo", "SP", "BR", "BRA", "Brazil", "SA", -23.55, -46.63},
	{"Bengaluru", "KA", "IN", "IND", "India", "AS", 12.97, 77.59},
	{"Tokyo", "13", "JP", "JPN", "Japan", "AS", 35.68, 139.69},
	{"Beijing", "BJ", "CN", "CHN", "China", "AS", 39.90, 116.41},
	{"Singapore", "", "SG", "SGP", "Singapore", "AS", 1.35, 103.82},
	{"Sydney", "NSW", "AU", "AUS", "Australia", "OC", -33.87, 151.21},
	{"Lagos", "LA", "NG", "NGA", "Nigeria", "AF", 6.52, 3.38},
	{"", "", "", "", "Unknown", "", 0, 0}, // a lookup that found only a country name
}

// citiesSQL is a VALUES list of cities with k (0-based) and NULL for
// empty fields.
func citiesSQL() string {
	var b strings.Builder
	b.WriteString("SELECT * FROM (VALUES ")
	nullable := func(s string) string {
		if s == "" {
			return "NULL::text"
		}
		return quote(s) + "::text"
	}
	for i, c := range cities {
		if i > 0 {
			b.WriteString(", ")
		}
		lat, lon := fmt.Sprintf("%g::float8", c.lat), fmt.Sprintf("%g::float8", c.lon)
		if c.city == "" {
			lat, lon = "NULL::float8", "NULL::float8"
		}
		fmt.Fprintf(&b, "(%d, %s, %s, %s, %s, %s, %s, %s, %s)", i, nullable(c.city), nullable(c.region), nullable(c.cc),
			nullable(c.cc3), nullable(c.country), nullable(c.continent), lat, lon)
	}
	b.WriteString(") AS c (k, city, region, country_code, country_code3, country_name, continent_code, latitude, longitude)")
	return b.String()
}

var (
	firstNames    = []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yuki", "zoltan", "amara", "chen", "dmitri", "fatima", "giulia", "hiro", "ines", "kwame", "lena"}
	lastNames     = []string{"smith", "jones", "garcia", "mueller", "rossi", "dubois", "kowalski", "tanaka", "silva", "nguyen", "okafor", "larsen", "ivanova", "patel", "kim", "py", "dev", "codes"}
	projectWords  = []string{"fast", "py", "django", "flask", "async", "tiny", "super", "simple", "open", "data", "cloud", "easy", "hyper", "micro", "auto", "smart", "json", "http", "sql", "ml"}
	projectWords2 = []string{"utils", "client", "parser", "tools", "lib", "kit", "api", "server", "core", "cli", "sdk", "helpers", "extras", "stubs", "plugin", "framework"}
	orgWords      = []string{"acme", "open", "python", "data", "blue", "green", "north", "star", "deep", "bright"}
	orgSuffixes   = []string{"labs", "software", "foundation", "corp", "io", "collective", "systems", "ai"}
)
