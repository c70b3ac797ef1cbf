package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/auditlog/auditlog/db"
)

// ErrProof: a proof that does not check against its checkpoint.
var ErrProof = errors.New("the proof does not check")

// InclusionProof proves that an event, as it is now, is a leaf of a tree
// a signed checkpoint covers: `auditlog prove --event ID` prints it and
// `auditlog verify-proof` checks it with nothing but the verifier key.
// LeafData holds the event's fixed fields and the commitments to its
// erasable values, never those values.
type InclusionProof struct {
	EventID    int64       `json:"event_id"`
	Tree       string      `json:"tree"`
	Index      int64       `json:"index"`
	TreeSize   int64       `json:"tree_size"`
	LeafData   []byte      `json:"leaf_data"`
	Proof      []tlog.Hash `json:"proof"`
	Checkpoint string      `json:"checkpoint"`
}

// ConsistencyProof proves that the trees of checkpoint New extend those
// of checkpoint Old: nothing Old covered was rewritten.
type ConsistencyProof struct {
	Old   string            `json:"old"`
	New   string            `json:"new"`
	Trees []TreeConsistency `json:"trees"`
}

// TreeConsistency is one tree's part of a ConsistencyProof.
type TreeConsistency struct {
	Tree    string      `json:"tree"`
	OldSize int64       `json:"old_size"`
	NewSize int64       `json:"new_size"`
	Proof   []tlog.Hash `json:"proof"`
}

// dbHashes reads a tree's stored hashes.
func (l *Log) dbHashes(ctx context.Context, tree string) tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		hs, err := l.storedHashes(ctx, l.db, tree, idx)
		if err != nil {
			return nil, err
		}
		return hs.ReadHashes(idx)
	})
}

// hashPage is how many stored hashes one query reads at most.
const hashPage = 10_000

// storedHashes reads the stored hashes idx of tree through q, in queries
// of hashPage.
func (l *Log) storedHashes(ctx context.Context, q db.DBTX, tree string, idx []int64) (hashSet, error) {
	hs := hashSet{tree: tree, by: make(map[int64]tlog.Hash, len(idx))}
	return hs, l.readHashesInto(ctx, q, hs, idx)
}

// readHashesInto reads the stored hashes idx of hs's tree through q into
// hs, in queries of hashPage.
func (l *Log) readHashesInto(ctx context.Context, q db.DBTX, hs hashSet, idx []int64) error {
	for lo := 0; lo < len(idx); lo += hashPage {
		rows, err := l.q.IntegrityHashes(ctx, q, db.IntegrityHashesParams{Tree: hs.tree, Idx: idx[lo:min(lo+hashPage, len(idx))]})
		if err != nil {
			return err
		}
		for _, r := range rows {
			var h tlog.Hash
			copy(h[:], r.Hash)
			hs.by[r.Idx] = h
		}
	}
	return nil
}

// hashSet is stored hashes of one tree read into memory; as a
// tlog.HashReader, a hash it lacks is an error naming it.
type hashSet struct {
	tree string
	by   map[int64]tlog.Hash
}

func (s hashSet) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		h, ok := s.by[x]
		if !ok {
			return nil, fmt.Errorf("tree %s: stored hash %d is missing", s.tree, x)
		}
		out[i] = h
	}
	return out, nil
}

