// Package etcdtest starts a real embedded etcd for tests.
package etcdtest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftmesh/weft/pkg/etcdembed"
)

// Start runs an etcd on 127.0.0.1:0 with data in a test temp dir; it stops
// when the test ends. Compaction is off, so tests that compact do it
// explicitly.
func Start(t testing.TB) *etcdembed.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := etcdembed.Start(ctx, etcdembed.Config{Dir: t.TempDir(), AutoCompactionRetention: "0"})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// Client starts an etcd (when srv is nil) and returns a client of it, closed
// when the test ends.
func Client(t testing.TB, srv *etcdembed.Server) *clientv3.Client {
	t.Helper()
	if srv == nil {
		srv = Start(t)
	}
	cli, err := srv.Client()
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
