package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

const shopCatalog = `catalog: shop
version: 1
keys:
  geoip_info: personal
tags:
  order:cart:add:
    model: user
    description: "Added {item} to the cart"
    keys:
      item: public
  shop:listing:create:
    model: project
    description: "Listed {title}"
    keys:
      title: public
      seller: person_ref
`

// `catalog` prints the catalog in force and `catalog check` checks a file,
// neither touching a database; every command records and shows by the
// catalog --catalog (or AUDITLOG_CATALOG) names.
func TestCatalogCommands(t *testing.T) {
	t.Parallel()
	nowhere := "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"
	out, _, err := runCLI(nowhere, nil, "catalog")
	require.NoError(t, err)
	require.Contains(t, out, "catalog package-index (builtin:package-index, fingerprint ")
	require.Regexp(t, `(?m)^catalog-wide keys: .*\bemail=personal\b`, out)
	require.Regexp(t, `account:api_token:removed\s+user\s+API token \{macaroon_id\} removed\s+macaroon_id=public reason=personal removed_by=hidden_from_subject\n`, out)
	require.Regexp(t, `team:create\s+team\s+`, out)
	out, _, err = runCLI(nowhere, nil, "catalog", "--catalog", "builtin:generic")
	require.NoError(t, err)
	require.Contains(t, out, "catalog generic (builtin:generic, fingerprint ")

	shop := dbtest.WriteFile(t, "shop.yaml", shopCatalog)
	out, _, err = runCLI(nowhere, map[string]string{"AUDITLOG_CATALOG": shop}, "catalog", "--json")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2+len(service.OwnTags), "the file's tags and auditlog's own")
	var tag catalogTag
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &tag))
	require.Equal(t, "shop:listing:create", tag.Tag)
	require.Equal(t, "person_ref", string(tag.Keys["seller"]))
	require.Equal(t, "personal", string(tag.Keys["geoip_info"]), "catalog-wide classes apply to every tag")

	out, _, err = runCLI(nowhere, nil, "catalog", "check", shop)
	require.NoError(t, err)
	require.Contains(t, out, "catalog shop is good: 2 tags")
	bad := dbtest.WriteFile(t, "bad.yaml", strings.Replace(shopCatalog, "model: project", "model: shop", 1)+"  x:y:z:\n    model: user\n")
	_, stderr, err := runCLI(nowhere, nil, "catalog", "check", bad)
	require.ErrorContains(t, err, "2 mistake(s)")
	require.Equal(t, 1, exitCode(err))
	require.Contains(t, stderr, bad+`:12: tag shop:listing:create: model "shop" is not one of user, project, organization, team`)
	require.Contains(t, stderr, bad+":18: tag x:y:z: no description")
	_, _, err = runCLI(nowhere, nil, "events", "--catalog", bad)
	require.Equal(t, 2, exitCode(err), "a bad catalog is a usage error, found before connecting")
	require.ErrorContains(t, err, "--catalog: "+bad+":12")
	_, _, err = runCLI(nowhere, nil, "catalog", "check")
	require.Equal(t, 2, exitCode(err))
}

// A process whose catalog differs from the one migrate up (or serve)
// recorded warns; one with the same catalog does not. Events follow the
// catalog in force.
func TestCatalogMismatchWarns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	shop := dbtest.WriteFile(t, "shop.yaml", shopCatalog)
	b.mustCLI(t, "migrate", "up", "--catalog", shop)
	_, err := b.cli(t, "record", "--catalog", shop, "--tag", "order:cart:add", "--subject", "u", "--additional", `{"item": "a lamp"}`)
	require.NoError(t, err)
	out := b.mustCLI(t, "events", "--catalog", shop, "--user", "u")
	require.Contains(t, out, "Added a lamp to the cart")
	_, err = b.cli(t, "record", "--tag", "order:cart:add", "--subject", "u", "--additional", `{"item": "x"}`)
	require.ErrorContains(t, err, "not registered", "the package-index catalog has no such tag")

	_, stderr, err := b.cliAll(t, "erase", "--catalog", shop, "--user", "u", "--reason", "asked")
	require.NoError(t, err)
	require.NotContains(t, stderr, "warning: this process runs catalog")
	_, stderr, err = b.cliAll(t, "erase", "--user", "v", "--reason", "asked")
	require.NoError(t, err)
	require.Contains(t, stderr, "warning: this process runs catalog package-index")
	require.Contains(t, stderr, "`auditlog migrate` last ran catalog shop")
}

