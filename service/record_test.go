package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

type testBundle struct {
	ctx context.Context
	tx  pgx.Tx
	log *service.Log
	now time.Time
}

// setup gives a Log over a transaction that is rolled back when the test
// ends, with the clock fixed at the middle of the current month (whose
// partition the migration created).
func setup(t *testing.T) *testBundle {
	t.Helper()
	tx := dbtest.Tx(t)
	now := dbtest.Now()
	return &testBundle{
		ctx: context.Background(),
		tx:  tx,
		log: dbtest.Must(service.New(tx, &service.Opts{Clock: dbtest.Clock(now)})),
		now: now,
	}
}

func TestRecordUserTxRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t)
	twoFA := true
	got, err := b.log.RecordUserTx(b.ctx, b.tx, service.EventParams{
		Tag: "account:api_token:added", Subject: "u-1", ActorID: "u-1",
		AuthMethod: "webauthn", ActorTwoFactor: &twoFA, IP: "::ffff:198.51.100.4",
		Additional: json.RawMessage(`{"token_name": "ci-upload", "scope": "project:demo"}`),
	})
	require.NoError(t, err)
	require.Positive(t, got.ID)
	require.Equal(t, b.now, got.Time, "time defaults to the clock")
	require.Equal(t, "Created API token ci-upload", got.Description)
	require.Equal(t, "198.51.100.4", got.IP.String(), "IPv4-mapped addresses are stored as IPv4")

	page, err := b.log.UserEvents(b.ctx, "u-1", service.ListOpts{})
	require.NoError(t, err)
	require.Len(t, page.Events, 1)
	e := page.Events[0]
	require.Equal(t, got.ID, e.ID)
	require.Equal(t, service.ModelUser, e.Model)
	require.Equal(t, "u-1", e.UserID)
	require.Equal(t, "webauthn", e.AuthMethod)
	require.Equal(t, &twoFA, e.ActorTwoFactor)
	require.Equal(t, "198.51.100.4", e.IP.String())
	require.JSONEq(t, `{"token_name": "ci-upload", "scope": "project:demo"}`, string(e.Additional))
	require.True(t, b.now.Equal(e.Time))
}

func TestValidationErrors(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 129)
	big := `{"k": "` + strings.Repeat("a", 16*1024) + `"}`
	ok := dbtest.SignIn("u-1", time.Time{})
	with := func(f func(p *service.EventParams)) service.EventParams {
		p := ok
		f(&p)
		return p
	}
	cases := []struct {
		name    string
		project bool
		p       service.EventParams
		want    error
		field   string
	}{
		{"malformed tag", false, with(func(p *service.EventParams) { p.Tag = "Account Login" }), service.ErrMalformedTag, "tag"},
		{"one-segment tag", false, with(func(p *service.EventParams) { p.Tag = "login" }), service.ErrMalformedTag, "tag"},
		{"unknown tag", false, with(func(p *service.EventParams) { p.Tag = "account:login:teleport" }), service.ErrUnknownTag, "tag"},
		{"project tag as user event", false, with(func(p *service.EventParams) { p.Tag = "project:create" }), service.ErrWrongModel, "tag"},
		{"user tag as project event", true, with(func(p *service.EventParams) {}), service.ErrWrongModel, "tag"},
		{"empty subject", false, with(func(p *service.EventParams) { p.Subject = "" }), service.ErrEmptySubject, "user_id"},
		{"empty project", true, with(func(p *service.EventParams) { p.Tag = "project:create"; p.Subject = "" }), service.ErrEmptySubject, "project_id"},
		{"subject over 128 bytes", false, with(func(p *service.EventParams) { p.Subject = long }), service.ErrTooLong, "user_id"},
		{"actor over 128 bytes", false, with(func(p *service.EventParams) { p.ActorID = long }), service.ErrTooLong, "actor_id"},
		{"token over 128 bytes", false, with(func(p *service.EventParams) { p.TokenID = long }), service.ErrTooLong, "token_id"},
		{"user agent over 1 KiB", false, with(func(p *service.EventParams) { p.UserAgent = strings.Repeat("u", 1025) }), service.ErrTooLong, "user_agent"},
		{"NUL in actor", false, with(func(p *service.EventParams) { p.ActorID = "a\x00b" }), service.ErrInvalidText, "actor_id"},
		{"invalid UTF-8", false, with(func(p *service.EventParams) { p.UserAgent = "\xff\xfe" }), service.ErrInvalidText, "user_agent"},
		{"auth method", false, with(func(p *service.EventParams) { p.AuthMethod = "Pass Word" }), service.ErrInvalidAuthMethod, "auth_method"},
		{"invalid IP", false, with(func(p *service.EventParams) { p.IP = "300.1.1.1" }), service.ErrInvalidIP, "ip"},
		{"IP with zone", false, with(func(p *service.EventParams) { p.IP = "fe80::1%eth0" }), service.ErrInvalidIP, "ip"},
		{"CIDR as IP", false, with(func(p *service.EventParams) { p.IP = "10.0.0.0/8" }), service.ErrInvalidIP, "ip"},
		{"additional array", false, with(func(p *service.EventParams) { p.Additional = json.RawMessage(`[1,2]`) }), service.ErrInvalidAdditional, "additional"},
		{"additional not JSON", false, with(func(p *service.EventParams) { p.Additional = json.RawMessage(`{"a":`) }), service.ErrInvalidAdditional, "additional"},
		{"additional NUL", false, with(func(p *service.EventParams) { p.Additional = json.RawMessage(`{"a":"\u0000"}`) }), service.ErrInvalidAdditional, "additional"},
		{"additional over 16 KiB", false, with(func(p *service.EventParams) { p.Additional = json.RawMessage(big) }), service.ErrAdditionalTooLarge, "additional"},
		{"older than window", false, with(func(p *service.EventParams) { p.Time = dbtest.Now().Add(-90*24*time.Hour - time.Microsecond) }), service.ErrTimeTooOld, "time"},
		{"beyond last partition", false, with(func(p *service.EventParams) { p.Time = dbtest.Now().AddDate(0, 4, 0) }), service.ErrNoPartition, "time"},
		{"project event in the future", true, with(func(p *service.EventParams) {
			p.Tag = "project:create"
			p.Time = dbtest.Now().Add(time.Hour + time.Second)
		}), service.ErrTimeTooNew, "time"},
		{"location too long", false, with(func(p *service.EventParams) { p.Location = &service.Location{City: strings.Repeat("c", 129)} }), service.ErrTooLong, "location.city"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			var err error
			if tc.project {
				_, err = b.log.RecordProjectTx(b.ctx, b.tx, tc.p)
			} else {
				_, err = b.log.RecordUserTx(b.ctx, b.tx, tc.p)
			}
			require.ErrorIs(t, err, tc.want)
			var ve *service.ValidationError
			require.ErrorAs(t, err, &ve)
			require.Equal(t, tc.field, ve.Field)
			require.Zero(t, dbtest.Count(t, b.tx, "SELECT count(*) FROM user_events")+dbtest.Count(t, b.tx, "SELECT count(*) FROM project_events"),
				"a refused event writes nothing")
		})
	}
}

