package zone

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"

	"github.com/weftmesh/weft/zone-sync/internal/protocol"
)

func res(t *resource.Type, mesh, name, origin string) *resource.Resource {
	r := resource.New(t, mesh, name)
	r.Meta.Origin = origin
	return r
}

func rejection(err error) string {
	var rj *protocol.Rejection
	if errors.As(err, &rj) {
		return rj.Reason
	}
	return ""
}

// TestGlobalPolicyLocal: what a zone accepts from global, and the origin it
// stores it under; everything else is rejected with a counted reason and
// nothing to write.
func TestGlobalPolicyLocal(t *testing.T) {
	p := &GlobalPolicy{Zone: "z1"}
	for _, c := range []struct {
		name       string
		r          *resource.Resource
		wantOrigin string
		wantReason string
	}{
		{"global-owned type gets origin global", res(resource.MeshType, "", "m", ""), protocol.GlobalOrigin, ""},
		{"global-owned origin is overwritten", res(resource.TrafficPermissionType, "m", "p", "z2"), protocol.GlobalOrigin, ""},
		{"another zone's ingress keeps its zone", res(resource.ZoneIngressType, "", "zi", "z2"), "z2", ""},
		{"another zone's dataplane keeps its zone", res(resource.DataplaneType, "m", "d", "z2"), "z2", ""},
		{"own zone's resource back from global", res(resource.ZoneIngressType, "", "zi", "z1"), "", ReasonOwnResource},
		{"zone-owned without origin", res(resource.DataplaneType, "m", "d", ""), "", ReasonOwnResource},
		{"zone-owned claiming global", res(resource.DataplaneType, "m", "d", protocol.GlobalOrigin), "", ReasonOwnResource},
		{"control-plane-local secret", res(resource.GlobalSecretType, "", "cp-token-signing-key", ""), "", ReasonLocalOnly},
		{"local type", res(resource.VirtualIPType, "m", "web", ""), "", ReasonLocalOnly},
	} {
		in := protocol.Incoming{Wire: protocol.WireName(c.r.Type(), c.r.Meta.GetMesh(), c.r.Meta.GetName()), Resource: c.r}
		before := c.r.Meta.GetOrigin()
		got, err := p.Local(in)
		if c.wantReason != "" {
			if got != nil || rejection(err) != c.wantReason {
				t.Errorf("%s: got %v, %v; want rejection %q", c.name, got, err, c.wantReason)
			}
			continue
		}
		if err != nil || got.Meta.GetOrigin() != c.wantOrigin {
			t.Errorf("%s: got %v, %v; want origin %q", c.name, got, err, c.wantOrigin)
			continue
		}
		if c.r.Meta.GetOrigin() != before {
			t.Errorf("%s: the incoming resource was modified", c.name)
		}
	}
}

// TestGlobalPolicyFromPeer: global may replace its copies and global-owned
// types, never the zone's own resources.
func TestGlobalPolicyFromPeer(t *testing.T) {
	p := &GlobalPolicy{Zone: "z1"}
	for _, c := range []struct {
		r    *resource.Resource
		want bool
	}{
		{res(resource.MeshType, "", "m", ""), true},                     // leftover from before joining
		{res(resource.TrafficPermissionType, "m", "p", "global"), true}, // its copy
		{res(resource.DataplaneType, "m", "d", ""), false},              // the zone's own
		{res(resource.DataplaneType, "m", "d", "z1"), false},            // the zone's own
		{res(resource.DataplaneType, "m", "d", "z2"), true},             // another zone's, via global
		{res(resource.ZoneIngressType, "", "zi", "z2"), true},
	} {
		if got := p.FromPeer(c.r); got != c.want {
			t.Errorf("FromPeer(%s origin %q) = %v, want %v", c.r.Key(), c.r.Meta.GetOrigin(), got, c.want)
		}
	}
}

