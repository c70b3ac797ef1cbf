package service

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/auditlog/auditlog/db"
)

// ErrNoIntegrity: an integrity operation on a Log without Opts.Integrity.
var ErrNoIntegrity = errors.New("the log runs without an integrity key (AUDITLOG_SIGNING_KEY)")

// Integrity reports whether the Log has an integrity key (Opts.Integrity).
func (l *Log) Integrity() bool { return l.integrity != nil }

// appendPage is how many events one read of Checkpoint appends.
const appendPage = 10_000

// TreeHead is one tree's size and root in a checkpoint.
type TreeHead struct {
	Tree string    `json:"tree"`
	Size int64     `json:"size"`
	Root tlog.Hash `json:"root"`
}

// Checkpoint is a signed checkpoint as stored and served.
type Checkpoint struct {
	ID   int64     `json:"id"`
	Time time.Time `json:"time"`
	// Trees lists every tree, "kept" first, then the user months in order.
	Trees []TreeHead `json:"trees"`
	// Prev is the SHA-256 of the previous checkpoint's note; zero for the
	// first.
	Prev [sha256.Size]byte `json:"-"`
	// Note is the signed note, as `GET /api/v1/checkpoints/latest` serves
	// it.
	Note string `json:"note"`
}

// Tree returns the head of tree, if the checkpoint has it.
func (c *Checkpoint) Tree(tree string) (TreeHead, bool) {
	for _, t := range c.Trees {
		if t.Tree == tree {
			return t, true
		}
	}
	return TreeHead{}, false
}

// CheckpointResult is what one Checkpoint call did.
type CheckpointResult struct {
	Checkpoint *Checkpoint `json:"checkpoint"`
	// Appended counts the events appended, by tree.
	Appended map[string]int64 `json:"appended"`
	// Unmarked lists events it did not append: their record mark does not
	// check (written behind the service's back), or their month's tree is
	// sealed. `auditlog verify` names them too.
	Unmarked []int64 `json:"unmarked,omitempty"`
}

// Checkpoint appends every event recorded since the last call to its
// tree and writes a signed checkpoint of every tree, in one transaction
// (concurrent calls take turns). Events newer than the last checkpoint are
// not covered yet; the worker calls this every minute.
func (l *Log) Checkpoint(ctx context.Context) (*CheckpointResult, error) {
	if l.integrity == nil {
		return nil, ErrNoIntegrity
	}
	var res *CheckpointResult
	err := pgx.BeginFunc(ctx, l.db, func(tx pgx.Tx) error {
		var err error
		res, err = l.checkpointTx(ctx, tx)
		return err
	})
	if err != nil {
		return nil, unavailable(fmt.Errorf("checkpoint: %w", err))
	}
	return res, nil
}

func (l *Log) checkpointTx(ctx context.Context, tx pgx.Tx) (*CheckpointResult, error) {
	low, err := l.q.IntegrityAdvance(ctx, tx) // locks: one checkpoint at a time
	if err != nil {
		return nil, err
	}
	res := &CheckpointResult{Appended: map[string]int64{}}
	ap := &appender{l: l, tx: tx, ctx: ctx, trees: map[string]*treeAppend{}, now: l.now()}
	top, err := l.q.IntegrityMaxID(ctx, tx)
	if err != nil {
		return nil, err
	}
	// Page by id range: each page costs its range, however far the
	// backlog goes.
	for after := low; after < top; after += appendPage {
		upto := min(after+appendPage, top)
		users, err := l.q.IntegrityPendingUserEvents(ctx, tx, db.IntegrityPendingUserEventsParams{After: after, Upto: upto})
		if err != nil {
			return nil, err
		}
		for i := range users {
			e := userEvent(&users[i])
			if err := ap.add(&e, users[i].Mac, res); err != nil {
				return nil, err
			}
		}
		kept, err := l.q.IntegrityPendingProjectEvents(ctx, tx, db.IntegrityPendingProjectEventsParams{After: after, Upto: upto})
		if err != nil {
			return nil, err
		}
		for i := range kept {
			e := projectEvent(&kept[i])
			if err := ap.add(&e, kept[i].Mac, res); err != nil {
				return nil, err
			}
		}
	}
	if err := ap.flush(); err != nil {
		return nil, err
	}
	for name, t := range ap.trees {
		if n := t.size - t.start; n > 0 {
			res.Appended[name] = n
		}
	}
	cp, err := l.signCheckpoint(ctx, tx, ap)
	if err != nil {
		return nil, err
	}
	res.Checkpoint = cp
	return res, nil
}