// ProveEvent proves event id against the newest checkpoint that covers
// it (ErrNotFound when none does yet, or the event is not appended). The
// leaf is computed from the event as it is now: an event altered since it
// was appended gives a proof that does not check.
func (l *Log) ProveEvent(ctx context.Context, id int64) (*InclusionProof, error) {
	lf, err := l.q.IntegrityLeafByEvent(ctx, l.db, id)
	if isNoRows(err) {
		return l.proveHeld(ctx, id)
	}
	if err != nil {
		return nil, unavailable(notFound(err, "event %d: no leaf (not appended yet?)", id))
	}
	var e *Event
	if lf.Tree == "kept" {
		rows, err := l.q.IntegrityProjectEventsByID(ctx, l.db, db.IntegrityProjectEventsByIDParams{Ids: []int64{id}, Lo: id, Hi: id})
		if err != nil {
			return nil, unavailable(err)
		}
		if len(rows) == 1 {
			ev := projectEvent(&rows[0])
			e = &ev
		}
	} else {
		rows, err := l.q.IntegrityUserEventsByID(ctx, l.db, db.IntegrityUserEventsByIDParams{Ids: []int64{id}, Lo: id, Hi: id})
		if err != nil {
			return nil, unavailable(err)
		}
		if len(rows) == 1 {
			r := &rows[0]
			ev := userEvent(&db.UserEvent{ID: r.ID, Time: r.Time, Tag: r.Tag, UserID: r.UserID, ActorID: r.ActorID, AuthMethod: r.AuthMethod,
				TokenID: r.TokenID, ActorTwoFactor: r.ActorTwoFactor, Ip: r.Ip, UserAgent: r.UserAgent, Location: r.Location,
				Description: r.Description, Additional: r.Additional})
			e = &ev
		}
	}
	if e == nil {
		return nil, fmt.Errorf("event %d: %w (erased or dropped)", id, ErrNotFound)
	}
	latest, err := l.LatestCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	head, ok := latest.Tree(lf.Tree)
	if !ok || head.Size <= lf.N {
		return nil, fmt.Errorf("event %d: %w: no checkpoint covers it yet", id, ErrNotFound)
	}
	proof, err := tlog.ProveRecord(head.Size, lf.N, l.dbHashes(ctx, lf.Tree))
	if err != nil {
		return nil, unavailable(fmt.Errorf("prove event %d: %w", id, err))
	}
	return &InclusionProof{EventID: id, Tree: lf.Tree, Index: lf.N, TreeSize: head.Size,
		LeafData: leafData(e, liveCommitments(e, lf.Commitments, lf.Salts)), Proof: proof, Checkpoint: latest.Note}, nil
}

// proveHeld proves a held event whose month was sealed: its kept leaf,
// the inclusion proof kept with it, and the checkpoint that signed the
// sealed tree's head. ErrNotFound when no leaf of it is kept.
func (l *Log) proveHeld(ctx context.Context, id int64) (*InclusionProof, error) {
	rows, err := l.q.IntegrityHeldLeaves(ctx, l.db, db.IntegrityHeldLeavesParams{After: id - 1, Max: 1})
	if err != nil {
		return nil, unavailable(err)
	}
	if len(rows) == 0 || rows[0].EventID != id {
		return nil, fmt.Errorf("event %d: %w: no leaf (not appended yet?)", id, ErrNotFound)
	}
	r := &rows[0]
	e := heldLeafEvent(r)
	if e == nil {
		return nil, fmt.Errorf("event %d: %w (erased or dropped)", id, ErrNotFound)
	}
	cp, err := l.q.IntegrityCheckpointGet(ctx, l.db, r.Checkpoint)
	if err != nil {
		return nil, unavailable(notFound(err, "event %d: the checkpoint of its sealed tree", id))
	}
	head, err := parseCheckpointNote(cp.Note)
	if err != nil {
		return nil, err
	}
	h, ok := head.Tree(r.Tree)
	proof, whole := splitHashes(r.Proof)
	if !ok || !whole {
		return nil, fmt.Errorf("event %d: its kept proof does not match checkpoint %d", id, r.Checkpoint)
	}
	return &InclusionProof{EventID: id, Tree: r.Tree, Index: r.N, TreeSize: h.Size,
		LeafData: leafData(e, liveCommitments(e, r.Commitments, r.Salts)), Proof: proof, Checkpoint: cp.Note}, nil
}

// heldLeafEvent is the held event of a kept leaf's row, nil when it is
// gone.
func heldLeafEvent(r *db.IntegrityHeldLeavesRow) *Event {
	if !r.Present {
		return nil
	}
	e := userEvent(&db.UserEvent{ID: r.EventID, Time: *r.Time, Tag: r.Tag.String, UserID: r.UserID.String, ActorID: r.ActorID,
		AuthMethod: r.AuthMethod, TokenID: r.TokenID, ActorTwoFactor: r.ActorTwoFactor, Ip: r.Ip, UserAgent: r.UserAgent,
		Location: r.Location, Description: r.Description.String, Additional: r.Additional})
	return &e
}

// liveCommitments are e's commitments as its values are now: each slot
// whose salt is kept is committed again from the live value, so an
// erasable value changed since the append gives a leaf that is not in the
// tree; a slot erasure zeroed keeps its stored commitment.
func liveCommitments(e *Event, stored, salts []byte) []byte {
	out := slices.Clone(stored)
	values := slotValues(e)
	for i := range slotCount {
		if s, ok := salt(salts, i); ok {
			c := commitment(i, s, values[i])
			copy(out[i*sha256.Size:], c[:])
		}
	}
	return out
}

