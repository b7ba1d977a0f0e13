package vip

import (
	"context"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// A VIP newer than this replica's view of Dataplanes, while etcd holds a
// Dataplane the replica has not seen yet (its watch lags), is released only
// after the settle period: the unseen Dataplane may be the VIP's service.
func TestVIPAheadOfALaggingViewWaitsForTheSettlePeriod(t *testing.T) {
	st := store.New(etcdtest.Client(t, nil))
	ctx := context.Background()
	if _, err := st.Create(ctx, resource.New(resource.MeshType, "", "default")); err != nil {
		t.Fatal(err)
	}
	a, err := New(st, Config{Settle: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := st.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// What another replica wrote: the VIP, then (unseen here) a Dataplane.
	v := resource.New(resource.VirtualIPType, "default", "web")
	v.Spec = &meshv1.VirtualIP{Service: "web", Ip: "240.0.0.10"}
	v, err = st.Create(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	dp := resource.New(resource.DataplaneType, "default", "web-1")
	dp.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.1",
		Inbound: []*meshv1.Dataplane_Networking_Inbound{{Port: 80, Tags: map[string]string{resource.ServiceTag: "other"}}}}}
	if _, err := st.Create(ctx, dp); err != nil {
		t.Fatal(err)
	}
	// This replica's watches: Dataplanes and ZoneIngresses as of before both
	// writes, VIPs up to date.
	a.apply(wDataplane, store.Event{Kind: store.EventSync, Revision: rev})
	a.apply(wIngress, store.Event{Kind: store.EventSync, Revision: rev})
	a.apply(wVIP, store.Event{Kind: store.EventSync, Resources: []*resource.Resource{v}, Revision: v.Meta.GetVersion()})

	released := func() bool {
		r, err := st.Get(ctx, resource.VirtualIPType, "default", "web")
		if err != nil {
			t.Fatal(err)
		}
		return r.Spec.(*meshv1.VirtualIP).GetReleasedTime() != nil
	}
	a.reconcile(ctx)
	if released() || !a.wake {
		t.Fatalf("released at once (wake %v) over a view older than the VIP", a.wake)
	}
	time.Sleep(350 * time.Millisecond)
	a.reconcile(ctx)
	if !released() {
		t.Fatal("not released after the settle period")
	}
}
