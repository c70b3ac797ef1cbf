package main

import (
	"bytes"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// A progress bar draws nothing when its writer is not a terminal (a
// pipe, a file, a buffer), so scripts and logs see only the results.
func TestProgressIsSilentOffATerminal(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := newProgress(&buf, 100, "import", true)
	p.setTotal(200)
	p.set(50)
	p.done()
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	require.NoError(t, err)
	defer f.Close()
	q := newProgress(f, -1, "verify", false)
	q.set(7)
	q.done()
	info, err := f.Stat()
	require.NoError(t, err)
	require.Zero(t, buf.Len())
	require.Zero(t, info.Size())
	var out bytes.Buffer
	c := &lineCounter{w: &out, each: p.set}
	_, err = c.Write([]byte("a\nb\nc"))
	require.NoError(t, err)
	require.Equal(t, int64(2), c.lines)
	require.Equal(t, "a\nb\nc", out.String())
}