// appender appends leaves to the trees of one checkpoint transaction.
type appender struct {
	l     *Log
	tx    pgx.Tx
	ctx   context.Context
	now   time.Time
	trees map[string]*treeAppend
}

// treeAppend is one tree's state while appending: its stored hashes read
// or made in this transaction, and the rows waiting to be copied.
type treeAppend struct {
	name        string
	start, size int64
	sealed      bool
	hashes      hashSet
	leaves      []db.IntegrityLeafInsertParams
	newHashes   []db.IntegrityHashInsertParams
}

func (a *appender) tree(name string, at time.Time) (*treeAppend, error) {
	if t := a.trees[name]; t != nil {
		return t, nil
	}
	var month pgtype.Date
	if name != "kept" {
		u := at.UTC()
		month = pgtype.Date{Time: time.Date(u.Year(), u.Month(), 1, 0, 0, 0, 0, time.UTC), Valid: true}
	}
	if err := a.l.q.IntegrityTreeCreate(a.ctx, a.tx, db.IntegrityTreeCreateParams{Tree: name, Month: month, CreatedAt: a.now}); err != nil {
		return nil, err
	}
	row, err := a.l.q.IntegrityTreeLock(a.ctx, a.tx, name)
	if err != nil {
		return nil, err
	}
	t := &treeAppend{name: name, start: row.Size, size: row.Size, sealed: row.SealedAt != nil, hashes: hashSet{tree: name, by: map[int64]tlog.Hash{}}}
	a.trees[name] = t
	return t, nil
}

// ReadHashes reads stored hashes: this transaction's first, then the
// table's.
func (t *treeAppend) reader(a *appender) tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		var missing []int64
		for _, idx := range indexes {
			if _, ok := t.hashes.by[idx]; !ok {
				missing = append(missing, idx)
			}
		}
		if err := a.l.readHashesInto(a.ctx, a.tx, t.hashes, missing); err != nil {
			return nil, err
		}
		return t.hashes.ReadHashes(indexes)
	})
}

func (a *appender) add(e *Event, mark []byte, res *CheckpointResult) error {
	t, err := a.tree(leafTree(e.Model, e.Time), e.Time)
	if err != nil {
		return err
	}
	if t.sealed || !a.l.integrity.checkMark(mark, e) {
		res.Unmarked = append(res.Unmarked, e.ID)
		if t.sealed {
			a.l.logger.Warn("integrity: an event arrived for a sealed month; not appended", "event", e.ID, "tree", t.name)
		} else {
			a.l.logger.Warn("integrity: an event's record mark does not check (written behind the service's back?); not appended", "event", e.ID)
		}
		return nil
	}
	salts := newSalts()
	commits := commitments(e, salts)
	hashes, err := tlog.StoredHashes(t.size, leafData(e, commits), t.reader(a))
	if err != nil {
		return err
	}
	first := tlog.StoredHashIndex(0, t.size)
	for i, h := range hashes {
		idx := first + int64(i)
		t.hashes.by[idx] = h
		t.newHashes = append(t.newHashes, db.IntegrityHashInsertParams{Tree: t.name, Idx: idx, Hash: slices.Clone(h[:])})
	}
	t.leaves = append(t.leaves, db.IntegrityLeafInsertParams{Tree: t.name, N: t.size, EventID: e.ID, EventTime: e.Time,
		Model: string(e.Model), Commitments: commits, Salts: salts})
	t.size++
	if len(t.leaves) >= appendPage {
		return a.flushTree(t)
	}
	return nil
}

func (a *appender) flushTree(t *treeAppend) error {
	if len(t.leaves) == 0 {
		return nil
	}
	if _, err := a.l.q.IntegrityLeafInsert(a.ctx, a.tx, t.leaves); err != nil {
		return err
	}
	if _, err := a.l.q.IntegrityHashInsert(a.ctx, a.tx, t.newHashes); err != nil {
		return err
	}
	t.leaves, t.newHashes = t.leaves[:0], t.newHashes[:0]
	return a.l.q.IntegrityTreeSetSize(a.ctx, a.tx, db.IntegrityTreeSetSizeParams{Tree: t.name, Size: t.size})
}

