package service

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/db"
)

// RecordUserTx records one user event inside tx, so it commits or rolls
// back with the caller's change. Nothing is written when it fails.
func (l *Log) RecordUserTx(ctx context.Context, tx pgx.Tx, p EventParams) (Event, error) {
	return l.recordOne(ctx, tx, ModelUser, &p)
}

// RecordUser records one user event in its own statement.
func (l *Log) RecordUser(ctx context.Context, p EventParams) (Event, error) {
	return l.recordOne(ctx, l.db, ModelUser, &p)
}

// RecordProjectTx records one project event inside tx.
func (l *Log) RecordProjectTx(ctx context.Context, tx pgx.Tx, p EventParams) (Event, error) {
	return l.recordOne(ctx, tx, ModelProject, &p)
}

// RecordProject records one project event in its own statement.
func (l *Log) RecordProject(ctx context.Context, p EventParams) (Event, error) {
	return l.recordOne(ctx, l.db, ModelProject, &p)
}

// RecordOrganizationTx records one organization event inside tx.
func (l *Log) RecordOrganizationTx(ctx context.Context, tx pgx.Tx, p EventParams) (Event, error) {
	return l.recordOne(ctx, tx, ModelOrganization, &p)
}

// RecordOrganization records one organization event in its own statement.
func (l *Log) RecordOrganization(ctx context.Context, p EventParams) (Event, error) {
	return l.recordOne(ctx, l.db, ModelOrganization, &p)
}

// RecordTeamTx records one team event inside tx; p.Subject is
// TeamSubject(org, team).
func (l *Log) RecordTeamTx(ctx context.Context, tx pgx.Tx, p EventParams) (Event, error) {
	return l.recordOne(ctx, tx, ModelTeam, &p)
}

// RecordTeam records one team event in its own statement.
func (l *Log) RecordTeam(ctx context.Context, p EventParams) (Event, error) {
	return l.recordOne(ctx, l.db, ModelTeam, &p)
}

// Record records one event of model in its own statement: RecordUser,
// RecordProject, RecordOrganization or RecordTeam by the model's name.
func (l *Log) Record(ctx context.Context, model Model, p EventParams) (Event, error) {
	return l.recordOne(ctx, l.db, model, &p)
}

// RecordUserManyTx records user events inside tx through COPY. Every event
// is validated first; one invalid event fails the call with a *BatchError
// naming its index, and nothing is written. It returns how many were
// written.
func (l *Log) RecordUserManyTx(ctx context.Context, tx pgx.Tx, ps []EventParams) (int64, error) {
	return l.recordMany(ctx, tx, ModelUser, ps)
}

// RecordUserMany is RecordUserManyTx in its own statement (COPY is atomic).
func (l *Log) RecordUserMany(ctx context.Context, ps []EventParams) (int64, error) {
	return l.recordMany(ctx, l.db, ModelUser, ps)
}

// RecordProjectManyTx records project events inside tx through COPY; see
// RecordUserManyTx.
func (l *Log) RecordProjectManyTx(ctx context.Context, tx pgx.Tx, ps []EventParams) (int64, error) {
	return l.recordMany(ctx, tx, ModelProject, ps)
}

// RecordProjectMany is RecordProjectManyTx in its own statement.
func (l *Log) RecordProjectMany(ctx context.Context, ps []EventParams) (int64, error) {
	return l.recordMany(ctx, l.db, ModelProject, ps)
}

// RecordManyTx records events of every model inside tx, each in the model
// its tag belongs to, all or nothing: a *BatchError names the index in ps
// of the first invalid event. It returns how many user events and how many
// kept-forever events (project, organization and team) were written.
func (l *Log) RecordManyTx(ctx context.Context, tx pgx.Tx, ps []EventParams) (users, projects int64, err error) {
	models := make([]Model, len(ps))
	var first *BatchError
	for i := range ps {
		m, err := l.modelOf(ps[i].Tag)
		if err != nil {
			first = &BatchError{Index: i, Err: err}
			break
		}
		models[i] = m
	}
	users, projects, err = l.recordMixed(ctx, tx, ps, models, first, true)
	return users, projects, unavailable(err)
}

// txer is a database handle that can begin a transaction (or, on a
// pgx.Tx, a savepoint): the pool or the caller's transaction.
type txer interface {
	db.DBTX
	Begin(ctx context.Context) (pgx.Tx, error)
}

