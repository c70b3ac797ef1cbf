package web

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/auditlog/auditlog/service"
)

// FuzzDecodeEvents: the ingest body decoder never panics, never takes
// more than service.MaxIngestEvents events, and what it accepts holds no
// string it rewrote (invalid UTF-8 or a lone surrogate decoded to U+FFFD).
func FuzzDecodeEvents(f *testing.F) {
	for _, s := range []string{
		`{"events": [{"tag": "account:login:success", "user_id": "u", "ip": "192.0.2.1", "location": {"city": "Berlin"}}]}`,
		`{"events": [{"tag": "project:release:add", "project_id": "p", "time": "2026-07-01T12:00:00Z", "additional": {"version": "1"}}]}`,
		`{"events": [{"tag": "x:y", "user_id": "\ud800"}]}`,
		`{"events": [{"TAG": "x:y"}]}`,
		`{"events": [{"tag": "x:y", "tag": "x:z"}]}`,
		`{"events": [{"tag": "x:y", "time": "0001-01-01T00:00:00Z", "actor_two_factor": true}]}`,
		`{"events": [], "extra": 1}`,
		`{"events": [`,
		"{\"events\": [{\"user_id\": \"\xff\"}]}",
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		events, bad := decodeEvents(body)
		if len(events) > service.MaxIngestEvents {
			t.Fatalf("decoded %d events", len(events))
		}
		if bad != nil {
			if bad.msg == "" {
				t.Fatal("an error without a message")
			}
			if bad.index != nil && *bad.index != len(events) {
				t.Fatalf("error at event %d, but %d events came before it", *bad.index, len(events))
			}
			return
		}
		if len(events) == 0 {
			t.Fatal("accepted a body without events")
		}
		replacementInBody := bytes.Contains(body, []byte("\uFFFD")) || bytes.Contains(bytes.ToLower(body), []byte(`\ufffd`))
		for _, e := range events {
			for _, s := range []string{e.Tag, e.UserID, e.ProjectID, e.ActorID, e.AuthMethod, e.TokenID, e.IP, e.UserAgent} {
				if !utf8.ValidString(s) {
					t.Fatalf("accepted invalid UTF-8 %q", s)
				}
				if strings.ContainsRune(s, utf8.RuneError) && !replacementInBody {
					t.Fatalf("rewrote a string into %q", s)
				}
			}
		}
	})
}

// FuzzAdminFilter: the admin console's query parsing never panics, and a
// query it accepts becomes a filter the service accepts too, every value
// printable UTF-8 within the length limit: nothing is dropped on the way.
func FuzzAdminFilter(f *testing.F) {
	for _, s := range []string{"user=alice&ip=10.0.0.0%2F8&since=2026-01-01", "ip=%3A%3Affff%3A1.2.3.4%2F8", "tag_prefix=account%3A",
		"user=%FF", "user=a&user=b", "usr=x", "cursor=AQAAAAAAAAAAAAAAAAAAAAE", "limit=0", "until=2026-13-01", "tag=%zz", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		r := httptest.NewRequest("GET", "/api/v1/admin/events", nil)
		r.URL.RawQuery = rawQuery
		q, err := strictQuery(r, adminKeys...)
		if err != nil {
			return
		}
		for k, vs := range q {
			if len(vs) != 1 || len(vs[0]) > MaxFilterBytes || !utf8.ValidString(vs[0]) || strings.IndexFunc(vs[0], unicode.IsControl) >= 0 {
				t.Fatalf("accepted %s=%q", k, vs)
			}
		}
		filter, err := adminFilter(q)
		if err != nil {
			return
		}
		if err := filter.Validate(); err != nil {
			t.Fatalf("accepted %q that the service refuses: %v", rawQuery, err)
		}
		applied := appliedFilter(filter)
		for _, k := range []string{"user", "project", "actor", "ip", "tag", "tag_prefix", "since", "until"} {
			if q.Get(k) != "" && applied[k] == "" {
				t.Fatalf("filter %s=%q is missing from the recorded filter %v", k, q.Get(k), applied)
			}
		}
	})
}

// FuzzViewerToken: parsing never panics, accepts only tokens signed under
// the secret, and what it accepts names a user as minting requires.
func FuzzViewerToken(f *testing.F) {
	secret := []byte("a fuzzing secret of enough bytes")
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	good, err := MintViewerToken(secret, Viewer{UserID: "alice", Maintains: []string{"p"}, Admin: true}, now, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good + "x")
	// The signature with its unused low bits flipped: the same MAC bytes
	// under a lenient base64 decoder, so one session would have many
	// spellings.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, good[len(good)-1])
	f.Add(good[:len(good)-1] + string(alphabet[last^1]))
	f.Add(strings.Replace(good, "alv1.", "alv2.", 1))
	f.Add("alv1..")
	f.Add("alv1.e30.AAAA")
	f.Fuzz(func(t *testing.T, token string) {
		v, err := ParseViewerToken(secret, token, now)
		if err != nil {
			if !errors.Is(err, ErrTokenInvalid) && !errors.Is(err, ErrTokenExpired) {
				t.Fatalf("ParseViewerToken(%q): unexpected error %v", token, err)
			}
			return
		}
		if v.UserID == "" || !utf8.ValidString(v.UserID) {
			t.Fatalf("accepted %q naming no valid user: %+v", token, v)
		}
		// Only a token with a valid signature is accepted: the secret
		// signs exactly its body.
		dot := strings.LastIndexByte(token, '.')
		if dot < 0 || base64.RawURLEncoding.EncodeToString(tokenMAC(secret, token[:dot])) != token[dot+1:] {
			t.Fatalf("accepted %q whose signature is not the secret's", token)
		}
	})
}
