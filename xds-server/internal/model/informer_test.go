package model

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// fakeModel is a model fed by in-memory informers, one per type, so the
// order in which the types' streams deliver can be chosen.
func fakeModel(t *testing.T) (*Model, map[*resource.Type]*store.FakeInformer) {
	t.Helper()
	fakes := map[*resource.Type]*store.FakeInformer{}
	for _, typ := range watched {
		fakes[typ] = store.NewFakeInformer(typ)
	}
	m := New(nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	m.reader = func(typ *resource.Type) store.Reader { return fakes[typ] }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	go func() {
		for range m.Changes() { // the reconciler's part: keep the channel drained
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return m, fakes
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func fakeDP(mesh, name string, version int64) *resource.Resource {
	r := resource.New(resource.DataplaneType, mesh, name)
	r.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.1",
		Inbound: []*meshv1.Dataplane_Networking_Inbound{{Port: 80, Tags: map[string]string{resource.ServiceTag: name}}}}}
	r.Meta.Version = version
	return r
}

func TestModelSyncedOnlyWhenEveryTypeIs(t *testing.T) {
	m, fakes := fakeModel(t)
	for _, typ := range watched[:len(watched)-1] {
		fakes[typ].Sync()
	}
	select {
	case <-m.Synced():
		t.Fatal("synced before every type delivered its first view")
	case <-time.After(50 * time.Millisecond):
	}
	fakes[watched[len(watched)-1]].Sync()
	select {
	case <-m.Synced():
	case <-time.After(30 * time.Second):
		t.Fatal("never synced")
	}
}

// Each type has its own stream: a re-list of one type replaces only that
// type, and a mesh delete that arrives after the mesh's newer contents
// removes only what it covered.
func TestModelTypesArriveOnSeparateStreams(t *testing.T) {
	m, fakes := fakeModel(t)
	mesh := resource.New(resource.MeshType, "", "m")
	mesh.Meta.Version = 1
	fakes[resource.MeshType].Sync(mesh)
	fakes[resource.DataplaneType].Sync(fakeDP("m", "a", 2))
	for _, typ := range watched[2:] {
		fakes[typ].Sync()
	}
	<-m.Synced()
	waitFor(t, "first view", func() bool { s := m.View("m"); return s != nil && s.Spec != nil && len(s.Dataplanes) == 1 })

	// Re-listing TrafficPermissions leaves Dataplanes alone.
	fakes[resource.TrafficPermissionType].Sync(resource.New(resource.TrafficPermissionType, "m", "tp"))
	waitFor(t, "the re-list", func() bool { return len(m.View("m").TrafficPermissions) == 1 })
	if s := m.View("m"); len(s.Dataplanes) != 1 || s.Spec == nil {
		t.Fatalf("a TrafficPermission re-list changed other types: %d dataplanes", len(s.Dataplanes))
	}
	// The other policy types are watched too and reach the view.
	fakes[resource.RetryType].Sync(resource.New(resource.RetryType, "m", "r"))
	fakes[resource.ProxyTemplateType].Sync(resource.New(resource.ProxyTemplateType, "m", "pt"))
	waitFor(t, "the policies", func() bool { return len(m.View("m").Policies) == 2 })
	// The mesh is deleted (revision 5, with dp a) and made again with a
	// new dataplane b (revision 7); the Dataplane stream is ahead.
	fakes[resource.DataplaneType].Deliver(
		store.Event{Kind: store.EventDelete, Resource: fakeDP("m", "a", 2), Revision: 5},
		store.Event{Kind: store.EventPut, Resource: fakeDP("m", "b", 7), Revision: 7})
	waitFor(t, "dataplane b", func() bool {
		dps := m.View("m").Dataplanes
		return len(dps) == 1 && dps[0].Meta.Name == "b"
	})
	fakes[resource.MeshType].Deliver(store.Event{Kind: store.EventDelete, Resource: mesh, Revision: 5})
	waitFor(t, "the mesh delete", func() bool { v := m.View("m"); return v == nil || v.Spec == nil })
	if s := m.View("m"); s == nil || len(s.Dataplanes) != 1 {
		t.Fatalf("a mesh delete removed the newer mesh's dataplane: %d left", len(s.Dataplanes))
	}
}

func fakeIngress(name, zone string, services ...string) *resource.Resource {
	r := resource.New(resource.ZoneIngressType, "", name)
	zi := &meshv1.ZoneIngress{Zone: zone, Networking: &meshv1.ZoneIngress_Networking{Address: "10.9.0.1", Port: 10001}}
	for _, s := range services {
		zi.AvailableServices = append(zi.AvailableServices, &meshv1.ZoneIngress_AvailableService{Mesh: "m", Instances: 1,
			Tags: map[string]string{resource.ServiceTag: s}})
	}
	r.Spec = zi
	return r
}

// TestModelZoneIngresses: other zones' ingresses join the views of the
// meshes they serve (this zone's own never does); a change to one is a
// whole-mesh change of those meshes.
func TestModelZoneIngresses(t *testing.T) {
	fakes := map[*resource.Type]*store.FakeInformer{}
	for _, typ := range watched {
		fakes[typ] = store.NewFakeInformer(typ)
	}
	m := New(nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	m.SetZone("zone-1")
	m.reader = func(typ *resource.Type) store.Reader { return fakes[typ] }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	changes := make(chan []Change, 100)
	go func() {
		for cs := range m.Changes() {
			changes <- cs
		}
	}()
	defer func() { cancel(); <-done }()
	mesh := resource.New(resource.MeshType, "", "m")
	fakes[resource.MeshType].Sync(mesh)
	for _, typ := range watched {
		if typ != resource.MeshType && typ != resource.ZoneIngressType {
			fakes[typ].Sync()
		}
	}
	fakes[resource.ZoneIngressType].Sync(fakeIngress("zone-1.ingress", "zone-1", "local"))
	<-m.Synced()
	if v := m.View("m"); v == nil || len(v.ZoneIngresses) != 0 {
		t.Fatalf("this zone's own ingress is in the view: %+v", v)
	}
	for len(changes) > 0 {
		<-changes
	}
	fakes[resource.ZoneIngressType].Put(fakeIngress("zone-2.ingress", "zone-2", "greeter"))
	waitFor(t, "zone-2's ingress in the view", func() bool { return len(m.View("m").ZoneIngresses) == 1 })
	// This zone's own ingress (Mesh "") may still be on its way from the
	// initial sync: skip it.
	timeout := time.After(30 * time.Second)
	for got := false; !got; {
		select {
		case cs := <-changes:
			if len(cs) == 1 && cs[0].Mesh == "" && cs[0].Type == resource.ZoneIngressType && cs[0].Name == "zone-1.ingress" {
				continue
			}
			if len(cs) != 1 || cs[0].Mesh != "m" || !cs[0].Sync {
				t.Fatalf("changes %+v, want one whole-mesh change of m", cs)
			}
			got = true
		case <-timeout:
			t.Fatal("no change delivered")
		}
	}
	fakes[resource.ZoneIngressType].Delete("", "zone-2.ingress")
	waitFor(t, "zone-2's ingress gone", func() bool { return len(m.View("m").ZoneIngresses) == 0 })
}
