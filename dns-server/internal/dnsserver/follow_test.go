package dnsserver

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Follow's rules (active VIPs answered, released ones not, ready only after
// both types are synced) on in-memory informers: no etcd needed.
func TestFollowOnFakeInformers(t *testing.T) {
	vips, dps := store.NewFakeInformer(resource.VirtualIPType), store.NewFakeInformer(resource.DataplaneType)
	tbl := NewTable(30)
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = Follow(ctx, vips, dps, tbl, func() { close(ready) })
	}()
	defer func() { cancel(); <-done }()
	vip := func(name, ip string, released bool) *resource.Resource {
		r := resource.New(resource.VirtualIPType, "m", name)
		v := &meshv1.VirtualIP{Service: name, Ip: ip}
		if released {
			v.ReleasedTime = resource.Timestamp(time.Now())
		}
		r.Spec = v
		return r
	}
	vips.Sync(vip("web", "240.0.0.1", false), vip("old", "240.0.0.2", true))
	select {
	case <-ready:
		t.Fatal("ready before the Dataplanes were synced")
	case <-time.After(50 * time.Millisecond):
	}
	dp := resource.New(resource.DataplaneType, "m", "dp-1")
	dp.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.1"}}
	dps.Sync(dp)
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("never ready")
	}
	if ip, ok := tbl.Lookup("m", "web"); !ok || ip != netip.MustParseAddr("240.0.0.1") {
		t.Fatalf("web: %v %v", ip, ok)
	}
	if _, ok := tbl.Lookup("m", "old"); ok {
		t.Fatal("a released VIP is answered")
	}
	vips.Put(vip("web", "240.0.0.1", true))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, ok := tbl.Lookup("m", "web"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("released VIP still answered")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
