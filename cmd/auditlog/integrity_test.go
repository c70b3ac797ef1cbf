package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

// newKey runs `auditlog keygen` into a directory of the test's own and
// returns the key file and the verifier key it printed.
func newKey(t *testing.T) (path, vkey string) {
	t.Helper()
	url, connections := watchedDatabase(t)
	path = filepath.Join(t.TempDir(), "signing-key")
	out, _, err := runCLI(url, nil, "keygen", "--out", path)
	require.NoError(t, err)
	require.Zero(t, connections.Load(), "keygen needs no database")
	return path, strings.TrimSpace(out)
}

// integrityCLI is a migrated database and an integrity key.
type integrityCLI struct {
	*cliBundle
	keyPath, vkey string
	env           map[string]string // AUDITLOG_SIGNING_KEY set
}

func integritySetup(t *testing.T) *integrityCLI {
	t.Helper()
	b := setup(t)
	b.mustCLI(t, "migrate", "up")
	path, vkey := newKey(t)
	return &integrityCLI{cliBundle: b, keyPath: path, vkey: vkey, env: map[string]string{"AUDITLOG_SIGNING_KEY": path}}
}

// with runs the command line with the integrity key.
func (b *integrityCLI) with(t *testing.T, args ...string) string {
	t.Helper()
	out, err := b.cliEnv(t, b.env, args...)
	require.NoError(t, err, "auditlog %s", strings.Join(args, " "))
	return out
}

// record records an event with the key and returns its id.
func (b *integrityCLI) record(t *testing.T, args ...string) int64 {
	t.Helper()
	var e service.Event
	require.NoError(t, json.Unmarshal([]byte(b.with(t, append([]string{"record"}, args...)...)), &e))
	require.Positive(t, e.ID)
	return e.ID
}

// checkpoint signs a checkpoint and returns it.
func (b *integrityCLI) checkpoint(t *testing.T) *service.Checkpoint {
	t.Helper()
	var res service.CheckpointResult
	require.NoError(t, json.Unmarshal([]byte(b.with(t, "checkpoint", "--json")), &res))
	require.Empty(t, res.Unmarked)
	return res.Checkpoint
}

// prove runs prove with args and writes its proof to a file, returned.
func (b *integrityCLI) prove(t *testing.T, args ...string) string {
	t.Helper()
	out := b.with(t, append([]string{"prove"}, args...)...)
	require.True(t, json.Valid([]byte(out)), "prove prints JSON: %s", out)
	return dbtest.WriteFile(t, "proof.json", out)
}

// verifyProofOffline runs verify-proof with args against a database that
// counts every connection, without the integrity key, and checks none
// was made.
func verifyProofOffline(t *testing.T, args ...string) (string, error) {
	t.Helper()
	url, connections := watchedDatabase(t)
	out, _, err := runCLI(url, nil, append([]string{"verify-proof"}, args...)...)
	require.Zero(t, connections.Load(), "verify-proof touched the database")
	return out, err
}

// keygen writes the key file with mode 0600, prints the verifier key
// alone, and never overwrites a file; -h writes nothing.
func TestKeygen(t *testing.T) {
	t.Parallel()
	path, vkey := newKey(t)
	require.Regexp(t, `^auditlog\+[0-9a-f]{8}\+[A-Za-z0-9+/=]+$`, vkey)
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	key, err := service.LoadIntegrityKey(path)
	require.NoError(t, err)
	require.Equal(t, vkey, key.VerifierKey)
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	url, connections := watchedDatabase(t)
	_, stderr, err := runCLI(url, nil, "keygen", "--out", path)
	require.Error(t, err, "keygen overwrote a key")
	require.Contains(t, err.Error(), "file exists")
	require.Empty(t, stderr)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, before, after, "the key file is untouched")

	other := filepath.Join(t.TempDir(), "other")
	stdout, stderr, err := runCLI(url, nil, "keygen", "--out", other)
	require.NoError(t, err)
	require.NotEqual(t, vkey, strings.TrimSpace(stdout), "each key is new")
	require.Contains(t, stderr, "AUDITLOG_SIGNING_KEY="+other)

	_, _, err = runCLI(url, nil, "keygen", "--out", filepath.Join(t.TempDir(), "named"), "--name", "two words")
	require.Equal(t, 2, exitCode(err))
	require.Contains(t, err.Error(), "--name")
	helped := filepath.Join(t.TempDir(), "helped")
	for _, args := range [][]string{{"keygen", "--out", helped, "-h"}, {"keygen", "-h", "--out", helped}, {"help", "keygen", "--out", helped}} {
		stdout, _, err := runCLI(url, nil, args...)
		require.NoError(t, err)
		require.Contains(t, stdout, "Usage: auditlog keygen")
		require.NoFileExists(t, helped, "%q wrote a key", args)
	}
	require.Zero(t, connections.Load())
}

