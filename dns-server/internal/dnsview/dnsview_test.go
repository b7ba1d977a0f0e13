package dnsview

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func fullMeta(typ string) *meshv1.Meta {
	return &meshv1.Meta{Type: typ, Mesh: "m", Name: "n", Version: 42, Origin: "zone-1",
		CreationTime: resource.Timestamp(time.Unix(1, 0)), ModificationTime: resource.Timestamp(time.Unix(2, 0)),
		Labels: map[string]string{"team": "a"}}
}

// The Dataplane view keeps what the table (address) and the VIP allocator
// (resource.DataplaneServices: inbound and gateway service tags) read.
func TestDataplaneViewKeepsAddressAndServices(t *testing.T) {
	in := func(svc string, port uint32) *meshv1.Dataplane_Networking_Inbound {
		tags := map[string]string{"version": "v1", "weft.io/protocol": "http"}
		if svc != "" {
			tags[resource.ServiceTag] = svc
		}
		return &meshv1.Dataplane_Networking_Inbound{Port: port, ServicePort: port + 1, Tags: tags}
	}
	for name, dp := range map[string]*meshv1.Dataplane{
		"empty":            {},
		"no services":      {Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.1", Inbound: []*meshv1.Dataplane_Networking_Inbound{in("", 80)}}},
		"inbounds":         {Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.2", Inbound: []*meshv1.Dataplane_Networking_Inbound{in("web", 80), in("api", 81), in("web", 82)}}},
		"gateway":          {Networking: &meshv1.Dataplane_Networking{Address: "fd00::1", Gateway: &meshv1.Dataplane_Networking_Gateway{Tags: map[string]string{resource.ServiceTag: "edge", "x": "y"}, Type: "builtin"}}},
		"gateway+inbound":  {Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.3", Inbound: []*meshv1.Dataplane_Networking_Inbound{in("web", 80)}, Gateway: &meshv1.Dataplane_Networking_Gateway{Tags: map[string]string{resource.ServiceTag: "edge"}}}},
		"bad address kept": {Networking: &meshv1.Dataplane_Networking{Address: "not-an-ip", Inbound: []*meshv1.Dataplane_Networking_Inbound{in("web", 80)}}},
	} {
		t.Run(name, func(t *testing.T) {
			r := &resource.Resource{Meta: fullMeta("Dataplane"), Spec: dp}
			before := proto.Clone(dp)
			got := Dataplane.Transform(r)
			if !proto.Equal(dp, before) {
				t.Fatal("the view modified its input")
			}
			gdp := got.Spec.(*meshv1.Dataplane)
			if gdp.GetNetworking().GetAddress() != dp.GetNetworking().GetAddress() {
				t.Fatalf("address %q, want %q", gdp.GetNetworking().GetAddress(), dp.GetNetworking().GetAddress())
			}
			if g, w := resource.DataplaneServices(gdp), resource.DataplaneServices(dp); !slices.Equal(g, w) {
				t.Fatalf("services %v, want %v", g, w)
			}
			m := got.Meta
			if m.GetMesh() != "m" || m.GetName() != "n" || m.GetVersion() != 42 || m.GetType() != "Dataplane" {
				t.Fatalf("meta %v lost the identity or version", m)
			}
			if len(m.GetLabels()) != 0 || m.GetCreationTime() != nil || len(gdp.GetNetworking().GetInbound()) > 0 && gdp.GetNetworking().GetInbound()[0].GetPort() != 0 {
				t.Fatalf("view kept what no one reads: %v", got)
			}
		})
	}
}

func TestVirtualIPViewKeepsWhatTheTableAndAllocatorRead(t *testing.T) {
	rt := resource.Timestamp(time.Unix(3, 0))
	v := &meshv1.VirtualIP{Service: "web", Ip: "240.0.0.1", ReleasedTime: rt}
	got := VirtualIP.Transform(&resource.Resource{Meta: fullMeta("VirtualIP"), Spec: v})
	gv := got.Spec.(*meshv1.VirtualIP)
	if !proto.Equal(gv, v) {
		t.Fatalf("spec %v, want %v", gv, v)
	}
	if m := got.Meta; m.GetMesh() != "m" || m.GetName() != "n" || m.GetVersion() != 42 || len(m.GetLabels()) != 0 {
		t.Fatalf("meta %v", m)
	}
}

func TestViewsKeepOtherTypesAsTheyAre(t *testing.T) {
	r := resource.New(resource.MeshType, "", "m")
	if Dataplane.Transform(r) != nil || VirtualIP.Transform(r) != nil {
		t.Fatal("a view changed a resource of another type")
	}
}