func (a *appender) flush() error {
	for _, t := range a.trees {
		if err := a.flushTree(t); err != nil {
			return err
		}
	}
	return nil
}

// signCheckpoint writes the checkpoint of every live tree.
func (l *Log) signCheckpoint(ctx context.Context, tx pgx.Tx, a *appender) (*Checkpoint, error) {
	trees, err := l.q.IntegrityTrees(ctx, tx)
	if err != nil {
		return nil, err
	}
	cp := &Checkpoint{Time: a.now.UTC().Truncate(time.Second)}
	kept := TreeHead{Tree: "kept", Root: emptyTreeRoot}
	for _, row := range trees {
		if row.SealedAt != nil {
			continue // dropped with its month; its seal is in retention_log
		}
		t := a.trees[row.Tree]
		if t == nil {
			t = &treeAppend{name: row.Tree, start: row.Size, size: row.Size, hashes: hashSet{tree: row.Tree, by: map[int64]tlog.Hash{}}}
			a.trees[row.Tree] = t
		}
		root := emptyTreeRoot
		if t.size > 0 {
			if root, err = tlog.TreeHash(t.size, t.reader(a)); err != nil {
				return nil, err
			}
		}
		head := TreeHead{Tree: row.Tree, Size: t.size, Root: root}
		if row.Tree == "kept" {
			kept = head
		} else {
			cp.Trees = append(cp.Trees, head)
		}
	}
	cp.Trees = append([]TreeHead{kept}, cp.Trees...)
	prev, err := l.q.IntegrityCheckpointLatest(ctx, tx)
	switch {
	case err == nil:
		cp.Prev = sha256.Sum256([]byte(prev.Note))
	case !isNoRows(err):
		return nil, err
	}
	msg, err := note.Sign(&note.Note{Text: checkpointText(l.integrity.Name, cp)}, l.integrity.signer)
	if err != nil {
		return nil, err
	}
	cp.Note = string(msg)
	if cp.ID, err = l.q.IntegrityCheckpointInsert(ctx, tx, db.IntegrityCheckpointInsertParams{CreatedAt: cp.Time, Note: cp.Note}); err != nil {
		return nil, err
	}
	return cp, nil
}

// emptyTreeRoot is the root the checkpoints give an empty tree: RFC
// 6962's hash of the empty string.
var emptyTreeRoot = tlog.Hash(sha256.Sum256(nil))

// checkpointText is the checkpoint's body in the tlog-checkpoint layout:
// origin, the kept tree's size and root, then extension lines: the time,
// the previous checkpoint's hash and every user-month tree.
func checkpointText(origin string, cp *Checkpoint) string {
	var b strings.Builder
	kept := cp.Trees[0]
	fmt.Fprintf(&b, "%s\n%d\n%s\n", origin, kept.Size, kept.Root)
	fmt.Fprintf(&b, "time %s\n", cp.Time.UTC().Format(time.RFC3339))
	if cp.Prev == ([sha256.Size]byte{}) {
		b.WriteString("prev none\n")
	} else {
		fmt.Fprintf(&b, "prev %s\n", base64.StdEncoding.EncodeToString(cp.Prev[:]))
	}
	for _, t := range cp.Trees[1:] {
		fmt.Fprintf(&b, "tree %s %d %s\n", t.Tree, t.Size, t.Root)
	}
	return b.String()
}

// ErrCheckpoint: a checkpoint note that does not open under the key or
// does not parse.
var ErrCheckpoint = errors.New("bad checkpoint")

// OpenCheckpoint checks msg's signature with verifier and parses it.
func OpenCheckpoint(msg []byte, verifier note.Verifier) (*Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	cp, err := parseCheckpoint(n.Text)
	if err != nil {
		return nil, err
	}
	cp.Note = string(msg)
	return cp, nil
}

