package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/auditlog/auditlog/db"
)

// Finding kinds of Verify.
const (
	FindingAltered    = "altered"    // an appended event's fields differ from its leaf
	FindingMissing    = "missing"    // an appended event is gone, not by an erasure or a drop
	FindingInserted   = "inserted"   // an event no leaf holds and no record mark vouches for
	FindingMoved      = "moved"      // an appended event now lies in another month
	FindingCheckpoint = "checkpoint" // a checkpoint's signature, chain or roots fail
	FindingTree       = "tree"       // a tree's stored leaves or hashes fail
	FindingSeal       = "seal"       // a dropped month's seal does not match its checkpoints
)

// Finding is one thing Verify found wrong.
type Finding struct {
	Kind       string `json:"kind"`
	EventID    int64  `json:"event_id,omitempty"`
	Tree       string `json:"tree,omitempty"`
	Checkpoint int64  `json:"checkpoint,omitempty"`
	Detail     string `json:"detail"`
}

func (f Finding) String() string {
	var b strings.Builder
	b.WriteString(f.Kind)
	if f.EventID != 0 {
		fmt.Fprintf(&b, ": event %d", f.EventID)
	}
	if f.Checkpoint != 0 {
		fmt.Fprintf(&b, ": checkpoint %d", f.Checkpoint)
	}
	if f.Tree != "" {
		fmt.Fprintf(&b, " (tree %s)", f.Tree)
	}
	return b.String() + ": " + f.Detail
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	// Clean is true when nothing was found.
	Clean       bool      `json:"clean"`
	Checkpoints int       `json:"checkpoints"`
	Trees       int       `json:"trees"`
	Leaves      int64     `json:"leaves"`
	Erased      int64     `json:"erased"`  // leaves an erasure changed, as recorded
	Sealed      int       `json:"sealed"`  // dropped months whose seal matches
	Held        int64     `json:"held"`    // kept leaves of events legal holds keep, checked against their seals
	Pending     int64     `json:"pending"` // marked events not appended yet (not covered)
	Findings    []Finding `json:"findings"`
}

// VerifyOpts configures Verify.
type VerifyOpts struct {
	// Verifier checks the checkpoints' signatures; the Log's key's when
	// nil.
	Verifier note.Verifier
	// Since, when not zero, verifies only what was appended after that
	// checkpoint (and the checkpoints from it on), trusting the tree
	// hashes stored before it.
	Since int64
	// Outside are checkpoint notes kept outside the database (by a
	// witness, a user): each must be consistent with the trees as they
	// are, or the history was rewritten.
	Outside [][]byte
	// Progress, when set, is told the leaves checked so far and in all.
	Progress func(done, total int64)
}

// Verify recomputes every live leaf and tree and checks them against the
// signed checkpoints and the seals of dropped months. It names each event
// altered, missing (deleted outside an erasure or a drop), inserted or
// back-dated behind the service's back, moved to another month, and each
// checkpoint whose signature, chain or roots fail. Changes an erasure
// made are accepted exactly as it recorded them.
func (l *Log) Verify(ctx context.Context, opts VerifyOpts) (*VerifyReport, error) {
	if opts.Verifier == nil {
		if l.integrity == nil {
			return nil, ErrNoIntegrity
		}
		opts.Verifier = l.integrity.verifier
	}
	v := &verifier{l: l, ctx: ctx, opts: opts, rep: &VerifyReport{Findings: []Finding{}}}
	if err := v.run(); err != nil {
		return nil, unavailable(fmt.Errorf("verify: %w", err))
	}
	v.rep.Clean = len(v.rep.Findings) == 0
	return v.rep, nil
}

type verifier struct {
	l    *Log
	ctx  context.Context
	opts VerifyOpts
	rep  *VerifyReport
	// heads are the tree heads to check, by tree: every checkpoint's and
	// every outside one's.
	heads   map[string][]head
	changes map[int64]db.IntegrityChangesRow
	// seals are the dropped months' seals in retention_log, by tree.
	seals map[string]TreeHead
}

type head struct {
	TreeHead
	checkpoint int64 // 0 for an outside one
}

func (v *verifier) find(f Finding) { v.rep.Findings = append(v.rep.Findings, f) }

