package store_test

import (
	"context"
	"sync/atomic"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// countingKV counts the round trips a store makes through the client's KV.
type countingKV struct {
	clientv3.KV
	n atomic.Int64
}

func (c *countingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	c.n.Add(1)
	return c.KV.Get(ctx, key, opts...)
}

func (c *countingKV) Txn(ctx context.Context) clientv3.Txn {
	c.n.Add(1)
	return c.KV.Txn(ctx)
}

// TestUpdateWithCurrent: a writer that knows what it stored last rewrites
// in one round trip; a stale belief costs a read and still writes; the
// creation time survives either way.
func TestUpdateWithCurrent(t *testing.T) {
	st, cli := newStore(t)
	kv := &countingKV{KV: cli.KV}
	cli.KV = kv
	ctx := ctxT(t)
	if _, err := st.Create(ctx, mesh("m")); err != nil {
		t.Fatal(err)
	}
	first, err := st.Create(ctx, dataplane("m", "a", 1))
	if err != nil {
		t.Fatal(err)
	}

	round := func(f func() error) int64 {
		t.Helper()
		before := kv.n.Load()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		return kv.n.Load() - before
	}
	var second *resource.Resource
	if n := round(func() error {
		var err error
		second, err = st.Update(ctx, dataplane("m", "a", 2), store.WithCurrent(first))
		return err
	}); n != 1 {
		t.Fatalf("update with a current value took %d round trips, want 1", n)
	}
	if n := round(func() error { _, err := st.Update(ctx, dataplane("m", "a", 3)); return err }); n != 2 {
		t.Fatalf("plain update took %d round trips, want 2 (read + write)", n)
	}
	// second is stale now: the update reads and still succeeds.
	if n := round(func() error { _, err := st.Update(ctx, dataplane("m", "a", 4), store.WithCurrent(second)); return err }); n != 3 {
		t.Fatalf("update with a stale current value took %d round trips, want 3 (failed write, read, write)", n)
	}
	got, err := st.Get(ctx, resource.DataplaneType, "m", "a")
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.(*meshv1.Dataplane).GetNetworking().GetInbound()[0].GetPort() != 4 {
		t.Fatalf("stored %v, want the last write", got.Spec)
	}
	if !proto.Equal(got.Meta.GetCreationTime(), first.Meta.GetCreationTime()) {
		t.Fatalf("creation time %v, want %v", got.Meta.GetCreationTime(), first.Meta.GetCreationTime())
	}
}
