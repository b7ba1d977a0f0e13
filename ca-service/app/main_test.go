package app_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine ca-service starts must end with Run.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
