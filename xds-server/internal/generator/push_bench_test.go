package generator

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// BenchmarkPush is the xds-server's CPU per affected proxy per change,
// after generation: versions, go-control-plane's snapshot cache
// (SetSnapshot, a SotW watch per type answered from it) and the response
// serialized as the server sends it (GetDiscoveryResponse, then gRPC's
// proto marshal of the DiscoveryResponse). Every type is pushed, as after a
// mesh-wide change. One op is one proxy; the proxies (Envoy, 1000
// dataplanes over 100 services, mTLS on) are generated once, outside the
// timer, from one snapshot, so shared resources are shared as in the
// server.
//
//   - marshal-per-stream: before generator.Wire — Versions,
//     go-control-plane's Consistent, and the cache marshals every resource
//     of every response;
//
//   - wire: Snapshot.Wire and Snapshot.Consistent (what the reconciler
//     does) — each resource serialized once, the cache copies the bytes,
//     shared resources' references read once.
//
//     go test -run '^$' -bench BenchmarkPush -benchmem ./internal/generator
func BenchmarkPush(b *testing.B) {
	const n, proxies = 1000, 200
	mesh, dps, tps, vips := benchMesh(n)
	for _, mode := range []string{"marshal-per-stream", "wire"} {
		b.Run("mode="+mode, func(b *testing.B) {
			s := NewSnapshot("bench", mesh, dps, tps, vips)
			gen := make([]Resources, proxies)
			for i := range gen {
				name := dps[i].Meta.GetName()
				res, err := Generate(s, &Proxy{Mesh: "bench", Name: name, Kind: KindEnvoy, Dataplane: s.Dataplanes[name], Identity: identity})
				if err != nil {
					b.Fatal(err)
				}
				gen[i] = res
			}
			cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
			ch := make(chan cachev3.Response, 1)
			var bytesOut int
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				res := gen[i%proxies]
				node := &core.Node{Id: fmt.Sprintf("bench.dp-%d", i%proxies)}
				var cs *cachev3.Snapshot
				if mode == "wire" {
					wire, versions := s.Wire(res)
					if err := s.Consistent(res); err != nil {
						b.Fatal(err)
					}
					cs = wire.CacheSnapshot(versions)
				} else {
					cs = res.CacheSnapshot(s.Versions(res))
					if err := cs.Consistent(); err != nil {
						b.Fatal(err)
					}
				}
				if err := cache.SetSnapshot(b.Context(), node.Id, cs); err != nil {
					b.Fatal(err)
				}
				for _, typ := range TypeURLs {
					if len(res[typ]) == 0 {
						continue
					}
					var names []string
					if typ != resourcev3.ClusterType && typ != resourcev3.ListenerType {
						for _, r := range res[typ] {
							names = append(names, cachev3.GetResourceName(r))
						}
					}
					req := &discovery.DiscoveryRequest{Node: node, TypeUrl: typ, ResourceNames: names}
					if _, err := cache.CreateWatch(req, streamv3.NewSotwSubscription(names, true), ch); err != nil {
						b.Fatal(err)
					}
					dr, err := (<-ch).GetDiscoveryResponse()
					if err != nil {
						b.Fatal(err)
					}
					out, err := proto.Marshal(dr)
					if err != nil {
						b.Fatal(err)
					}
					bytesOut += len(out)
				}
			}
			b.StopTimer()
			// Process CPU (GC included) is robust to a loaded machine,
			// where ns/op is not.
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/proxy")
			b.ReportMetric(float64(bytesOut)/float64(b.N), "wire-B/proxy")
		})
	}
}