// The whole CLI flow: record with the key, checkpoint, verify clean;
// prove an event and check the proof with the verifier key alone, no
// database; edited proofs and proofs of altered events are refused; a
// superuser's UPDATE is named by verify; consistency proofs check.
func TestIntegrityCLI(t *testing.T) {
	t.Parallel()
	b := integritySetup(t)

	// Without a key, checkpoint is a usage error naming the variable.
	_, err := b.cli(t, "checkpoint")
	require.Equal(t, 2, exitCode(err))
	require.Contains(t, err.Error(), "AUDITLOG_SIGNING_KEY")
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM integrity_checkpoints"))

	signIn := b.record(t, "--tag", "account:login:success", "--subject", "alice", "--ip", "192.0.2.1", "--user-agent", "Mozilla/5.0 Firefox/140.0")
	release := b.record(t, "--tag", "project:release:add", "--subject", "demo", "--actor", "alice", "--ip", "192.0.2.1",
		"--additional", `{"canonical_version": "1.0.0", "submitted_by": "alice"}`)
	b.record(t, "--tag", "account:login:failure", "--subject", "bob", "--additional", `{"reason": "invalid_password"}`)
	_, err = b.cliEnv(t, b.env, "prove", "--event", strconv.FormatInt(signIn, 10))
	require.ErrorIs(t, err, service.ErrNotFound, "no checkpoint covers it yet")
	require.Equal(t, 1, exitCode(err))

	stdout, stderr, err := runCLI(b.url, b.env, "checkpoint")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(stdout, "auditlog\n1\n"), "the note: origin, the kept tree's size… %q", stdout)
	require.Contains(t, stderr, "3 events appended")
	require.NotContains(t, stdout, "alice", "no personal data in a checkpoint")
	first := stdout

	out := b.with(t, "verify")
	require.Regexp(t, `(?m)^verify: clean; 1 checkpoints, 2 trees, 3 leaves`, out)
	// The verifier key alone verifies too.
	out = b.mustCLI(t, "verify", "--key", b.vkey)
	require.Contains(t, out, "verify: clean")

	// An inclusion proof, checked with the verifier key and nothing else:
	// no DATABASE_URL that answers, no signing key.
	proof := b.prove(t, "--event", strconv.FormatInt(signIn, 10))
	var p service.InclusionProof
	raw, err := os.ReadFile(proof)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &p))
	require.Equal(t, signIn, p.EventID)
	require.Equal(t, first, p.Checkpoint)
	require.NotContains(t, string(p.LeafData), "alice", "the leaf holds commitments, not the values")
	require.NotContains(t, string(p.LeafData), "192.0.2.1")
	out, err = verifyProofOffline(t, proof, "--key", b.vkey)
	require.NoError(t, err, out)
	require.Contains(t, out, "verify-proof: event "+strconv.FormatInt(signIn, 10)+" is leaf 0 of tree user-")
	out, err = verifyProofOffline(t, "--key", b.keyPath, proof) // the key file serves as the verifier key
	require.NoError(t, err, out)
	url, connections := watchedDatabase(t)
	out, _, err = runCLI(url, b.env, "verify-proof", proof)
	require.NoError(t, err, "the integrity key's verifier by default: %s", out)
	require.Zero(t, connections.Load())
	out, _, err = runCLI("postgres://nobody@127.0.0.1:1/none?connect_timeout=1", nil, "verify-proof", proof, "--key", b.vkey)
	require.NoError(t, err, "with a database that cannot be reached: %s", out)
	_, other := newKey(t)
	out, err = verifyProofOffline(t, proof, "--key", other)
	require.ErrorIs(t, err, errTampered, "another key's verifier: %s", out)
	require.Contains(t, out, "REJECTED")

	// The leaf data edited: the tag, or another event's id.
	for name, edit := range map[string]func([]byte) []byte{
		"tag": func(d []byte) []byte {
			return bytes.Replace(d, []byte("account:login:success"), []byte("account:login:failure"), 1)
		},
		"id": func(d []byte) []byte {
			id := strconv.FormatInt(signIn, 10)
			return bytes.Replace(d, []byte("\nid "+strconv.Itoa(len(id))+"\n"+id+"\n"), []byte("\nid 1\n0\n"), 1)
		},
	} {
		q := p
		q.LeafData = edit(bytes.Clone(p.LeafData))
		require.NotEqual(t, p.LeafData, q.LeafData, name)
		edited, err := json.Marshal(q)
		require.NoError(t, err)
		out, err := verifyProofOffline(t, dbtest.WriteFile(t, "edited.json", string(edited)), "--key", b.vkey)
		require.ErrorIs(t, err, errTampered, "%s edited: %s", name, out)
		require.Equal(t, 1, exitCode(err))
		require.Contains(t, out, "verify-proof: REJECTED", name)
	}
	// A project event's proof checks too (the kept tree).
	out, err = verifyProofOffline(t, b.prove(t, "--event", strconv.FormatInt(release, 10)), "--key", b.vkey)
	require.NoError(t, err, out)
	require.Contains(t, out, "of tree kept (1 leaves)")

	// A consistency proof between two checkpoints, and one whose notes
	// were swapped.
	b.record(t, "--tag", "account:login:success", "--subject", "carol")
	second := b.checkpoint(t)
	require.Equal(t, int64(2), second.ID)
	consistency := b.prove(t, "--consistency", "1", "2")
	out, err = verifyProofOffline(t, consistency, "--key", b.vkey)
	require.NoError(t, err, out)
	require.Contains(t, out, "the newer checkpoint extends the older one (2 trees)")
	var cp service.ConsistencyProof
	raw, err = os.ReadFile(consistency)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &cp))
	cp.Old, cp.New = cp.New, cp.Old
	swapped, err := json.Marshal(cp)
	require.NoError(t, err)
	out, err = verifyProofOffline(t, dbtest.WriteFile(t, "swapped.json", string(swapped)), "--key", b.vkey)
	require.ErrorIs(t, err, errTampered, out)
	out, err = verifyProofOffline(t, dbtest.WriteFile(t, "junk.json", `{"hello": "world"}`), "--key", b.vkey)
	require.Equal(t, 2, exitCode(err), "not a proof: %s %v", out, err)

	// A superuser changes events behind the service's back: verify exits
	// 1 naming each; a proof made now, from the event as it is, does not
	// check: its fixed fields, and its erasable values committed again
	// under their salts, are not the leaf the tree holds.
	failure := b.record(t, "--tag", "account:login:failure", "--subject", "bob", "--ip", "192.0.2.9")
	b.checkpoint(t)
	for sql, id := range map[string]int64{
		`UPDATE user_events SET tag = 'account:login:failure' WHERE id = $1`:     signIn,
		`UPDATE project_events SET tag = 'project:release:remove' WHERE id = $1`: release,
		`UPDATE user_events SET ip = '10.66.66.66' WHERE id = $1`:                failure,
	} {
		dbtest.Tamper(t, b.pool, sql, id)
	}
	out, err = b.cliEnv(t, b.env, "verify")
	require.ErrorIs(t, err, errTampered)
	require.Equal(t, 1, exitCode(err))
	require.Contains(t, out, "altered: event "+strconv.FormatInt(signIn, 10)+" (tree user-")
	require.Contains(t, out, "altered: event "+strconv.FormatInt(release, 10)+" (tree kept)")
	require.Regexp(t, `altered: event `+strconv.FormatInt(failure, 10)+` \(tree user-\d{6}\): ip: changed outside an erasure`, out)
	require.Contains(t, out, "verify: NOT clean: 3 findings")
	var rep service.VerifyReport
	out, err = b.cliEnv(t, b.env, "verify", "--json")
	require.ErrorIs(t, err, errTampered)
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	require.False(t, rep.Clean)
	require.Len(t, rep.Findings, 3)
	for _, id := range []int64{signIn, release, failure} {
		out, err = verifyProofOffline(t, b.prove(t, "--event", strconv.FormatInt(id, 10)), "--key", b.vkey)
		require.ErrorIs(t, err, errTampered, "the proof of altered event %d: %s", id, out)
		require.Contains(t, out, "verify-proof: REJECTED")
		require.Contains(t, out, "is not leaf")
	}
	// The proof made before the change still checks: it proves the event
	// as it was.
	out, err = verifyProofOffline(t, proof, "--key", b.vkey)
	require.NoError(t, err, out)
}

