package web_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/web"
)

type ingestAnswer struct {
	status   int
	body     map[string]any
	replayed bool
}

// post sends body to the ingest endpoint with token and key (either may be
// empty) and returns the answer; it fails t when there is none.
func (b *webBundle) post(t *testing.T, token, key, body string) ingestAnswer {
	t.Helper()
	a, err := b.send(token, key, body)
	require.NoError(t, err)
	return a
}

// send is post for a goroutine of its own: it returns what went wrong
// instead of failing the test.
func (b *webBundle) send(token, key, body string) (ingestAnswer, error) {
	req, err := http.NewRequest("POST", b.srv.URL+"/api/v1/events", strings.NewReader(body))
	if err != nil {
		return ingestAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ingestAnswer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return ingestAnswer{}, err
	}
	a := ingestAnswer{status: resp.StatusCode, replayed: resp.Header.Get("Idempotent-Replayed") == "true"}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		return a, fmt.Errorf("%w: %s", err, raw)
	}
	return a, nil
}

func ingestBody(events ...string) string {
	return `{"events": [` + strings.Join(events, ",") + `]}`
}

const (
	evLogin   = `{"tag": "account:login:success", "user_id": "u-%d", "actor_id": "u-%[1]d", "auth_method": "password", "ip": "192.0.2.%[1]d", "user_agent": "curl/8", "location": {"country": "DE"}}`
	evRelease = `{"tag": "project:release:add", "project_id": "p-%d", "actor_id": "ingester", "token_id": "ci", "additional": {"version": "1.%[1]d"}}`
)

func (b *webBundle) ingested(t *testing.T) int {
	t.Helper()
	return dbtest.Count(t, b.pool, "SELECT (SELECT count(*) FROM user_events WHERE user_agent = 'curl/8') + (SELECT count(*) FROM project_events WHERE actor_id = 'ingester')")
}

// A good batch is recorded and shows in the admin console; a batch with
// one bad event records nothing and names the event and field.
func TestIngestAllOrNothing(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	token, err := b.log.CreateIngestToken(b.ctx, "billing-service")
	require.NoError(t, err)

	a := b.post(t, token, "", ingestBody(fmt.Sprintf(evLogin, 1), fmt.Sprintf(evRelease, 2), fmt.Sprintf(evLogin, 3)))
	require.Equal(t, http.StatusCreated, a.status, a.body)
	require.Equal(t, map[string]any{"recorded": 3.0, "user_events": 2.0, "project_events": 1.0}, a.body)
	_, body := b.get(t, "admin", "/api/v1/admin/events?actor=ingester")
	require.Contains(t, body, `"project_id":"p-2"`)

	for _, tc := range []struct {
		events []string
		index  float64
		field  string
	}{
		{[]string{fmt.Sprintf(evLogin, 4), fmt.Sprintf(evLogin, 5), `{"tag": "account:login:success", "user_id": "x", "ip": "999.1.1.1"}`}, 2, "ip"},
		{[]string{fmt.Sprintf(evRelease, 6), `{"tag": "account:login:success", "project_id": "p"}`}, 1, "project_id"},
		{[]string{`{"tag": "no:such:tag", "user_id": "x"}`}, 0, "tag"},
		{[]string{fmt.Sprintf(evLogin, 7), `{"tag": "project:release:add", "project_id": "p", "auth_method": "Pass Word"}`}, 1, "auth_method"},
		{[]string{fmt.Sprintf(evLogin, 7), `{"tag": "project:release:add", "project_id": "p", "additional": [1]}`}, 1, "additional"},
		{[]string{`{"tag": "account:login:success", "user_id": "x", "time": "1999-01-01T00:00:00Z"}`}, 0, "time"},
	} {
		a := b.post(t, token, "", ingestBody(tc.events...))
		require.Equal(t, http.StatusBadRequest, a.status, a.body)
		require.Equal(t, tc.index, a.body["index"], a.body)
		require.Equal(t, tc.field, a.body["field"], a.body)
	}
	require.Equal(t, 3, b.ingested(t), "no bad batch wrote anything")

	for _, body := range []string{`{"events": [`, `{"events": [], "extra": 1}`, `{"evnts": []}`, `[]`, `{"events": []}`, `{"events": [{"tag": "account:login:success", "user_id": "x", "colour": "red"}]}`} {
		a := b.post(t, token, "", body)
		require.Equal(t, http.StatusBadRequest, a.status, "%s: %v", body, a.body)
		require.NotEmpty(t, a.body["error"])
	}
	many := make([]string, 1001)
	for i := range many {
		many[i] = fmt.Sprintf(evLogin, i%250)
	}
	a = b.post(t, token, "", ingestBody(many...))
	require.Equal(t, http.StatusBadRequest, a.status)
	tiny := `{"events": [` + strings.Repeat(`{},`, 2_000_000) + `{}]}` // 6 MB of empty events: refused at the 1,001st
	a = b.post(t, token, "", tiny)
	require.Equal(t, http.StatusBadRequest, a.status)
	require.Contains(t, a.body["error"], "1 to 1000 events")
	require.Equal(t, 3, b.ingested(t))

	req, _ := http.NewRequest("POST", b.srv.URL+"/api/v1/events", bytes.NewReader(make([]byte, web.MaxIngestBytes+1)))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
}

