package service

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/auditlog/auditlog/internal/strictjson"
)

// EventSource names an imported event in the system it came from.
type EventSource struct {
	Source string
	ID     string
}

// ingestEvent is one event as POST /api/v1/events takes it: the field
// names the read API returns, spelled exactly (names are case-sensitive and
// none may repeat). The service decides from the tag which model the event
// is, and with it which of user_id, project_id, organization_id and
// team_id is the subject; the others must be empty. id, model, description, network and device
// are what the read API adds; they are accepted so a read event can be
// sent back, and ignored (descriptions come from the tag registry).
type ingestEvent struct {
	Tag            string          `json:"tag"`
	Time           json.RawMessage `json:"time"`
	UserID         string          `json:"user_id"`
	ProjectID      string          `json:"project_id"`
	OrganizationID string          `json:"organization_id"`
	TeamID         string          `json:"team_id"`
	ActorID        string          `json:"actor_id"`
	AuthMethod     string          `json:"auth_method"`
	TokenID        string          `json:"token_id"`
	ActorTwoFactor *bool           `json:"actor_two_factor"`
	IP             string          `json:"ip"`
	UserAgent      string          `json:"user_agent"`
	Location       *Location       `json:"location"`
	Additional     json.RawMessage `json:"additional"`

	ID          json.RawMessage `json:"id"`
	Model       json.RawMessage `json:"model"`
	Description json.RawMessage `json:"description"`
	Network     json.RawMessage `json:"network"`
	Device      json.RawMessage `json:"device"`
	// Source and SourceID name the event in the system it was imported
	// from (auditlog import only).
	Source   string `json:"source"`
	SourceID string `json:"source_id"`
}

// ingestFields are the keys an event may have, and locationFields those of
// its location.
var (
	ingestFields = map[string]bool{"tag": true, "time": true, "user_id": true, "project_id": true,
		"organization_id": true, "team_id": true, "actor_id": true,
		"auth_method": true, "token_id": true, "actor_two_factor": true, "ip": true, "user_agent": true, "location": true,
		"additional": true, "id": true, "model": true, "description": true, "network": true, "device": true}
	locationFields = map[string]bool{"country": true, "region": true, "city": true}
	// sourceFields are the keys an imported event may have besides.
	sourceFields = map[string]bool{"source": true, "source_id": true}
)

// DecodeEvent decodes one event as HTTP ingest and import take it (the
// field names of the read API, see ingestEvent), strictly: exact field
// names, no repeated key, valid UTF-8 and no lone surrogate in any string
// (internal/strictjson), which encoding/json would otherwise rewrite to
// U+FFFD. withSource also accepts source and source_id, returned in src.
// field and msg, when msg is not empty, say what is wrong.
func DecodeEvent(raw []byte, withSource bool) (e IngestEvent, src EventSource, field, msg string) {
	err := strictjson.CheckObject(raw, strictjson.Options{Key: func(depth int, parent, key string) error {
		if (depth == 1 && !ingestFields[key] && !(withSource && sourceFields[key])) || (depth == 2 && parent == "location" && !locationFields[key]) {
			return errors.New("unknown field (field names are case-sensitive)")
		}
		return nil
	}})
	var se *strictjson.Error
	if errors.As(err, &se) {
		return e, src, se.Field(), se.Error()
	}
	var in ingestEvent
	if err := json.Unmarshal(raw, &in); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return e, src, strings.SplitN(te.Field, ".", 2)[0], fmt.Sprintf("%s: must be %s, not a JSON %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
		}
		return e, src, "", "malformed JSON: " + err.Error()
	}
	e = IngestEvent{Tag: in.Tag, UserID: in.UserID, ProjectID: in.ProjectID,
		OrganizationID: in.OrganizationID, TeamID: in.TeamID, ActorID: in.ActorID,
		AuthMethod: in.AuthMethod, TokenID: in.TokenID, ActorTwoFactor: in.ActorTwoFactor, IP: in.IP,
		UserAgent: in.UserAgent, Location: in.Location, Additional: in.Additional}
	if string(in.Additional) == "null" {
		e.Additional = nil
	}
	if len(in.Time) > 0 && string(in.Time) != "null" {
		var s string
		if json.Unmarshal(in.Time, &s) != nil {
			return e, src, "time", "time: must be an RFC 3339 time in a string"
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return e, src, "time", fmt.Sprintf("time: %q is not an RFC 3339 time", s)
		}
		e.Time = &t
	}
	src = EventSource{Source: in.Source, ID: in.SourceID}
	return e, src, "", ""
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "bool":
		return "true, false or null"
	case "struct":
		return "an object"
	default:
		return "a " + goKind
	}
}
