package service

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/auditlog/auditlog/db"
)

// Retention under legal holds: a pass releases the holds whose until has
// passed (release_holds, first), copies the held people's rows out of
// each month it drops in the drop's own transaction (keepHeld, so a
// crash leaves either both or neither), and deletes the held rows no
// open hold covers any more once they are outside the window
// (drop_released, last).

// releaseHolds is the pass's first step: holds whose until has passed
// are released (each an admin:hold:released event, and the erasures they
// blocked resume).
func (m *maintenance) releaseHolds(ctx context.Context) error {
	if m.rep.Planned {
		ids, err := m.l.q.HoldsLapsed(ctx, m.q, m.rep.Now)
		m.rep.HoldsLapsed = ids
		return err
	}
	_, err := m.act(ctx, func(tx pgx.Tx) error {
		lapsed, err := m.l.releaseLapsed(ctx, tx, m.rep.Now)
		m.rep.HoldsLapsed = m.rep.HoldsLapsed[:0]
		for _, h := range lapsed {
			m.rep.HoldsLapsed = append(m.rep.HoldsLapsed, h.ID)
		}
		return err
	})
	return err
}

// dropReleased is the pass's last step: held rows that no open hold
// covers and that are outside the window are deleted with their kept
// leaves, and the drop is logged in retention_log (reason released).
func (m *maintenance) dropReleased(ctx context.Context) error {
	if m.rep.Planned {
		n, err := m.l.q.HeldReleasedCount(ctx, m.q, m.rep.Cutoff)
		m.rep.HeldDropped = n
		return err
	}
	_, err := m.act(ctx, func(tx pgx.Tx) error {
		n, err := m.l.q.HeldReleasedDrop(ctx, tx, m.rep.Cutoff)
		if err != nil || n == 0 {
			return err
		}
		m.rep.HeldDropped = n
		return m.l.q.RetentionLogInsert(ctx, tx, db.RetentionLogInsertParams{
			PartitionName: heldTable, Month: dayOf(m.rep.Cutoff), RowsEstimated: n,
			DroppedAt: m.rep.Now, RetentionSeconds: m.l.retention.Seconds(), Reason: string(DropReleased),
		})
	})
	return err
}

// dayOf is t's date (retention_log.month of a released drop: the cutoff
// it applied).
func dayOf(t time.Time) time.Time {
	y, mo, d := t.UTC().Date()
	return time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
}

// keepHeld copies, inside tx, the rows of the people under an open hold
// from table, about to be dropped, into held_user_events (the month's
// rows only: table may be user_events_default), and keeps the leaves of
// those rows with their inclusion proofs when the month has an integrity
// tree. One query when nobody is held; otherwise O(held rows).
func (m *maintenance) keepHeld(ctx context.Context, tx pgx.Tx, table string, month time.Time) error {
	people, err := m.l.q.HeldPeople(ctx, tx)
	if err != nil || len(people) == 0 {
		return err
	}
	cols, err := m.l.q.UserEventColumns(ctx, tx)
	if err != nil {
		return err
	}
	rows, err := tx.Query(ctx, tableSQL("held_copy", table, map[string]any{"columns": cols}),
		pgx.NamedArgs{"users": people, "month_start": month, "month_end": month.AddDate(0, 1, 0)})
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return fmt.Errorf("copy the held rows: %w", err)
	}
	if len(ids) == 0 {
		return nil
	}
	if err := m.l.keepHeldLeaves(ctx, tx, leafTree(ModelUser, month), ids); err != nil {
		return fmt.Errorf("keep the held rows' leaves: %w", err)
	}
	m.rep.HeldMoved += int64(len(ids))
	return nil
}

// keepHeldLeaves keeps, before tree is sealed and dropped, the leaves of
// the held events ids with each one's record hash, its inclusion proof in
// the tree at its current size (the size the seal records) and the
// checkpoint that signed that head. Which stored
// hashes a proof needs depends only on the sizes, so they are gathered
// first and read in one query per hashPage.
func (l *Log) keepHeldLeaves(ctx context.Context, tx pgx.Tx, tree string, ids []int64) error {
	t, err := l.q.IntegrityTreeLock(ctx, tx, tree)
	if isNoRows(err) {
		return nil // the month has no tree: nothing to keep
	}
	if err != nil {
		return err
	}
	leaves, err := l.q.IntegrityLeavesOfEvents(ctx, tx, db.IntegrityLeavesOfEventsParams{Tree: tree, Ids: ids})
	if err != nil || len(leaves) == 0 {
		return err
	}
	// The seal is the tree's head in the newest checkpoint (sealTree); a
	// tree that checkpoint does not cover whole is not sealed, and the
	// drop fails there.
	latest, err := l.q.IntegrityCheckpointLatest(ctx, tx)
	if isNoRows(err) {
		return nil
	}
	if err != nil {
		return err
	}
	cp, err := parseCheckpointNote(latest.Note)
	if err != nil {
		return err
	}
	if head, ok := cp.Tree(tree); !ok || head.Size != t.Size {
		return nil
	}
	need := map[int64]bool{}
	gather := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		for _, x := range idx {
			need[x] = true
		}
		return make([]tlog.Hash, len(idx)), nil
	})
	for i := range leaves {
		need[tlog.StoredHashIndex(0, leaves[i].N)] = true
		if _, err := tlog.ProveRecord(t.Size, leaves[i].N, gather); err != nil {
			return err
		}
	}
	idx := make([]int64, 0, len(need))
	for x := range need {
		idx = append(idx, x)
	}
	slices.Sort(idx)
	mem, err := l.storedHashes(ctx, tx, tree, idx)
	if err != nil {
		return err
	}
	kept := make([]db.IntegrityHeldLeafInsertParams, len(leaves))
	for i := range leaves {
		lf := &leaves[i]
		proof, err := tlog.ProveRecord(t.Size, lf.N, mem)
		if err != nil {
			return err
		}
		record, err := mem.ReadHashes([]int64{tlog.StoredHashIndex(0, lf.N)})
		if err != nil {
			return err
		}
		kept[i] = db.IntegrityHeldLeafInsertParams{EventID: lf.EventID, Tree: tree, N: lf.N, EventTime: lf.EventTime,
			Model: lf.Model, Commitments: lf.Commitments, Salts: lf.Salts, Hash: record[0][:], Proof: joinHashes(proof), Checkpoint: latest.ID}
	}
	_, err = l.q.IntegrityHeldLeafInsert(ctx, tx, kept)
	return err
}

func joinHashes(hs []tlog.Hash) []byte {
	out := make([]byte, 0, len(hs)*tlog.HashSize)
	for _, h := range hs {
		out = append(out, h[:]...)
	}
	return out
}

func splitHashes(b []byte) ([]tlog.Hash, bool) {
	if len(b)%tlog.HashSize != 0 {
		return nil, false
	}
	out := make([]tlog.Hash, len(b)/tlog.HashSize)
	for i := range out {
		copy(out[i][:], b[i*tlog.HashSize:])
	}
	return out, true
}
