package generator

import (
	"fmt"
	"testing"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/xds-server/internal/meshview"
	"google.golang.org/protobuf/proto"
)

// churnView is a mesh of n dataplanes over the given number of services,
// shaped like benchMesh (3 outbounds each, half transparent-proxied, one
// permission and one VIP per service).
func churnView(n, services int) *meshview.Mesh {
	mesh, dps, _, _ := benchMesh(n)
	_, _, tps, vips := benchMesh(services * 10)
	for i, d := range dps {
		dp := d.Spec.(*meshv1.Dataplane)
		dp.Networking.Inbound[0].Tags[resource.ServiceTag] = fmt.Sprintf("svc-%d", i%services)
		for k, ob := range dp.Networking.Outbound {
			ob.Tags[resource.ServiceTag] = fmt.Sprintf("svc-%d", (i+k+1)%services)
		}
	}
	return &meshview.Mesh{Name: "bench", Spec: mesh, Dataplanes: dps, TrafficPermissions: tps, VirtualIPs: vips}
}

// reRegister returns v with dataplane i replaced by a new resource (as a
// store change does): same spec, a fresh pointer, and its inbound's
// readiness flipped when flip is set.
func reRegister(v *meshview.Mesh, i int, flip bool) *meshview.Mesh {
	nv := *v
	nv.Dataplanes = append([]*resource.Resource(nil), v.Dataplanes...)
	old := v.Dataplanes[i]
	r := resource.New(resource.DataplaneType, "bench", old.Meta.GetName())
	dp := proto.Clone(old.Spec.(*meshv1.Dataplane)).(*meshv1.Dataplane)
	if flip {
		in := dp.Networking.Inbound[0]
		if in.Health == nil {
			in.Health = &meshv1.Dataplane_Networking_Inbound_Health{Ready: false}
		} else {
			in.Health = nil
		}
	}
	r.Spec = dp
	nv.Dataplanes[i] = r
	return &nv
}

// BenchmarkSnapshotChurn is one Dataplane re-registered (its inbound going
// unready or ready again) → the mesh snapshot rebuilt, as the reconciler
// does per store change (cpu-ns/op: process CPU per op, setup excluded); "+generate" also generates and versions the
// re-registered proxy's configuration (an Envoy sidecar), which is where
// work left lazy is paid.
func BenchmarkSnapshotChurn(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		base := churnView(n, 500)
		for _, gen := range []bool{false, true} {
			name := fmt.Sprintf("dataplanes=%d/services=500", n)
			if gen {
				name += "/+generate"
			}
			b.Run(name, func(b *testing.B) {
				v := base
				prev := FromViewAfter("bench", v, nil)
				b.ReportAllocs()
				cpu0 := cpuTime()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					k := (i * 7919) % n
					v = reRegister(v, k, true)
					s := FromViewAfter("bench", v, prev)
					if gen {
						d := v.Dataplanes[k]
						res, err := Generate(s, &Proxy{Mesh: "bench", Name: d.Meta.GetName(), Kind: KindEnvoy, Dataplane: s.Dataplanes[d.Meta.GetName()], Identity: identity})
						if err != nil {
							b.Fatal(err)
						}
						s.Versions(res)
					}
					prev = s
				}
				b.StopTimer()
				b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
			})
		}
	}
}