func (l *Log) recordOne(ctx context.Context, dbtx txer, model Model, p *EventParams) (Event, error) {
	now := l.now()
	r, err := l.validate(p, model, now)
	if err == nil {
		err = l.checkTime(ctx, dbtx, model, r.time, now)
	}
	if err != nil {
		l.rejected(err)
		return Event{}, unavailable(fmt.Errorf("record %s: %w", p.Tag, err))
	}
	if !l.reacts(model, r.tag, true) {
		id, err := l.insert(ctx, dbtx, model, &r)
		if err != nil {
			return Event{}, unavailable(fmt.Errorf("record %s: %w", p.Tag, l.partitionRace(ctx, err)))
		}
		l.recorded(model, &r)
		return r.event(id, model), nil
	}
	// Signals and hooks run in the event's transaction (a savepoint in
	// the caller's), so they commit or roll back with it.
	var e Event
	err = pgx.BeginFunc(ctx, dbtx, func(tx pgx.Tx) error {
		id, err := l.insert(ctx, tx, model, &r)
		if err != nil {
			return err
		}
		e = r.event(id, model)
		return l.react(ctx, tx, &e, now, true)
	})
	if err != nil {
		return Event{}, unavailable(fmt.Errorf("record %s: %w", p.Tag, l.partitionRace(ctx, err)))
	}
	l.recorded(model, &r)
	return e, nil
}

// recorded tells the observer about one event written.
func (l *Log) recorded(model Model, r *validEvent) {
	l.observer.Recorded(model, r.tag, 1)
	if r.fallback {
		l.observer.DescriptionFallback(r.tag, 1)
	}
}

func (l *Log) insert(ctx context.Context, dbtx db.DBTX, model Model, r *validEvent) (int64, error) {
	if model == ModelUser {
		return l.q.UserEventInsert(ctx, dbtx, r.userParams())
	}
	return l.q.ProjectEventInsert(ctx, dbtx, r.projectParams())
}

func (l *Log) recordMany(ctx context.Context, dbtx txer, model Model, ps []EventParams) (int64, error) {
	if len(ps) == 0 {
		return 0, nil
	}
	b, err := l.prepareMany(ctx, dbtx, model, ps, nil, l.now())
	if err != nil {
		l.rejected(err)
		return 0, unavailable(err)
	}
	n, err := l.writeMany(ctx, dbtx, b)
	if err != nil {
		return 0, unavailable(err)
	}
	b.observe()
	return n, nil
}

// batch is a validated batch of one model, ready to write: COPY
// parameters for the events that fire no hook, and the positions of those
// that do (inserted one by one after the COPY, so their hook jobs are
// enqueued with them).
type batch struct {
	l        *Log
	model    Model
	ps       []EventParams
	now      time.Time
	users    []db.UserEventInsertManyParams
	projects []db.ProjectEventInsertManyParams
	reacting []int
	// fallback[i]: event i's description is a fallback (set by index from
	// the validating goroutines).
	fallback []bool
}

// prepareMany validates ps as events of model, checks that every user
// event's month has a partition, and returns the batch to write. limit,
// when not nil, is an error already known at that position of ps (a batch
// of both models): only events before it matter. The error is a
// *BatchError for the first invalid event in ps's order.
func (l *Log) prepareMany(ctx context.Context, dbtx db.DBTX, model Model, ps []EventParams, limit *BatchError, now time.Time) (*batch, error) {
	b := &batch{l: l, model: model, ps: ps, now: now, fallback: make([]bool, len(ps))}
	for i := range ps {
		if l.reacts(model, ps[i].Tag, false) {
			b.reacting = append(b.reacting, i)
		}
	}
	// Validate straight into the generated COPY parameters: a bulk batch
	// holds one copy of its rows, not two.
	var verr *BatchError
	if model == ModelUser {
		b.users = make([]db.UserEventInsertManyParams, len(ps))
		verr = l.validateMany(ps, model, now, func(i int, r *validEvent) {
			b.users[i] = db.UserEventInsertManyParams(r.userParams())
			b.fallback[i] = r.fallback
		})
		valid := len(ps)
		if first := earliest(verr, limit); first != nil {
			valid = first.Index
		}
		perr, err := l.checkPartitions(ctx, dbtx, b.users[:valid], now)
		if err != nil && !errors.Is(err, ErrPartitionUnavailable) {
			return nil, err
		}
		if verr = earliest(verr, perr); verr == nil && err != nil {
			// ErrPartitionUnavailable is no event's fault, so it is no
			// *BatchError; an invalid event is reported instead of it.
			return nil, err
		}
	} else {
		b.projects = make([]db.ProjectEventInsertManyParams, len(ps))
		verr = l.validateMany(ps, model, now, func(i int, r *validEvent) {
			b.projects[i] = db.ProjectEventInsertManyParams(r.projectParams())
			b.fallback[i] = r.fallback
		})
	}
	if verr != nil {
		return nil, verr
	}
	skip := make(map[int]bool, len(b.reacting))
	for _, i := range b.reacting {
		skip[i] = true
	}
	b.users, b.projects = without(b.users, skip), without(b.projects, skip)
	return b, nil
}

