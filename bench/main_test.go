// Package bench holds auditlog's benchmarks. Each compares auditlog with a
// baseline run in the same process, on the same rows and the same table,
// and reports the ratio with b.ReportMetric. Run them with `make bench`.
package bench

import (
	"os"
	"testing"

	"github.com/auditlog/auditlog/internal/dbtest"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }
