package main

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

// watchedDatabase is a DATABASE_URL pointing at a listener that counts
// the connections made to it and closes them: any command that tries the
// database is seen.
func watchedDatabase(t *testing.T) (url string, connections *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	connections = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			connections.Add(1)
			c.Close()
		}
	}()
	return "postgres://nobody@" + ln.Addr().String() + "/none?sslmode=disable&connect_timeout=1", connections
}

// cliSecret is the environment the help and flag tests add.
var cliSecret = map[string]string{"AUDITLOG_SECRET": "a secret for the CLI tests, long enough"}

// everyCommand is each command and sub-action of the CLI.
var everyCommand = [][]string{
	{"migrate"}, {"migrate", "up"}, {"migrate", "down"}, {"migrate", "status"}, {"record"}, {"events"}, {"demo"},
	{"partitions"}, {"partitions", "plan"}, {"partitions", "maintain"}, {"serve"}, {"worker"}, {"token"},
	{"erase"}, {"erasures"}, {"hold"}, {"hold", "add"}, {"hold", "release"}, {"holds"}, {"export"}, {"catalog"}, {"catalog", "check"},
	{"keygen"}, {"checkpoint"}, {"verify"}, {"prove"}, {"verify-proof"}, {"import"},
}

// everyCommand names every command there is.
func TestEveryCommandIsListed(t *testing.T) {
	t.Parallel()
	listed := map[string]bool{}
	for _, cmd := range everyCommand {
		listed[cmd[0]] = true
	}
	for name := range commands {
		require.True(t, listed[name], "command %s is not in everyCommand", name)
	}
}

// -h, --help and `help CMD` print the command's usage on stdout and exit 0
// without touching the database, for every command and sub-action.
func TestHelpNeverActs(t *testing.T) {
	t.Parallel()
	url, connections := watchedDatabase(t)
	for _, cmd := range everyCommand {
		for _, args := range [][]string{append(cmd, "-h"), append(cmd, "--help"), append([]string{"help"}, cmd...),
			append(cmd, "-h", "--retention", "1d")} {
			stdout, _, err := runCLI(url, cliSecret, args...)
			require.NoError(t, err, "%v", args)
			require.Contains(t, stdout, "Usage: auditlog "+strings.Join(cmd, " "), "%v", args)
			require.NotContains(t, stdout, "nobody@", "%v: help never shows DATABASE_URL (it may hold a password)", args)
			if len(cmd) > 1 || cmd[0] != "migrate" {
				require.Contains(t, stdout, "-database-url", "%v lists the flags", args)
			}
		}
	}
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		stdout, _, err := runCLI(url, cliSecret, args...)
		require.NoError(t, err)
		require.Contains(t, stdout, "auditlog <command> [flags]")
	}
	require.Zero(t, connections.Load(), "no help touched the database")
	_, _, err := runCLI(url, cliSecret, "help", "nonsense")
	require.Equal(t, 2, exitCode(err))
}

// goInternals are fragments of Go's own parse errors, which an operator
// should never see.
var goInternals = []string{"parsing time", "strconv", "parse error", "invalid syntax", "invalid duration", "cannot parse", "invalid value"}

