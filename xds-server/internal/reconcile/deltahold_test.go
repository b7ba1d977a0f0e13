package reconcile

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/xds-server/internal/generator"
)

// TestDeltaReconnectHoldingResources: a delta proxy reconnecting with
// initial_resource_versions equal to its snapshot's per-resource versions
// (as go-control-plane's delta cache computes them) is left with nothing
// pending, whether its first requests come before or after the snapshot;
// one stale or extra resource leaves the type pending.
func TestDeltaReconnectHoldingResources(t *testing.T) {
	st := store.New(etcdtest.Client(t, nil))
	apply(t, st, "type: Mesh\nname: m\n---"+dp("web-1", "web", "backend")+"---"+dp("backend-1", "backend", ""))
	rec, cache, _ := startReconciler(t, st)
	const id = "m.web-1"
	rec.Connect(id, "m", "web-1", generator.KindEnvoy, nil)
	waitFor(t, "first snapshot", func() bool { _, err := cache.GetSnapshot(id); return err == nil })
	rs, _ := cache.GetSnapshot(id)
	// A copy: the versions go-control-plane's own code computes.
	s := &cachev3.Snapshot{Resources: rs.(*cachev3.Snapshot).Resources}
	if err := s.ConstructVersionMap(); err != nil {
		t.Fatal(err)
	}
	wildcard := map[string]bool{resourcev3.ClusterType: true, resourcev3.ListenerType: true}
	held := map[string]map[string]string{}
	names := map[string][]string{}
	for _, typ := range generator.TypeURLs {
		held[typ] = maps.Clone(s.GetVersionMap(typ))
		if !wildcard[typ] {
			names[typ] = slices.Sorted(maps.Keys(held[typ]))
		}
	}
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType} {
		if len(held[typ]) == 0 {
			t.Fatalf("no %s resources to hold", typ)
		}
	}

	var mu sync.Mutex
	got := map[string]string{}
	hold := func(typ string, h map[string]string) {
		if len(h) == 0 {
			// Nothing of the type: as a SotW proxy would say it.
			rec.Holds(id, typ, s.GetVersion(typ))
			return
		}
		rec.HoldsResources(id, typ, h, names[typ], func(v string) { mu.Lock(); got[typ] = v; mu.Unlock() })
	}
	reconnect := func() {
		rec.Disconnect(id)
		if _, err := cache.GetSnapshot(id); err == nil {
			t.Fatal("snapshot kept after the last stream closed")
		}
		rec.Connect(id, "m", "web-1", generator.KindEnvoy, nil)
		mu.Lock()
		clear(got)
		mu.Unlock()
	}
	checkGot := func(want ...string) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if len(got) != len(want) {
			t.Fatalf("held reported for %v, want %v", got, want)
		}
		for _, typ := range want {
			if got[typ] != s.GetVersion(typ) {
				t.Fatalf("%s held %q, want %q", typ, got[typ], s.GetVersion(typ))
			}
		}
	}
	var nonEmpty []string
	for _, typ := range generator.TypeURLs {
		if len(held[typ]) > 0 {
			nonEmpty = append(nonEmpty, typ)
		}
	}

	// Before the generation: compared with the next snapshot.
	reconnect()
	for _, typ := range generator.TypeURLs {
		hold(typ, held[typ])
	}
	waitFor(t, "snapshot after reconnect", func() bool { _, err := cache.GetSnapshot(id); return err == nil })
	if n := rec.Pending(id); n != 0 {
		t.Fatalf("%d types pending after a reconnect holding the snapshot", n)
	}
	checkGot(nonEmpty...)

	// After the generation: compared with the snapshot there is.
	reconnect()
	waitFor(t, "push after reconnect", func() bool { return rec.Pending(id) > 0 })
	for _, typ := range generator.TypeURLs {
		hold(typ, held[typ])
	}
	if n := rec.Pending(id); n != 0 {
		t.Fatalf("%d types pending after the proxy said it holds the snapshot", n)
	}
	checkGot(nonEmpty...)

	// A stale endpoint, an extra listener: those types stay pending.
	reconnect()
	stale := maps.Clone(held[resourcev3.EndpointType])
	stale[names[resourcev3.EndpointType][0]] = strings.Repeat("0", 64)
	extra := maps.Clone(held[resourcev3.ListenerType])
	extra["gone"] = strings.Repeat("1", 64)
	for _, typ := range generator.TypeURLs {
		switch typ {
		case resourcev3.EndpointType:
			hold(typ, stale)
		case resourcev3.ListenerType:
			hold(typ, extra)
		default:
			hold(typ, held[typ])
		}
	}
	waitFor(t, "snapshot after a stale reconnect", func() bool { _, err := cache.GetSnapshot(id); return err == nil })
	if n := rec.Pending(id); n != 2 {
		t.Fatalf("%d types pending after a stale reconnect, want 2 (endpoints, listeners)", n)
	}
	var want []string
	for _, typ := range nonEmpty {
		if typ != resourcev3.EndpointType && typ != resourcev3.ListenerType {
			want = append(want, typ)
		}
	}
	checkGot(want...)

	// A named type holds only what is subscribed: an unsubscribed extra
	// name does not matter, a subscribed name the snapshot lacks but the
	// proxy holds does (the cache would send its removal).
	reconnect()
	waitFor(t, "push", func() bool { return rec.Pending(id) > 0 })
	typ := resourcev3.EndpointType
	h := maps.Clone(held[typ])
	h["unsubscribed"] = strings.Repeat("2", 64)
	rec.HoldsResources(id, typ, h, slices.Concat(names[typ], []string{"missing"}), func(v string) { mu.Lock(); got[typ] = v; mu.Unlock() })
	checkGot(typ)
	reconnect()
	waitFor(t, "push", func() bool { return rec.Pending(id) > 0 })
	h["missing"] = strings.Repeat("3", 64)
	rec.HoldsResources(id, typ, h, slices.Concat(names[typ], []string{"missing"}), func(v string) { mu.Lock(); got[typ] = v; mu.Unlock() })
	checkGot()
}
