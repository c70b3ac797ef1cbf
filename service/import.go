package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/db"
)

// Import: another system's history brought in exactly once.
//
// Every imported event names itself in its source (EventSource: source and
// source_id, both required). ImportBatch claims each (source, source_id)
// in import_keys in the transaction that records the event, so a rerun,
// or a killed run resumed, records nothing twice. Nothing imported is
// refused silently and nothing aborts the rest:
//
//   - a user event older than the retention window is not imported (the
//     window is the promise made to the people in it); it is counted as
//     expired, per tag;
//   - an event the catalog cannot accept (unknown or retired tag, a bad
//     field) is refused and reported with its source id and reason; the
//     rest of the batch is recorded;
//   - an event already imported is counted as a duplicate.
//
// Imported events are quiet: they run no signal (no "new location" for a
// sign-in of last year) and enqueue no hook or notification; live
// recording is unchanged. The run's position and counts are saved with
// each batch (import_runs), and FinishImport records the summary as an
// admin:import event.

// MaxImportRefusals is how many refusals ImportCounts lists; the count
// goes on.
const MaxImportRefusals = 100

// ImportEvent is one event of another system's history: the wire form of
// ingest (its model comes from its tag) and its name in its source.
type ImportEvent struct {
	Source EventSource
	Event  IngestEvent
}

// ImportRefusal is an event the catalog could not accept.
type ImportRefusal struct {
	Source   string `json:"source"`
	SourceID string `json:"source_id"`
	Field    string `json:"field,omitempty"`
	Reason   string `json:"reason"`
}

// ImportCounts is what an import did with the events it read.
type ImportCounts struct {
	Read       int64 `json:"read"`
	Recorded   int64 `json:"recorded"`
	Duplicates int64 `json:"duplicates"`
	// Expired counts the user events older than the retention window, not
	// imported; ExpiredByTag splits them by tag.
	Expired      int64            `json:"expired"`
	ExpiredByTag map[string]int64 `json:"expired_by_tag,omitempty"`
	Refused      int64            `json:"refused"`
	// Refusals lists the first MaxImportRefusals refused events.
	Refusals []ImportRefusal `json:"refusals,omitempty"`
}

// Add adds o's counts to c.
func (c *ImportCounts) Add(o ImportCounts) {
	c.Read += o.Read
	c.Recorded += o.Recorded
	c.Duplicates += o.Duplicates
	c.Expired += o.Expired
	c.Refused += o.Refused
	for tag, n := range o.ExpiredByTag {
		if c.ExpiredByTag == nil {
			c.ExpiredByTag = map[string]int64{}
		}
		c.ExpiredByTag[tag] += n
	}
	for _, r := range o.Refusals {
		if len(c.Refusals) < MaxImportRefusals {
			c.Refusals = append(c.Refusals, r)
		}
	}
}

// Refuse counts one refused event of src, listing it (field, reason)
// among the first MaxImportRefusals.
func (c *ImportCounts) Refuse(src EventSource, field, reason string) {
	c.Refused++
	if len(c.Refusals) < MaxImportRefusals {
		c.Refusals = append(c.Refusals, ImportRefusal{Source: src.Source, SourceID: src.ID, Field: field, Reason: reason})
	}
}

// refuse is Refuse for err, naming the field of a *ValidationError.
func (c *ImportCounts) refuse(src EventSource, err error) {
	field := ""
	var ve *ValidationError
	if errors.As(err, &ve) {
		field = ve.Field
	}
	c.Refuse(src, field, err.Error())
}

func (c *ImportCounts) expire(tag string) {
	c.Expired++
	if c.ExpiredByTag == nil {
		c.ExpiredByTag = map[string]int64{}
	}
	c.ExpiredByTag[tag]++
}

// importable is a batch classified: the events to record, and what was
// counted.
type importable struct {
	counts ImportCounts
	srcs   []EventSource
	ps     []EventParams
	models []Model
	rows   []validEvent
}