func (v *verifier) run() error {
	q, ctx := v.l.q, v.ctx
	from := int64(0)
	if v.opts.Since > 0 {
		from = v.opts.Since
	}
	rows, err := q.IntegrityCheckpoints(ctx, v.l.db, from)
	if err != nil {
		return err
	}
	v.heads = map[string][]head{}
	last := map[string]TreeHead{} // the newest head of each tree
	var prev *db.IntegrityCheckpoint
	for i := range rows {
		row := &rows[i]
		v.rep.Checkpoints++
		cp, err := OpenCheckpoint([]byte(row.Note), v.opts.Verifier)
		if err != nil {
			v.find(Finding{Kind: FindingCheckpoint, Checkpoint: row.ID, Detail: "the signature does not check: " + err.Error()})
			if cp, err = parseCheckpointNote(row.Note); err != nil {
				prev = row
				continue
			}
		}
		if prev != nil && cp.Prev != sha256.Sum256([]byte(prev.Note)) {
			v.find(Finding{Kind: FindingCheckpoint, Checkpoint: row.ID,
				Detail: fmt.Sprintf("does not follow checkpoint %d (a checkpoint was edited, deleted or reordered)", prev.ID)})
		} else if prev == nil && from == 0 && cp.Prev != ([sha256.Size]byte{}) {
			v.find(Finding{Kind: FindingCheckpoint, Checkpoint: row.ID, Detail: "names a previous checkpoint, but none is stored before it (deleted?)"})
		}
		for _, t := range cp.Trees {
			if old, ok := last[t.Tree]; ok && t.Size < old.Size {
				v.find(Finding{Kind: FindingCheckpoint, Checkpoint: row.ID, Tree: t.Tree,
					Detail: fmt.Sprintf("the tree shrank from %d to %d leaves", old.Size, t.Size)})
			}
			last[t.Tree] = t
			v.heads[t.Tree] = append(v.heads[t.Tree], head{TreeHead: t, checkpoint: row.ID})
		}
		prev = row
	}
	for i, msg := range v.opts.Outside {
		cp, err := OpenCheckpoint(msg, v.opts.Verifier)
		if err != nil {
			v.find(Finding{Kind: FindingCheckpoint, Detail: fmt.Sprintf("checkpoint kept outside #%d: %v", i+1, err)})
			continue
		}
		for _, t := range cp.Trees {
			v.heads[t.Tree] = append(v.heads[t.Tree], head{TreeHead: t})
		}
	}
	changes, err := q.IntegrityChanges(ctx, v.l.db)
	if err != nil {
		return err
	}
	v.changes = make(map[int64]db.IntegrityChangesRow, len(changes))
	for _, c := range changes {
		v.changes[c.EventID] = c
	}
	seals, err := q.IntegritySeals(ctx, v.l.db)
	if err != nil {
		return err
	}
	sealed := map[string]bool{}
	v.seals = map[string]TreeHead{}
	for _, s := range seals {
		tree := "user-" + s.Month.Time.Format("200601")
		sealed[tree] = true
		if s.SealedSize.Valid && len(s.SealedRoot) == tlog.HashSize {
			h := TreeHead{Tree: tree, Size: s.SealedSize.Int64}
			copy(h.Root[:], s.SealedRoot)
			v.seals[tree] = h
		}
		h, ok := last[tree]
		switch {
		case !ok && from == 0:
			v.find(Finding{Kind: FindingSeal, Tree: tree, Detail: "the month was dropped, but no checkpoint holds its tree"})
		case ok && (!s.SealedSize.Valid || h.Size != s.SealedSize.Int64 || !bytes.Equal(h.Root[:], s.SealedRoot)):
			v.find(Finding{Kind: FindingSeal, Tree: tree, Detail: fmt.Sprintf("the seal in retention_log does not match the last checkpoint of the tree (%d leaves)", h.Size)})
		default:
			v.rep.Sealed++
		}
	}
	trees, err := q.IntegrityTrees(ctx, v.l.db)
	if err != nil {
		return err
	}
	var total int64
	for _, t := range trees {
		if t.SealedAt == nil {
			total += t.Size
		}
	}
	var done int64
	for _, t := range trees {
		if t.SealedAt != nil || sealed[t.Tree] {
			continue
		}
		v.rep.Trees++
		if err := v.tree(t, &done, total); err != nil {
			return err
		}
	}
	for tree, hs := range v.heads {
		if !slices.ContainsFunc(trees, func(t db.IntegrityTree) bool { return t.Tree == tree }) && !sealed[tree] && hs[len(hs)-1].Size > 0 {
			v.find(Finding{Kind: FindingTree, Tree: tree, Detail: fmt.Sprintf("checkpoints hold the tree (%d leaves), the database does not (dropped without a seal?)", hs[len(hs)-1].Size)})
		}
	}
	if err := v.held(); err != nil {
		return err
	}
	return v.unappended()
}

