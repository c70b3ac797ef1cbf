package main

import (
	"encoding/json"
	"strings"
	"testing"

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
