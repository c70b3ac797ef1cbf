package service

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// The integrity log (docs/integrity.md): every event, once a checkpoint
// appends it, is a leaf of a Merkle tree whose erasable values appear only
// as salted commitments; checkpoints are signed notes over every tree's
// size and root. This file holds the key and the canonical encoding; the
// appending and signing are in checkpoint.go, the checks in verify.go.

// IntegrityKey is the log's integrity key, made by GenerateIntegrityKey
// (`auditlog keygen`): an Ed25519 signed-note key that signs checkpoints,
// and an HMAC key that marks every event the service records, so a row
// written behind its back is told apart. Every process that records or
// checkpoints needs it; verifying needs only VerifierKey.
type IntegrityKey struct {
	// Name is the key's name, the checkpoints' origin line.
	Name string
	// VerifierKey is the public key in note's text form
	// ("name+hash+base64"): what `auditlog verify-proof` and outside
	// witnesses check checkpoints with.
	VerifierKey string
	signer      note.Signer
	verifier    note.Verifier
	mac         []byte
	macs        *sync.Pool // of *macState
}

// ErrIntegrityKey: an integrity key file that cannot be read as one.
var ErrIntegrityKey = errors.New("not an auditlog integrity key")

// GenerateIntegrityKey makes a new key named name (a note key name: no
// spaces or '+', such as "audit.example.org") and returns the key file's
// text and the verifier key.
func GenerateIntegrityKey(name string) (file []byte, verifierKey string, err error) {
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err == nil {
		_, err = note.NewSigner(skey) // refuses names GenerateKey lets through
	}
	if err != nil {
		return nil, "", fmt.Errorf("keygen %q: %w", name, err)
	}
	mac := make([]byte, 32)
	if _, err := rand.Read(mac); err != nil {
		return nil, "", err
	}
	text := "# auditlog integrity key: signs checkpoints and marks recorded events. Keep it secret.\n" +
		"# verifier key (public): " + vkey + "\n" +
		skey + "\n" + vkey + "\nmac " + base64.StdEncoding.EncodeToString(mac) + "\n"
	return []byte(text), vkey, nil
}

// ParseIntegrityKey reads a key file's text.
func ParseIntegrityKey(data []byte) (*IntegrityKey, error) {
	var skey, vkey, mac string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "PRIVATE+KEY+"):
			skey = line
		case strings.HasPrefix(line, "mac "):
			mac = strings.TrimPrefix(line, "mac ")
		default:
			vkey = line
		}
	}
	k := &IntegrityKey{VerifierKey: vkey}
	var err error
	if k.signer, err = note.NewSigner(skey); err != nil {
		return nil, fmt.Errorf("%w: the signing key: %v", ErrIntegrityKey, err)
	}
	if k.verifier, err = note.NewVerifier(vkey); err != nil {
		return nil, fmt.Errorf("%w: the verifier key: %v", ErrIntegrityKey, err)
	}
	if k.signer.Name() != k.verifier.Name() || k.signer.KeyHash() != k.verifier.KeyHash() {
		return nil, fmt.Errorf("%w: the signing and verifier keys are not a pair", ErrIntegrityKey)
	}
	if k.mac, err = base64.StdEncoding.DecodeString(mac); err != nil || len(k.mac) != 32 {
		return nil, fmt.Errorf("%w: the mac line is not 32 bytes of base64", ErrIntegrityKey)
	}
	k.Name = k.signer.Name()
	k.macs = &sync.Pool{New: func() any { return newMacState(k.mac) }}
	return k, nil
}

// LoadIntegrityKey reads the key file at path.
func LoadIntegrityKey(path string) (*IntegrityKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParseIntegrityKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// NewCheckpointVerifier parses a verifier key ("name+hash+base64").
func NewCheckpointVerifier(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("%w: the verifier key: %v", ErrIntegrityKey, err)
	}
	return v, nil
}

// Leaf encoding, version 1. See docs/integrity.md.
const (
	leafFormat   = "auditlog/leaf/v1"
	commitFormat = "auditlog/commit/v1"
	macFormat    = "auditlog/mac/v1"
	slotCount    = 7
	saltBytes    = 16
	macNonce     = 8
	macBytes     = 32
)

// slotNames are the erasable values of an event, in leaf order; the
// trigger of migration 11 numbers them the same way.
var slotNames = [slotCount]string{"user_id", "actor_id", "ip", "user_agent", "location", "description", "additional"}

// leafTree is the tree an event's leaf belongs to: its UTC month's for a
// user event, "kept" for the kept-forever models.
func leafTree(model Model, t time.Time) string {
	if model == ModelUser {
		return "user-" + t.UTC().Format("200601")
	}
	return "kept"
}

func writeField(b *bytes.Buffer, name, value string) {
	b.WriteString(name)
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(len(value)))
	b.WriteByte('\n')
	b.WriteString(value)
	b.WriteByte('\n')
}

func leafTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

func boolText(b *bool) string {
	if b == nil {
		return ""
	}
	return strconv.FormatBool(*b)
}

