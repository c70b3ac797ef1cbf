// Package importer brings an existing service's history into the log,
// exactly once (service.Log.ImportBatch): from JSON Lines in the wire
// form of ingest plus source and source_id (JSONL).
package importer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync"

	"github.com/auditlog/auditlog/service"
)

// Defaults.
const (
	// DefaultBatch is how many events one transaction imports.
	DefaultBatch = 10_000
	// MaxLineBytes bounds one line of JSON Lines; a longer one is refused
	// (counted, with its line number) without being read into memory.
	MaxLineBytes = 1 << 20
	// DefaultBy is the admin an import's summary event names when none is
	// given.
	DefaultBy = "auditlog:import"
)

// ErrStrict: --strict found events the catalog cannot accept; nothing
// was written.
var ErrStrict = errors.New("the input holds events that would be refused; nothing was imported (--strict)")

// Options configures an import.
type Options struct {
	// Run names the run: its position and counts are saved under it, and
	// a run of the same name that was killed resumes where it stopped.
	Run string
	// Source is the source of events whose line names none.
	Source string
	// Batch is how many events one transaction imports; DefaultBatch when
	// zero.
	Batch int
	// Strict checks the whole input first and imports nothing when any
	// event would be refused (ErrStrict; Check holds the counts).
	Strict bool
	// By is the admin the summary event names; DefaultBy when empty.
	By string
	// Progress, when set, is told the input read so far: bytes of JSON
	// Lines, rows of a Warehouse database.
	Progress func(done int64)
	// Total, when set, is told the size of a Warehouse input (rows) once
	// it is known.
	Total func(total int64)
}

// defaults fills in the options left zero.
func (o *Options) defaults() {
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	if o.By == "" {
		o.By = DefaultBy
	}
}

// Result is what an import did.
type Result struct {
	// Run is the run as saved: its position (lines) and counts, the
	// resumed part included.
	Run service.ImportRun
	// Resumed is the position the run resumed from (0 for a new run).
	Resumed int64
	// Check holds the counts of the --strict check when it failed.
	Check *service.ImportCounts
}

// JSONL imports the JSON Lines open returns (opened once, or twice with
// Strict: checked, then imported). Each line is one event: the fields of
// ingest and `events --json`, plus source and source_id; a blank line is
// skipped. Lines are decoded on every core while the previous batch is
// written; batches commit in input order, each with the run's position.
func JSONL(ctx context.Context, log *service.Log, open func() (io.ReadCloser, error), opts Options) (*Result, error) {
	opts.defaults()
	return importRun(ctx, log, opts, "lines", func(skip int64, prepare func([]service.ImportEvent) *service.PreparedImport, each func(*batch) error) error {
		return readBatches(ctx, open, skip, opts, prepare, each)
	})
}

// reader reads an input from position skip on in batches, prepared with
// prepare when it is set, and hands them to each in order.
type reader func(skip int64, prepare func([]service.ImportEvent) *service.PreparedImport, each func(*batch) error) error

// importRun is one import of what read reads, whose positions are unit
// (lines, rows): with opts.Strict a first pass that writes nothing, then
// the run from its saved position, batch by batch, then its summary.
func importRun(ctx context.Context, log *service.Log, opts Options, unit string, read reader) (*Result, error) {
	if opts.Strict {
		var check service.ImportCounts
		err := read(0, nil, func(b *batch) error {
			check.Add(log.CheckImport(b.events))
			check.Add(b.malformed)
			return nil
		})
		if err != nil {
			return nil, err
		}
		if check.Refused > 0 {
			return &Result{Check: &check}, ErrStrict
		}
	}
	run, err := log.StartImport(ctx, opts.Run)
	if err != nil {
		return nil, err
	}
	res := &Result{Resumed: run.Position}
	err = read(run.Position, log.PrepareImport, func(b *batch) error {
		if b.prepared == nil {
			b.prepared = log.PrepareImport(b.events)
		}
		if _, err := log.ImportBatch(ctx, &run, b.end, b.prepared, b.malformed); err != nil {
			return fmt.Errorf("%s %d to %d: %w", unit, b.start+1, b.end, err)
		}
		return nil
	})
	res.Run = run
	if err != nil {
		return res, err
	}
	if err := log.FinishImport(ctx, &run, opts.By); err != nil {
		return res, err
	}
	res.Run = run
	return res, nil
}

