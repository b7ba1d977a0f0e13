package model

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that the store watch stops
// with their context.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The embedded etcd's and gRPC's background goroutines outlive tests.
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/client/pkg/v3/logutil.(*MergeLogger).outputLoop"),
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
	)
}
