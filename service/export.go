package service

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/auditlog/auditlog/db"
)

// ExportPage is how many events an export (ExportSubject, the admin
// console's CSV and JSON) reads per query: an export holds one page in
// memory, whatever the history it streams.
const ExportPage = 1000

// ExportSubject writes, as JSON Lines (one Event per line, every field the
// database holds), everything recorded about or by a person for a subject
// access request (GDPR art. 15): their user events inside the retention
// window, then the project events they acted in, each newest first. It
// reads page by page and streams, so any history fits in constant memory.
// It returns the number of events written.
func (l *Log) ExportSubject(ctx context.Context, userID string, w io.Writer) (int, error) {
	if userID == "" {
		return 0, invalid("user_id", ErrEmptySubject, "the person to export is required")
	}
	if err := checkText("user_id", userID, MaxIDBytes); err != nil {
		return 0, err
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	n := 0
	write := func(events []Event) error {
		for i := range events {
			if err := enc.Encode(&events[i]); err != nil {
				return err
			}
			n++
		}
		return nil
	}
	window := l.windowStart(l.now())
	for after := firstPage; ; {
		rows, err := l.q.UserEventListByUser(ctx, l.db, db.UserEventListByUserParams{
			UserID: userID, MinTime: window, MaxTime: maxTime,
			BeforeTime: after.time, BeforeID: after.id, Max: ExportPage,
		})
		if err != nil {
			return n, unavailable(fmt.Errorf("export %s: %w", userID, err))
		}
		if err := write(mapEvents(rows, userEvent)); err != nil {
			return n, err
		}
		if len(rows) < ExportPage {
			break
		}
		last := rows[len(rows)-1]
		after = cursor{time: last.Time, id: last.ID}
	}
	for after := firstPage; ; {
		rows, err := l.q.ProjectEventListByActor(ctx, l.db, db.ProjectEventListByActorParams{
			ActorID: userID, BeforeTime: after.time, BeforeID: after.id, Max: ExportPage,
		})
		if err != nil {
			return n, unavailable(fmt.Errorf("export %s: %w", userID, err))
		}
		if err := write(mapEvents(rows, projectEvent)); err != nil {
			return n, err
		}
		if len(rows) < ExportPage {
			break
		}
		last := rows[len(rows)-1]
		after = cursor{time: last.Time, id: last.ID}
	}
	return n, bw.Flush()
}