// batch is lines [start, end) of the input, decoded.
type batch struct {
	start, end int64
	lines      [][]byte
	numbers    []int64 // each line's number (1-based)
	events     []service.ImportEvent
	prepared   *service.PreparedImport
	// malformed counts the lines that are not an event (refused, with the
	// line number as their source id).
	malformed service.ImportCounts
	decoded   chan struct{}
}

// readBatches reads the input from line skip on in batches, decodes (and,
// when prepare is set, prepares) them on every core, and hands them to
// write in order.
func readBatches(ctx context.Context, open func() (io.ReadCloser, error), skip int64, opts Options,
	prepare func([]service.ImportEvent) *service.PreparedImport, write func(*batch) error) error {
	in, err := open()
	if err != nil {
		return err
	}
	defer in.Close()
	br := bufio.NewReaderSize(in, 1<<20)
	ordered := make(chan *batch, runtime.GOMAXPROCS(0)+1)
	work := make(chan *batch)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for b := range work {
				decodeBatch(b, opts.Source)
				if prepare != nil {
					b.prepared = prepare(b.events)
				}
				close(b.decoded)
			}
		})
	}
	readErr := make(chan error, 1)
	go func() {
		defer close(ordered)
		defer close(work)
		readErr <- func() error {
			var line, read int64
			for {
				b := &batch{start: line, decoded: make(chan struct{})}
				for len(b.lines) < opts.Batch {
					text, n, err := readLine(br)
					read += n
					if err == io.EOF {
						break
					}
					if err != nil {
						return err
					}
					line++
					if line <= skip {
						continue
					}
					b.lines, b.numbers = append(b.lines, text), append(b.numbers, line)
				}
				b.end = line
				if opts.Progress != nil {
					opts.Progress(read)
				}
				if len(b.lines) == 0 {
					return nil
				}
				select {
				case work <- b:
				case <-ctx.Done():
					return ctx.Err()
				}
				select {
				case ordered <- b:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}()
	}()
	var werr error
	for b := range ordered {
		<-b.decoded
		if werr == nil {
			werr = write(b)
		}
		if werr != nil {
			// Drain, so the reader and decoders end.
			continue
		}
	}
	wg.Wait()
	return errors.Join(werr, <-readErr)
}

// errTooLong marks a line over MaxLineBytes (its text is not kept).
var errTooLong = errors.New("line too long")

// readLine returns the next line without its end (\n or \r\n) and the bytes
// it took; a line over MaxLineBytes comes back as errTooLong's marker text
// nil with n counted. io.EOF when the input is done.
func readLine(br *bufio.Reader) (line []byte, n int64, err error) {
	var buf []byte
	tooLong := false
	for {
		part, err := br.ReadSlice('\n')
		n += int64(len(part))
		if !tooLong {
			if len(buf)+len(part) > MaxLineBytes+2 {
				tooLong, buf = true, nil
			} else {
				buf = append(buf, part...)
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && n == 0:
			return nil, 0, io.EOF
		case err != nil && err != io.EOF:
			return nil, n, err
		}
		if tooLong {
			return tooLongLine, n, nil
		}
		buf = bytes.TrimSuffix(bytes.TrimSuffix(buf, []byte("\n")), []byte("\r"))
		return buf, n, nil
	}
}

// tooLongLine stands for a line over MaxLineBytes.
var tooLongLine = []byte{0}

// decodeBatch decodes b's lines into events; a line that is no event is
// counted as refused.
func decodeBatch(b *batch, source string) {
	b.events = make([]service.ImportEvent, 0, len(b.lines))
	for i, text := range b.lines {
		if len(bytes.TrimSpace(text)) == 0 {
			continue
		}
		where := service.EventSource{Source: source, ID: "line " + strconv.FormatInt(b.numbers[i], 10)}
		if len(text) == 1 && text[0] == 0 {
			b.malformed.Read++
			b.malformed.Refuse(where, "", fmt.Sprintf("%v: over %d bytes", errTooLong, MaxLineBytes))
			continue
		}
		e, src, field, msg := service.DecodeEvent(text, true)
		if msg != "" {
			b.malformed.Read++
			if src.ID != "" {
				where.ID = src.ID
			}
			b.malformed.Refuse(where, field, fmt.Sprintf("line %d: %s", b.numbers[i], msg))
			continue
		}
		if src.Source == "" {
			src.Source = source
		}
		b.events = append(b.events, service.ImportEvent{Source: src, Event: e})
	}
	b.lines = nil
}