// cpuTime is this process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkEndpointPush is the reconciler's CPU per affected proxy for an
// endpoint-only change (one instance of a service moved), up to the cache
// holding the new snapshot; what go-control-plane then sends is the same
// either way (only the ClusterLoadAssignments' version changed). One op is
// one proxy of 200 (Envoy, 1000 dataplanes over 100 services, mTLS on, half
// transparent-proxied).
//
//   - full: Generate, Wire, Consistent, CacheSnapshot, SetSnapshot — every
//     affected proxy before the epoch;
//
//   - endpoints: GenerateEndpoints, Wire of those alone, the other types
//     taken from the cache snapshot, SetSnapshot (reconcile.endpointsOnly);
//
//   - policy-full: as full, after a mesh-wide Timeout instead;
//
//   - policy-inbound-reused: the same with the inbound listeners and
//     clusters taken from the cache snapshot (Proxy.Reuse).
//
//     go test -run '^$' -bench BenchmarkEndpointPush -benchmem ./internal/generator
func BenchmarkEndpointPush(b *testing.B) {
	const n, proxies = 1000, 200
	mesh, dps, tps, vips := benchMesh(n)
	s0 := NewSnapshot("bench", mesh, dps, tps, vips)
	// dp-999 (svc-99, which dp-996…dp-998 call, and every transparent
	// proxy through its VIP) moves.
	moved := resource.New(resource.DataplaneType, "bench", "dp-999")
	moved.Spec = proto.Clone(dps[n-1].Spec.(*meshv1.Dataplane))
	moved.Spec.(*meshv1.Dataplane).Networking.Address = "10.200.0.1"
	dps1 := append(append([]*resource.Resource(nil), dps[:n-1]...), moved)
	// A mesh-wide Timeout: every type but the endpoints may change, the
	// inbound resources cannot.
	all := []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: "*"}}}
	timeout := resource.New(resource.TimeoutType, "bench", "mesh-wide")
	timeout.Spec = &meshv1.Timeout{Sources: all, Destinations: all, Conf: &meshv1.Timeout_Conf{ConnectTimeout: "7s", Http: &meshv1.Timeout_Conf_Http{RequestTimeout: "7s"}}}
	for _, mode := range []string{"full", "endpoints", "policy-full", "policy-inbound-reused"} {
		b.Run("mode="+mode, func(b *testing.B) {
			cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
			for i := 0; i < proxies; i++ {
				name := dps[i].Meta.GetName()
				res, err := Generate(s0, &Proxy{Mesh: "bench", Name: name, Kind: KindEnvoy, Dataplane: s0.Dataplanes[name], Identity: identity})
				if err != nil {
					b.Fatal(err)
				}
				wire, versions := s0.Wire(res)
				if err := cache.SetSnapshot(b.Context(), "bench."+name, wire.CacheSnapshot(versions)); err != nil {
					b.Fatal(err)
				}
			}
			s1 := buildSnapshot(s0, "bench", mesh, dps1, tps, vips, nil, nil)
			if s1.Epoch() != s0.Epoch() {
				b.Fatal("a moved instance gave a new epoch")
			}
			policy := strings.HasPrefix(mode, "policy-")
			if policy {
				s1 = buildSnapshot(s0, "bench", mesh, dps, tps, vips, []*resource.Resource{timeout}, nil)
				if s1.Epoch() == s0.Epoch() || s1.InboundEpoch() != s0.InboundEpoch() {
					b.Fatal("a Timeout kept the epoch or changed the inbound epoch")
				}
			}
			eds := cachev3.GetResponseType(resourcev3.EndpointType)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				name := dps[i%proxies].Meta.GetName()
				p := &Proxy{Mesh: "bench", Name: name, Kind: KindEnvoy, Dataplane: s1.Dataplanes[name], Identity: identity}
				var cs *cachev3.Snapshot
				if mode != "endpoints" {
					if mode == "policy-inbound-reused" {
						rs, err := cache.GetSnapshot("bench." + name)
						if err != nil {
							b.Fatal(err)
						}
						cs0 := rs.(*cachev3.Snapshot)
						p.Reuse = func(typ, n string) types.Resource {
							return cs0.Resources[cachev3.GetResponseType(typ)].Items[n].Resource
						}
					}
					res, err := Generate(s1, p)
					if err != nil {
						b.Fatal(err)
					}
					wire, versions := s1.Wire(res)
					if err := s1.Consistent(res); err != nil {
						b.Fatal(err)
					}
					cs = wire.CacheSnapshot(versions)
				} else {
					rs, err := cache.GetSnapshot("bench." + name)
					if err != nil {
						b.Fatal(err)
					}
					list, err := GenerateEndpoints(s1, p)
					if err != nil {
						b.Fatal(err)
					}
					wire, versions := s1.Wire(Resources{resourcev3.EndpointType: list})
					cs = &cachev3.Snapshot{Resources: rs.(*cachev3.Snapshot).Resources}
					cs.Resources[eds] = cachev3.NewResources(versions[resourcev3.EndpointType], wire[resourcev3.EndpointType])
				}
				if err := cache.SetSnapshot(b.Context(), "bench."+name, cs); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/proxy")
		})
	}
}
