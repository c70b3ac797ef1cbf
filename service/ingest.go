package service

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/db"
)

// Ingest limits and the keep time of idempotency keys.
const (
	MaxIngestEvents   = 1000
	IdempotencyKeyTTL = 24 * time.Hour
	maxIdempotencyKey = 255
	ingestTokenPrefix = "alin_"
)

var (
	// ErrIdempotencyConflict: an Idempotency-Key was used again with a
	// different body.
	ErrIdempotencyConflict = errors.New("idempotency key reused with a different request")
	// ErrTokenInvalid: the ingest token is unknown, malformed or revoked.
	ErrTokenInvalid = errors.New("invalid token")
	// ErrTokenNameTaken: an active ingest token already has that name.
	ErrTokenNameTaken = errors.New("an active ingest token has that name")
	// ErrBatchSize: an ingest request holds no event or more than
	// MaxIngestEvents.
	ErrBatchSize = errors.New("batch size out of range")
)

// IngestToken is an ingest token's identity (never the token itself).
type IngestToken struct {
	ID        int64      `json:"id"`
	Name      string     `json:"name"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

func hashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// CreateIngestToken makes a token that may post events, named name, and
// returns it: "alin_" and 43 characters of base64url randomness. Only its
// SHA-256 is stored, so it is shown once.
func (l *Log) CreateIngestToken(ctx context.Context, name string) (string, error) {
	if name == "" {
		return "", invalid("name", ErrEmptySubject, "an ingest token needs a name")
	}
	if err := checkText("name", name, MaxIDBytes); err != nil {
		return "", err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	token := ingestTokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	_, err := l.q.IngestTokenCreate(ctx, l.db, db.IngestTokenCreateParams{Name: name, TokenHash: hashToken(token), CreatedAt: l.now().UTC()})
	if hasCode(err, pgerrcode.UniqueViolation) {
		return "", fmt.Errorf("ingest token %q: %w", name, ErrTokenNameTaken)
	}
	if err != nil {
		return "", unavailable(fmt.Errorf("ingest token %q: %w", name, err))
	}
	return token, nil
}

// RevokeIngestToken revokes the active token named name at once; a request
// with it is refused from then on. ErrNotFound when there is none.
func (l *Log) RevokeIngestToken(ctx context.Context, name string) error {
	n, err := l.q.IngestTokenRevoke(ctx, l.db, db.IngestTokenRevokeParams{Name: name, RevokedAt: l.now().UTC()})
	if err != nil {
		return unavailable(err)
	}
	if n == 0 {
		return fmt.Errorf("ingest token %q: %w", name, ErrNotFound)
	}
	return nil
}

// IngestTokens lists every ingest token, revoked ones included.
func (l *Log) IngestTokens(ctx context.Context) ([]IngestToken, error) {
	rows, err := l.q.IngestTokenList(ctx, l.db)
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]IngestToken, len(rows))
	for i, r := range rows {
		out[i] = ingestToken(&r)
	}
	return out, nil
}

// AuthenticateIngest returns the active token token is, or ErrTokenInvalid
// (unknown, malformed or revoked).
func (l *Log) AuthenticateIngest(ctx context.Context, token string) (IngestToken, error) {
	if !strings.HasPrefix(token, ingestTokenPrefix) || len(token) > 128 {
		return IngestToken{}, ErrTokenInvalid
	}
	row, err := l.q.IngestTokenByHash(ctx, l.db, hashToken(token))
	if isNoRows(err) {
		return IngestToken{}, ErrTokenInvalid
	}
	if err != nil {
		return IngestToken{}, unavailable(err)
	}
	return IngestToken{ID: row.ID, Name: row.Name}, nil
}

// IngestResult is the answer to an ingest request, stored with its
// idempotency key for replays. It holds counts only, so a stored answer
// never names anyone (erasure relies on it; a test checks every field is
// a count).
type IngestResult struct {
	Recorded   int64 `json:"recorded"`
	UserEvents int64 `json:"user_events"`
	// ProjectEvents counts the events of every kept-forever subject:
	// projects, organizations and teams.
	ProjectEvents int64 `json:"project_events"`
}

// IngestEvent is one event of a batch of any models, with the read API's
// field names: its tag decides the model, and with it which of UserID,
// ProjectID, OrganizationID and TeamID is its subject (the others must be
// empty).
type IngestEvent struct {
	Tag string
	// Time is when it happened; nil means now. An explicit time must be
	// a real one (not before MinEventTime).
	Time           *time.Time
	UserID         string
	ProjectID      string
	OrganizationID string
	TeamID         string // "ORG/TEAM"
	ActorID        string
	AuthMethod     string
	TokenID        string
	ActorTwoFactor *bool
	IP             string
	UserAgent      string
	Location       *Location
	Additional     json.RawMessage
}

// params maps e to the model its tag belongs to and that model's
// parameters; the error names the field at fault.
func (l *Log) ingestParams(e *IngestEvent) (Model, EventParams, error) {
	p := EventParams{Tag: e.Tag, ActorID: e.ActorID, AuthMethod: e.AuthMethod, TokenID: e.TokenID,
		ActorTwoFactor: e.ActorTwoFactor, IP: e.IP, UserAgent: e.UserAgent, Location: e.Location, Additional: e.Additional}
	model, err := l.modelOf(e.Tag)
	if err != nil {
		return "", p, err
	}
	if e.Time != nil {
		if e.Time.Before(MinEventTime) {
			return "", p, invalid("time", ErrTimeTooOld, "%s is before %s", e.Time.UTC().Format(time.RFC3339), MinEventTime.Format(time.RFC3339))
		}
		p.Time = *e.Time
	}
	field, subject := model.SubjectField(), ""
	for _, s := range [...]struct {
		model Model
		id    string
	}{{ModelUser, e.UserID}, {ModelProject, e.ProjectID}, {ModelOrganization, e.OrganizationID}, {ModelTeam, e.TeamID}} {
		switch {
		case s.model == model:
			subject = s.id
		case s.id != "":
			return "", p, invalid(s.model.SubjectField(), ErrWrongModel, "%s is a %s event: send %s, not %s", e.Tag, model, field, s.model.SubjectField())
		}
	}
	if subject == "" {
		return "", p, invalid(field, ErrEmptySubject, "%s is required", field)
	}
	p.Subject = subject
	return model, p, nil
}

// checkIdempotencyKey accepts "" (no key) or 1 to 255 printable ASCII
// characters, as the Idempotency-Key header carries.
func checkIdempotencyKey(key string) error {
	if len(key) > maxIdempotencyKey {
		return invalid("idempotency_key", ErrTooLong, "%d bytes, at most %d", len(key), maxIdempotencyKey)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c > 0x7e {
			return invalid("idempotency_key", ErrInvalidText, "only printable ASCII characters are allowed (byte %d is 0x%02x)", i, c)
		}
	}
	return nil
}

// Ingest records events for token all or nothing, each in the model its
// tag belongs to (the bulk path: hooks fire, signals do not). A refused
// batch is a *BatchError naming the first invalid event in events' order.
// With a key (the Idempotency-Key header), a request already accepted under
// the same key within IdempotencyKeyTTL records nothing and returns the
// first answer with replayed set; the same key with another body is
// ErrIdempotencyConflict. Two identical requests at once record once: the
// second waits for the first's transaction on the key. A key that an
// erasure rewrote because it named the erased person (RunErasure) still
// replays its request's answer: a retry after the erasure records nothing,
// so the person's events do not come back. The stored answer is the
// IngestResult, counts only: it never holds personal data.
func (l *Log) Ingest(ctx context.Context, token IngestToken, key string, body []byte, events []IngestEvent) (res IngestResult, replayed bool, err error) {
	if len(events) == 0 || len(events) > MaxIngestEvents {
		return res, false, invalid("events", ErrBatchSize, "send 1 to %d events, not %d", MaxIngestEvents, len(events))
	}
	if err := checkIdempotencyKey(key); err != nil {
		return res, false, err
	}
	ps, models, first := l.ingestBatch(events)
	sum := sha256.Sum256(body)
	now := l.now().UTC()
	err = pgx.BeginFunc(ctx, l.db, func(tx pgx.Tx) error {
		if key != "" {
			expired := now.Add(-IdempotencyKeyTTL)
			// replay answers with an earlier request's row.
			replay := func(prevSum, answer []byte) error {
				if !bytes.Equal(prevSum, sum[:]) {
					return ErrIdempotencyConflict
				}
				replayed = true
				return json.Unmarshal(answer, &res)
			}
			_, err := l.q.IngestRequestClaim(ctx, tx, db.IngestRequestClaimParams{
				TokenID: token.ID, Key: key, RequestSha256: sum[:], Now: now, ExpiredBefore: expired,
			})
			if isNoRows(err) {
				prev, err := l.q.IngestRequestGet(ctx, tx, db.IngestRequestGetParams{TokenID: token.ID, Key: key})
				if isNoRows(err) { // erased since the claim saw it
					erased, gerr := l.q.IngestRequestGetLive(ctx, tx, db.IngestRequestGetLiveParams{
						TokenID: token.ID, Key: erasedIdempotencyKey(key), ExpiredBefore: expired,
					})
					prev, err = db.IngestRequestGetRow(erased), gerr
				}
				if err != nil {
					return err
				}
				return replay(prev.RequestSha256, prev.Response)
			}
			if err != nil {
				return err
			}
			// The key is new here, but an erasure may have rewritten an
			// earlier request's key (it named an erased person): that
			// request answers, and this claim is rolled back.
			erased, err := l.q.IngestRequestGetLive(ctx, tx, db.IngestRequestGetLiveParams{
				TokenID: token.ID, Key: erasedIdempotencyKey(key), ExpiredBefore: expired,
			})
			if err == nil {
				if err := replay(erased.RequestSha256, erased.Response); err != nil {
					return err
				}
				return errReplayedErasedKey
			}
			if !isNoRows(err) {
				return err
			}
		}
		users, projects, err := l.recordMixed(ctx, tx, ps, models, first, true)
		if err != nil {
			return err
		}
		res = IngestResult{Recorded: users + projects, UserEvents: users, ProjectEvents: projects}
		if key == "" {
			return nil
		}
		answer, _ := json.Marshal(res)
		return l.q.IngestRequestAnswer(ctx, tx, db.IngestRequestAnswerParams{Response: answer, TokenID: token.ID, Key: key})
	})
	if errors.Is(err, errReplayedErasedKey) {
		return res, true, nil
	}
	if err != nil {
		return IngestResult{}, false, unavailable(err)
	}
	return res, replayed, nil
}

// errReplayedErasedKey rolls back the claim of a key whose earlier
// request's row an erasure rewrote: that row answered.
var errReplayedErasedKey = errors.New("replayed from an erased idempotency key")

// erasedIdempotencyKeyPrefix starts an idempotency key that erasure
// rewrote because it named an erased person.
const erasedIdempotencyKeyPrefix = "erased:sha256:"

// erasedIdempotencyKey is what erasure rewrites key to when it names an
// erased person: the prefix and the hex SHA-256 of key, as the SQL
// function auditlog_erased_key computes it (migration 10).
func erasedIdempotencyKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return erasedIdempotencyKeyPrefix + hex.EncodeToString(h[:])
}

// CheckIngest validates events as Ingest would, writing nothing: nil when
// every event would be recorded, else a *BatchError naming the first
// invalid one. HTTP ingest calls it for the events before one it could not
// decode, so its answer names the first bad event of the body.
func (l *Log) CheckIngest(ctx context.Context, events []IngestEvent) error {
	ps, models, first := l.ingestBatch(events)
	_, _, err := l.recordMixed(ctx, l.db, ps, models, first, false)
	return unavailable(err)
}

func (l *Log) ingestBatch(events []IngestEvent) (ps []EventParams, models []Model, first *BatchError) {
	ps, models = make([]EventParams, len(events)), make([]Model, len(events))
	for i := range events {
		m, p, err := l.ingestParams(&events[i])
		if err != nil {
			return ps, models, &BatchError{Index: i, Err: err}
		}
		ps[i], models[i] = p, m
	}
	return ps, models, nil
}

// PruneIngestKeys deletes idempotency keys older than IdempotencyKeyTTL;
// the hourly maintenance job calls it.
func (l *Log) PruneIngestKeys(ctx context.Context) (int64, error) {
	n, err := l.q.IngestRequestPrune(ctx, l.db, l.now().UTC().Add(-IdempotencyKeyTTL))
	return n, unavailable(err)
}
