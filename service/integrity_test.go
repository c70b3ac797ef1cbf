package service_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/jobs"
	"github.com/auditlog/auditlog/service"
)

// integrityLog is a fixture whose Log has an integrity key, with a small
// history appended and checkpointed: sign-ins of alice and bob this month
// and last, a project event and an organization event.
type integrityLog struct {
	*dbtest.Fixture
	key                        *service.IntegrityKey
	thisMonth, lastMonth, kept service.Event
	org                        service.Event
	firstCheckpoint            *service.Checkpoint
	pseudonymSecret            []byte
}

func newIntegrityLog(t *testing.T, opts service.Opts) *integrityLog {
	t.Helper()
	file, _, err := service.GenerateIntegrityKey("audit.test")
	require.NoError(t, err)
	key, err := service.ParseIntegrityKey(file)
	require.NoError(t, err)
	c, err := service.BuiltinCatalog("package-index")
	require.NoError(t, err)
	reg, err := c.Registry()
	require.NoError(t, err)
	opts.Integrity, opts.Registry = key, reg
	secret := opts.PseudonymSecret
	now := dbtest.Now()
	f := dbtest.NewFixture(t, dbtest.FixtureOpts{Opts: opts, Now: now, Jobs: true})
	il := &integrityLog{Fixture: f, key: key, pseudonymSecret: secret}
	signIn := func(user string, at time.Time) service.Event {
		p := dbtest.SignIn(user, at)
		p.UserAgent, p.Location = "Mozilla/5.0 Firefox/140.0", &service.Location{Country: "DE", City: "Berlin"}
		return f.Record(t, service.ModelUser, p)
	}
	il.thisMonth = signIn("alice", now.Add(-time.Hour))
	signIn("bob", now.Add(-2*time.Hour))
	il.lastMonth = signIn("alice", dbtest.MonthStart(now).Add(-24*time.Hour))
	il.kept = f.Record(t, service.ModelProject, service.EventParams{Tag: "project:role:add", Subject: "sampleproject", ActorID: "bob",
		IP: "198.51.100.7", Time: now.Add(-30 * time.Minute),
		Additional: json.RawMessage(`{"submitted_by": "bob", "role_name": "Maintainer", "target_user": "alice"}`)})
	il.org = f.Record(t, service.ModelOrganization, service.EventParams{Tag: "organization:create", Subject: "acme", ActorID: "alice",
		Time: now.Add(-20 * time.Minute), Additional: json.RawMessage(`{"organization_name": "acme", "created_by_user_id": "alice"}`)})
	res, err := f.Log.Checkpoint(f.Ctx)
	require.NoError(t, err)
	require.Equal(t, int64(2), res.Appended["kept"])
	require.Empty(t, res.Unmarked)
	il.firstCheckpoint = res.Checkpoint
	return il
}

// verify runs Verify and returns its findings as text, one per line.
func (il *integrityLog) verify(t *testing.T, opts service.VerifyOpts) (*service.VerifyReport, string) {
	t.Helper()
	rep, err := il.Log.Verify(il.Ctx, opts)
	require.NoError(t, err)
	var lines []string
	for _, f := range rep.Findings {
		lines = append(lines, f.String())
	}
	return rep, strings.Join(lines, "\n")
}

// exec runs sql as a superuser behind the service's back (no trigger
// fires).
func (il *integrityLog) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	dbtest.Tamper(t, il.Pool, sql, args...)
}

