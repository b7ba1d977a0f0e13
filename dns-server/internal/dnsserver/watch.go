package dnsserver

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Follow keeps t current from store watches on VirtualIPs (active ones are
// answered; released ones are not) and Dataplanes (address -> mesh). It
// calls ready once both watches have delivered their first full view, and
// returns when ctx ends. Bursts of events are applied together and
// published once.
func Follow(ctx context.Context, st *store.Store, t *Table, ready func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	vips, err := st.Watch(ctx, resource.VirtualIPType, "", 0, store.WatchOptions{Buffer: 4096})
	if err != nil {
		return fmt.Errorf("watch VirtualIPs: %w", err)
	}
	dps, err := st.Watch(ctx, resource.DataplaneType, "", 0, store.WatchOptions{Buffer: 4096})
	if err != nil {
		return fmt.Errorf("watch Dataplanes: %w", err)
	}
	var vipSynced, dpSynced, readyDone bool
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-vips:
			if !ok {
				return nil
			}
			vipSynced = applyVIP(t, ev) || vipSynced
		case ev, ok := <-dps:
			if !ok {
				return nil
			}
			dpSynced = applyDataplane(t, ev) || dpSynced
		}
		// Drain what is already queued before publishing, bounded so a
		// flood still publishes regularly.
	drain:
		for i := 0; i < 8192; i++ {
			select {
			case ev, ok := <-vips:
				if !ok {
					return nil
				}
				vipSynced = applyVIP(t, ev) || vipSynced
			case ev, ok := <-dps:
				if !ok {
					return nil
				}
				dpSynced = applyDataplane(t, ev) || dpSynced
			default:
				break drain
			}
		}
		t.Publish()
		if vipSynced && dpSynced && !readyDone {
			readyDone = true
			if ready != nil {
				ready()
			}
		}
	}
}

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
