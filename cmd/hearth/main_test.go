package main

import (
	"os"
	"testing"

	"github.com/hearth-rt/hearth/internal/pgtest"
)

// TestMain stops the private PostgreSQL that pgtest may have started.
func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Shutdown()
	os.Exit(code)
}
