package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/db"
)

// ErasureBlocked: a legal hold stops the request (ErasureRequest.BlockedBy
// names it); it runs when the last hold on it is released.
const ErasureBlocked ErasureStatus = "blocked"

var (
	// ErrHoldNotOpen: the hold was released already.
	ErrHoldNotOpen = errors.New("the hold is not open")
	// ErrEmptyBy: placing or releasing a hold must name the admin.
	ErrEmptyBy = errors.New("empty admin")
)

// Hold is a legal hold on a person, a project or an organization.
//
// While a hold on a person is open, retention keeps their user events
// (their own and those they acted in): before a month is dropped those
// rows move to held_user_events, where admins see them marked held, until
// the hold is released and they are outside the window. A hold on a
// project or an organization (its teams included) keeps its events as
// they are: they are kept forever anyway, and erasure does not scrub them.
// An erasure a hold stops is blocked until the hold is released.
// Placing and releasing a hold are events (admin:hold:placed,
// admin:hold:released) of the admin who did it; the held person is not
// told. The hold itself is kept forever in legal_holds.
type Hold struct {
	ID        int64     `json:"id"`
	Kind      Model     `json:"kind"` // user, project or organization
	SubjectID string    `json:"subject"`
	Reason    string    `json:"reason"`
	PlacedBy  string    `json:"placed_by"`
	PlacedAt  time.Time `json:"placed_at"`
	// Until is when the hold lapses by itself: the first maintenance pass
	// after it releases the hold (released_by "auditlog: until reached").
	Until      *time.Time `json:"until,omitempty"`
	ReleasedBy string     `json:"released_by,omitempty"`
	ReleasedAt *time.Time `json:"released_at,omitempty"`
}

// Open reports whether the hold still holds.
func (h *Hold) Open() bool { return h.ReleasedAt == nil }

// HoldParams asks for a hold.
type HoldParams struct {
	Kind      Model
	SubjectID string
	Reason    string
	// By is the admin who places it.
	By string
	// Until, when set, is when the hold lapses; it must lie ahead.
	Until *time.Time
}

// heldTable holds the user events legal holds keep past their month.
const heldTable = "held_user_events"

// LapsedBy is released_by of a hold whose Until passed.
const LapsedBy = "auditlog: until reached"

func (l *Log) validateHold(p *HoldParams) error {
	switch p.Kind {
	case ModelUser, ModelProject, ModelOrganization:
	default:
		return invalid("kind", ErrInvalidFilter, "a hold is on a user, a project or an organization, not %q", p.Kind)
	}
	field := p.Kind.SubjectField()
	if p.SubjectID == "" {
		return invalid(field, ErrEmptySubject, "the %s to hold is required", p.Kind)
	}
	if err := checkText(field, p.SubjectID, MaxIDBytes); err != nil {
		return err
	}
	if p.Reason == "" {
		return invalid("reason", ErrEmptyReason, "say why the hold is placed (a case, a request)")
	}
	if err := checkText("reason", p.Reason, MaxReasonBytes); err != nil {
		return err
	}
	if p.By == "" {
		return invalid("by", ErrEmptyBy, "name the admin who places the hold")
	}
	if err := checkText("by", p.By, MaxIDBytes); err != nil {
		return err
	}
	if p.Until != nil && !p.Until.After(l.now()) {
		return invalid("until", ErrInvalidFilter, "%s has passed; a hold's until lies ahead", p.Until.UTC().Format(time.RFC3339))
	}
	return nil
}

// PlaceHold places a hold, records admin:hold:placed and blocks the open
// erasure requests it stops, in one transaction. When the subject already
// has an open hold it returns that one with created false and changes
// nothing.
func (l *Log) PlaceHold(ctx context.Context, p HoldParams) (hold Hold, created bool, err error) {
	if err := l.validateHold(&p); err != nil {
		return Hold{}, false, fmt.Errorf("place hold: %w", err)
	}
	err = pgx.BeginFunc(ctx, l.db, func(tx pgx.Tx) error {
		if p.Kind == ModelUser {
			// An erasure batch of the person either commits before the
			// hold or sees it.
			if err := l.q.HoldPersonLock(ctx, tx, p.SubjectID); err != nil {
				return err
			}
		}
		var until *time.Time
		if p.Until != nil {
			u := p.Until.UTC()
			until = &u
		}
		row, err := l.q.HoldPlace(ctx, tx, db.HoldPlaceParams{
			SubjectKind: string(p.Kind), SubjectID: p.SubjectID, Reason: p.Reason, PlacedBy: p.By,
			PlacedAt: l.now().UTC(), Until: until,
		})
		if isNoRows(err) {
			row, err = l.q.HoldOpenBySubject(ctx, tx, db.HoldOpenBySubjectParams{SubjectKind: string(p.Kind), SubjectID: p.SubjectID})
			hold = legalHold(&row)
			return err
		}
		if err != nil {
			return err
		}
		hold, created = legalHold(&row), true
		add := map[string]any{"hold": hold.ID, "kind": hold.Kind, "subject": hold.SubjectID, "reason": hold.Reason}
		if hold.Until != nil {
			add["until"] = hold.Until.Format(time.RFC3339)
		}
		if err := l.recordHoldEvent(ctx, tx, TagAdminHoldPlaced, p.By, add); err != nil {
			return err
		}
		return l.blockErasures(ctx, tx)
	})
	return hold, created, unavailable(err)
}

// recordHoldEvent records a hold's event of admin by in tx.
func (l *Log) recordHoldEvent(ctx context.Context, tx pgx.Tx, tag, by string, add map[string]any) error {
	raw, err := json.Marshal(add)
	if err != nil {
		return err
	}
	_, err = l.RecordUserTx(ctx, tx, EventParams{Tag: tag, Subject: by, ActorID: by, Additional: raw})
	return err
}

// blockErasures marks blocked every open erasure request an open hold
// stops.
func (l *Log) blockErasures(ctx context.Context, tx pgx.Tx) error {
	open, err := l.q.ErasureRequestsOpen(ctx, tx)
	if err != nil {
		return err
	}
	for _, r := range open {
		hold, err := l.q.HoldBlockingErasure(ctx, tx, r.UserID)
		if isNoRows(err) {
			continue
		}
		if err != nil {
			return err
		}
		if _, err := l.q.ErasureRequestBlock(ctx, tx, db.ErasureRequestBlockParams{HoldID: hold, ID: r.ID}); err != nil && !isNoRows(err) {
			return err
		}
	}
	return nil
}

// ReleaseHold releases hold id, records admin:hold:released and puts back
// every erasure request no other open hold stops (pending, its job
// enqueued), in one transaction; it returns the hold and the requests it
// resumed. ErrNotFound when no hold has the id, ErrHoldNotOpen when it
// was released already. The held rows go at the next maintenance pass
// once they are outside the window.
func (l *Log) ReleaseHold(ctx context.Context, id int64, by string) (hold Hold, resumed []ErasureRequest, err error) {
	if by == "" {
		return Hold{}, nil, fmt.Errorf("release hold: %w", invalid("by", ErrEmptyBy, "name the admin who releases the hold"))
	}
	if err := checkText("by", by, MaxIDBytes); err != nil {
		return Hold{}, nil, fmt.Errorf("release hold: %w", err)
	}
	err = pgx.BeginFunc(ctx, l.db, func(tx pgx.Tx) error {
		hold, resumed, err = l.releaseHoldTx(ctx, tx, id, by)
		return err
	})
	return hold, resumed, unavailable(err)
}

func (l *Log) releaseHoldTx(ctx context.Context, tx pgx.Tx, id int64, by string) (Hold, []ErasureRequest, error) {
	row, err := l.q.HoldRelease(ctx, tx, db.HoldReleaseParams{ReleasedBy: by, ReleasedAt: l.now().UTC(), ID: id})
	if isNoRows(err) {
		if _, gerr := l.q.HoldGet(ctx, tx, id); gerr != nil {
			return Hold{}, nil, notFound(gerr, "hold %d", id)
		}
		return Hold{}, nil, fmt.Errorf("release hold %d: %w", id, ErrHoldNotOpen)
	}
	if err != nil {
		return Hold{}, nil, err
	}
	hold := legalHold(&row)
	resumed, err := l.unblockErasures(ctx, tx)
	if err != nil {
		return Hold{}, nil, err
	}
	actor := by
	if by == LapsedBy {
		actor = hold.PlacedBy
	}
	err = l.recordHoldEvent(ctx, tx, TagAdminHoldReleased, actor, map[string]any{
		"hold": hold.ID, "kind": hold.Kind, "subject": hold.SubjectID, "erasures_resumed": len(resumed),
	})
	return hold, resumed, err
}

// unblockErasures moves each blocked request on: blocked by the oldest
// open hold that still stops it, or pending with its job enqueued.
func (l *Log) unblockErasures(ctx context.Context, tx pgx.Tx) ([]ErasureRequest, error) {
	blocked, err := l.q.ErasureRequestsBlocked(ctx, tx)
	if err != nil {
		return nil, err
	}
	var resumed []ErasureRequest
	for _, r := range blocked {
		hold, err := l.q.HoldBlockingErasure(ctx, tx, r.UserID)
		switch {
		case err == nil:
			if _, err := l.q.ErasureRequestBlock(ctx, tx, db.ErasureRequestBlockParams{HoldID: hold, ID: r.ID}); err != nil {
				return nil, err
			}
			continue
		case !isNoRows(err):
			return nil, err
		}
		if l.enqueuer == nil {
			return nil, fmt.Errorf("erasure request %d would resume: %w", r.ID, ErrNoEnqueuer)
		}
		row, err := l.q.ErasureRequestUnblock(ctx, tx, r.ID)
		if err != nil {
			return nil, err
		}
		if err := l.enqueuer.EnqueueErasureTx(ctx, tx, r.ID); err != nil {
			return nil, fmt.Errorf("enqueue erasure %d: %w", r.ID, err)
		}
		resumed = append(resumed, erasureRequest(&row, ""))
	}
	return resumed, nil
}

// releaseLapsed releases the holds whose Until has passed (the maintenance
// pass calls it) and returns them.
func (l *Log) releaseLapsed(ctx context.Context, tx pgx.Tx, now time.Time) ([]Hold, error) {
	ids, err := l.q.HoldsLapsed(ctx, tx, now)
	if err != nil {
		return nil, err
	}
	var out []Hold
	for _, id := range ids {
		h, _, err := l.releaseHoldTx(ctx, tx, id, LapsedBy)
		if err != nil {
			return nil, fmt.Errorf("release lapsed hold %d: %w", id, err)
		}
		out = append(out, h)
	}
	return out, nil
}

// GetHold returns hold id, or ErrNotFound.
func (l *Log) GetHold(ctx context.Context, id int64) (Hold, error) {
	row, err := l.q.HoldGet(ctx, l.db, id)
	if err != nil {
		return Hold{}, notFound(err, "hold %d", id)
	}
	return legalHold(&row), nil
}

// Holds lists holds newest first, at most limit (100 when not positive),
// only the open ones when openOnly.
func (l *Log) Holds(ctx context.Context, openOnly bool, limit int) ([]Hold, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := l.q.HoldList(ctx, l.db, db.HoldListParams{OpenOnly: openOnly, BeforeTime: firstPage.time, BeforeID: firstPage.id,
		Max: int32(min(limit, 10_000))})
	if err != nil {
		return nil, unavailable(fmt.Errorf("holds: %w", err))
	}
	out := make([]Hold, len(rows))
	for i := range rows {
		out[i] = legalHold(&rows[i])
	}
	return out, nil
}

// HeldEvents counts the user events kept by holds past their month.
func (l *Log) HeldEvents(ctx context.Context) (int64, error) {
	n, err := l.q.HeldCount(ctx, l.db)
	return n, unavailable(err)
}

func legalHold(r *db.LegalHold) Hold {
	return Hold{ID: r.ID, Kind: Model(r.SubjectKind), SubjectID: r.SubjectID, Reason: r.Reason, PlacedBy: r.PlacedBy,
		PlacedAt: r.PlacedAt.UTC(), Until: utcPtr(r.Until), ReleasedBy: r.ReleasedBy.String, ReleasedAt: utcPtr(r.ReleasedAt)}
}

// holdBlocking is the open hold that stops erasing user, or 0.
func (l *Log) holdBlocking(ctx context.Context, tx pgx.Tx, user string) (int64, error) {
	id, err := l.q.HoldBlockingErasure(ctx, tx, user)
	if isNoRows(err) {
		return 0, nil
	}
	return id, err
}

// blockedError is an erasure attempt stopped by hold.
type blockedError struct{ hold int64 }

func (e *blockedError) Error() string { return fmt.Sprintf("blocked by legal hold %d", e.hold) }
