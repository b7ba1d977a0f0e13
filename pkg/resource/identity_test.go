package resource_test

import (
	"reflect"
	"testing"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func TestDataplaneServices(t *testing.T) {
	in := func(tags map[string]string) *meshv1.Dataplane_Networking_Inbound {
		return &meshv1.Dataplane_Networking_Inbound{Port: 1, Tags: tags}
	}
	svc := func(s string) map[string]string { return map[string]string{resource.ServiceTag: s} }
	for _, tc := range []struct {
		name string
		dp   *meshv1.Dataplane
		want []string
	}{
		{"nil", nil, []string{}},
		{"no networking", &meshv1.Dataplane{}, []string{}},
		{"one inbound", &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{
			Inbound: []*meshv1.Dataplane_Networking_Inbound{in(svc("web"))}}}, []string{"web"}},
		{"distinct and sorted", &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{
			Inbound: []*meshv1.Dataplane_Networking_Inbound{in(svc("web")), in(svc("admin-api")), in(svc("web"))}}},
			[]string{"admin-api", "web"}},
		{"inbound without service tag", &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{
			Inbound: []*meshv1.Dataplane_Networking_Inbound{in(map[string]string{"version": "v1"})}}}, []string{}},
		{"gateway counts", &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{
			Gateway: &meshv1.Dataplane_Networking_Gateway{Tags: svc("backend")}}}, []string{"backend"}},
		{"inbounds and gateway", &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{
			Inbound: []*meshv1.Dataplane_Networking_Inbound{in(svc("web"))},
			Gateway: &meshv1.Dataplane_Networking_Gateway{Tags: svc("edge")}}}, []string{"edge", "web"}},
		{"outbounds do not count", &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{
			Inbound:  []*meshv1.Dataplane_Networking_Inbound{in(svc("web"))},
			Outbound: []*meshv1.Dataplane_Networking_Outbound{{Port: 2, Tags: svc("backend")}}}}, []string{"web"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := resource.DataplaneServices(tc.dp); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("DataplaneServices = %q, want %q", got, tc.want)
			}
		})
	}
}