// held checks the events legal holds keep past their month: each kept
// leaf against its held event (as live leaves are checked) and its
// inclusion proof against its month's seal; a held event no kept leaf
// holds must carry a record mark that checks.
func (v *verifier) held() error {
	q, ctx := v.l.q, v.ctx
	for after := int64(0); ; {
		rows, err := q.IntegrityHeldLeaves(ctx, v.l.db, db.IntegrityHeldLeavesParams{After: after, Max: appendPage})
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			break
		}
		for i := range rows {
			r := &rows[i]
			after = r.EventID
			v.rep.Held++
			lf := &db.IntegrityLeafe{Tree: r.Tree, N: r.N, EventID: r.EventID, EventTime: r.EventTime, Model: r.Model,
				Commitments: r.Commitments, Salts: r.Salts}
			var record tlog.Hash
			copy(record[:], r.Hash)
			v.leaf(r.Tree, lf, heldLeafEvent(r), record)
			seal, ok := v.seals[r.Tree]
			proof, whole := splitHashes(r.Proof)
			switch {
			case !ok:
				v.find(Finding{Kind: FindingSeal, EventID: r.EventID, Tree: r.Tree, Detail: "a held event's leaf is kept, but its month has no seal"})
			case !whole || tlog.CheckRecord(proof, seal.Size, seal.Root, r.N, record) != nil:
				v.find(Finding{Kind: FindingAltered, EventID: r.EventID, Tree: r.Tree,
					Detail: fmt.Sprintf("the held event's kept leaf is not leaf %d of the sealed tree (%d leaves)", r.N, seal.Size)})
			}
		}
	}
	rows, err := q.IntegrityHeldUnleaved(ctx, v.l.db)
	if err != nil {
		return err
	}
	for _, r := range rows {
		e := Event{ID: r.ID, Model: ModelUser, Time: r.Time.UTC(), Tag: r.Tag, UserID: r.UserID, AuthMethod: r.AuthMethod.String,
			TokenID: r.TokenID.String, ActorTwoFactor: boolPtr(r.ActorTwoFactor)}
		if v.l.integrity != nil && v.l.integrity.checkMark(r.Mac, &e) {
			continue // recorded by the service; its month was dropped before a checkpoint covered it
		}
		v.find(Finding{Kind: FindingInserted, EventID: r.ID,
			Detail: "a held event no kept leaf holds and no record mark vouches for: written behind the service's back (dated " + leafTime(e.Time) + ")"})
	}
	return nil
}

