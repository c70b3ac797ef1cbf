package service

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Hook is background work attached to a tag or a tag prefix: when a
// matching event is recorded, the hook's job is enqueued in the event's
// own transaction (Opts.Enqueuer), so a rolled-back event enqueues nothing
// and a committed one always does. jobs.HookWorker runs it.
type Hook struct {
	// Name selects the handler in jobs.HookWorker.
	Name string
	// Tag matches one tag; TagPrefix every tag that starts with it.
	Tag, TagPrefix string
}

func (h *Hook) matches(tag string) bool {
	return (h.Tag != "" && h.Tag == tag) || (h.TagPrefix != "" && strings.HasPrefix(tag, h.TagPrefix))
}

// checkHooks validates Opts.Hooks.
func checkHooks(hooks []Hook) error {
	for i, h := range hooks {
		if h.Name == "" || (h.Tag == "") == (h.TagPrefix == "") {
			return fmt.Errorf("hook %d: a hook has a name and exactly one of Tag and TagPrefix", i)
		}
	}
	return nil
}

// reacts reports whether recording an event of tag runs a signal (when
// signals is true: a single event) or a hook; both need the event's
// transaction.
func (l *Log) reacts(model Model, tag string, signals bool) bool {
	if signals && l.signalsOn(model, tag) {
		return true
	}
	for i := range l.hooks {
		if l.hooks[i].matches(tag) {
			return true
		}
	}
	return false
}

func (l *Log) enqueueHooks(ctx context.Context, tx pgx.Tx, e *Event) error {
	for i := range l.hooks {
		if !l.hooks[i].matches(e.Tag) {
			continue
		}
		if l.enqueuer == nil {
			return fmt.Errorf("hook %s: %w", l.hooks[i].Name, ErrNoEnqueuer)
		}
		if err := l.enqueuer.EnqueueHookTx(ctx, tx, l.hooks[i].Name, e); err != nil {
			return fmt.Errorf("hook %s: %w", l.hooks[i].Name, err)
		}
	}
	return nil
}
