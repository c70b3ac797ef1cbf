package service

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return "", fmt.Errorf("ingest token %q: %w", name, ErrTokenNameTaken)
	}
	if err != nil {
		return "", fmt.Errorf("ingest token %q: %w", name, err)
	}
	return token, nil
}

// RevokeIngestToken revokes the active token named name at once; a request
// with it is refused from then on. ErrNotFound when there is none.
func (l *Log) RevokeIngestToken(ctx context.Context, name string) error {
	n, err := l.q.IngestTokenRevoke(ctx, l.db, db.IngestTokenRevokeParams{Name: name, RevokedAt: l.now().UTC()})
	if err != nil {
		return err
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
		return nil, err
	}
	out := make([]IngestToken, len(rows))
	for i, r := range rows {
		out[i] = IngestToken{ID: r.ID, Name: r.Name, CreatedAt: r.CreatedAt.UTC(), RevokedAt: utcPtr(r.RevokedAt)}
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
	if errors.Is(err, pgx.ErrNoRows) {
		return IngestToken{}, ErrTokenInvalid
	}
	if err != nil {
		return IngestToken{}, err
	}
	return IngestToken{ID: row.ID, Name: row.Name}, nil
}

// IngestResult is the answer to an ingest request.
type IngestResult struct {
	Recorded      int64 `json:"recorded"`
	UserEvents    int64 `json:"user_events"`
	ProjectEvents int64 `json:"project_events"`
}

// Ingest records ps for token all or nothing, each event in the model its
// tag belongs to (the bulk path: hooks fire, signals do not). With a key
// (the Idempotency-Key header), a request already accepted under the same
// key within IdempotencyKeyTTL records nothing and returns the first
// answer with replayed set; the same key with another body is
// ErrIdempotencyConflict. Two identical requests at once record once: the
// second waits for the first's transaction on the key.
func (l *Log) Ingest(ctx context.Context, token IngestToken, key string, body []byte, ps []EventParams) (res IngestResult, replayed bool, err error) {
	if len(ps) == 0 || len(ps) > MaxIngestEvents {
		return res, false, invalid("events", ErrBatchSize, "send 1 to %d events, not %d", MaxIngestEvents, len(ps))
	}
	if len(key) > maxIdempotencyKey || checkText("idempotency_key", key, maxIdempotencyKey) != nil {
		return res, false, invalid("idempotency_key", ErrTooLong, "at most %d bytes of text", maxIdempotencyKey)
	}
	sum := sha256.Sum256(body)
	now := l.now().UTC()
	err = pgx.BeginFunc(ctx, l.db, func(tx pgx.Tx) error {
		if key != "" {
			_, err := l.q.IngestRequestClaim(ctx, tx, db.IngestRequestClaimParams{
				TokenID: token.ID, Key: key, RequestSha256: sum[:], Now: now, ExpiredBefore: now.Add(-IdempotencyKeyTTL),
			})
			if errors.Is(err, pgx.ErrNoRows) {
				prev, err := l.q.IngestRequestGet(ctx, tx, db.IngestRequestGetParams{TokenID: token.ID, Key: key})
				if err != nil {
					return err
				}
				if !bytes.Equal(prev.RequestSha256, sum[:]) {
					return ErrIdempotencyConflict
				}
				replayed = true
				return json.Unmarshal(prev.Response, &res)
			}
			if err != nil {
				return err
			}
		}
		users, projects, err := l.RecordManyTx(ctx, tx, ps)
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
	if err != nil {
		return IngestResult{}, false, err
	}
	return res, replayed, nil
}

// PruneIngestKeys deletes idempotency keys older than IdempotencyKeyTTL;
// the hourly maintenance job calls it.
func (l *Log) PruneIngestKeys(ctx context.Context) (int64, error) {
	return l.q.IngestRequestPrune(ctx, l.db, l.now().UTC().Add(-IdempotencyKeyTTL))
}

// RecordManyTx records events of both models inside tx, each in the model
// its tag belongs to, all or nothing: a *BatchError names the index in ps
// of the first invalid event. It returns how many user and project events
// were written.
func (l *Log) RecordManyTx(ctx context.Context, tx pgx.Tx, ps []EventParams) (users, projects int64, err error) {
	var userPs, projectPs []EventParams
	var userIdx, projectIdx []int
	for i := range ps {
		if err := checkTag(ps[i].Tag); err != nil {
			return 0, 0, &BatchError{Index: i, Err: err}
		}
		spec, ok := l.registry.Lookup(ps[i].Tag)
		if !ok {
			return 0, 0, &BatchError{Index: i, Err: invalid("tag", ErrUnknownTag, "%q", ps[i].Tag)}
		}
		if spec.Model == ModelUser {
			userPs, userIdx = append(userPs, ps[i]), append(userIdx, i)
		} else {
			projectPs, projectIdx = append(projectPs, ps[i]), append(projectIdx, i)
		}
	}
	remap := func(err error, idx []int) error {
		var be *BatchError
		if errors.As(err, &be) && be.Index < len(idx) {
			return &BatchError{Index: idx[be.Index], Err: be.Err}
		}
		return err
	}
	if users, err = l.recordMany(ctx, tx, ModelUser, userPs); err != nil {
		return 0, 0, remap(err, userIdx)
	}
	if projects, err = l.recordMany(ctx, tx, ModelProject, projectPs); err != nil {
		return 0, 0, remap(err, projectIdx)
	}
	return users, projects, nil
}