func parseCheckpoint(text string) (*Checkpoint, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrCheckpoint, fmt.Sprintf(format, args...))
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 5 {
		return nil, bad("%d lines, want at least 5", len(lines))
	}
	cp := &Checkpoint{}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		return nil, bad("size %q", lines[1])
	}
	root, err := tlog.ParseHash(lines[2])
	if err != nil {
		return nil, bad("root %q", lines[2])
	}
	cp.Trees = append(cp.Trees, TreeHead{Tree: "kept", Size: size, Root: root})
	ts, ok := strings.CutPrefix(lines[3], "time ")
	if cp.Time, err = time.Parse(time.RFC3339, ts); !ok || err != nil {
		return nil, bad("time line %q", lines[3])
	}
	switch prev, ok := strings.CutPrefix(lines[4], "prev "); {
	case !ok:
		return nil, bad("prev line %q", lines[4])
	case prev != "none":
		b, err := base64.StdEncoding.DecodeString(prev)
		if err != nil || len(b) != sha256.Size {
			return nil, bad("prev %q", prev)
		}
		copy(cp.Prev[:], b)
	}
	for _, line := range lines[5:] {
		f := strings.Fields(line)
		if len(f) != 4 || f[0] != "tree" {
			return nil, bad("line %q", line)
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		root, rerr := tlog.ParseHash(f[3])
		if err != nil || rerr != nil || size < 0 {
			return nil, bad("line %q", line)
		}
		cp.Trees = append(cp.Trees, TreeHead{Tree: f[1], Size: size, Root: root})
	}
	// One spelling per checkpoint: what does not render back exactly (a
	// missing newline, a lenient time or base64 form) is not one.
	if lines[0] == "" || checkpointText(lines[0], cp) != text {
		return nil, bad("not in the checkpoint's own form")
	}
	return cp, nil
}

// LatestCheckpoint returns the newest checkpoint (ErrNotFound before the
// first).
func (l *Log) LatestCheckpoint(ctx context.Context) (*Checkpoint, error) {
	row, err := l.q.IntegrityCheckpointLatest(ctx, l.db)
	if err != nil {
		return nil, unavailable(notFound(err, "checkpoint"))
	}
	cp, err := parseCheckpointNote(row.Note)
	if err != nil {
		return nil, err
	}
	cp.ID = row.ID
	return cp, nil
}

// parseCheckpointNote parses a stored note without checking its
// signature (verification does).
func parseCheckpointNote(msg string) (*Checkpoint, error) {
	text, _, ok := strings.Cut(msg, "\n\n")
	if !ok {
		return nil, fmt.Errorf("%w: no signature block", ErrCheckpoint)
	}
	cp, err := parseCheckpoint(text + "\n")
	if err != nil {
		return nil, err
	}
	cp.Note = msg
	return cp, nil
}

// noteText is the signed text of a note (its lines before the blank line).
func noteText(msg string) string {
	text, _, _ := strings.Cut(msg, "\n\n")
	return text + "\n"
}

// sealTree seals tree before its month is dropped: its head in the newest
// checkpoint is the seal; the tree is marked sealed and its leaves and
// hashes dropped as tables. nil, nil when the tree was never appended to.
func (l *Log) sealTree(ctx context.Context, tx pgx.Tx, tree string, now time.Time) (*TreeHead, error) {
	row, err := l.q.IntegrityTreeLock(ctx, tx, tree)
	if isNoRows(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	head := TreeHead{Tree: tree, Root: emptyTreeRoot}
	latest, err := l.q.IntegrityCheckpointLatest(ctx, tx)
	switch {
	case err == nil:
		cp, err := parseCheckpointNote(latest.Note)
		if err != nil {
			return nil, err
		}
		if h, ok := cp.Tree(tree); ok {
			head = h
		}
	case !isNoRows(err):
		return nil, err
	}
	if head.Size != row.Size {
		return nil, fmt.Errorf("the tree holds %d leaves, the newest checkpoint %d: run a checkpoint first", row.Size, head.Size)
	}
	if err := l.q.IntegrityTreeSeal(ctx, tx, db.IntegrityTreeSealParams{Tree: tree, SealedAt: now}); err != nil {
		return nil, err
	}
	if err := l.q.IntegrityTreeDrop(ctx, tx, tree); err != nil {
		return nil, err
	}
	return &head, nil
}
