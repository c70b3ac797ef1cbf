package importer

import (
	"bufio"
	"bytes"
	"io"
	"testing"
)

// FuzzJSONLines: any input splits into lines whose bytes add up to the
// input, one per newline (and one for a last line without one), none
// holding a newline, an over-long one marked instead of kept; decoding
// them never panics and accounts for every non-blank line, as an event
// or as a refusal.
func FuzzJSONLines(f *testing.F) {
	f.Add([]byte("{\"source\": \"s\", \"source_id\": \"1\", \"tag\": \"account:login:success\", \"user_id\": \"a\", \"time\": \"2026-11-01T00:00:00Z\"}\n"))
	f.Add([]byte("\n\r\n{}\n{\"tag\": 1}\nnot json"))
	f.Add([]byte("{\"source\": \"s\", \"source\": \"t\"}\r\n{\"location\": {\"country\": \"\\ud800\"}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 16) // small: lines span buffers
		var lines [][]byte
		var numbers []int64
		var total int64
		for {
			line, n, err := readLine(br)
			total += n
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if bytes.IndexByte(line, '\n') >= 0 {
				t.Fatalf("line %q holds a newline", line)
			}
			lines, numbers = append(lines, line), append(numbers, int64(len(lines)+1))
		}
		if total != int64(len(data)) {
			t.Fatalf("lines took %d bytes of %d", total, len(data))
		}
		want := bytes.Count(data, []byte("\n"))
		if len(data) > 0 && data[len(data)-1] != '\n' {
			want++
		}
		if len(lines) != want {
			t.Fatalf("%d lines, want %d", len(lines), want)
		}
		blank := 0
		for _, l := range lines {
			if len(bytes.TrimSpace(l)) == 0 {
				blank++
			}
		}
		b := &batch{lines: lines, numbers: numbers}
		decodeBatch(b, "fuzz")
		if got := len(b.events) + int(b.malformed.Refused); got != len(lines)-blank {
			t.Fatalf("%d events and %d refused of %d lines (%d blank)", len(b.events), b.malformed.Refused, len(lines), blank)
		}
	})
}
