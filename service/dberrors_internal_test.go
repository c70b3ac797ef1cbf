package service

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

// When the server dies in the middle of a COPY or a commit, pgx returns a
// bare io.ErrUnexpectedEOF: from a database call that is an outage (503,
// retry), not an internal error (the fault suite's crash during ingest
// answered 500 before).
func TestABareEOFFromADatabaseCallIsUnavailable(t *testing.T) {
	for _, err := range []error{io.ErrUnexpectedEOF, io.EOF, fmt.Errorf("record 20 user events: %w", io.ErrUnexpectedEOF)} {
		require.ErrorIs(t, unavailable(err), ErrUnavailable, "%v", err)
		require.ErrorIs(t, unavailable(err), err, "the cause stays for the log")
	}
	require.NotErrorIs(t, unavailable(errors.New("duplicate key")), ErrUnavailable)
	require.NoError(t, unavailable(nil))
}