// tree checks one tree's leaves against their events and its roots
// against the heads.
func (v *verifier) tree(t db.IntegrityTree, done *int64, total int64) error {
	q, ctx := v.l.q, v.ctx
	heads := v.heads[t.Tree]
	slices.SortStableFunc(heads, func(a, b head) int { return int(a.Size - b.Size) })
	// The tree rebuilt from the stored leaf hashes, in memory (tlog's
	// stored-hash layout is dense, so a slice serves it).
	var stored []tlog.Hash
	mem := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x >= int64(len(stored)) {
				return nil, fmt.Errorf("hash %d of %d", x, len(stored))
			}
			out[i] = stored[x]
		}
		return out, nil
	})
	start := int64(0)
	if v.opts.Since > 0 && len(heads) > 0 {
		// Trust what the first checkpoint verified covers: load its
		// stored hashes.
		start = heads[0].Size
		n := tlog.StoredHashIndex(0, start)
		for lo := int64(0); lo < n; lo += appendPage {
			idx := make([]int64, 0, appendPage)
			for i := lo; i < min(n, lo+appendPage); i++ {
				idx = append(idx, i)
			}
			hs, err := v.readHashes(t.Tree, idx)
			if err != nil {
				return err
			}
			stored = append(stored, hs...)
		}
	}
	checkHeads := func(size int64) {
		for len(heads) > 0 && heads[0].Size <= size {
			h := heads[0]
			heads = heads[1:]
			if h.Size < start || (h.Size == start && start > 0) {
				continue
			}
			root := emptyTreeRoot
			if h.Size > 0 {
				r, err := tlog.TreeHash(h.Size, mem)
				if err != nil {
					v.find(Finding{Kind: FindingTree, Tree: t.Tree, Checkpoint: h.checkpoint, Detail: err.Error()})
					continue
				}
				root = r
			}
			if root != h.Root {
				where := fmt.Sprintf("checkpoint %d", h.checkpoint)
				if h.checkpoint == 0 {
					where = "the checkpoint kept outside"
				}
				v.find(Finding{Kind: FindingCheckpoint, Checkpoint: h.checkpoint, Tree: t.Tree,
					Detail: fmt.Sprintf("the tree's first %d leaves do not hash to the root %s signed (history rewritten)", h.Size, where)})
			}
		}
	}
	checkHeads(start)
	n := start
	for {
		leaves, err := q.IntegrityLeaves(ctx, v.l.db, db.IntegrityLeavesParams{Tree: t.Tree, FromN: n, Max: appendPage})
		if err != nil {
			return err
		}
		if len(leaves) == 0 {
			break
		}
		ids := make([]int64, len(leaves))
		idx := make([]int64, len(leaves))
		for i, lf := range leaves {
			ids[i], idx[i] = lf.EventID, tlog.StoredHashIndex(0, lf.N)
		}
		events, err := v.events(t.Tree, ids)
		if err != nil {
			return err
		}
		hashes, err := v.readHashes(t.Tree, idx)
		if err != nil {
			return err
		}
		for i := range leaves {
			lf := &leaves[i]
			if lf.N != n {
				v.find(Finding{Kind: FindingTree, Tree: t.Tree, Detail: fmt.Sprintf("leaf %d is missing from integrity_leaves", n)})
				return nil
			}
			v.leaf(t.Tree, lf, events[lf.EventID], hashes[i])
			more, err := tlog.StoredHashesForRecordHash(n, hashes[i], mem)
			if err != nil {
				return err
			}
			stored = append(stored, more...)
			n++
			checkHeads(n)
		}
		*done += int64(len(leaves))
		v.rep.Leaves += int64(len(leaves))
		if v.opts.Progress != nil {
			v.opts.Progress(*done, total)
		}
	}
	if n != t.Size {
		v.find(Finding{Kind: FindingTree, Tree: t.Tree, Detail: fmt.Sprintf("the tree says %d leaves, %d are stored", t.Size, n)})
	}
	for _, h := range heads {
		who := fmt.Sprintf("checkpoint %d", h.checkpoint)
		if h.checkpoint == 0 {
			who = "the checkpoint kept outside"
		}
		v.find(Finding{Kind: FindingCheckpoint, Checkpoint: h.checkpoint, Tree: t.Tree,
			Detail: fmt.Sprintf("%s signs %d leaves, only %d are stored (history rewritten or leaves deleted)", who, h.Size, n)})
	}
	return nil
}

func (v *verifier) readHashes(tree string, idx []int64) ([]tlog.Hash, error) {
	return v.l.dbHashes(v.ctx, tree).ReadHashes(idx)
}

// events reads the events of a tree's leaves by id.
func (v *verifier) events(tree string, ids []int64) (map[int64]*Event, error) {
	out := make(map[int64]*Event, len(ids))
	lo, hi := slices.Min(ids), slices.Max(ids)
	if tree == "kept" {
		rows, err := v.l.q.IntegrityProjectEventsByID(v.ctx, v.l.db, db.IntegrityProjectEventsByIDParams{Ids: ids, Lo: lo, Hi: hi})
		if err != nil {
			return nil, err
		}
		for i := range rows {
			e := projectEvent(&rows[i])
			out[e.ID] = &e
		}
		return out, nil
	}
	rows, err := v.l.q.IntegrityUserEventsByID(v.ctx, v.l.db, db.IntegrityUserEventsByIDParams{Ids: ids, Lo: lo, Hi: hi})
	if err != nil {
		return nil, err
	}
	for i := range rows {
		r := &rows[i]
		e := userEvent(&db.UserEvent{ID: r.ID, Time: r.Time, Tag: r.Tag, UserID: r.UserID, ActorID: r.ActorID, AuthMethod: r.AuthMethod,
			TokenID: r.TokenID, ActorTwoFactor: r.ActorTwoFactor, Ip: r.Ip, UserAgent: r.UserAgent, Location: r.Location,
			Description: r.Description, Additional: r.Additional})
		out[e.ID] = &e
	}
	// A user event moved out of the month (its time changed) is in
	// another partition, still found by id.
	return out, nil
}