// earliest returns whichever of a and b names the earlier event.
func earliest(a, b *BatchError) *BatchError {
	switch {
	case a == nil:
		return b
	case b == nil || a.Index <= b.Index:
		return a
	default:
		return b
	}
}

// checkPartitions checks, month by month in the order the batch first
// names them, that every month of rows has a partition. A month without
// one (ErrNoPartition) is a *BatchError naming its first event. err is a
// database failure, or ErrPartitionUnavailable when a month's partition is
// not attached right now and no month lacks one for good.
func (l *Log) checkPartitions(ctx context.Context, dbtx db.DBTX, rows []db.UserEventInsertManyParams, now time.Time) (*BatchError, error) {
	seen := make(map[monthKey]bool)
	var unavailable error
	for i := range rows {
		m := monthOf(rows[i].Time)
		if seen[m] {
			continue
		}
		seen[m] = true
		err := l.checkPartition(ctx, dbtx, m, now)
		var ve *ValidationError
		switch {
		case errors.As(err, &ve):
			return &BatchError{Index: i, Err: err}, nil
		case errors.Is(err, ErrPartitionUnavailable):
			if unavailable == nil {
				unavailable = err
			}
		case err != nil:
			return nil, err
		}
	}
	return nil, unavailable
}

// writeMany writes a prepared batch: one COPY, then the events that fire
// hooks one by one, all in one transaction (a savepoint in the caller's).
// The bulk path runs no signal (see SignalOpts).
func (l *Log) writeMany(ctx context.Context, dbtx txer, b *batch) (int64, error) {
	copyRows := func(dbtx db.DBTX) (int64, error) {
		var n int64
		var err error
		if b.model == ModelUser {
			n, err = l.q.UserEventInsertMany(ctx, dbtx, b.users)
		} else {
			n, err = l.q.ProjectEventInsertMany(ctx, dbtx, b.projects)
		}
		if err != nil {
			return 0, fmt.Errorf("record %d %s events: %w", len(b.ps), b.model, l.partitionRace(ctx, err))
		}
		return n, nil
	}
	if len(b.reacting) == 0 {
		return copyRows(dbtx)
	}
	var n int64
	err := pgx.BeginFunc(ctx, dbtx, func(tx pgx.Tx) error {
		copied, err := copyRows(tx)
		if err != nil {
			return err
		}
		for _, i := range b.reacting {
			r, err := l.validate(&b.ps[i], b.model, b.now) // valid: prepareMany checked every event
			if err != nil {
				return &BatchError{Index: i, Err: err}
			}
			id, err := l.insert(ctx, tx, b.model, &r)
			if err != nil {
				return fmt.Errorf("record event %d (%s): %w", i, r.tag, l.partitionRace(ctx, err))
			}
			e := r.event(id, b.model)
			if err := l.react(ctx, tx, &e, b.now, false); err != nil {
				return fmt.Errorf("record event %d (%s): %w", i, r.tag, err)
			}
		}
		n = copied + int64(len(b.reacting))
		return nil
	})
	return n, err
}

// observe tells the observer what the batch recorded.
func (b *batch) observe() {
	byTag, fallbacks := map[string]int{}, map[string]int{}
	for i := range b.ps {
		byTag[b.ps[i].Tag]++
		if b.fallback[i] {
			fallbacks[b.ps[i].Tag]++
		}
	}
	for tag, c := range byTag {
		b.l.observer.Recorded(b.model, tag, c)
	}
	for tag, c := range fallbacks {
		b.l.observer.DescriptionFallback(tag, c)
	}
}

// without returns s less the indexes in skip.
func without[T any](s []T, skip map[int]bool) []T {
	if len(skip) == 0 {
		return s
	}
	out := s[:0:0]
	for i := range s {
		if !skip[i] {
			out = append(out, s[i])
		}
	}
	return out
}

// validateChunk is how many events one goroutine validates at least; a
// batch smaller than two chunks is validated on the caller's goroutine.
const validateChunk = 2048

