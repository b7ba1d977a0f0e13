package dnsserver

import (
	"context"
	"net/netip"
	"time"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Follow keeps t current from the shared informers of VirtualIPs (active
// ones are answered; released ones are not) and Dataplanes (address ->
// mesh). It calls ready once both have delivered their first full view, and
// returns when ctx ends. Bursts of events are applied together and
// published at most every 10ms.
func Follow(ctx context.Context, vipsR, dpsR store.Reader, t *Table, ready func()) error {
	ctx, cancel := context.WithCancel(ctx)
	vips, dps := make(chan store.Batch), make(chan store.Batch)
	subs := []*store.Subscription{
		vipsR.Subscribe(ctx, "dns table", forward(ctx, vips)),
		dpsR.Subscribe(ctx, "dns table", forward(ctx, dps)),
	}
	defer func() {
		cancel()
		for _, s := range subs {
			<-s.Done()
		}
	}()
	var vipSynced, dpSynced, readyDone, pending bool
	var lastPublish time.Time
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case b := <-vips:
			for _, ev := range b.Events {
				vipSynced = applyVIP(t, ev) || vipSynced
			}
		case b := <-dps:
			for _, ev := range b.Events {
				dpSynced = applyDataplane(t, ev) || dpSynced
			}
		case <-timer.C:
			pending = false
			lastPublish = time.Now()
			t.Publish()
			if vipSynced && dpSynced && !readyDone {
				readyDone = true
				if ready != nil {
					ready()
				}
			}
			continue
		}
		// Publish at most every publishInterval: a lone change goes out at
		// once, a flood in batches (each Publish copies the shards it touched).
		if !pending {
			pending = true
			timer.Reset(max(0, time.Until(lastPublish.Add(publishInterval))))
		}
	}
}

// forward hands an informer's batches to the Follow loop, which owns the
// table; while the loop is busy the informer coalesces what comes next.
func forward(ctx context.Context, ch chan<- store.Batch) store.Handler {
	return func(b store.Batch) error {
		select {
		case ch <- b:
		case <-ctx.Done():
		}
		return nil
	}
}

const publishInterval = 10 * time.Millisecond

func applyVIP(t *Table, ev store.Event) (synced bool) {
	set := func(r *resource.Resource) {
		v, _ := r.Spec.(*meshv1.VirtualIP)
		ip, err := netip.ParseAddr(v.GetIp())
		if v == nil || err != nil || v.GetReleasedTime() != nil {
			t.DeleteVIP(r.Meta.GetMesh(), r.Meta.GetName())
			return
		}
		t.SetVIP(r.Meta.GetMesh(), r.Meta.GetName(), ip)
	}
	switch ev.Kind {
	case store.EventSync:
		t.Reset(true, false)
		for _, r := range ev.Resources {
			set(r)
		}
		return true
	case store.EventPut:
		set(ev.Resource)
	case store.EventDelete:
		t.DeleteVIP(ev.Resource.Meta.GetMesh(), ev.Resource.Meta.GetName())
	}
	return false
}

func applyDataplane(t *Table, ev store.Event) (synced bool) {
	id := func(r *resource.Resource) string { return r.Meta.GetMesh() + "/" + r.Meta.GetName() }
	set := func(r *resource.Resource) {
		dp, _ := r.Spec.(*meshv1.Dataplane)
		addr, err := netip.ParseAddr(dp.GetNetworking().GetAddress())
		if err != nil {
			t.DeleteDataplane(id(r))
			return
		}
		t.SetDataplane(id(r), r.Meta.GetMesh(), addr)
	}
	switch ev.Kind {
	case store.EventSync:
		t.Reset(false, true)
		for _, r := range ev.Resources {
			set(r)
		}
		return true
	case store.EventPut:
		set(ev.Resource)
	case store.EventDelete:
		t.DeleteDataplane(id(ev.Resource))
	}
	return false
}
