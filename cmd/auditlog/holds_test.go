package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

// holdsJSON is `auditlog holds --json` with the extra arguments, parsed.
func (b *cliBundle) holdsJSON(t *testing.T, args ...string) []service.Hold {
	t.Helper()
	var out []service.Hold
	for _, line := range strings.Split(strings.TrimSpace(b.mustCLI(t, append([]string{"holds", "--json"}, args...)...)), "\n") {
		if line == "" {
			continue
		}
		var h service.Hold
		require.NoError(t, json.Unmarshal([]byte(line), &h))
		out = append(out, h)
	}
	return out
}

// A hold placed from the CLI blocks the person's open erasure request,
// is listed, is returned rather than doubled when placed again, and once
// released puts the request back to pending; releasing it again, or an id
// no hold has, fails with a plain message.
func TestHoldAddListRelease(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	b.mustCLI(t, "record", "--tag", "account:login:success", "--subject", "alice", "--ip", "192.0.2.1")
	req := strings.TrimSpace(b.mustCLI(t, "erase", "--user", "alice", "--reason", "account deleted"))

	out, stderr, err := b.cliAll(t, "hold", "add", "--user", "alice", "--reason", "case 42", "--by", "root")
	require.NoError(t, err, stderr)
	id := strings.TrimSpace(out)
	holdID, err := strconv.ParseInt(id, 10, 64)
	require.NoError(t, err, "hold add prints the hold id alone: %q", out)
	require.Contains(t, stderr, "hold add: new hold "+id+" on user alice, until released (auditlog hold release "+id+")")
	require.Contains(t, stderr, "it blocks erasure request(s) "+req+"\n")
	require.Contains(t, stderr, "retention keeps alice's user events")
	require.Regexp(t, "(?m)^"+req+` +alice +blocked \(hold `+id+`\) `, b.mustCLI(t, "erasures"))
	require.Equal(t, 1, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events WHERE tag = 'admin:hold:placed' AND user_id = 'root'"))

	again, stderr, err := b.cliAll(t, "hold", "add", "--user", "alice", "--reason", "another case", "--by", "admin2")
	require.NoError(t, err)
	require.Equal(t, out, again, "the open hold is returned, not doubled")
	require.Contains(t, stderr, "user alice already has an open hold "+id+" (placed by root at ")
	require.Contains(t, stderr, "case 42); not adding another")

	until := time.Now().UTC().AddDate(1, 0, 0).Format(time.DateOnly)
	org := strings.TrimSpace(b.mustCLI(t, "hold", "add", "--org", "acme", "--reason", "subpoena", "--by", "root", "--until", until))
	require.NotEqual(t, id, org)

	list := b.mustCLI(t, "holds")
	require.Regexp(t, "(?m)^ID +KIND +SUBJECT +STATUS +PLACED BY +PLACED +UNTIL +RELEASED BY +RELEASED +REASON$", list)
	require.Regexp(t, "(?m)^"+id+` +user +alice +open +root +\S+ \S+ +- +- +- +case 42$`, list)
	require.Regexp(t, "(?m)^"+org+` +organization +acme +open +root +\S+ \S+ +`+until+` 00:00:00Z +- +- +subpoena$`, list)
	holds := b.holdsJSON(t)
	require.Len(t, holds, 2)
	require.Equal(t, org, strconv.FormatInt(holds[0].ID, 10), "newest first")
	require.Equal(t, service.ModelOrganization, holds[0].Kind)
	require.NotNil(t, holds[0].Until)
	require.Equal(t, until, holds[0].Until.Format(time.DateOnly))
	require.Equal(t, service.Hold{ID: holdID, Kind: service.ModelUser, SubjectID: "alice", Reason: "case 42", PlacedBy: "root",
		PlacedAt: holds[1].PlacedAt}, holds[1])

	_, stderr, err = b.cliAll(t, "hold", "release", id, "--by", "root")
	require.NoError(t, err, stderr)
	require.Contains(t, stderr, "hold release: released hold "+id+" on user alice (placed by root at ")
	require.Contains(t, stderr, "hold release: erasure request(s) "+req+" resumed")
	require.Regexp(t, "(?m)^"+req+` +alice +pending `, b.mustCLI(t, "erasures"))
	require.Equal(t, 1, dbtest.Count(t, b.pool, "SELECT count(*) FROM user_events WHERE tag = 'admin:hold:released' AND user_id = 'root'"))

	_, _, err = b.cliAll(t, "hold", "release", id, "--by", "root")
	require.Error(t, err)
	require.Equal(t, 1, exitCode(err))
	require.Contains(t, err.Error(), "hold release: hold "+id+" was released already, by root at ")
	_, _, err = b.cliAll(t, "hold", "release", "99999", "--by", "root")
	require.Error(t, err)
	require.Equal(t, 1, exitCode(err))
	require.Equal(t, "hold release: there is no hold 99999 (auditlog holds lists them)", err.Error())

	open := b.holdsJSON(t, "--open")
	require.Len(t, open, 1)
	require.Equal(t, org, strconv.FormatInt(open[0].ID, 10))
	require.Regexp(t, "(?m)^"+id+` +user +alice +released +root .* root +\S+ \S+ +case 42$`, b.mustCLI(t, "holds"))
	require.NotContains(t, b.mustCLI(t, "holds", "--open"), "alice")
	_, stderr, err = b.cliAll(t, "holds")
	require.NoError(t, err)
	require.Equal(t, "holds: 0 user event(s) kept past their month by holds\n", stderr)

	_, stderr, err = b.cliAll(t, "hold", "release", org, "--by", "root")
	require.NoError(t, err)
	require.Contains(t, stderr, "no erasure request resumed")
}

// Bad hold command lines on a migrated database: a usage error naming
// what is wrong, nothing placed.
func TestHoldUsage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	for _, tc := range []struct {
		args  []string
		names string
	}{
		{[]string{"hold", "add", "--user", "u", "--by", "root"}, "--reason"},
		{[]string{"hold", "add", "--user", "u", "--org", "o", "--reason", "r", "--by", "root"}, "not --user and --org"},
		{[]string{"hold", "add", "--user", "u", "--reason", "r", "--by", "root", "--until", "someday"}, "--until"},
		{[]string{"hold", "add", "--user", "u", "--reason", "r", "--by", "root", "--until", "2001-01-01"}, "--until: "},
		{[]string{"hold", "add", "--user", "u", "--reason", "r", "--by", "root", "--until", "2001-01-01"}, "2001-01-01T00:00:00Z has passed"},
		{[]string{"hold", "add", "--project", "p", "--reason", strings.Repeat("r", 2000), "--by", "root"}, "--reason"},
		{[]string{"hold", "release", "one", "--by", "root"}, "is not a hold id"},
	} {
		_, err := b.cli(t, tc.args...)
		require.Error(t, err, "%q", tc.args)
		require.Equal(t, 2, exitCode(err), "%q: %v", tc.args, err)
		require.Contains(t, err.Error(), tc.names, "%q", tc.args)
	}
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM legal_holds"))
	require.Contains(t, b.mustCLI(t, "hold", "-h"), "Usage: auditlog hold")
	require.Contains(t, b.mustCLI(t, "hold", "add", "-h", "--user", "u", "--reason", "r", "--by", "root"), "-until value")
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM legal_holds"), "-h never acts")
}