func TestRecordUserTxRollbackLeavesNoEvent(t *testing.T) {
	t.Parallel()
	pool := dbtest.Pool(t)
	ctx := context.Background()
	log := dbtest.Must(service.New(pool, nil))

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	_, err = log.RecordUserTx(ctx, tx, dbtest.SignIn("u-rollback", time.Time{}))
	require.NoError(t, err)
	require.Equal(t, 1, dbtest.Count(t, tx, "SELECT count(*) FROM user_events"), "visible inside the transaction")
	require.NoError(t, tx.Rollback(ctx))
	require.Zero(t, dbtest.Count(t, pool, "SELECT count(*) FROM user_events"))

	tx, err = pool.Begin(ctx)
	require.NoError(t, err)
	_, err = log.RecordProjectTx(ctx, tx, service.EventParams{Tag: "project:create", Subject: "p-1", ActorID: "u-1"})
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, 1, dbtest.Count(t, pool, "SELECT count(*) FROM project_events"), "committed with the caller's transaction")
}

func TestRecordManyOneBadEventWritesNothing(t *testing.T) {
	t.Parallel()
	pool := dbtest.Pool(t)
	ctx := context.Background()
	log := dbtest.Must(service.New(pool, nil))

	batch := make([]service.EventParams, 500)
	for i := range batch {
		batch[i] = dbtest.SignIn(fmt.Sprintf("u-%d", i%7), time.Time{})
	}
	batch[317].IP = "not-an-ip"
	n, err := log.RecordUserMany(ctx, batch)
	require.Zero(t, n)
	require.ErrorIs(t, err, service.ErrInvalidIP)
	var be *service.BatchError
	require.ErrorAs(t, err, &be)
	require.Equal(t, 317, be.Index)
	require.Zero(t, dbtest.Count(t, pool, "SELECT count(*) FROM user_events"))

	// A month without a partition fails the batch before COPY starts, too.
	batch[317].IP = "192.0.2.1"
	batch[400].Time = time.Now().AddDate(2, 0, 0)
	_, err = log.RecordUserMany(ctx, batch)
	require.ErrorIs(t, err, service.ErrNoPartition)
	require.ErrorAs(t, err, &be)
	require.Equal(t, 400, be.Index)
	require.Zero(t, dbtest.Count(t, pool, "SELECT count(*) FROM user_events"))

	batch[400].Time = time.Time{}
	n, err = log.RecordUserMany(ctx, batch)
	require.NoError(t, err)
	require.EqualValues(t, 500, n)
	require.Equal(t, 500, dbtest.Count(t, pool, "SELECT count(*) FROM user_events"))

	projects := []service.EventParams{
		{Tag: "project:release:add", Subject: "p-1", ActorID: "u-1", Additional: json.RawMessage(`{"version":"1.0"}`)},
		{Tag: "project:release:add", Subject: "p-1", ActorID: "u-1", AuthMethod: "Pass Word", Additional: json.RawMessage(`{"version":"1.1"}`)},
	}
	_, err = log.RecordProjectMany(ctx, projects)
	require.ErrorAs(t, err, &be)
	require.Equal(t, 1, be.Index)
	require.ErrorIs(t, err, service.ErrInvalidAuthMethod)
	require.Zero(t, dbtest.Count(t, pool, "SELECT count(*) FROM project_events"))
}

