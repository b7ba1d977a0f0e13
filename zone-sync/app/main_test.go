package app_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every zone-sync goroutine ends when Run returns; etcd's own (the embedded
// servers and their clients, closed after the tests) are not ours.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreTopFunction("go.etcd.io/etcd/client/v3.(*watchGrpcStream).run"),
	)
}