func TestCheckpointsAreSignedChainedNotes(t *testing.T) {
	t.Parallel()
	il := newIntegrityLog(t, service.Opts{})
	first := il.firstCheckpoint
	lines := strings.Split(first.Note, "\n")
	require.Equal(t, "audit.test", lines[0], "the origin line")
	require.Equal(t, "2", lines[1], "the kept tree's size")
	require.Contains(t, first.Note, "prev none\n")
	require.Regexp(t, `(?m)^tree user-\d{6} 2 `, first.Note, "this month: two sign-ins")
	require.NotContains(t, first.Note, "alice", "no personal data in a checkpoint")

	v, err := service.NewCheckpointVerifier(il.key.VerifierKey)
	require.NoError(t, err)
	cp, err := service.OpenCheckpoint([]byte(first.Note), v)
	require.NoError(t, err)
	require.Equal(t, first.Trees, cp.Trees)

	// Nothing new: the next checkpoint has the same trees and names the
	// first.
	res, err := il.Log.Checkpoint(il.Ctx)
	require.NoError(t, err)
	require.Empty(t, res.Appended)
	require.Equal(t, first.Trees, res.Checkpoint.Trees)
	require.NotContains(t, res.Checkpoint.Note, "prev none")

	rep, findings := il.verify(t, service.VerifyOpts{})
	require.True(t, rep.Clean, findings)
	require.Equal(t, int64(5), rep.Leaves)
	require.Equal(t, 2, rep.Checkpoints)

	other, _, err := service.GenerateIntegrityKey("audit.test")
	require.NoError(t, err)
	otherKey, err := service.ParseIntegrityKey(other)
	require.NoError(t, err)
	ov, err := service.NewCheckpointVerifier(otherKey.VerifierKey)
	require.NoError(t, err)
	_, err = service.OpenCheckpoint([]byte(first.Note), ov)
	require.ErrorIs(t, err, service.ErrCheckpoint, "another key's verifier refuses it")
}

// Every tamper a superuser can do behind the service's back is named by
// Verify with the event or checkpoint it touched.
func TestVerifyNamesEachTamper(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, il *integrityLog) string // returns what the findings must name
	}{
		{"update of a non-erasable field", func(t *testing.T, il *integrityLog) string {
			il.exec(t, `UPDATE project_events SET tag = 'project:role:remove' WHERE id = $1`, il.kept.ID)
			return fmt.Sprintf("altered: event %d (tree kept): a field erasure never changes", il.kept.ID)
		}},
		{"update of an erasable field outside an erasure", func(t *testing.T, il *integrityLog) string {
			il.exec(t, `UPDATE user_events SET ip = '10.66.66.66' WHERE id = $1`, il.thisMonth.ID)
			return fmt.Sprintf("altered: event %d (tree user-", il.thisMonth.ID) + "%s): ip: changed outside an erasure"
		}},
		{"delete of one row", func(t *testing.T, il *integrityLog) string {
			il.exec(t, `DELETE FROM user_events WHERE id = $1`, il.lastMonth.ID)
			return fmt.Sprintf("missing: event %d", il.lastMonth.ID)
		}},
		{"insert of a row with a past time", func(t *testing.T, il *integrityLog) string {
			var id int64
			require.NoError(t, il.Pool.QueryRow(il.Ctx, `INSERT INTO user_events (time, tag, user_id, description)
				VALUES (now() - interval '3 days', 'account:login:success', 'alice', 'Signed in') RETURNING id`).Scan(&id))
			return fmt.Sprintf("inserted: event %d: no leaf holds it and it has no record mark", id)
		}},
		{"a row moved to another month", func(t *testing.T, il *integrityLog) string {
			il.exec(t, `UPDATE user_events SET time = time - interval '32 days' WHERE id = $1`, il.thisMonth.ID)
			return fmt.Sprintf("moved: event %d", il.thisMonth.ID)
		}},
		{"a checkpoint edited", func(t *testing.T, il *integrityLog) string {
			il.exec(t, `UPDATE integrity_checkpoints SET note = replace(note, E'\n2\n', E'\n3\n') WHERE id = $1`, il.firstCheckpoint.ID)
			return fmt.Sprintf("checkpoint: checkpoint %d: the signature does not check", il.firstCheckpoint.ID)
		}},
		{"a checkpoint deleted", func(t *testing.T, il *integrityLog) string {
			third := il.checkpoints(t, 2)
			il.exec(t, `DELETE FROM integrity_checkpoints WHERE id = $1`, third[0])
			return fmt.Sprintf("checkpoint: checkpoint %d: does not follow checkpoint %d", third[1], il.firstCheckpoint.ID)
		}},
		{"checkpoints reordered", func(t *testing.T, il *integrityLog) string {
			ids := il.checkpoints(t, 2)
			il.exec(t, `UPDATE integrity_checkpoints a SET note = b.note FROM integrity_checkpoints b
				WHERE (a.id, b.id) IN (($1::bigint, $2::bigint), ($2::bigint, $1::bigint))`, ids[0], ids[1])
			return fmt.Sprintf("checkpoint: checkpoint %d: does not follow", ids[0])
		}},
		{"a checkpoint forged with another key", func(t *testing.T, il *integrityLog) string {
			file, _, err := service.GenerateIntegrityKey("audit.test")
			require.NoError(t, err)
			forger, err := service.ParseIntegrityKey(file)
			require.NoError(t, err)
			// The forger's log signs a checkpoint of the same database.
			res, err := dbtest.Must(service.New(il.Pool, &service.Opts{Integrity: forger, Registry: il.Log.Registry()})).Checkpoint(il.Ctx)
			require.NoError(t, err)
			return fmt.Sprintf("checkpoint: checkpoint %d: the signature does not check", res.Checkpoint.ID)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			il := newIntegrityLog(t, service.Opts{})
			want := tc.tamper(t, il)
			rep, findings := il.verify(t, service.VerifyOpts{})
			require.False(t, rep.Clean, "the tamper went unnoticed")
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, il.thisMonth.Time.UTC().Format("200601"))
			}
			require.Contains(t, findings, want)
		})
	}
}