// fixedPart writes the fields of e erasure never changes; withID leaves
// out the id for the MAC (the database assigns it after the MAC is made).
func fixedPart(b *bytes.Buffer, e *Event, withID bool) {
	b.WriteString(leafFormat)
	b.WriteByte('\n')
	if withID {
		writeField(b, "id", strconv.FormatInt(e.ID, 10))
	}
	writeField(b, "model", string(e.Model))
	writeField(b, "time", leafTime(e.Time))
	writeField(b, "tag", e.Tag)
	subject := ""
	if e.Model != ModelUser {
		subject = e.Subject()
	}
	writeField(b, "subject", subject)
	writeField(b, "auth_method", e.AuthMethod)
	writeField(b, "token_id", e.TokenID)
	writeField(b, "actor_two_factor", boolText(e.ActorTwoFactor))
}

// slotValues are e's erasable values as the commitments take them.
func slotValues(e *Event) [slotCount]string {
	var v [slotCount]string
	if e.Model == ModelUser {
		v[0] = e.UserID
	}
	v[1] = e.ActorID
	if e.IP.IsValid() {
		v[2] = e.IP.String()
	}
	v[3] = e.UserAgent
	if e.Location != nil && *e.Location != (Location{}) {
		b, _ := json.Marshal(e.Location)
		v[4] = string(b)
	}
	v[5] = e.Description
	v[6] = canonicalJSON(e.Additional)
	return v
}

// canonicalJSON is a JSON value with object keys sorted, no insignificant
// space, numbers as written and strings escaped as encoding/json does
// without HTML escaping; "" for none, the text itself when it does not
// parse.
func canonicalJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return string(raw)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return string(raw)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// commitment is SHA-256 over the format, the slot's name, its salt and
// its value.
func commitment(slot int, salt []byte, value string) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(commitFormat + "\n" + slotNames[slot] + "\n"))
	h.Write(salt)
	h.Write([]byte(value))
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// newSalts returns slotCount fresh salts.
func newSalts() []byte {
	s := make([]byte, slotCount*saltBytes)
	_, _ = rand.Read(s)
	return s
}

// salt returns slot's salt in salts; ok is false when erasure zeroed it.
func salt(salts []byte, slot int) ([]byte, bool) {
	s := salts[slot*saltBytes : (slot+1)*saltBytes]
	for _, c := range s {
		if c != 0 {
			return s, true
		}
	}
	return s, false
}

// commitments computes every slot's commitment of e under salts.
func commitments(e *Event, salts []byte) []byte {
	values := slotValues(e)
	out := make([]byte, 0, slotCount*sha256.Size)
	for i := range slotCount {
		s, _ := salt(salts, i)
		c := commitment(i, s, values[i])
		out = append(out, c[:]...)
	}
	return out
}

// leafData is the record the tree hashes (tlog.RecordHash: RFC 6962's
// SHA-256 of 0x00 and the data): e's fixed fields and its commitments.
func leafData(e *Event, commits []byte) []byte {
	var b bytes.Buffer
	fixedPart(&b, e, true)
	for i := range slotCount {
		b.WriteString("commit " + slotNames[i] + " " + hex.EncodeToString(commits[i*sha256.Size:(i+1)*sha256.Size]) + "\n")
	}
	return b.Bytes()
}

// leafHash is the tree's hash of e's leaf.
func leafHash(e *Event, commits []byte) tlog.Hash { return tlog.RecordHash(leafData(e, commits)) }

// mac returns e's record mark: a random nonce and an HMAC-SHA256 of the
// nonce and e's fixed fields (the id left out), cut to macBytes.
func (k *IntegrityKey) markEvent(e *Event) []byte {
	out := make([]byte, macNonce, macBytes)
	st := k.macs.Get().(*macState)
	_, _ = st.nonces.Read(out) // a ChaCha8 stream seeded from crypto/rand: no system call per event
	k.macs.Put(st)
	return append(out, k.macOf(out, e)...)
}

func (k *IntegrityKey) macOf(nonce []byte, e *Event) []byte {
	st := k.macs.Get().(*macState)
	defer k.macs.Put(st)
	b := &st.buf
	b.Reset()
	b.WriteString(macFormat + "\n")
	b.Write(nonce)
	b.WriteByte('\n')
	fixedPart(b, e, false)
	if e.Model == ModelUser {
		writeField(b, "user_id", e.UserID)
	}
	st.h.Reset()
	st.h.Write(b.Bytes())
	return st.h.Sum(nil)[:macBytes-macNonce]
}

// macState is one goroutine's HMAC and buffer (the bulk path marks events
// on every core).
type macState struct {
	h      hash.Hash
	buf    bytes.Buffer
	nonces *mrand.ChaCha8
}

func newMacState(key []byte) *macState {
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	return &macState{h: hmac.New(sha256.New, key), nonces: mrand.NewChaCha8(seed)}
}

// checkMark reports whether mark is a record mark of e under k.
func (k *IntegrityKey) checkMark(mark []byte, e *Event) bool {
	if len(mark) != macBytes {
		return false
	}
	return hmac.Equal(mark[macNonce:], k.macOf(mark[:macNonce], e))
}
