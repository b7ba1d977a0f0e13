package dnsserver

import (
	"testing"

	"go.uber.org/goleak"
)

// Every server, reader and slow-path goroutine must be gone when its test ends.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
