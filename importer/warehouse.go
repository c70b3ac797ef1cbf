package importer

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/service"
)

// A Warehouse database (PyPI's) keeps its audit history in one table per
// kind of parent, each row naming its parent by uuid (source_id), its
// request's address by a row of ip_addresses (the address and its
// geoip_info), and the rest in additional. Warehouse reads them as:
//
//   - user_events → user events of the user's username;
//   - project_events, file_events (of the file's project) → project events
//     of the project's name;
//   - organization_events → organization events of its name;
//   - team_events → team events of ORGANIZATION/TEAM.
//
// The actor is the account additional names: submitted_by (a username) or
// submitted_by_user_id (a user's uuid, read as the username); an event
// that names none has no actor. geoip_info's city, region and
// country_code are the location. additional is kept as it is: the
// catalog classes its keys (a key it does not know is shown to admins
// and the person only). Each event's source is "warehouse:TABLE" and its
// source id the row's uuid.

// warehouseTables are the tables read, in the order read, and how each
// finds its subject.
var warehouseTables = []struct {
	table   string
	subject string // the SQL naming the subject, over the event e
	joins   string
	field   string // the IngestEvent subject it fills
}{
	{"user_events", "u.username::text", "JOIN users u ON u.id = e.source_id", "user_id"},
	{"project_events", "p.name", "JOIN projects p ON p.id = e.source_id", "project_id"},
	{"file_events", "p.name", "JOIN release_files f ON f.id = e.source_id JOIN releases r ON r.id = f.release_id JOIN projects p ON p.id = r.project_id", "project_id"},
	{"organization_events", "o.name", "JOIN organizations o ON o.id = e.source_id", "organization_id"},
	{"team_events", "o.name || '/' || t.name", "JOIN teams t ON t.id = e.source_id JOIN organizations o ON o.id = t.organization_id", "team_id"},
}

func warehouseQuery(table, subject, joins string) string {
	return fmt.Sprintf(`SELECT e.id::text, e.tag, e.time, e.additional, host(ip.ip_address), ip.geoip_info, %s,
	COALESCE(e.additional->>'submitted_by', su.username::text)
FROM %s e %s
LEFT JOIN ip_addresses ip ON ip.id = e.ip_address_id
LEFT JOIN users su ON su.id::text = e.additional->>'submitted_by_user_id'
ORDER BY e.id
OFFSET $1`, subject, table, joins)
}

// Warehouse imports the audit history of the Warehouse database at dsn
// (read only: one REPEATABLE READ transaction, so the counts are of one
// snapshot). The run's position is the rows read, tables in the order of
// warehouseTables and each by id; a killed run resumes there.
func Warehouse(ctx context.Context, log *service.Log, dsn string, opts Options) (*Result, error) {
	opts.defaults()
	src, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("warehouse: %w", err)
	}
	defer src.Close()
	tx, err := src.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("warehouse: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	sizes := make([]int64, len(warehouseTables))
	var total int64
	for i, t := range warehouseTables {
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+t.table).Scan(&sizes[i]); err != nil {
			return nil, fmt.Errorf("warehouse: count %s: %w", t.table, err)
		}
		total += sizes[i]
	}
	if opts.Total != nil {
		opts.Total(total)
	}
	// Batches are prepared as the writer takes them: the snapshot's one
	// connection reads rows no faster than a batch is written.
	return importRun(ctx, log, opts, "rows", func(skip int64, _ func([]service.ImportEvent) *service.PreparedImport, each func(*batch) error) error {
		var pos int64
		for i, t := range warehouseTables {
			if skip >= pos+sizes[i] {
				pos += sizes[i]
				continue
			}
			offset := max(skip-pos, 0)
			if err := readWarehouseTable(ctx, tx, i, pos+offset, offset, opts, each); err != nil {
				return fmt.Errorf("warehouse %s: %w", t.table, err)
			}
			pos += sizes[i]
		}
		return nil
	})
}

// readWarehouseTable reads warehouseTables[i] from row offset on (start is
// that row's position in the whole run) in batches of opts.Batch.
func readWarehouseTable(ctx context.Context, tx pgx.Tx, i int, start, offset int64, opts Options, each func(*batch) error) error {
	t := warehouseTables[i]
	rows, err := tx.Query(ctx, warehouseQuery(t.table, t.subject, t.joins), offset)
	if err != nil {
		return err
	}
	defer rows.Close()
	source := "warehouse:" + t.table
	b := &batch{start: start, end: start}
	flush := func() error {
		if b.end == b.start {
			return nil
		}
		if err := each(b); err != nil {
			return err
		}
		if opts.Progress != nil {
			opts.Progress(b.end)
		}
		b = &batch{start: b.end, end: b.end}
		return nil
	}
	for rows.Next() {
		var (
			id, tag, subject  string
			at                time.Time
			additional, geoip []byte
			ip, actor         *string
		)
		if err := rows.Scan(&id, &tag, &at, &additional, &ip, &geoip, &subject, &actor); err != nil {
			return err
		}
		when := at.UTC() // timestamp without time zone, in UTC as Warehouse writes it
		e := service.IngestEvent{Tag: tag, Time: &when, Additional: json.RawMessage(additional)}
		switch t.field {
		case "user_id":
			e.UserID = subject
		case "project_id":
			e.ProjectID = subject
		case "organization_id":
			e.OrganizationID = subject
		default:
			e.TeamID = subject
		}
		if actor != nil {
			e.ActorID = *actor
		}
		if ip != nil {
			e.IP = *ip
		}
		if loc := warehouseLocation(geoip); loc != nil {
			e.Location = loc
		}
		b.events = append(b.events, service.ImportEvent{Source: service.EventSource{Source: source, ID: id}, Event: e})
		b.end++
		if len(b.events) == opts.Batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return flush()
}

// warehouseLocation reads ip_addresses.geoip_info (city, region,
// country_code, as Warehouse's GeoIP lookup stores them); nil when it
// names none of them.
func warehouseLocation(raw []byte) *service.Location {
	if len(raw) == 0 {
		return nil
	}
	var g struct {
		City        *string `json:"city"`
		Region      *string `json:"region"`
		CountryCode *string `json:"country_code"`
	}
	if json.Unmarshal(raw, &g) != nil {
		return nil
	}
	loc := service.Location{}
	if g.City != nil {
		loc.City = *g.City
	}
	if g.Region != nil {
		loc.Region = *g.Region
	}
	if g.CountryCode != nil {
		loc.Country = *g.CountryCode
	}
	if loc == (service.Location{}) {
		return nil
	}
	return &loc
}