// checkpoints makes n more checkpoints and returns their ids.
func (il *integrityLog) checkpoints(t *testing.T, n int) []int64 {
	t.Helper()
	var ids []int64
	for i := range n {
		il.Record(t, service.ModelUser, dbtest.SignIn(fmt.Sprintf("carol-%d", i), time.Time{}))
		res, err := il.Log.Checkpoint(il.Ctx)
		require.NoError(t, err)
		ids = append(ids, res.Checkpoint.ID)
	}
	return ids
}

// Someone with the key rebuilds the history without an event and signs it
// anew: the log is consistent with itself, but not with a checkpoint kept
// outside before.
func TestVerifyAgainstACheckpointKeptOutside(t *testing.T) {
	t.Parallel()
	il := newIntegrityLog(t, service.Opts{})
	kept := []byte(il.firstCheckpoint.Note)
	il.exec(t, `DELETE FROM project_events WHERE id = $1`, il.kept.ID)
	il.exec(t, `DELETE FROM integrity_checkpoints; DELETE FROM integrity_leaves; DELETE FROM integrity_hashes;
		DELETE FROM integrity_trees; UPDATE integrity_state SET low_mark = 0, pending_seq = 0, pending_xmax = NULL`)
	_, err := il.Log.Checkpoint(il.Ctx)
	require.NoError(t, err)
	rep, findings := il.verify(t, service.VerifyOpts{})
	require.True(t, rep.Clean, "rewritten consistently: %s", findings)
	rep, findings = il.verify(t, service.VerifyOpts{Outside: [][]byte{kept}})
	require.False(t, rep.Clean)
	require.Contains(t, findings, "checkpoint (tree kept): the checkpoint kept outside signs 2 leaves, only 1 are stored")
	require.Regexp(t, `checkpoint \(tree user-\d{6}\): the tree's first \d leaves do not hash to the root the checkpoint kept outside signed \(history rewritten\)`, findings)
}