// Someone with the key rebuilds the history without an event and signs
// it anew: verify alone finds it clean, verify --against the checkpoint
// note kept outside before does not.
func TestVerifyAgainstANoteKeptOutside(t *testing.T) {
	t.Parallel()
	b := integritySetup(t)
	b.record(t, "--tag", "account:login:success", "--subject", "alice")
	removed := b.record(t, "--tag", "project:role:add", "--subject", "demo", "--actor", "bob",
		"--additional", `{"submitted_by": "bob", "role_name": "Owner", "target_user": "mallory"}`)
	b.record(t, "--tag", "project:create", "--subject", "other", "--actor", "erin", "--additional", `{"created_by": "erin"}`)
	kept := dbtest.WriteFile(t, "checkpoint.note", b.with(t, "checkpoint"))

	dbtest.Tamper(t, b.pool, `DELETE FROM project_events WHERE id = $1`, removed)
	_, err := b.pool.Exec(b.ctx, `DELETE FROM integrity_checkpoints; DELETE FROM integrity_leaves; DELETE FROM integrity_hashes;
		DELETE FROM integrity_trees; UPDATE integrity_state SET low_mark = 0, pending_seq = 0, pending_xmax = NULL`)
	require.NoError(t, err)
	b.checkpoint(t)
	require.Contains(t, b.with(t, "verify"), "verify: clean", "rewritten consistently")

	out, err := b.cliEnv(t, b.env, "verify", "--against", kept)
	require.ErrorIs(t, err, errTampered)
	require.Equal(t, 1, exitCode(err))
	require.Contains(t, out, "checkpoint (tree kept): the checkpoint kept outside signs 2 leaves, only 1 are stored")
	require.Contains(t, out, "NOT clean")
	// The note checked against a key that did not sign it is refused too.
	_, other := newKey(t)
	_, err = b.cli(t, "verify", "--key", other, "--against", kept)
	require.Error(t, err)

	_, err = b.cliEnv(t, b.env, "verify", "--against", filepath.Join(t.TempDir(), "missing.note"))
	require.Equal(t, 2, exitCode(err))
	require.Contains(t, err.Error(), "--against")
}