// classify sorts events into expired, refused and valid (validated, their
// rows ready), writing nothing.
func (l *Log) classify(events []ImportEvent, now time.Time) *importable {
	im := &importable{counts: ImportCounts{Read: int64(len(events))}}
	start := l.windowStart(now)
	for i := range events {
		ev := &events[i]
		if err := checkSource(ev.Source); err != nil {
			im.counts.refuse(ev.Source, err)
			continue
		}
		model, p, err := l.ingestParams(&ev.Event)
		if err == nil && ev.Event.Time == nil {
			err = invalid("time", ErrInvalidFilter, "an imported event needs its time")
		}
		if err != nil {
			im.counts.refuse(ev.Source, err)
			continue
		}
		if model == ModelUser && p.Time.Before(start) {
			im.counts.expire(p.Tag)
			continue
		}
		im.srcs, im.ps, im.models = append(im.srcs, ev.Source), append(im.ps, p), append(im.models, model)
	}
	// Validate every event (not only up to the first invalid one), over the
	// available cores.
	im.rows = make([]validEvent, len(im.ps))
	errs := make([]error, len(im.ps))
	validate := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			r, err := l.validate(&im.ps[i], im.models[i], now)
			if err == nil {
				err = l.checkTimeBounds(im.models[i], r.time, now)
			}
			im.rows[i], errs[i] = r, err
		}
	}
	inChunks(len(im.ps), validateWorkers(len(im.ps)), func(_, lo, hi int) { validate(lo, hi) })
	keep := 0
	for i := range im.ps {
		if errs[i] != nil {
			im.counts.refuse(im.srcs[i], errs[i])
			continue
		}
		im.srcs[keep], im.ps[keep], im.models[keep], im.rows[keep] = im.srcs[i], im.ps[i], im.models[i], im.rows[i]
		keep++
	}
	im.srcs, im.ps, im.models, im.rows = im.srcs[:keep], im.ps[:keep], im.models[:keep], im.rows[:keep]
	return im
}

func checkSource(s EventSource) error {
	if s.Source == "" {
		return invalid("source", ErrEmptySubject, "an imported event names its source")
	}
	if err := checkText("source", s.Source, MaxIDBytes); err != nil {
		return err
	}
	if s.ID == "" {
		return invalid("source_id", ErrEmptySubject, "an imported event names its id in the source")
	}
	return checkText("source_id", s.ID, MaxIDBytes)
}

// CheckImport counts what importing events would do, writing nothing:
// expired and refused as an import would count them (duplicates are only
// known when writing). auditlog import --strict runs it over the whole
// input before anything is written.
func (l *Log) CheckImport(events []ImportEvent) ImportCounts {
	return l.classify(events, l.now()).counts
}

// ImportRun is a run's saved position and counts.
type ImportRun struct {
	Run      string       `json:"run"`
	Position int64        `json:"position"`
	Counts   ImportCounts `json:"counts"`
	Finished bool         `json:"finished"`
}

// StartImport returns run's saved state to resume from: where a killed
// run stopped, or position 0 for a new run or a rerun of a finished one
// (whose events then count as duplicates).
func (l *Log) StartImport(ctx context.Context, run string) (ImportRun, error) {
	if err := checkText("run", run, MaxIDBytes); err != nil {
		return ImportRun{}, err
	}
	row, err := l.q.ImportRunGet(ctx, l.db, run)
	if isNoRows(err) {
		return ImportRun{Run: run}, nil
	}
	if err != nil {
		return ImportRun{}, unavailable(fmt.Errorf("import run %s: %w", run, err))
	}
	if row.FinishedAt != nil {
		if err := l.q.ImportRunRestart(ctx, l.db, db.ImportRunRestartParams{Now: l.now().UTC(), Run: run}); err != nil {
			return ImportRun{}, unavailable(err)
		}
		return ImportRun{Run: run}, nil
	}
	r := ImportRun{Run: run, Position: row.Position}
	if err := json.Unmarshal(row.Counts, &r.Counts); err != nil {
		return ImportRun{}, fmt.Errorf("import run %s: its counts: %w", run, err)
	}
	return r, nil
}

// PreparedImport is a batch of events classified and validated by
// PrepareImport, ready for ImportBatch.
type PreparedImport struct {
	im *importable
}

// PrepareImport classifies and validates events for ImportBatch, writing
// nothing and reading no database: an importer runs it for the next batch
// while the previous one is written. The retention window is the one of
// now; a batch written long after may find an event expired since, which
// the database refuses.
func (l *Log) PrepareImport(events []ImportEvent) *PreparedImport {
	return &PreparedImport{im: l.classify(events, l.now())}
}

// ImportBatch imports a prepared batch in one transaction and saves the
// run at position (the input read so far) with its counts plus this
// batch's and extra's (what the caller refused before decoding, such as
// malformed lines). It returns this batch's counts; on error nothing of
// the batch is written and the run stays where it was.
func (l *Log) ImportBatch(ctx context.Context, run *ImportRun, position int64, batch *PreparedImport, extra ImportCounts) (ImportCounts, error) {
	var c ImportCounts
	err := pgx.BeginFunc(ctx, l.db, func(tx pgx.Tx) error {
		var err error
		if c, err = l.writeImport(ctx, tx, batch.im); err != nil {
			return err
		}
		c.Add(extra)
		var total ImportCounts // a copy: run changes only when the batch commits
		total.Add(run.Counts)
		total.Add(c)
		if err := l.saveRun(ctx, tx, run.Run, position, &total, nil); err != nil {
			return err
		}
		run.Position, run.Counts = position, total
		return nil
	})
	return c, unavailable(err)
}

