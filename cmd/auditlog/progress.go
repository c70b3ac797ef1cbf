package main

import (
	"bytes"
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress is a progress bar with rate and ETA on stderr when it is a
// terminal, and nothing otherwise (a pipe, a log file, a test).
type progress struct {
	bar *progressbar.ProgressBar
}

// newProgress starts a bar of total units (bytes when bytes is set; -1:
// unknown) described by what; a no-op unless w is a terminal.
func newProgress(w io.Writer, total int64, what string, bytes bool) *progress {
	if !isTerminal(w) {
		return &progress{}
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
		progressbar.OptionFullWidth(),
	}
	if bytes {
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		opts = append(opts, progressbar.OptionSetItsString("events"))
	}
	return &progress{bar: progressbar.NewOptions64(total, opts...)}
}

// set moves the bar to done units.
func (p *progress) set(done int64) {
	if p.bar != nil {
		_ = p.bar.Set64(done)
	}
}

// setTotal changes the bar's total (a count learnt as the work goes).
func (p *progress) setTotal(total int64) {
	if p.bar != nil {
		p.bar.ChangeMax64(total)
	}
}

// done finishes the bar.
func (p *progress) done() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

// lineCounter passes writes to w and tells each how many lines have gone
// through (an export's events, one per line).
type lineCounter struct {
	w     io.Writer
	lines int64
	each  func(int64)
}

func (c *lineCounter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.lines += int64(bytes.Count(p[:n], []byte{'\n'}))
	c.each(c.lines)
	return n, err
}