// Legitimate changes leave verification clean: an erasure with
// pseudonyms (the person's events deleted, their mentions and what they
// acted in scrubbed), events recorded after the last checkpoint.
func TestVerifyAcceptsErasure(t *testing.T) {
	t.Parallel()
	il := newIntegrityLog(t, service.Opts{PseudonymSecret: []byte("a pseudonym secret of some length")})
	il.Record(t, service.ModelUser, dbtest.SignIn("dave", time.Time{})) // pending: not covered yet
	req, _, err := il.Log.RequestErasure(il.Ctx, service.ErasureParams{UserID: "alice", Reason: "asked", RequestedBy: "root"})
	require.NoError(t, err)
	_, err = il.Log.RunErasure(il.Ctx, req.ID, service.RunErasureOpts{})
	require.NoError(t, err)
	rep, findings := il.verify(t, service.VerifyOpts{})
	require.True(t, rep.Clean, findings)
	require.Equal(t, int64(1), rep.Pending)
	require.Positive(t, rep.Erased)
	require.Equal(t, 2, dbtest.Count(t, il.Pool, `SELECT count(*) FROM integrity_changes WHERE kind = 'deleted'`), "alice's two sign-ins")
	require.Equal(t, 2, dbtest.Count(t, il.Pool, `SELECT count(*) FROM integrity_changes WHERE kind = 'scrubbed'`), "her mention and her organization event")

	// The next checkpoint covers dave's sign-in; still clean.
	_, err = il.Log.Checkpoint(il.Ctx)
	require.NoError(t, err)
	rep, findings = il.verify(t, service.VerifyOpts{})
	require.True(t, rep.Clean, findings)
	require.Zero(t, rep.Pending)
}

// at returns a Log over il's database with the same key whose clock reads t.
func (il *integrityLog) at(t time.Time) *service.Log {
	return dbtest.Must(service.New(il.Pool, &service.Opts{Clock: dbtest.Clock(t), Integrity: il.key, Registry: il.Log.Registry(),
		Enqueuer: dbtest.Must(jobs.NewEnqueuer(il.Pool)), PseudonymSecret: il.pseudonymSecret}))
}

// A retention drop seals the month's tree from the newest checkpoint and
// drops its leaves with the month; verification then checks the seal, and
// a seal changed by hand is named.
func TestVerifyAcceptsARetentionDrop(t *testing.T) {
	t.Parallel()
	il := newIntegrityLog(t, service.Opts{})
	lastTree := "user-" + il.lastMonth.Time.UTC().Format("200601")
	// Last month has expired, this one not.
	later := dbtest.MonthStart(il.Now).Add(service.DefaultRetention + 24*time.Hour)
	rep, err := il.at(later).MaintainPartitions(il.Ctx, il.Pool, service.MaintainOpts{})
	require.NoError(t, err)
	require.Contains(t, dropNames(rep), service.PartitionName(il.lastMonth.Time)+"/expired")
	require.Equal(t, 1, dbtest.Count(t, il.Pool, `SELECT count(*) FROM retention_log WHERE sealed_size = 1`), "the seal: one leaf")
	require.False(t, dbtest.TableExists(t, il.Pool, "integrity_leaves_"+strings.ReplaceAll(lastTree, "-", "_")), "its leaves went with it")

	vrep, findings := il.verify(t, service.VerifyOpts{})
	require.True(t, vrep.Clean, findings)
	require.Equal(t, 1, vrep.Sealed)
	res, err := il.at(later).Checkpoint(il.Ctx)
	require.NoError(t, err)
	_, still := res.Checkpoint.Tree(lastTree)
	require.False(t, still, "checkpoints after the drop leave the month out")
	vrep, findings = il.verify(t, service.VerifyOpts{})
	require.True(t, vrep.Clean, findings)

	il.exec(t, `UPDATE retention_log SET sealed_size = 7 WHERE sealed_size IS NOT NULL`)
	vrep, findings = il.verify(t, service.VerifyOpts{})
	require.False(t, vrep.Clean)
	require.Contains(t, findings, "seal (tree "+lastTree+"): the seal in retention_log does not match")
}

