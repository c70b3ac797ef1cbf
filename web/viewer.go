package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/auditlog/auditlog/service"
)

// Viewer is who is looking at events: a signed-in user, the projects they
// maintain, the organizations they own, and whether they are an
// administrator. The zero Viewer is the anonymous public.
type Viewer struct {
	UserID    string   `json:"sub,omitempty"`
	Maintains []string `json:"mnt,omitempty"`
	// Owns lists organization ids: an owner sees the organization's and
	// its teams' histories as maintainers see a project's.
	Owns  []string `json:"own,omitempty"`
	Admin bool     `json:"adm,omitempty"`
}

// Anonymous reports whether v is nobody signed in.
func (v *Viewer) Anonymous() bool { return v == nil || v.UserID == "" }

// MaintainerOf reports whether v maintains project (admins count as
// maintainers of every project).
func (v *Viewer) MaintainerOf(project string) bool {
	return v != nil && !v.Anonymous() && (v.Admin || slices.Contains(v.Maintains, project))
}

// OwnerOf reports whether v owns organization org (admins count as owners
// of every organization).
func (v *Viewer) OwnerOf(org string) bool {
	return v != nil && !v.Anonymous() && (v.Admin || slices.Contains(v.Owns, org))
}

// Manages reports whether v sees the history of the kept-forever subject
// id of model as its maintainers do: a project's maintainers, an
// organization's owners, and for a team ("ORG/TEAM") its organization's
// owners.
func (v *Viewer) Manages(model service.Model, id string) bool {
	switch model {
	case service.ModelProject:
		return v.MaintainerOf(id)
	case service.ModelOrganization:
		return v.OwnerOf(id)
	case service.ModelTeam:
		org, _, ok := service.SplitTeamSubject(id)
		return ok && v.OwnerOf(org)
	}
	return false
}

// Viewer token errors.
var (
	// ErrTokenInvalid: the token is malformed, of another kind, or its
	// signature does not match (tampered, or signed under another secret).
	ErrTokenInvalid = errors.New("invalid token")
	// ErrTokenExpired: the token was valid but its expiry has passed.
	ErrTokenExpired = errors.New("token expired")
)

// MinSecretBytes is the shortest secret viewer tokens are signed under.
const MinSecretBytes = 16

const viewerTokenPrefix = "alv1."

// tokenEncoding is how viewer tokens spell bytes: base64url without
// padding, decoded strictly (one spelling for each value).
var tokenEncoding = base64.RawURLEncoding.Strict()

// viewerClaims is the signed payload of a viewer token.
type viewerClaims struct {
	Kind string `json:"k"`
	Viewer
	Expires int64 `json:"exp"`
}

// MintViewerToken returns a token that identifies v until now+ttl, signed
// with HMAC-SHA256 under secret: "alv1." + base64url(JSON claims) + "." +
// base64url(MAC). The claims are readable by whoever holds the token (they
// are not encrypted) and cannot be changed without the secret. An id the
// service would not store is a *service.ValidationError.
func MintViewerToken(secret []byte, v Viewer, now time.Time, ttl time.Duration) (string, error) {
	if len(secret) < MinSecretBytes {
		return "", fmt.Errorf("mint token: the secret must be at least %d bytes", MinSecretBytes)
	}
	if v.UserID == "" {
		return "", invalid("user_id", service.ErrEmptySubject, "a token names a user")
	}
	if err := checkID("user_id", v.UserID); err != nil {
		return "", err
	}
	for _, p := range v.Maintains {
		if p == "" {
			return "", invalid("maintains", service.ErrEmptySubject, "an empty project id")
		}
		if err := checkID("maintains", p); err != nil {
			return "", err
		}
	}
	for _, o := range v.Owns {
		if o == "" {
			return "", invalid("owns", service.ErrEmptySubject, "an empty organization id")
		}
		if err := checkID("owns", o); err != nil {
			return "", err
		}
	}
	if ttl <= 0 {
		return "", fmt.Errorf("mint token: ttl %s is not positive", ttl)
	}
	payload, err := json.Marshal(viewerClaims{Kind: "viewer", Viewer: v, Expires: now.Add(ttl).Unix()})
	if err != nil {
		return "", err
	}
	body := viewerTokenPrefix + base64.RawURLEncoding.EncodeToString(payload)
	return body + "." + base64.RawURLEncoding.EncodeToString(tokenMAC(secret, body)), nil
}

func tokenMAC(secret []byte, body string) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(body))
	return mac.Sum(nil)
}

// ParseViewerToken checks token's signature under secret and its expiry
// against now, and returns the Viewer it names. Any defect is
// ErrTokenInvalid; a good token past its expiry is ErrTokenExpired.
func ParseViewerToken(secret []byte, token string, now time.Time) (Viewer, error) {
	if len(secret) < MinSecretBytes || len(token) > 8192 || !strings.HasPrefix(token, viewerTokenPrefix) {
		return Viewer{}, ErrTokenInvalid
	}
	dot := strings.LastIndexByte(token, '.')
	if dot <= len(viewerTokenPrefix) {
		return Viewer{}, ErrTokenInvalid
	}
	body, sig := token[:dot], token[dot+1:]
	// Strict decoding: a signature whose unused low bits differ decodes to
	// the same MAC under the lenient decoder, which would give one session
	// many spellings (and as many CSRF tokens).
	got, err := tokenEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, tokenMAC(secret, body)) {
		return Viewer{}, ErrTokenInvalid
	}
	payload, err := tokenEncoding.DecodeString(body[len(viewerTokenPrefix):])
	if err != nil {
		return Viewer{}, ErrTokenInvalid
	}
	var c viewerClaims
	if err := json.Unmarshal(payload, &c); err != nil || c.Kind != "viewer" || c.UserID == "" {
		return Viewer{}, ErrTokenInvalid
	}
	if !now.Before(time.Unix(c.Expires, 0)) {
		return Viewer{}, ErrTokenExpired
	}
	return c.Viewer, nil
}

// checkID refuses an id the service would not store in an event: over
// service.MaxIDBytes, not valid UTF-8, or holding a NUL byte.
func checkID(field, id string) error {
	if len(id) > service.MaxIDBytes {
		return invalid(field, service.ErrTooLong, "%d bytes, at most %d", len(id), service.MaxIDBytes)
	}
	if !utf8.ValidString(id) {
		return invalid(field, service.ErrInvalidText, "not valid UTF-8")
	}
	if strings.IndexByte(id, 0) >= 0 {
		return invalid(field, service.ErrInvalidText, "holds a NUL byte")
	}
	return nil
}

func invalid(field string, err error, format string, args ...any) *service.ValidationError {
	return &service.ValidationError{Field: field, Err: err, Detail: fmt.Sprintf(format, args...)}
}
