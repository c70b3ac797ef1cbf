package service_test

import (
	"os"
	"testing"

	"github.com/auditlog/auditlog/internal/dbtest"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }
