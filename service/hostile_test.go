package service_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

// hostileAdditional are additional payloads that encoding/json accepts but
// PostgreSQL's jsonb refuses or silently rewrites: each is refused with
// ErrInvalidAdditional before anything is written.
var hostileAdditional = []string{
	`{"a": "\ud800"}`,                  // lone high surrogate: jsonb refuses, encoding/json makes U+FFFD
	`{"a": "\udc00"}`,                  // lone low surrogate
	`{"a": "\ud800\u0041"}`,            // high surrogate not followed by a low one
	`{"a": "x\u0000y"}`,                // NUL
	`{"a": 1e131072}`,                  // beyond numeric's 131072 digits before the point
	`{"a": 1e-16384}`,                  // beyond numeric's 16383 digits after the point
	`{"a": 0e-99999}`,                  // even zero, written so
	`{"a": 1, "a": 2}`,                 // jsonb would keep only the last
	`{"a": 1, "\u0061": 2}`,            // the same key, spelled with an escape
	`{"a": {"b": [{"c": 1, "c": 1}]}}`, // nested
	"{\"a\": \"\xff\"}",                // invalid UTF-8
	`{"a": 1} {"b": 2}`,                // two values
	`{"a": 1`,                          // cut short
	strings.Repeat(`{"a":`, service.MaxAdditionalDepth+1) + "1" + strings.Repeat("}", service.MaxAdditionalDepth+1),
}

func TestHostileAdditionalIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, a := range hostileAdditional {
		p := dbtest.SignIn("u-hostile", time.Time{})
		p.Additional = json.RawMessage(a)
		_, err := b.log.RecordUserTx(b.ctx, b.tx, p)
		require.ErrorIs(t, err, service.ErrInvalidAdditional, "%.60q", a)
		var ve *service.ValidationError
		require.ErrorAs(t, err, &ve)
		require.Equal(t, "additional", ve.Field)
		_, err = b.log.RecordUserManyTx(b.ctx, b.tx, []service.EventParams{dbtest.SignIn("u-ok", time.Time{}), p})
		require.ErrorIs(t, err, service.ErrInvalidAdditional, "the bulk path too: %.60q", a)
	}
	require.Zero(t, dbtest.Count(t, b.tx, "SELECT count(*) FROM user_events"), "nothing was written")

	// What jsonb stores as written is accepted, and stored as sent.
	for _, a := range []string{`{"a": "\ud83d\ude00"}`, `{"a": 1e131071}`, `{"a": -1.000e-16380}`, `{"a": [1, {"b": null}], "c": "é"}`,
		strings.Repeat(`{"a":`, service.MaxAdditionalDepth) + "1" + strings.Repeat("}", service.MaxAdditionalDepth)} {
		p := dbtest.SignIn("u-fine", time.Time{})
		p.Additional = json.RawMessage(a)
		_, err := b.log.RecordUserTx(b.ctx, b.tx, p)
		require.NoError(t, err, "%.60q", a)
	}
	require.Equal(t, 5, dbtest.Count(t, b.tx, "SELECT count(*) FROM user_events WHERE user_id = 'u-fine'"))
	var emoji string
	require.NoError(t, b.tx.QueryRow(b.ctx, "SELECT additional->>'a' FROM user_events WHERE additional->>'a' LIKE '%😀%'").Scan(&emoji))
	require.Equal(t, "😀", emoji)
}

func TestEventTimesAndAddresses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := service.EventParams{Tag: "project:create", Subject: "p-old", Time: time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC)}
	_, err := b.log.RecordProjectTx(b.ctx, b.tx, p)
	require.ErrorIs(t, err, service.ErrTimeTooOld, "an explicit time before 1970 is a mistake")
	p.Time = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	_, err = b.log.RecordProjectTx(b.ctx, b.tx, p)
	require.NoError(t, err)

	// http.Request.RemoteAddr's host:port form is accepted; the port is not kept.
	for in, want := range map[string]string{"192.0.2.7:52100": "192.0.2.7", "[2001:db8::7]:443": "2001:db8::7", "[::ffff:198.51.100.4]:80": "198.51.100.4"} {
		q := dbtest.SignIn("u-addr", time.Time{})
		q.IP = in
		e, err := b.log.RecordUserTx(b.ctx, b.tx, q)
		require.NoError(t, err, in)
		require.Equal(t, want, e.IP.String(), in)
	}
	for _, in := range []string{"192.0.2.7:99999", "192.0.2.7:", "[fe80::1%eth0]:80", "host:80"} {
		q := dbtest.SignIn("u-addr", time.Time{})
		q.IP = in
		_, err := b.log.RecordUserTx(b.ctx, b.tx, q)
		require.ErrorIs(t, err, service.ErrInvalidIP, in)
	}
}