// VerifyInclusion checks p with nothing but the verifier: its checkpoint's
// signature, that its leaf data names its event, and that the leaf is in
// the tree the checkpoint signs.
func VerifyInclusion(p *InclusionProof, v note.Verifier) error {
	cp, err := OpenCheckpoint([]byte(p.Checkpoint), v)
	if err != nil {
		return err
	}
	head, ok := cp.Tree(p.Tree)
	if !ok || head.Size != p.TreeSize {
		return fmt.Errorf("%w: the checkpoint has no tree %s of %d leaves", ErrProof, p.Tree, p.TreeSize)
	}
	if !bytes.HasPrefix(p.LeafData, []byte(leafFormat+"\nid "+strconv.Itoa(len(strconv.FormatInt(p.EventID, 10)))+"\n"+strconv.FormatInt(p.EventID, 10)+"\n")) {
		return fmt.Errorf("%w: the leaf is not event %d's", ErrProof, p.EventID)
	}
	if err := tlog.CheckRecord(p.Proof, p.TreeSize, head.Root, p.Index, tlog.RecordHash(p.LeafData)); err != nil {
		return fmt.Errorf("%w: event %d is not leaf %d of tree %s as signed: %v", ErrProof, p.EventID, p.Index, p.Tree, err)
	}
	return nil
}

// ProveConsistency proves that checkpoint newID's trees extend those of
// checkpoint oldID (by their ids in integrity_checkpoints).
func (l *Log) ProveConsistency(ctx context.Context, oldID, newID int64) (*ConsistencyProof, error) {
	read := func(id int64) (*Checkpoint, error) {
		row, err := l.q.IntegrityCheckpointGet(ctx, l.db, id)
		if err != nil {
			return nil, unavailable(notFound(err, "checkpoint %d", id))
		}
		return parseCheckpointNote(row.Note)
	}
	oldCP, err := read(oldID)
	if err != nil {
		return nil, err
	}
	newCP, err := read(newID)
	if err != nil {
		return nil, err
	}
	p := &ConsistencyProof{Old: oldCP.Note, New: newCP.Note}
	for _, o := range oldCP.Trees {
		n, ok := newCP.Tree(o.Tree)
		if !ok {
			continue // dropped with its month in between: its seal says what it held
		}
		if n.Size < o.Size {
			return nil, fmt.Errorf("%w: tree %s shrank from %d to %d leaves", ErrProof, o.Tree, o.Size, n.Size)
		}
		tp := TreeConsistency{Tree: o.Tree, OldSize: o.Size, NewSize: n.Size}
		if o.Size > 0 && o.Size < n.Size {
			if tp.Proof, err = tlog.ProveTree(n.Size, o.Size, l.dbHashes(ctx, o.Tree)); err != nil {
				return nil, unavailable(fmt.Errorf("prove %s: %w", o.Tree, err))
			}
		}
		p.Trees = append(p.Trees, tp)
	}
	return p, nil
}

// VerifyConsistency checks p with nothing but the verifier.
func VerifyConsistency(p *ConsistencyProof, v note.Verifier) error {
	oldCP, err := OpenCheckpoint([]byte(p.Old), v)
	if err != nil {
		return err
	}
	newCP, err := OpenCheckpoint([]byte(p.New), v)
	if err != nil {
		return err
	}
	for _, o := range oldCP.Trees {
		n, ok := newCP.Tree(o.Tree)
		if !ok {
			continue
		}
		i := -1
		for k, t := range p.Trees {
			if t.Tree == o.Tree {
				i = k
			}
		}
		if i < 0 || p.Trees[i].OldSize != o.Size || p.Trees[i].NewSize != n.Size {
			return fmt.Errorf("%w: no proof for tree %s from %d to %d leaves", ErrProof, o.Tree, o.Size, n.Size)
		}
		switch {
		case o.Size == n.Size:
			if o.Root != n.Root {
				return fmt.Errorf("%w: tree %s has %d leaves in both but another root", ErrProof, o.Tree, o.Size)
			}
		case o.Size == 0:
		default:
			if err := tlog.CheckTree(p.Trees[i].Proof, n.Size, n.Root, o.Size, o.Root); err != nil {
				return fmt.Errorf("%w: tree %s: %v", ErrProof, o.Tree, err)
			}
		}
	}
	return nil
}