// serve --catalog FILE records and shows a tag only that file has, by
// its key classes; erase and erasures --verify with the same file honour
// them: the person a person_ref key names is erased from another
// subject's event and its description, and the check says clean.
func TestServeWithCatalogFile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	shop := dbtest.WriteFile(t, "shop.yaml", shopCatalog+`  shop:review:add:
    model: project
    description: "{reviewer|person} reviewed {title}"
    keys:
      title: public
      reviewer: person_ref
      note: personal
`)
	// With a pseudonym secret the actor id goes too (without one it stays:
	// the project history the service keeps).
	withShop := map[string]string{"AUDITLOG_CATALOG": shop, "AUDITLOG_PSEUDONYM_SECRET": "0123456789abcdef0123456789abcdef"}
	_, err := b.cliEnv(t, withShop, "migrate", "up")
	require.NoError(t, err)
	env := b.serveEnv(withShop)
	base, stop := b.startServe(t, env)

	var out strings.Builder
	require.NoError(t, run(b.ctx, []string{"token", "--ingest", "shop"}, env, &out, io.Discard))
	ingest := strings.TrimSpace(out.String())
	post := func(body string) int {
		req, _ := http.NewRequest("POST", base+"/api/v1/events", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+ingest)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusCreated, post(`{"events": [
		{"tag": "shop:review:add", "project_id": "lamp-shop", "actor_id": "olga", "ip": "192.0.2.44",
		 "additional": {"title": "a brass lamp", "reviewer": "olga", "note": "call me on 555-0100", "stars": 5}},
		{"tag": "order:cart:add", "user_id": "olga", "actor_id": "olga", "additional": {"item": "a brass lamp"}}]}`))
	require.Equal(t, http.StatusBadRequest, post(`{"events": [{"tag": "project:release:add", "project_id": "lamp-shop"}]}`),
		"a tag the file does not have is refused")

	page := func(token string) map[string]any {
		req, _ := http.NewRequest("GET", base+"/api/v1/projects/lamp-shop/events", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var got struct {
			Events []map[string]any `json:"events"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
		require.Len(t, got.Events, 1)
		return got.Events[0]
	}
	public := page("")
	require.Equal(t, "someone reviewed a brass lamp", public["description"])
	require.Equal(t, map[string]any{"title": "a brass lamp"}, public["additional"], "public keys only; stars has no class")
	out.Reset()
	require.NoError(t, run(b.ctx, []string{"token", "--user", "root", "--admin"}, env, &out, io.Discard))
	admin := strings.TrimSpace(out.String())
	require.Equal(t, "olga reviewed a brass lamp", page(admin)["description"])

	// Erasure by the file's classes: olga's note (personal) and her name
	// (person_ref, and in the description) go; the review stays.
	stdout, err := b.cliEnv(t, withShop, "erase", "--user", "olga", "--reason", "asked", "--by", "root")
	require.NoError(t, err)
	id := strings.TrimSpace(stdout)
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, _ := b.cliEnv(t, withShop, "erasures", "--user", "olga")
		if strings.Contains(status, " done ") {
			break
		}
		require.True(t, time.Now().Before(deadline), "serve's worker did not carry the erasure out: %s", status)
		time.Sleep(100 * time.Millisecond)
	}
	verified, err := b.cliEnv(t, withShop, "erasures", "--verify", id)
	require.NoError(t, err, verified)
	require.Contains(t, verified, "clean")
	kept := page(admin)
	require.NotContains(t, fmt.Sprint(kept), "olga")
	require.NotContains(t, fmt.Sprint(kept), "555-0100")
	require.NotContains(t, fmt.Sprint(kept), "192.0.2.44")
	require.Contains(t, kept["description"], "reviewed a brass lamp")
	require.NoError(t, stop())
}