// Unknown, malformed and revoked tokens are refused; a viewer token is
// not an ingest token.
func TestIngestTokens(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	token, err := b.log.CreateIngestToken(b.ctx, "crm")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(token, "alin_"))
	_, err = b.log.CreateIngestToken(b.ctx, "crm")
	require.Error(t, err, "one active token per name")
	body := ingestBody(fmt.Sprintf(evLogin, 1))
	for _, tok := range []string{"", "alin_nope", token + "x", b.tokens["admin"]} {
		require.Equal(t, http.StatusUnauthorized, b.post(t, tok, "", body).status, tok)
	}
	require.Equal(t, http.StatusCreated, b.post(t, token, "", body).status)
	require.NoError(t, b.log.RevokeIngestToken(b.ctx, "crm"))
	require.Equal(t, http.StatusUnauthorized, b.post(t, token, "", body).status)
	require.Equal(t, 1, dbtest.Count(t, b.pool, "SELECT count(*) FROM ingest_tokens WHERE token_hash = sha256($1::bytea)", []byte(token)),
		"the token is kept only as its hash")
	require.Zero(t, dbtest.Count(t, b.pool, "SELECT count(*) FROM ingest_tokens WHERE token_hash = $1::bytea OR name = $2", []byte(token), token),
		"the token itself is stored nowhere")
}

// A retried request (same Idempotency-Key, same body) records nothing
// twice, even when both copies arrive at once; the same key with another
// body is a 422.
func TestIngestIdempotency(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	token, err := b.log.CreateIngestToken(b.ctx, "svc")
	require.NoError(t, err)
	body := ingestBody(fmt.Sprintf(evLogin, 1), fmt.Sprintf(evRelease, 2))

	first := b.post(t, token, "k-1", body)
	require.Equal(t, http.StatusCreated, first.status)
	again := b.post(t, token, "k-1", body)
	require.Equal(t, http.StatusOK, again.status)
	require.True(t, again.replayed)
	require.Equal(t, first.body, again.body)
	require.Equal(t, 2, b.ingested(t))
	require.Equal(t, http.StatusUnprocessableEntity, b.post(t, token, "k-1", ingestBody(fmt.Sprintf(evLogin, 9))).status)

	for round := range 5 {
		key := fmt.Sprintf("race-%d", round)
		body := ingestBody(fmt.Sprintf(evRelease, 100+round))
		var wg sync.WaitGroup
		answers := make([]ingestAnswer, 2)
		errs := make([]error, len(answers))
		start := make(chan struct{})
		for i := range answers {
			wg.Go(func() {
				<-start
				answers[i], errs[i] = b.send(token, key, body)
			})
		}
		close(start)
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err, "round %d", round)
		}
		statuses := []int{answers[0].status, answers[1].status}
		require.ElementsMatch(t, []int{http.StatusCreated, http.StatusOK}, statuses, "round %d", round)
	}
	require.Equal(t, 2+5, b.ingested(t), "each racing pair recorded once")
}