// validateMany validates ps, handing each valid row to emit with its
// index, and spreads a large batch over the available cores (validation
// then costs a fraction of the COPY it precedes). It returns a *BatchError
// for the lowest invalid index.
func (l *Log) validateMany(ps []EventParams, model Model, now time.Time, emit func(int, *validEvent)) *BatchError {
	validate := func(lo, hi int) *BatchError {
		for i := lo; i < hi; i++ {
			r, err := l.validate(&ps[i], model, now)
			if err == nil {
				err = l.checkTimeBounds(model, r.time, now)
			}
			if err != nil {
				return &BatchError{Index: i, Err: err}
			}
			emit(i, &r)
		}
		return nil
	}
	errs := make([]*BatchError, validateWorkers(len(ps)))
	inChunks(len(ps), len(errs), func(w, lo, hi int) { errs[w] = validate(lo, hi) })
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// validateWorkers is how many goroutines validate n events: one per core,
// each with at least validateChunk of them, and at least one.
func validateWorkers(n int) int {
	return max(1, min(runtime.GOMAXPROCS(0), n/validateChunk))
}

// inChunks splits [0, n) into workers consecutive chunks and runs fn on
// each, chunk w as [lo, hi), on goroutines of their own when workers > 1.
func inChunks(n, workers int, fn func(w, lo, hi int)) {
	if workers <= 1 {
		fn(0, 0, n)
		return
	}
	size := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { fn(w, min(w*size, n), min((w+1)*size, n)) })
	}
	wg.Wait()
}

// checkTime enforces the writable window: user events inside the
// retention window and in a month that has a partition; project events no
// further ahead than MaxFutureSkew.
func (l *Log) checkTime(ctx context.Context, dbtx db.DBTX, model Model, t, now time.Time) error {
	if err := l.checkTimeBounds(model, t, now); err != nil {
		return err
	}
	if model == ModelUser {
		return l.checkPartition(ctx, dbtx, monthOf(t), now)
	}
	return nil
}

func (l *Log) checkTimeBounds(model Model, t, now time.Time) error {
	if model == ModelUser {
		if start := l.windowStart(now); t.Before(start) {
			return invalid("time", ErrTimeTooOld, "%s is before the window start %s", t.Format(time.RFC3339), start.Format(time.RFC3339))
		}
		return nil
	}
	if limit := now.Add(l.skew); t.After(limit) {
		return invalid("time", ErrTimeTooNew, "%s is after %s", t.Format(time.RFC3339), limit.Format(time.RFC3339))
	}
	return nil
}

// modelOf returns the model tag is registered for.
func (l *Log) modelOf(tag string) (Model, error) {
	if err := checkTag(tag); err != nil {
		return "", err
	}
	spec, ok := l.registry.Lookup(tag)
	if !ok {
		return "", invalid("tag", ErrUnknownTag, "%q is not registered", tag)
	}
	return spec.Model, nil
}

// recordMixed validates ps, each event as models[i], and when write is set
// and every event is valid writes them (user events first). first, when
// not nil, is an error already found at that position; only the events
// before it are checked. The error is the *BatchError of the first invalid
// event in ps's order, whichever model it belongs to.
func (l *Log) recordMixed(ctx context.Context, dbtx txer, ps []EventParams, models []Model, first *BatchError, write bool) (users, projects int64, err error) {
	end := len(ps)
	if first != nil {
		end = first.Index
	}
	byModel := make([]struct {
		ps  []EventParams
		idx []int
		b   *batch
	}, len(Models))
	for i := 0; i < end; i++ {
		k := slices.Index(Models, models[i])
		byModel[k].ps, byModel[k].idx = append(byModel[k].ps, ps[i]), append(byModel[k].idx, i)
	}
	now := l.now()
	var unavailable error
	for k, model := range Models {
		if len(byModel[k].ps) == 0 {
			continue
		}
		b, err := l.prepareMany(ctx, dbtx, model, byModel[k].ps, nil, now)
		var be *BatchError
		if errors.As(err, &be) {
			first = earliest(first, &BatchError{Index: byModel[k].idx[be.Index], Err: be.Err})
			continue
		}
		if errors.Is(err, ErrPartitionUnavailable) {
			unavailable = err // an invalid event of the other model goes first
			continue
		}
		if err != nil {
			return 0, 0, err
		}
		byModel[k].b = b
	}
	if first != nil {
		l.rejected(first)
		return 0, 0, first
	}
	if unavailable != nil {
		return 0, 0, unavailable
	}
	if !write {
		return 0, 0, nil
	}
	for k := range byModel {
		if b := byModel[k].b; b != nil {
			n, err := l.writeMany(ctx, dbtx, b)
			if err != nil {
				return 0, 0, err
			}
			if Models[k] == ModelUser {
				users = n
			} else {
				projects += n
			}
		}
	}
	for k := range byModel {
		if b := byModel[k].b; b != nil {
			b.observe()
		}
	}
	return users, projects, nil
}