// prove and verify-proof take their flags after their operands as well
// (the usage shows `verify-proof FILE --key VKEY`); "--" ends the flags.
func TestIntegrityOperandsAndFlagsInAnyOrder(t *testing.T) {
	t.Parallel()
	url, connections := watchedDatabase(t)
	_, vkey := newKey(t)
	missing := filepath.Join(t.TempDir(), "missing.json")
	for _, args := range [][]string{
		{"verify-proof", missing, "--key", vkey},
		{"verify-proof", "--key", vkey, missing},
		{"verify-proof", "--key", vkey, "--", missing},
	} {
		_, _, err := runCLI(url, nil, args...)
		require.Equal(t, 2, exitCode(err), "%q", args)
		require.Contains(t, err.Error(), "verify-proof: open "+missing, "%q", args)
	}
	_, _, err := runCLI(url, nil, "verify-proof", "--key", vkey, "--", missing, "--key")
	require.Contains(t, err.Error(), `unexpected argument "--key"`, "after --, a flag is an operand")
	_, _, err = runCLI(url, nil, "verify-proof", missing, "--key", "not a key")
	require.Equal(t, 2, exitCode(err))
	require.True(t, strings.HasPrefix(err.Error(), "--key: "), "%v", err)
	require.Zero(t, connections.Load())
}

// The demo, run with the key, marks what it seeds: the first checkpoint
// appends every event and verify is clean.
func TestDemoWithAKeyVerifiesClean(t *testing.T) {
	t.Parallel()
	b := integritySetup(t)
	b.with(t, "demo")
	events := dbtest.Count(t, b.pool, "SELECT (SELECT count(*) FROM user_events) + (SELECT count(*) FROM project_events)")
	require.Positive(t, events)
	cp := b.checkpoint(t) // no event left unappended
	var leaves int64
	for _, tree := range cp.Trees {
		leaves += tree.Size
	}
	require.Equal(t, int64(events), leaves)
	require.Contains(t, b.with(t, "verify"), "verify: clean")
}
