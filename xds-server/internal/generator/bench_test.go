package generator

import (
	"fmt"
	"sort"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/xdsnames"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// benchMesh is a mesh of n dataplanes over n/10 services, each dataplane
// calling 3 services explicitly, half of them transparent-proxied (so they
// also get a VIP listener per service), with one permission per service.
func benchMesh(n int) (*meshv1.Mesh, []*resource.Resource, []*resource.Resource, []*resource.Resource) {
	services := max(n/10, 1)
	mesh := &meshv1.Mesh{Mtls: &meshv1.Mesh_Mtls{EnabledBackend: "ca", Backends: []*meshv1.CertificateAuthorityBackend{{Name: "ca", Type: "builtin"}}}}
	var dps, tps, vips []*resource.Resource
	for i := 0; i < n; i++ {
		svc := fmt.Sprintf("svc-%d", i%services)
		dp := &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{
			Address: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
			Inbound: []*meshv1.Dataplane_Networking_Inbound{{Port: 8080, ServicePort: 80, Tags: map[string]string{resource.ServiceTag: svc, resource.ProtocolTag: "http"}}},
		}}
		for k := 1; k <= 3; k++ {
			dp.Networking.Outbound = append(dp.Networking.Outbound, &meshv1.Dataplane_Networking_Outbound{
				Port: uint32(10000 + k), Tags: map[string]string{resource.ServiceTag: fmt.Sprintf("svc-%d", (i+k)%services)}})
		}
		if i%2 == 0 {
			dp.Networking.TransparentProxying = &meshv1.Dataplane_Networking_TransparentProxying{RedirectPortInbound: 15006, RedirectPortOutbound: 15001}
		}
		r := resource.New(resource.DataplaneType, "bench", fmt.Sprintf("dp-%d", i))
		r.Spec = dp
		dps = append(dps, r)
	}
	for s := 0; s < services; s++ {
		svc := fmt.Sprintf("svc-%d", s)
		tp := resource.New(resource.TrafficPermissionType, "bench", "to-"+svc)
		tp.Spec = &meshv1.TrafficPermission{
			Sources:      []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: fmt.Sprintf("svc-%d", (s+1)%services)}}},
			Destinations: []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: svc}}},
		}
		tps = append(tps, tp)
		v := resource.New(resource.VirtualIPType, "bench", svc)
		v.Spec = &meshv1.VirtualIP{Service: svc, Ip: fmt.Sprintf("240.0.%d.%d", s>>8&255, s&255)}
		vips = append(vips, v)
	}
	return mesh, dps, tps, vips
}

var identity = &Identity{CertChainPEM: []byte("CERT"), KeyPEM: []byte("KEY"), TrustBundlePEM: []byte("CA")}

// BenchmarkNewSnapshot is the shared, once-per-change part: endpoints per
// service and the proxyless client resources.
func BenchmarkNewSnapshot(b *testing.B) {
	for _, n := range []int{100, 1000} {
		mesh, dps, tps, vips := benchMesh(n)
		b.Run(fmt.Sprintf("dataplanes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				NewSnapshot("bench", mesh, dps, tps, vips)
			}
		})
	}
}

// BenchmarkGenerateMesh regenerates every proxy of the mesh (the worst
// case: a Mesh change) and reports per-proxy p50/p99 alongside the total.
func BenchmarkGenerateMesh(b *testing.B) {
	for _, kind := range []string{KindEnvoy, KindGRPC} {
		for _, n := range []int{100, 1000} {
			mesh, dps, tps, vips := benchMesh(n)
			b.Run(fmt.Sprintf("kind=%s/dataplanes=%d", kind, n), func(b *testing.B) {
				regenerateAll(b, kind, dps, func() *Snapshot { return NewSnapshot("bench", mesh, dps, tps, vips) })
			})
		}
	}
}

// regenerateAll builds a snapshot and generates every dataplane's
// configuration b.N times, reporting per-proxy p50/p99.
func regenerateAll(b *testing.B, kind string, dps []*resource.Resource, snapshot func() *Snapshot) {
	b.ReportAllocs()
	lat := make([]time.Duration, 0, len(dps)*b.N)
	for i := 0; i < b.N; i++ {
		s := snapshot()
		for _, d := range dps {
			start := time.Now()
			res, err := Generate(s, &Proxy{Mesh: "bench", Name: d.Meta.GetName(), Kind: kind, Dataplane: s.Dataplanes[d.Meta.GetName()], Identity: identity})
			if err != nil {
				b.Fatal(err)
			}
			s.Versions(res)
			lat = append(lat, time.Since(start))
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs/proxy")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs/proxy")
}

// BenchmarkGenerateProxyless is one proxyless proxy's generation as the
// reconciler does it per change (Generate, VersionsFor, CacheSnapshot) in a
// mesh of 500 services, with every service's client resources (Requested
// nil: the cost before requested names were tracked) and with what a
// client calling one service asks for (its listener, route, cluster and
// endpoints, plus its server listener).
func BenchmarkGenerateProxyless(b *testing.B) {
	const n = 5000 // 500 services
	mesh, dps, tps, vips := benchMesh(n)
	for _, policies := range []bool{false, true} {
		var others []*resource.Resource
		if policies {
			others = benchPolicies(n/10, dps, mesh, false)
		}
		s := NewSnapshotWithPolicies("bench", mesh, dps, tps, vips, others)
		dp := s.Dataplanes["dp-7"]
		one := NewRequested()
		one, _ = one.With(resourcev3.ListenerType, []string{ClientListenerName("svc-8"), xdsnames.ServerListenerName("10.0.0.7", 8080)})
		one, _ = one.With(resourcev3.RouteType, []string{ClientListenerName("svc-8")})
		one, _ = one.With(resourcev3.ClusterType, []string{"svc-8"})
		one, _ = one.With(resourcev3.EndpointType, []string{"svc-8"})
		for _, v := range []struct {
			name string
			q    *Requested
		}{{"every-service", nil}, {"one-service", one}} {
			b.Run(fmt.Sprintf("policies=%v/requested=%s", policies, v.name), func(b *testing.B) {
				b.ReportAllocs()
				var count int
				for i := 0; i < b.N; i++ {
					p := &Proxy{Mesh: "bench", Name: "dp-7", Kind: KindGRPC, Dataplane: dp, Identity: identity, Requested: v.q}
					res, err := Generate(s, p)
					if err != nil {
						b.Fatal(err)
					}
					vs, err := s.VersionsFor(p, res)
					if err != nil {
						b.Fatal(err)
					}
					res.CacheSnapshot(vs)
					count = 0
					for _, list := range res {
						count += len(list)
					}
				}
				b.ReportMetric(float64(count), "resources/proxy")
			})
		}
	}
}