// hostileFlags are bad command lines: each is a usage error (exit 2) that
// names the flag in plain words, found before anything connects.
var hostileFlags = []struct {
	args  []string
	names string
}{
	{[]string{"events", "--since", "yesterday"}, "--since"},
	{[]string{"events", "--until", "2026-13-45"}, "--until"},
	{[]string{"events", "--since", "2026-07-01", "--until", "2026-06-01"}, "--until"},
	{[]string{"events", "--ip", "999.1.1.1"}, "--ip"},
	{[]string{"events", "--ip", "::ffff:1.2.3.4/8"}, "--ip"},
	{[]string{"events", "--tag", "Not A Tag"}, "--tag"},
	{[]string{"events", "--tag-prefix", "x y"}, "--tag-prefix"},
	{[]string{"events", "--cursor", "zz"}, "--cursor"},
	{[]string{"events", "--json=maybe"}, "--json"},
	{[]string{"events", "--limit", "-1"}, "--limit"},
	{[]string{"events", "--limit", "lots"}, "--limit"},
	{[]string{"events", "--user", "al\xffice"}, "--user"},
	{[]string{"events", "--actor", "a\x00"}, "--actor"},
	{[]string{"events", "--frobnicate"}, "frobnicate"},
	{[]string{"events", "stray"}, "stray"},
	{[]string{"events", "--retention", "5x"}, "--retention"},
	{[]string{"events", "--ahead", "0"}, "--ahead"},
	{[]string{"events", "--ahead", "many"}, "--ahead"},
	{[]string{"events", "--log-level", "loud"}, "--log-level"},
	{[]string{"events", "--new-location=sometimes"}, "--new-location"},
	{[]string{"events", "--failure-burst", "5"}, "--failure-burst"},
	{[]string{"erasures", "--limit", "0"}, "--limit"},
	{[]string{"erasures", "--verify", "abc"}, "--verify"},
	{[]string{"erasures", "--json=2"}, "--json"},
	{[]string{"erase", "--user", "x"}, "--reason"},
	{[]string{"erase", "--user", "x", "--reason", "y", "extra"}, "extra"},
	{[]string{"hold"}, "add or release"},
	{[]string{"hold", "sideways"}, "sideways"},
	{[]string{"hold", "add", "--reason", "case 1", "--by", "root"}, "--user, --project or --org"},
	{[]string{"hold", "add", "--user", "u", "--project", "p", "--reason", "case 1", "--by", "root"}, "--user and --project"},
	{[]string{"hold", "add", "--user", "u", "--by", "root"}, "--reason"},
	{[]string{"hold", "add", "--user", "u", "--reason", "case 1"}, "--by"},
	{[]string{"hold", "add", "--user", "u", "--reason", "case 1", "--by", "root", "--until", "next week"}, "--until"},
	{[]string{"hold", "add", "--user", "u", "--reason", "case 1", "--by", "root", "extra"}, "extra"},
	{[]string{"hold", "release", "--by", "root"}, "the hold's ID"},
	{[]string{"hold", "release", "x", "--by", "root"}, `"x"`},
	{[]string{"hold", "release", "0", "--by", "root"}, `"0"`},
	{[]string{"hold", "release", "3"}, "--by"},
	{[]string{"hold", "release", "3", "4", "--by", "root"}, `"4"`},
	{[]string{"holds", "--open=perhaps"}, "--open"},
	{[]string{"holds", "--limit", "0"}, "--limit"},
	{[]string{"export"}, "--user"},
	{[]string{"record", "--tag", "account:login:success", "--subject", "u", "--time", "yesterday"}, "--time"},
	{[]string{"record", "--tag", "account:login:success", "--subject", "u", "--two-factor", "maybe"}, "--two-factor"},
	{[]string{"record", "--tag", "account:login:success", "--subject", "u", "--model", "robot"}, "--model"},
	{[]string{"token", "--user", "x", "--ttl", "-1h"}, "--ttl"},
	{[]string{"token", "--user", "x", "--ttl", "soon"}, "--ttl"},
	{[]string{"token", "--user", "x", "--admin=yes"}, "--admin"},
	{[]string{"token", "--user", "\xff"}, "--user"},
	{[]string{"worker", "--maintenance-interval", "0s"}, "--maintenance-interval"},
	{[]string{"demo", "--seed", "-1"}, "--seed"},
	{[]string{"demo", "--force=perhaps"}, "--force"},
	{[]string{"migrate"}, "up, down or status"},
	{[]string{"migrate", "sideways"}, "sideways"},
	{[]string{"migrate", "down", "--to", "-2"}, "--to"},
	{[]string{"migrate", "up", "extra"}, "extra"},
	{[]string{"migrate", "up", "--to", "0"}, "-to"},
	{[]string{"partitions", "plan", "--now", "tomorrow"}, "--now"},
	{[]string{"partitions", "maintain", "--now", "2030-01-01"}, "partitions plan --now"},
	{[]string{"partitions", "wipe"}, "wipe"},
	{[]string{"serve", "--no-worker=maybe"}, "--no-worker"},
	{[]string{"keygen"}, "--out"},
	{[]string{"keygen", "--out", "k", "extra"}, "extra"},
	{[]string{"checkpoint"}, "AUDITLOG_SIGNING_KEY"},
	{[]string{"checkpoint", "--signing-key", "/nonexistent/signing-key"}, "--signing-key"},
	{[]string{"checkpoint", "--json=perhaps"}, "--json"},
	{[]string{"verify"}, "--key"},
	{[]string{"verify", "--since", "x"}, "--since"},
	{[]string{"verify", "--since", "-1"}, "--since"},
	{[]string{"verify", "--key", "not-a-key"}, "--key"},
	{[]string{"verify", "stray"}, "stray"},
	{[]string{"prove"}, "--event ID or --consistency OLD NEW"},
	{[]string{"prove", "--event", "-1"}, "--event"},
	{[]string{"prove", "--event", "0"}, "--event"},
	{[]string{"prove", "--event", "first"}, "--event"},
	{[]string{"prove", "--event", "3", "extra"}, "extra"},
	{[]string{"prove", "--event", "3", "--consistency", "1", "2"}, "not both"},
	{[]string{"prove", "--consistency", "1"}, "OLD NEW"},
	{[]string{"prove", "--consistency", "1", "x"}, "--consistency"},
	{[]string{"prove", "--consistency", "0", "2"}, "--consistency"},
	{[]string{"prove", "--consistency", "2", "1"}, "OLD first"},
	{[]string{"prove", "--consistency", "1", "2", "3"}, `"3"`},
	{[]string{"verify-proof"}, "the proof file"},
	{[]string{"verify-proof", "a.json", "b.json"}, "b.json"},
	{[]string{"verify-proof", "a.json"}, "--key"},
	{[]string{"verify-proof", "a.json", "--key", "not-a-key"}, "--key"},
}