// leaf checks one leaf against its event.
func (v *verifier) leaf(tree string, lf *db.IntegrityLeafe, e *Event, stored tlog.Hash) {
	change, changed := v.changes[lf.EventID]
	accepted := changed && change.ErasureDone
	if changed {
		v.rep.Erased++
	}
	if e == nil {
		if accepted && change.Kind == "deleted" {
			return
		}
		v.find(Finding{Kind: FindingMissing, EventID: lf.EventID, Tree: tree, Detail: "deleted outside an erasure or a retention drop"})
		return
	}
	if got := leafTree(e.Model, e.Time); got != tree {
		v.find(Finding{Kind: FindingMoved, EventID: e.ID, Tree: tree,
			Detail: fmt.Sprintf("appended in %s, now dated %s (in %s)", tree, leafTime(e.Time), got)})
	} else if !e.Time.Equal(lf.EventTime) {
		v.find(Finding{Kind: FindingAltered, EventID: e.ID, Tree: tree,
			Detail: fmt.Sprintf("time: appended as %s, now %s", leafTime(lf.EventTime), leafTime(e.Time))})
	}
	values := slotValues(e)
	for i := range slotCount {
		want := lf.Commitments[i*sha256.Size : (i+1)*sha256.Size]
		s, ok := salt(lf.Salts, i)
		if !ok {
			if !accepted || change.Slots&(1<<i) == 0 {
				v.find(Finding{Kind: FindingAltered, EventID: e.ID, Tree: tree,
					Detail: slotNames[i] + ": its salt was removed outside an erasure"})
			}
			continue
		}
		if c := commitment(i, s, values[i]); !bytes.Equal(c[:], want) {
			v.find(Finding{Kind: FindingAltered, EventID: e.ID, Tree: tree, Detail: slotNames[i] + ": changed outside an erasure"})
		}
	}
	if h := leafHash(e, lf.Commitments); h != stored {
		v.find(Finding{Kind: FindingAltered, EventID: e.ID, Tree: tree,
			Detail: "a field erasure never changes (id, model, time, tag, subject, auth_method, token_id, actor_two_factor) differs from its leaf"})
	}
}

// unappended names the events no leaf holds: marked ones above the low
// mark are pending (not covered yet); the rest were written behind the
// service's back.
func (v *verifier) unappended() error {
	low, err := v.l.q.IntegrityLowMark(v.ctx, v.l.db)
	if err != nil {
		return err
	}
	rows, err := v.l.q.IntegrityUnappended(v.ctx, v.l.db)
	if err != nil {
		return err
	}
	for _, r := range rows {
		e := Event{ID: r.ID, Model: Model(r.Model), Time: r.Time.UTC(), Tag: r.Tag, AuthMethod: r.AuthMethod.String,
			TokenID: r.TokenID.String, ActorTwoFactor: boolPtr(r.ActorTwoFactor)}
		e.setSubject(r.Subject)
		marked := v.l.integrity != nil && v.l.integrity.checkMark(r.Mac, &e)
		switch {
		case marked && r.ID > low:
			v.rep.Pending++
		case marked:
			v.rep.Pending++
			v.l.logger.Warn("integrity: a marked event below the append position is not appended yet", "event", r.ID)
		default:
			detail := "no leaf holds it and its record mark does not check: written behind the service's back"
			if len(r.Mac) == 0 {
				detail = "no leaf holds it and it has no record mark: written behind the service's back"
			}
			v.find(Finding{Kind: FindingInserted, EventID: r.ID, Detail: detail + " (dated " + leafTime(e.Time) + ")"})
		}
	}
	return nil
}