// A crash between detach and drop (the month's table left detached) is
// finished by the next pass, sealed like any drop; verification is clean.
func TestVerifyAcceptsADropFinishedAfterACrash(t *testing.T) {
	t.Parallel()
	il := newIntegrityLog(t, service.Opts{})
	il.exec(t, "ALTER TABLE user_events DETACH PARTITION "+service.PartitionName(il.lastMonth.Time))
	later := dbtest.MonthStart(il.Now).Add(service.DefaultRetention + 24*time.Hour)
	rep, err := il.at(later).MaintainPartitions(il.Ctx, il.Pool, service.MaintainOpts{})
	require.NoError(t, err)
	require.Contains(t, dropNames(rep), service.PartitionName(il.lastMonth.Time)+"/orphan")
	vrep, findings := il.verify(t, service.VerifyOpts{})
	require.True(t, vrep.Clean, findings)
	require.Equal(t, 1, vrep.Sealed)
}

// A dump restored into a new database verifies clean, and checkpoints go
// on there.
func TestVerifyAfterARestore(t *testing.T) {
	t.Parallel()
	il := newIntegrityLog(t, service.Opts{})
	targetURL, err := dbtest.DatabaseURL(dbtest.EmptyDatabase(t))
	require.NoError(t, err)
	sourceURL, err := dbtest.DatabaseURL(il.Pool.Config().ConnConfig.Database)
	require.NoError(t, err)
	dump := exec.Command("bash", "-c", `pg_dump --format=custom "$SOURCE" | pg_restore --no-owner --dbname="$TARGET"`)
	dump.Env = append(os.Environ(), "SOURCE="+sourceURL, "TARGET="+targetURL)
	out, err := dump.CombinedOutput()
	require.NoError(t, err, "%s", out)
	pool := dbtest.OpenPool(t, targetURL)
	restored := dbtest.Must(service.New(pool, &service.Opts{Integrity: il.key, Registry: il.Log.Registry()}))
	rep, err := restored.Verify(il.Ctx, service.VerifyOpts{})
	require.NoError(t, err)
	require.True(t, rep.Clean, "%v", rep.Findings)
	require.Equal(t, int64(5), rep.Leaves)

	_, err = restored.RecordUser(il.Ctx, dbtest.SignIn("erin", time.Time{}))
	require.NoError(t, err)
	res, err := restored.Checkpoint(il.Ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), res.Appended["user-"+time.Now().UTC().Format("200601")])
	rep, err = restored.Verify(il.Ctx, service.VerifyOpts{})
	require.NoError(t, err)
	require.True(t, rep.Clean, "%v", rep.Findings)
}

// --since verifies only what was appended after a checkpoint, trusting the
// tree as that checkpoint signed it.
func TestVerifySince(t *testing.T) {
	t.Parallel()
	il := newIntegrityLog(t, service.Opts{})
	since := il.firstCheckpoint.ID
	later := il.Record(t, service.ModelProject, service.EventParams{Tag: "project:create", Subject: "newproject", ActorID: "erin",
		Additional: json.RawMessage(`{"created_by": "erin"}`)})
	_, err := il.Log.Checkpoint(il.Ctx)
	require.NoError(t, err)
	rep, findings := il.verify(t, service.VerifyOpts{Since: since})
	require.True(t, rep.Clean, findings)
	require.Equal(t, int64(1), rep.Leaves, "only the leaf appended after the checkpoint")

	il.exec(t, `UPDATE project_events SET tag = 'project:delete' WHERE id = $1`, later.ID)
	rep, findings = il.verify(t, service.VerifyOpts{Since: since})
	require.False(t, rep.Clean)
	require.Contains(t, findings, fmt.Sprintf("altered: event %d", later.ID))
}
