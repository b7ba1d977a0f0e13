package global

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	syncv1 "github.com/weftmesh/weft/proto/gen/go/weft/sync/v1"

	"github.com/weftmesh/weft/zone-sync/internal/protocol"
)

func seed(r *resource.Resource) *syncv1.DeltaResponse {
	t := r.Type()
	spec, _ := protocol.MarshalSpec(r.Spec)
	w := protocol.WireName(t, r.Meta.GetMesh(), r.Meta.GetName())
	return &syncv1.DeltaResponse{TypeUrl: protocol.TypeURL(t), Nonce: "1", Resources: []*syncv1.SyncResource{
		{Name: w, Version: protocol.Version(w, r.Meta.GetLabels(), spec), Meta: r.Meta, Spec: spec}}}
}

func TestZonePolicy(t *testing.T) {
	p := &ZonePolicy{Zone: "zone-1"}
	dp := resource.New(resource.DataplaneType, "default", "web-1")
	dp.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.1",
		Inbound: []*meshv1.Dataplane_Networking_Inbound{{Port: 80, Tags: map[string]string{resource.ServiceTag: "web", resource.ZoneTag: "zone-1"}}}}}
	r, err := p.Local(protocol.Incoming{Wire: "default/web-1", Resource: dp})
	if err != nil || r.Meta.GetName() != "zone-1.web-1" || r.Meta.GetOrigin() != "zone-1" {
		t.Fatalf("got %v, %v", r, err)
	}
	zi := resource.New(resource.ZoneIngressType, "", "ingress")
	zi.Spec = &meshv1.ZoneIngress{Zone: "zone-2"}
	tp := resource.New(resource.TrafficPermissionType, "default", "tp")
	labelled := dp.Clone()
	labelled.Meta.Labels = map[string]string{resource.ZoneTag: "zone-2"}
	for name, tc := range map[string]struct {
		r      *resource.Resource
		reason string
	}{
		"other zone's ingress": {zi, ReasonForeignZone},
		"global-owned type":    {tp, ReasonNotZoneOwned},
		"zone label":           {labelled, ReasonForeignZone},
	} {
		_, err := p.Local(protocol.Incoming{Wire: "x", Resource: tc.r})
		rj, ok := err.(*protocol.Rejection)
		if !ok || rj.Reason != tc.reason {
			t.Errorf("%s: got %v, want rejection %s", name, err, tc.reason)
		}
	}
}

func TestFilter(t *testing.T) {
	f := Filter("zone-1")
	entry := func(typ *resource.Type, name, origin string) *protocol.Entry {
		r := resource.New(typ, "default", name)
		r.Meta.Origin = origin
		return &protocol.Entry{Type: typ, Resource: r}
	}
	for _, tc := range []struct {
		e    *protocol.Entry
		want bool
	}{
		{entry(resource.MeshType, "default", ""), true},
		{entry(resource.TrafficPermissionType, "tp", ""), true},
		{entry(resource.GlobalSecretType, "cp-token-signing-key", ""), false},
		{entry(resource.GlobalSecretType, "shared", ""), true},
		{entry(resource.ZoneIngressType, "zone-2.ingress", "zone-2"), true},
		{entry(resource.ZoneIngressType, "zone-1.ingress", "zone-1"), false},
		{entry(resource.ZoneIngressType, "local", ""), false},
		{entry(resource.DataplaneType, "zone-2.dp", "zone-2"), false},
		{entry(resource.ZoneInsightType, "zone-2", ""), false},
	} {
		if got := f(tc.e); got != tc.want {
			t.Errorf("%s %s origin %q: sent=%v, want %v", tc.e.Type.Name, tc.e.Resource.Meta.GetName(), tc.e.Resource.Meta.GetOrigin(), got, tc.want)
		}
	}
}

// FuzzZonePolicy runs arbitrary messages from a zone through what global
// does before writing: decoding and the zone policy. Whatever passes must be
// stored under the zone's own name and origin, be valid, and claim no other
// zone.
func FuzzZonePolicy(f *testing.F) {
	dp := resource.New(resource.DataplaneType, "default", "web-1")
	dp.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.1",
		Inbound: []*meshv1.Dataplane_Networking_Inbound{{Port: 80, Tags: map[string]string{resource.ServiceTag: "web"}}}}}
	zi := resource.New(resource.ZoneIngressType, "", "ingress")
	zi.Spec = &meshv1.ZoneIngress{Zone: "zone-1", Networking: &meshv1.ZoneIngress_Networking{Address: "10.0.0.2", Port: 10001}}
	for _, r := range []*resource.Resource{dp, zi} {
		b, _ := proto.Marshal(seed(r))
		f.Add(b)
	}
	p := &ZonePolicy{Zone: "zone-1"}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := &syncv1.DeltaResponse{}
		if proto.Unmarshal(data, m) != nil {
			return
		}
		d, err := protocol.DecodeResponse(m, func(t *resource.Type) bool { return t.Owner == resource.OwnerZone })
		if err != nil {
			return
		}
		for _, in := range d.Resources {
			r, err := p.Local(in)
			if err != nil {
				continue
			}
			if r.Meta.GetOrigin() != "zone-1" || !strings.HasPrefix(r.Meta.GetName(), "zone-1.") {
				t.Fatalf("stored as %s origin %q", r.Key(), r.Meta.GetOrigin())
			}
			if err := resource.Validate(r); err != nil && len(r.Meta.GetName()) <= 253 {
				t.Fatalf("accepted an invalid resource: %v", err)
			}
			if z, ok := r.Spec.(*meshv1.ZoneIngress); ok && z.GetZone() != "" && z.GetZone() != "zone-1" {
				t.Fatalf("accepted another zone's ingress")
			}
		}
		for _, w := range d.Removed {
			if _, name, err := p.LocalName(d.Type, w); err == nil && !strings.HasPrefix(name, "zone-1.") {
				t.Fatalf("removal %q maps outside the zone: %q", w, name)
			}
		}
	})
}

func TestInitialVersionsReadsOnlyTheZone(t *testing.T) {
	ctx := context.Background()
	st := store.New(etcdtest.Client(t, nil))
	p := &ZonePolicy{Zone: "zone-1", Store: st}
	want := map[string]string{}
	for _, c := range []struct{ mesh, name, origin string }{
		{"m1", "zone-1.a", "zone-1"}, {"m2", "zone-1.b", "zone-1"},
		{"m1", "zone-2.c", "zone-2"}, {"m1", "zone-10.d", "zone-10"}, {"m1", "zone-1.forged", "zone-2"},
	} {
		r := resource.New(resource.DataplaneType, c.mesh, c.name)
		r.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.1",
			Inbound: []*meshv1.Dataplane_Networking_Inbound{{Port: 80, Tags: map[string]string{resource.ServiceTag: "web"}}}}}
		r.Meta.Origin = c.origin
		r.Meta.Labels = map[string]string{"app": c.name}
		if _, err := st.Create(ctx, r, store.WithoutMeshCheck()); err != nil {
			t.Fatal(err)
		}
		if c.origin == "zone-1" {
			local := r.Clone()
			local.Meta.Name = strings.TrimPrefix(c.name, "zone-1.")
			w := protocol.WireName(resource.DataplaneType, c.mesh, local.Meta.Name)
			v, _ := protocol.ResourceVersion(w, local)
			want[w] = v
		}
	}
	got, err := p.InitialVersions(ctx, resource.DataplaneType)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: got %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}