func TestEventsLandInTheirMonthsPartition(t *testing.T) {
	t.Parallel()
	b := setup(t)
	start := time.Date(b.now.Year(), b.now.Month(), 1, 0, 0, 0, 0, time.UTC)
	// The first and last microsecond of this month and the next two.
	var times []time.Time
	for m := range 3 {
		first := start.AddDate(0, m, 0)
		times = append(times, first, first.AddDate(0, 1, 0).Add(-time.Microsecond))
	}
	var batch []service.EventParams
	for _, at := range times {
		_, err := b.log.RecordUserTx(b.ctx, b.tx, dbtest.SignIn("u-part", at))
		require.NoError(t, err)
		batch = append(batch, dbtest.SignIn("u-part-many", at))
	}
	_, err := b.log.RecordUserManyTx(b.ctx, b.tx, batch)
	require.NoError(t, err)

	rows, err := b.tx.Query(b.ctx, `SELECT tableoid::regclass::text, time FROM user_events WHERE user_id LIKE 'u-part%'`)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var part string
		var at time.Time
		err := r.Scan(&part, &at)
		return part + "=" + service.PartitionName(at), err
	})
	require.NoError(t, err)
	require.Len(t, got, 12)
	for _, g := range got {
		part, want, _ := strings.Cut(g, "=")
		require.Equal(t, want, part)
	}
	require.Zero(t, dbtest.Count(t, b.tx, "SELECT count(*) FROM user_events_default"))
}

func TestRegistryRegistration(t *testing.T) {
	t.Parallel()
	reg := service.DefaultRegistry()
	for _, tag := range []string{
		"account:create", "account:email:add", "account:email:remove", "account:email:primary:change",
		"account:email:reverify", "account:password:change", "account:password:reset:request",
		"account:two_factor:method_added", "account:two_factor:method_removed",
		"account:api_token:added", "account:api_token:removed", "project:create",
		"project:release:add", "project:release:remove", "account:login:success",
		"account:login:failure", "account:login:new_location", "project:role:add",
		"project:role:remove", "project:release:yank",
	} {
		_, ok := reg.Lookup(tag)
		require.True(t, ok, tag)
	}

	require.NoError(t, reg.Register(service.TagSpec{
		Tag: "account:recovery_codes:regenerated", Model: service.ModelUser,
		Description: "Regenerated recovery codes ({count})",
	}))
	require.Error(t, reg.Register(service.TagSpec{Tag: "account:create", Model: service.ModelUser, Description: "again"}), "duplicate")
	require.Error(t, reg.Register(service.TagSpec{Tag: "Bad Tag", Model: service.ModelUser, Description: "x"}))
	require.Error(t, reg.Register(service.TagSpec{Tag: "account:a:b", Model: "customer", Description: "x"}))
	err := reg.Register(service.TagSpec{
		Tag: "account:phone:add", Model: service.ModelUser,
		Description: "Added phone {phone}", PersonalKeys: []string{"phone"},
	})
	require.ErrorContains(t, err, "personal key")
	_, ok := reg.Lookup("account:phone:add")
	require.False(t, ok, "a failed registration registers nothing")

	b := setup(t)
	log := dbtest.Must(service.New(b.tx, &service.Opts{Registry: reg}))
	e, err := log.RecordUserTx(b.ctx, b.tx, service.EventParams{
		Tag: "account:recovery_codes:regenerated", Subject: "u-1",
		Additional: json.RawMessage(`{"count": 8}`),
	})
	require.NoError(t, err)
	require.Equal(t, "Regenerated recovery codes (8)", e.Description)
	_, err = log.RecordUserTx(b.ctx, b.tx, service.EventParams{Tag: "account:email:add", Subject: "u-1"})
	require.NoError(t, err)
	require.True(t, errors.Is(checkUnknown(b, log), service.ErrUnknownTag))
}

func checkUnknown(b *testBundle, log *service.Log) error {
	_, err := log.RecordUserTx(b.ctx, b.tx, service.EventParams{Tag: "account:not:registered", Subject: "u-1"})
	return err
}