func (l *Log) saveRun(ctx context.Context, tx pgx.Tx, run string, position int64, c *ImportCounts, finished *time.Time) error {
	raw, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return l.q.ImportRunSave(ctx, tx, db.ImportRunSaveParams{Run: run, Position: position, Counts: raw, Now: l.now().UTC(), FinishedAt: finished})
}

// FinishImport marks run finished and records its summary as an
// admin:import event of by, in one transaction.
func (l *Log) FinishImport(ctx context.Context, run *ImportRun, by string) error {
	if err := checkText("by", by, MaxIDBytes); err != nil {
		return err
	}
	c := run.Counts
	c.Refusals = nil // the event holds counts; the refusals were printed
	add, err := json.Marshal(struct {
		Run string `json:"run"`
		ImportCounts
	}{run.Run, c})
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, l.db, func(tx pgx.Tx) error {
		now := l.now().UTC()
		if err := l.saveRun(ctx, tx, run.Run, run.Position, &run.Counts, &now); err != nil {
			return err
		}
		_, err := l.RecordUserTx(ctx, tx, EventParams{Tag: TagAdminImport, Subject: by, ActorID: by, Additional: add})
		return err
	})
	return unavailable(err)
}

// ImportBatchTx imports events inside tx: it classifies them, claims the
// (source, source_id) of the valid ones in import_keys, and records those
// not imported before through COPY, quietly (no signal, no hook). It
// returns the batch's counts.
func (l *Log) ImportBatchTx(ctx context.Context, tx pgx.Tx, events []ImportEvent) (ImportCounts, error) {
	return l.writeImport(ctx, tx, l.classify(events, l.now()))
}

// writeImport claims and records a classified batch inside tx.
func (l *Log) writeImport(ctx context.Context, tx pgx.Tx, im *importable) (ImportCounts, error) {
	now := l.now()
	if len(im.ps) == 0 {
		return im.counts, nil
	}
	sources, ids := make([]string, len(im.srcs)), make([]string, len(im.srcs))
	for i, s := range im.srcs {
		sources[i], ids[i] = s.Source, s.ID
	}
	claimed, err := l.q.ImportKeysClaim(ctx, tx, db.ImportKeysClaimParams{Sources: sources, SourceIds: ids})
	if err != nil {
		return im.counts, fmt.Errorf("import: claim source ids: %w", err)
	}
	fresh := make(map[EventSource]bool, len(claimed))
	for _, k := range claimed {
		fresh[EventSource{Source: k.Source, ID: k.SourceID}] = true
	}
	var users []db.UserEventInsertManyParams
	var projects []db.ProjectEventInsertManyParams
	byTag := map[Model]map[string]int{}
	for i, s := range im.srcs {
		if !fresh[s] {
			im.counts.Duplicates++
			continue
		}
		delete(fresh, s) // the same pair twice in a batch is recorded once
		r := &im.rows[i]
		if im.models[i] == ModelUser {
			users = append(users, db.UserEventInsertManyParams(r.userParams()))
		} else {
			projects = append(projects, db.ProjectEventInsertManyParams(r.projectParams()))
		}
		if byTag[im.models[i]] == nil {
			byTag[im.models[i]] = map[string]int{}
		}
		byTag[im.models[i]][r.tag]++
	}
	if len(users) > 0 {
		perr, err := l.checkPartitions(ctx, tx, users, now)
		if err != nil {
			return im.counts, fmt.Errorf("import: %w", err)
		}
		if perr != nil {
			return im.counts, fmt.Errorf("import: %w", perr)
		}
		if _, err := l.q.UserEventInsertMany(ctx, tx, users); err != nil {
			return im.counts, fmt.Errorf("import %d user events: %w", len(users), l.partitionRace(ctx, err))
		}
	}
	if len(projects) > 0 {
		if _, err := l.q.ProjectEventInsertMany(ctx, tx, projects); err != nil {
			return im.counts, fmt.Errorf("import %d events: %w", len(projects), err)
		}
	}
	im.counts.Recorded = int64(len(users) + len(projects))
	for model, tags := range byTag {
		for tag, n := range tags {
			l.observer.Recorded(model, tag, n)
		}
	}
	return im.counts, nil
}