func TestBadFlagsAreUsageErrors(t *testing.T) {
	t.Parallel()
	url, connections := watchedDatabase(t)
	for _, tc := range hostileFlags {
		_, _, err := runCLI(url, cliSecret, tc.args...)
		require.Error(t, err, "%q", tc.args)
		require.Equal(t, 2, exitCode(err), "%q: %v", tc.args, err)
		require.Contains(t, err.Error(), tc.names, "%q", tc.args)
		for _, internal := range goInternals {
			require.NotContains(t, err.Error(), internal, "%q: %v", tc.args, err)
		}
	}
	require.Zero(t, connections.Load(), "no bad command line touched the database")
}

// A value the service refuses in a command that needs the database is a
// usage error naming the flag too, and nothing is written.
func TestRefusedValuesNameTheirFlag(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	rec := []string{"record", "--tag", "account:login:success", "--subject", "u"}
	for _, tc := range []struct {
		args  []string
		names string
		is    error
	}{
		{append(rec, "--ip", "999.1.1.1"), "--ip", service.ErrInvalidIP},
		{append(rec, "--additional", `{"a": "\ud800"}`), "--additional", service.ErrInvalidAdditional},
		{append(rec, "--city", strings.Repeat("c", 129)), "--city", service.ErrTooLong},
		{append(rec, "--actor", "a\x00"), "--actor", service.ErrInvalidText},
		{append(rec, "--time", "1969-01-01"), "--time", service.ErrTimeTooOld},
		{[]string{"record", "--tag", "no:such:tag", "--subject", "u"}, "--tag", service.ErrUnknownTag},
		{[]string{"record", "--tag", "account:login:success", "--subject", "\xff"}, "--subject", service.ErrInvalidText},
		{[]string{"erase", "--user", "u", "--reason", strings.Repeat("r", 2000)}, "--reason", service.ErrTooLong},
		{[]string{"erasures", "--user", "\xff"}, "--user", service.ErrInvalidText},
		{[]string{"export", "--user", "\xff"}, "--user", service.ErrInvalidText},
		{[]string{"hold", "add", "--user", "\xff", "--reason", "r", "--by", "a"}, "--user", service.ErrInvalidText},
		{[]string{"hold", "add", "--org", "o", "--reason", "r", "--by", "a", "--until", "2020-01-01"}, "--until", service.ErrInvalidFilter},
		{[]string{"token", "--ingest", "a\x00"}, "--ingest", service.ErrInvalidText},
	} {
		_, err := b.cli(t, tc.args...)
		require.ErrorIs(t, err, tc.is, "%q", tc.args)
		require.Equal(t, 2, exitCode(err), "%q", tc.args)
		require.True(t, strings.HasPrefix(err.Error(), tc.names+": "), "%q: %v", tc.args, err)
	}
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events"))
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM erasure_requests"))
}