func TestGlobalPolicyLocalName(t *testing.T) {
	p := &GlobalPolicy{Zone: "z1"}
	if mesh, name, err := p.LocalName(resource.DataplaneType, "m/d"); err != nil || mesh != "m" || name != "d" {
		t.Fatalf("mesh-scoped: %q %q %v", mesh, name, err)
	}
	if _, name, err := p.LocalName(resource.ZoneIngressType, "zi"); err != nil || name != "zi" {
		t.Fatalf("global-scoped: %q %v", name, err)
	}
	for _, bad := range []struct {
		t    *resource.Type
		wire string
	}{{resource.DataplaneType, "d"}, {resource.DataplaneType, "m/"}, {resource.DataplaneType, "m/a/b"}, {resource.ZoneIngressType, "m/zi"}, {resource.ZoneIngressType, ""}} {
		if _, _, err := p.LocalName(bad.t, bad.wire); err == nil {
			t.Errorf("LocalName(%s, %q) accepted", bad.t.Name, bad.wire)
		}
	}
}

// TestGlobalPolicyInitialVersions lists, from a real store, exactly what
// the zone holds from global, under wire names, with the versions the
// protocol computes.
func TestGlobalPolicyInitialVersions(t *testing.T) {
	ring, err := seal.New(seal.Key{ID: "k1", Bytes: make([]byte, seal.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(etcdtest.Client(t, nil), store.WithKeyring(ring))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	put := func(r *resource.Resource) {
		t.Helper()
		if _, _, err := st.Upsert(ctx, r); err != nil {
			t.Fatalf("%s: %v", r.Key(), err)
		}
	}
	put(res(resource.MeshType, "", "m", protocol.GlobalOrigin))
	dp := func(name, origin string) *resource.Resource {
		r := res(resource.DataplaneType, "m", name, origin)
		r.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.1",
			Inbound: []*meshv1.Dataplane_Networking_Inbound{{Port: 80, Tags: map[string]string{resource.ServiceTag: "web"}}}}}
		return r
	}
	put(dp("own", ""))
	put(dp("own-named", "z1"))
	put(dp("remote", "z2"))
	p := &GlobalPolicy{Zone: "z1", Store: st}

	got, err := p.InitialVersions(ctx, resource.DataplaneType)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["m/remote"] == "" {
		t.Fatalf("dataplanes from global: %v, want only m/remote", got)
	}
	stored, err := st.Get(ctx, resource.DataplaneType, "m", "remote")
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := protocol.ResourceVersion("m/remote", stored); got["m/remote"] != want {
		t.Errorf("version %q, protocol says %q", got["m/remote"], want)
	}
	meshes, err := p.InitialVersions(ctx, resource.MeshType)
	if err != nil || len(meshes) != 1 || meshes["m"] == "" {
		t.Fatalf("meshes: %v %v", meshes, err)
	}
}

// TestFilter: a zone sends up only its own zone-owned resources.
func TestFilter(t *testing.T) {
	f := Filter("z1")
	for _, c := range []struct {
		r    *resource.Resource
		want bool
	}{
		{res(resource.DataplaneType, "m", "d", ""), true},
		{res(resource.DataplaneType, "m", "d", "z1"), true},
		{res(resource.DataplaneInsightType, "m", "d", ""), true},
		{res(resource.ZoneIngressType, "", "zi", "z1"), true},
		{res(resource.DataplaneType, "m", "d", "z2"), false},       // another zone's copy
		{res(resource.ZoneIngressType, "", "zi", "z2"), false},     // another zone's copy
		{res(resource.MeshType, "", "m", ""), false},               // global-owned
		{res(resource.TrafficPermissionType, "m", "p", ""), false}, // global-owned
		{res(resource.VirtualIPType, "m", "web", ""), false},       // local
	} {
		e := &protocol.Entry{Type: c.r.Type(), Wire: protocol.WireName(c.r.Type(), c.r.Meta.GetMesh(), c.r.Meta.GetName()), Resource: c.r}
		if got := f(e); got != c.want {
			t.Errorf("Filter(%s origin %q) = %v, want %v", c.r.Key(), c.r.Meta.GetOrigin(), got, c.want)
		}
	}
}
