package service

import (
	"encoding/json"
	"testing"
)

// The description language: values, nested keys, filters, optional parts,
// and a fallback (never a refusal) when a required value is missing.
func TestDescriptionTemplates(t *testing.T) {
	maps := map[string]map[string]string{"reason": {"invalid_password": "incorrect password"}}
	for _, tc := range []struct {
		tmpl, additional, want string
		complete               bool
	}{
		{"Released version {version}", `{"version": "2.0"}`, "Released version 2.0", true},
		{"Released version {version}", `{"version": 3}`, "Released version 3", true},
		{"Released version {version}", `{}`, "Released version (unknown)", false},
		{"Released version {version}", `{"version": null}`, "Released version (unknown)", false},
		{"Released version {version}", `{"version": {"a": 1}}`, "Released version (unknown)", false},
		{"Failed sign-in: {reason|map:reason}", `{"reason": "invalid_password"}`, "Failed sign-in: incorrect password", true},
		{"Failed sign-in: {reason|map:reason}", `{"reason": "solar_flare"}`, "Failed sign-in: solar_flare", true},
		{"Signed in[ with {method}]", `{}`, "Signed in", true},
		{"Signed in[ with {method}]", `{"method": "totp"}`, "Signed in with totp", true},
		{"Signed in[ with {method} from {where}]", `{"method": "totp"}`, "Signed in", true},
		{"Uploaded {filename}[ ({size|bytes})]", `{"filename": "a.whl", "size": 1572864}`, "Uploaded a.whl (1.5 MiB)", true},
		{"Uploaded {filename}[ ({size|bytes})]", `{"filename": "a.whl", "size": 512}`, "Uploaded a.whl (512 bytes)", true},
		{"Expires {expires|date}", `{"expires": "2026-12-24T10:00:00Z"}`, "Expires 24 Dec 2026", true},
		{"Expires {expires|time}", `{"expires": 1798106400}`, "Expires 24 Dec 2026 10:00 UTC", true},
		{"Scopes: {scopes|list}", `{"scopes": ["upload", "yank", "delete"]}`, "Scopes: upload, yank and delete", true},
		{"{n|count} recovery codes", `{"n": [1, 2, 3]}`, "3 recovery codes", true},
		{"Publisher {publisher.name}", `{"publisher": {"name": "GitHub"}}`, "Publisher GitHub", true},
		{"Renamed to {new|or:none}", `{"new": null}`, "Renamed to none", true},
		{"Two-factor: {enabled}", `{"enabled": false}`, "Two-factor: no", true},
		{"Gave {target_user|person} the {role} role", `{"target_user": "gina", "role": "Owner"}`, "Gave gina the Owner role", true},
	} {
		tmpl, err := parseTemplate(tc.tmpl, maps)
		if err != nil {
			t.Fatalf("%q: %v", tc.tmpl, err)
		}
		var values map[string]any
		if err := json.Unmarshal([]byte(tc.additional), &values); err != nil {
			t.Fatal(err)
		}
		got, complete := tmpl.render(values)
		if got != tc.want || complete != tc.complete {
			t.Errorf("%q with %s = %q (complete %v), want %q (%v)", tc.tmpl, tc.additional, got, complete, tc.want, tc.complete)
		}
	}
	for _, bad := range []string{"{", "}", "[x", "x]", "{a b}", "{a|nope}", "{a|map:nosuch}", "{a|or}", "{a|time:x}", "{}", "{a.}"} {
		if _, err := parseTemplate(bad, maps); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
