package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/auditlog/auditlog/service"
)

// HookArgs runs one hook for one recorded event. It carries the event's
// key, not its content: the handler reads the event when it runs, so an
// event erased meanwhile is not acted on, and one scrubbed meanwhile is
// acted on as it is now. An erasure leaves a pending job to run, and
// erases the errors River recorded for the jobs of events that named the
// person, since a handler's error may quote them (service.Log.RunErasure).
// Add no field that holds event content.
type HookArgs struct {
	Hook    string        `json:"hook"`
	Model   service.Model `json:"model"`
	EventID int64         `json:"event_id"`
	Time    time.Time     `json:"time"`
}

// Kind implements river.JobArgs.
func (HookArgs) Kind() string { return "auditlog_hook" }

// InsertOpts: hooks talk to the outside world (mail, chat); River retries
// with backoff.
func (HookArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 8} }

// HookHandler does a hook's work for one event.
type HookHandler func(ctx context.Context, e service.Event) error

// EventReader is what the hook worker needs: *service.Log.
type EventReader interface {
	EventAt(ctx context.Context, model service.Model, at time.Time, id int64) (service.Event, error)
}

// HookWorker works HookArgs by calling the handler registered under the
// hook's name.
type HookWorker struct {
	river.WorkerDefaults[HookArgs]
	Events   EventReader
	Handlers map[string]HookHandler
	Logger   *slog.Logger
	// Observer, when set, counts hook runs (metrics).
	Observer HookObserver
	// AttemptTimeout bounds one run (River cancels its context then);
	// DefaultHookTimeout when zero.
	AttemptTimeout time.Duration
}

// Timeout bounds one run, shorter than River's rescue delay.
func (w *HookWorker) Timeout(*river.Job[HookArgs]) time.Duration {
	if w.AttemptTimeout > 0 {
		return w.AttemptTimeout
	}
	return DefaultHookTimeout
}

// HookObserver is told each hook run's outcome; ops.Metrics implements it.
type HookObserver interface {
	HookRan(hook string, err error)
}

// Work loads the event and runs the hook's handler. An event that no
// longer exists (erased, expired) is skipped; an unknown hook fails the
// job, so the mistake is visible in River.
func (w *HookWorker) Work(ctx context.Context, job *river.Job[HookArgs]) error {
	h, ok := w.Handlers[job.Args.Hook]
	if !ok {
		return river.JobCancel(fmt.Errorf("no handler for hook %q", job.Args.Hook))
	}
	e, err := w.Events.EventAt(ctx, job.Args.Model, job.Args.Time, job.Args.EventID)
	if errors.Is(err, service.ErrNotFound) {
		logger(w.Logger).InfoContext(ctx, "hook skipped: its event is gone", "hook", job.Args.Hook, "event", job.Args.EventID)
		return nil
	}
	if err != nil {
		return err
	}
	err = h(ctx, e)
	if w.Observer != nil {
		w.Observer.HookRan(job.Args.Hook, err)
	}
	return err
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}

// HookNotify is the name of the notification hook NewConfig registers.
const HookNotify = "notify"

// DefaultHooks are the hooks `auditlog serve` and `worker` attach: a
// notification for a sign-in from a new location and for a burst of
// failed sign-ins.
func DefaultHooks() []service.Hook {
	return []service.Hook{
		{Name: HookNotify, Tag: service.TagLoginNewLocation},
		{Name: HookNotify, Tag: service.TagLoginFailureBurst},
	}
}

// Notification is a message for the person an event is about.
type Notification struct {
	UserID  string
	Subject string
	Body    string
	Event   service.Event
}

// Notifier delivers notifications (e-mail, chat, push); the host
// provides one. LogNotifier is the default.
type Notifier interface {
	Notify(ctx context.Context, n Notification) error
}

// LogNotifier writes notifications to a log instead of sending them. It
// logs the user id, the subject and the event id, not the body (which
// may name a place).
type LogNotifier struct{ Logger *slog.Logger }

// Notify implements Notifier.
func (n LogNotifier) Notify(ctx context.Context, note Notification) error {
	logger(n.Logger).InfoContext(ctx, "notification", "user", note.UserID, "subject", note.Subject, "event", note.Event.ID)
	return nil
}

// NotifyHandler turns security events into notifications for the person.
func NotifyHandler(n Notifier) HookHandler {
	return func(ctx context.Context, e service.Event) error {
		if e.Model != service.ModelUser {
			return nil
		}
		note := Notification{UserID: e.UserID, Event: e}
		where := "an unknown place"
		if l := e.Location; l != nil && (l.City != "" || l.Country != "") {
			where = l.City
			if l.Country != "" {
				if where != "" {
					where += ", "
				}
				where += l.Country
			}
		} else if e.IP.IsValid() {
			where = "a new network"
		}
		switch e.Tag {
		case service.TagLoginNewLocation:
			note.Subject = "New sign-in to your account"
			note.Body = fmt.Sprintf("Someone signed in to your account from %s at %s. If it was not you, change your password.",
				where, e.Time.UTC().Format("2006-01-02 15:04 UTC"))
		case service.TagLoginFailureBurst:
			note.Subject = "Failed sign-ins to your account"
			note.Body = fmt.Sprintf("%s at %s. If it was not you, your password may be under attack.",
				e.Description, e.Time.UTC().Format("2006-01-02 15:04 UTC"))
		default:
			note.Subject = e.Description
			note.Body = e.Description
		}
		return n.Notify(ctx, note)
	}
}
