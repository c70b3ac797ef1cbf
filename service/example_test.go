package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
)

// examplePool opens a fresh migrated database (a host uses its own pool).
func examplePool(ctx context.Context) *pgxpool.Pool {
	name, err := dbtest.CreateDatabase(ctx)
	if err != nil {
		log.Fatal(err)
	}
	cfg, err := dbtest.Config(name)
	if err != nil {
		log.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	return pool
}

// A host records the audit event in the same transaction as the change it
// describes: both commit, or neither does. This is the README's first
// example: in an HTTP handler, r.RemoteAddr (host:port) is taken as the IP
// (the port is not kept).
func ExampleLog_RecordProjectTx() {
	ctx := context.Background()
	pool := examplePool(ctx)
	defer pool.Close()
	audit, err := service.New(pool, nil) // *pgxpool.Pool; Opts sets retention, clock, registry
	if err != nil {
		log.Fatal(err)
	}

	publish := func(w http.ResponseWriter, r *http.Request) {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			// ... the host's own change: publish release 2.0.0 of "fastjson" ...
			_, err := audit.RecordProjectTx(ctx, tx, service.EventParams{
				Tag: "project:release:add", Subject: "fastjson",
				ActorID: "alice", AuthMethod: "api_token", TokenID: "ci-upload",
				IP: r.RemoteAddr, UserAgent: r.UserAgent(),
				Additional: json.RawMessage(`{"version": "2.0.0"}`),
			})
			return err
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}
	req := httptest.NewRequest("POST", "/upload", nil) // RemoteAddr 192.0.2.1:1234
	req.Header.Set("User-Agent", "twine/6.1.0")
	publish(httptest.NewRecorder(), req)

	page, err := audit.ProjectEvents(ctx, "fastjson", service.ListOpts{})
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range page.Events {
		fmt.Printf("%s by %s with token %s from %s: %s\n", e.Tag, e.ActorID, e.TokenID, e.IP, e.Description)
	}
	// Output:
	// project:release:add by alice with token ci-upload from 192.0.2.1: Released version 2.0.0
}

// Adding an event type is one registration; bad input is a typed error.
func ExampleRegistry_Register() {
	ctx := context.Background()
	pool := examplePool(ctx)
	defer pool.Close()

	reg := service.DefaultRegistry()
	reg.MustRegister(service.TagSpec{
		Tag:          "account:phone:add",
		Model:        service.ModelUser,
		Description:  "Added a phone number for {purpose}",
		PersonalKeys: []string{"phone"}, // hidden from the public, removed by erasure
	})
	audit, err := service.New(pool, &service.Opts{Registry: reg})
	if err != nil {
		log.Fatal(err)
	}

	e, err := audit.RecordUser(ctx, service.EventParams{
		Tag:        "account:phone:add",
		Subject:    "alice",
		Additional: json.RawMessage(`{"purpose": "SMS sign-in", "phone": "+49 30 1234567"}`),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(e.Description)

	_, err = audit.RecordUser(ctx, service.EventParams{Tag: "account:phone:add", Subject: "alice", IP: "not-an-ip"})
	var ve *service.ValidationError
	fmt.Println(errors.Is(err, service.ErrInvalidIP), errors.As(err, &ve) && ve.Field == "ip")
	// Output:
	// Added a phone number for SMS sign-in
	// true true
}
