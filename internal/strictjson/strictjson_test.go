package strictjson_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/internal/strictjson"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// Every input is checked against PostgreSQL's own jsonb input function:
// Check accepts exactly what jsonb stores as written. The only inputs
// Check refuses that jsonb takes are those jsonb would rewrite (a
// repeated key keeps only its last value) or nest beyond MaxDepth.
func TestCheckAgreesWithJSONB(t *testing.T) {
	t.Parallel()
	tx := dbtest.Tx(t)
	ctx := context.Background()
	cases := []string{
		`{}`, `[]`, `"x"`, `0`, `-0`, `1.5`, `-1e5`, `true`, `false`, `null`, ` {"a" : [1, 2, {"b": null}]} `,
		`{"a": "\ud83d\ude00"}`, `{"a": "\u00e9\n\t\"\\\/"}`, `{"a": "é ü 中"}`,
		`{"a": "\ud800"}`, `{"a": "\udc00"}`, `{"a": "\ud800\u0041"}`, `{"a": "\ud800x"}`, `{"a": "\u0000"}`, `{"a\u0000": 1}`,
		`{"a": 1e131071}`, `{"a": 1e131072}`, `{"a": 10e131070}`, `{"a": 100e131070}`, `{"a": 0.001e131074}`,
		`{"a": 1e-16383}`, `{"a": 1e-16384}`, `{"a": 1.5e-16383}`, `{"a": 1.000e-16380}`, `{"a": 1.0000e-16380}`,
		`{"a": 0e-16383}`, `{"a": 0e-16384}`, `{"a": 0e131072}`, `{"a": 0e1073741822}`, `{"a": 0e1073741823}`,
		`{"a": 1e-1073741822}`, `{"a": -1e131071}`, `{"a": 0.00000e0}`, `{"a": 1E+5}`, `{"a": 123456789012345678901234567890e131040}`,
		`{"a": 01}`, `{"a": 1.}`, `{"a": .5}`, `{"a": +1}`, `{"a": 1e}`, `{"a": NaN}`, `{"a": tru}`, `{"a":}`, `{"a" 1}`, `{a: 1}`,
		`{"a": 1,}`, `[1,]`, `{"a": 1} {"b": 2}`, `{"a": "x`, `{"a": "\x"}`, `{"a": "\u12"}`, "{\"a\": \"tab\there\"}", ``, `   `,
		"{\"a\": \"\xff\"}", "{\"\xc3\x28\": 1}", "{\"a\": \"\xed\xa0\x80\"}",
	}
	for _, in := range cases {
		err := strictjson.Check([]byte(in), strictjson.Options{})
		_, dbErr := tx.Exec(ctx, "SAVEPOINT s")
		require.NoError(t, dbErr)
		var stored bool
		dbErr = tx.QueryRow(ctx, "SELECT $1::text::jsonb IS NOT NULL", in).Scan(&stored)
		if dbErr != nil && strings.Contains(dbErr.Error(), "22021") { // the text itself is not UTF-8: jsonb never sees it
			require.Error(t, err, "%q", in)
		} else {
			require.Equal(t, dbErr == nil, err == nil, "%q: Check says %v, jsonb says %v", in, err, dbErr)
		}
		_, dbErr = tx.Exec(ctx, "ROLLBACK TO SAVEPOINT s")
		require.NoError(t, dbErr)
	}
}

func TestCheckRefusesWhatJSONBWouldRewrite(t *testing.T) {
	t.Parallel()
	for in, wantPath := range map[string]string{
		`{"a": 1, "a": 2}`:                    "a",
		`{"a": 1, "\u0061": 2}`:               "a",
		`{"x": {"b": [1, {"c": 1, "c": 2}]}}`: "x.b[1].c",
		`{"k1":1,"k2":1,"k3":1,"k4":1,"k5":1,"k6":1,"k7":1,"k8":1,"k9":1,"k10":1,"k11":1,"k12":1,"k13":1,"k14":1,"k15":1,"k16":1,"k17":1,"k18":1,"k1":1}`: "k1",
	} {
		err := strictjson.Check([]byte(in), strictjson.Options{})
		var se *strictjson.Error
		require.True(t, errors.As(err, &se), in)
		require.Equal(t, wantPath, se.Path, in)
		require.Contains(t, se.Msg, "repeated", in)
	}
	deep := strings.Repeat(`{"a":`, 11) + "1" + strings.Repeat("}", 11)
	require.NoError(t, strictjson.Check([]byte(deep), strictjson.Options{MaxDepth: 11}))
	err := strictjson.Check([]byte(deep), strictjson.Options{MaxDepth: 10})
	require.ErrorContains(t, err, "nested deeper than 10 levels")
}

func TestCheckNamesTheField(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]struct{ path, field string }{
		"{\"user_id\": \"al\xffice\"}":                 {"user_id", "user_id"},
		`{"tag": "x", "location": {"city": "\udc00"}}`: {"location.city", "location"},
		`{"additional": {"n": [1, 2, 1e999999]}}`:      {"additional.n[2]", "additional"},
	} {
		err := strictjson.Check([]byte(in), strictjson.Options{})
		var se *strictjson.Error
		require.True(t, errors.As(err, &se), in)
		require.Equal(t, want.path, se.Path, in)
		require.Equal(t, want.field, se.Field(), in)
	}
	// The key callback sees every key with its depth and parent.
	var seen []string
	err := strictjson.Check([]byte(`{"a": {"b": 1}, "c": [{"d": 2}], "Tag": 3}`), strictjson.Options{
		Key: func(depth int, parent, key string) error {
			seen = append(seen, strings.Join([]string{string(rune('0' + depth)), parent, key}, "/"))
			if key == "Tag" {
				return errors.New(`unknown field (names are case-sensitive: "tag")`)
			}
			return nil
		}})
	require.Equal(t, []string{"1//a", "2/a/b", "1//c", "3//d", "1//Tag"}, seen)
	require.EqualError(t, err, `Tag: unknown field (names are case-sensitive: "tag")`)
	require.ErrorContains(t, strictjson.CheckObject([]byte(`[1]`), strictjson.Options{}), "not a JSON object")
}

// FuzzCheck: whatever Check accepts is valid JSON and valid UTF-8, and
// encoding/json decodes it without rewriting a string into U+FFFD.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{"a": "b"}`, `[1, -2.5e3, true, null]`, `{"a": "\ud83d\ude00"}`, `"\ud800"`, `{"a":1,"a":2}`, `1e131072`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := strictjson.Check(b, strictjson.Options{MaxDepth: 100})
		if err != nil {
			var se *strictjson.Error
			if !errors.As(err, &se) || se.Msg == "" {
				t.Fatalf("error of the wrong shape: %#v", err)
			}
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		if !utf8.Valid(b) {
			t.Fatalf("accepted invalid UTF-8 %q", b)
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber() // numeric holds numbers float64 cannot
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("accepted %q that encoding/json refuses: %v", b, err)
		}
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(out, []byte("\ufffd")) && !bytes.Contains(b, []byte("\ufffd")) && !bytes.Contains(bytes.ToLower(b), []byte(`\ufffd`)) {
			t.Fatalf("accepted %q, which decodes with a replacement character", b)
		}
	})
}