// On a database that was never migrated, every command says to run
// `auditlog migrate up` instead of failing on a missing table.
func TestUnmigratedDatabaseSaysMigrateUp(t *testing.T) {
	t.Parallel()
	b := setup(t) // an empty database
	for _, args := range [][]string{
		{"events"}, {"record", "--tag", "account:login:success", "--subject", "u"}, {"partitions"},
		{"partitions", "plan"}, {"partitions", "maintain"}, {"erase", "--user", "u", "--reason", "r"}, {"erasures"},
		{"erasures", "--verify", "1"}, {"hold", "add", "--user", "u", "--reason", "r", "--by", "a"},
		{"hold", "release", "1", "--by", "a"}, {"holds"}, {"export", "--user", "u"}, {"token", "--list-ingest"}, {"demo"}, {"worker"},
		{"serve", "--addr", "127.0.0.1:0"}, {"prove", "--event", "1"}, {"prove", "--consistency", "1", "2"},
	} {
		_, err := b.cliEnv(t, cliSecret, args...)
		require.Error(t, err, "%v", args)
		require.Contains(t, err.Error(), "run `auditlog migrate up`", "%v", args)
		require.NotContains(t, err.Error(), "SQLSTATE", "%v", args)
		require.Equal(t, 1, exitCode(err))
	}
	out, err := b.cli(t, "migrate", "status")
	require.NoError(t, err, "status works on an empty database")
	require.Contains(t, out, "pending")
}

// Stored text cannot drive the operator's terminal: every table the CLI
// prints shows control and bidi characters escaped.
func TestTablesEscapeControlCharacters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	const (
		title = "\x1b]0;pwned\x07"  // sets the terminal's title
		clear = "\x1b[2J\x1b[H"     // clears the screen
		rlo   = "\u202e"            // reverses what follows
		cr    = "fine\rOVERWRITTEN" // rewrites the line
	)
	b.mustCLI(t, "record", "--tag", "account:login:failure", "--subject", "u"+title, "--actor", "a"+clear,
		"--user-agent", "ua"+cr, "--city", "c"+rlo+"txt.exe", "--additional", `{"reason": "bad\npassword\u0007"}`)
	b.mustCLI(t, "token", "--ingest", "svc"+cr)
	_, err := b.pool.Exec(b.ctx, `INSERT INTO erasure_requests (user_id, reason, requested_at) VALUES ($1, $2, now())`,
		"u"+title, "ticket"+clear)
	require.NoError(t, err)
	_, err = b.pool.Exec(b.ctx, `INSERT INTO legal_holds (subject_kind, subject_id, reason, placed_by, placed_at) VALUES ('user', $1, $2, $3, now())`,
		"u"+title, "case"+clear, "root"+rlo)
	require.NoError(t, err)
	for _, args := range [][]string{{"events"}, {"erasures"}, {"holds"}, {"token", "--list-ingest"}} {
		out, _, err := b.cliAll(t, args...)
		require.NoError(t, err, "%v", args)
		for _, raw := range []string{"\x1b", "\x07", "\r", rlo} {
			require.NotContains(t, out, raw, "%v prints %q raw", args, raw)
		}
		require.NotContains(t, strings.TrimSuffix(out, "\n"), "password\n", "%v", args)
	}
	out := b.mustCLI(t, "events")
	require.Contains(t, out, `u\x1b]0;pwned\x07`)
	require.Contains(t, out, `Sign-in failed: bad\npassword\x07`)
	require.Contains(t, out, `c\u202etxt.exe`)
	require.Contains(t, b.mustCLI(t, "token", "--list-ingest"), `svcfine\rOVERWRITTEN`)
}