// A batch of both models names the first bad event in the caller's order,
// whichever model it belongs to and whatever is wrong with it.
func TestMixedBatchNamesTheFirstBadEvent(t *testing.T) {
	t.Parallel()
	pool := dbtest.Pool(t)
	ctx := t.Context()
	log := dbtest.Must(service.New(pool, nil))
	good := dbtest.SignIn("u-mixed", time.Time{})
	release := service.EventParams{Tag: "project:release:add", Subject: "p", Additional: json.RawMessage(`{"version": "1"}`)}
	badIP := good
	badIP.IP = "999.1.1.1"
	badProject := release
	badProject.AuthMethod = "Pass Word"
	noPartition := good
	noPartition.Time = time.Now().AddDate(3, 0, 0)
	unknown := service.EventParams{Tag: "account:teleport:done", Subject: "u"}
	for _, tc := range []struct {
		name  string
		batch []service.EventParams
		index int
	}{
		{"project before user", []service.EventParams{good, badProject, badIP}, 1},
		{"user before project", []service.EventParams{badIP, release, badProject}, 0},
		{"unknown tag after a bad event", []service.EventParams{good, release, badProject, unknown}, 2},
		{"unknown tag before a bad event", []service.EventParams{unknown, badIP}, 0},
		{"month without partition before a bad field", []service.EventParams{good, noPartition, good, badIP}, 1},
		{"bad field before a month without partition", []service.EventParams{good, badIP, good, noPartition}, 1},
	} {
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		// A failed check must not leave the transaction open: the pool
		// would wait for it when the test ends.
		t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
		_, _, err = log.RecordManyTx(ctx, tx, tc.batch)
		var be *service.BatchError
		require.ErrorAs(t, err, &be, tc.name)
		require.Equal(t, tc.index, be.Index, "%s: %v", tc.name, err)
		require.NoError(t, tx.Rollback(ctx))
	}

	// HTTP ingest's events: the subject field follows the tag.
	at := func(t time.Time) *time.Time { return &t }
	events := []service.IngestEvent{
		{Tag: "account:login:success", UserID: "u"},
		{Tag: "project:create", UserID: "u"},
		{Tag: "account:login:success", UserID: "u", Time: at(time.Time{})},
	}
	err := log.CheckIngest(ctx, events)
	var be *service.BatchError
	require.ErrorAs(t, err, &be)
	require.Equal(t, 1, be.Index)
	var ve *service.ValidationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "user_id", ve.Field, "a project event names its project, not a user")
	err = log.CheckIngest(ctx, events[2:])
	require.ErrorIs(t, err, service.ErrTimeTooOld, "an explicit zero time is not 'now'")
	require.NoError(t, log.CheckIngest(ctx, events[:1]))

	tok, err := log.CreateIngestToken(ctx, "svc")
	require.NoError(t, err)
	authed, err := log.AuthenticateIngest(ctx, tok)
	require.NoError(t, err)
	for _, key := range []string{"clé", "a\x00b", "a\nb", strings.Repeat("k", 256)} {
		_, _, err = log.Ingest(ctx, authed, key, []byte("{}"), events[:1])
		require.ErrorAs(t, err, &ve, "%q", key)
		require.Equal(t, "idempotency_key", ve.Field)
	}
	require.Zero(t, dbtest.Count(t, pool, "SELECT count(*) FROM user_events")+dbtest.Count(t, pool, "SELECT count(*) FROM project_events"))
}

func cursorAt(micros int64, id int64) string {
	var b [17]byte
	b[0] = 1
	binary.BigEndian.PutUint64(b[1:], uint64(micros))
	binary.BigEndian.PutUint64(b[9:], uint64(id))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Every filter applies exactly as given or is refused: nothing is dropped
// or reinterpreted on the way to the query.
func TestFiltersApplyExactlyOrAreRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for in, want := range map[string]string{
		"10.0.0.0/8": "10.0.0.0/8", "10.1.2.3/8": "10.0.0.0/8", "192.0.2.7": "192.0.2.7/32", "::ffff:10.0.0.0/104": "10.0.0.0/8",
		"::ffff:192.0.2.7": "192.0.2.7/32", "2001:db8::1/32": "2001:db8::/32",
	} {
		p, err := service.ParseNetwork(in)
		require.NoError(t, err, in)
		require.Equal(t, netip.MustParsePrefix(want), p, in)
	}
	for _, in := range []string{"::ffff:1.2.3.4/8", "::ffff:1.2.3.4/95", "10.0.0.0/33", "fe80::1%eth0", "10.0.0.0/8/8", ""} {
		_, err := service.ParseNetwork(in)
		require.ErrorIs(t, err, service.ErrInvalidIP, in)
	}
	for name, c := range map[string]string{
		"year 300000":    cursorAt(time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC).UnixMicro()*30, 5),
		"before year 1":  cursorAt(-62135596800000000-1, 5),
		"negative id":    cursorAt(b.now.UnixMicro(), -1),
		"not a cursor":   "x1",
		"wrong version":  strings.Replace(cursorAt(0, 1), "A", "B", 1),
		"empty id":       cursorAt(b.now.UnixMicro(), 0),
		"trailing bytes": cursorAt(b.now.UnixMicro(), 1) + "AA",
	} {
		_, err := b.log.UserEvents(b.ctx, "u-1", service.ListOpts{Cursor: c})
		require.ErrorIs(t, err, service.ErrInvalidCursor, name)
		_, err = b.log.Events(b.ctx, service.Filter{ListOpts: service.ListOpts{Cursor: c}})
		require.ErrorIs(t, err, service.ErrInvalidCursor, name)
	}
	for _, f := range []service.Filter{{UserID: "al\xffice"}, {ActorID: "a\x00"}, {ProjectID: strings.Repeat("p", 129)}} {
		err := f.Validate()
		var ve *service.ValidationError
		require.ErrorAs(t, err, &ve, "%+v", f)
		_, err = b.log.Events(b.ctx, f)
		require.ErrorAs(t, err, &ve, "%+v", f)
	}
	_, err := b.log.ProjectEvents(b.ctx, "p\x00", service.ListOpts{})
	var ve *service.ValidationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "project_id", ve.Field)
	_, err = b.log.UserEvents(b.ctx, "\xff", service.ListOpts{})
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "user_id", ve.Field)

	// The shared time parser names the field and shows no Go internals.
	_, err = service.ParseTime("since", "yesterday")
	require.EqualError(t, err, `since: invalid filter: "yesterday" is not a time (RFC 3339 or YYYY-MM-DD)`)
	got, err := service.ParseTime("until", "2026-07-01")
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC), got)
}
