package ads

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/config"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// loopServer serves ADS with go-control-plane's SotW loop and opts, one
// loop per stream as Server.sotw does (no callbacks: only the loop).
type loopServer struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	cache cachev3.Cache
	opts  []config.XDSOption
}

func (s *loopServer) StreamAggregatedResources(str discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return sotwv3.NewServer(str.Context(), s.cache, nil, s.opts...).StreamHandler(str, resourcev3.AnyType)
}

// loopSnapshot is round's snapshot: every type's version changes, or with
// edsOnly only the endpoints' (an endpoint change, scenario (a)).
func loopSnapshot(b *testing.B, round int, edsOnly bool) *cachev3.Snapshot {
	v, cv := fmt.Sprint(round), fmt.Sprint(round)
	if edsOnly {
		cv = "0"
	}
	snap := &cachev3.Snapshot{}
	for typ, r := range map[string]struct {
		version string
		res     types.Resource
	}{
		resourcev3.ClusterType: {cv, &clusterv3.Cluster{Name: "backend", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{ServiceName: "backend"}, AltStatName: cv}},
		resourcev3.EndpointType: {v, &endpointv3.ClusterLoadAssignment{ClusterName: "backend", Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Hostname: v}}}}}}}},
		resourcev3.ListenerType: {cv, &listenerv3.Listener{Name: "outbound", StatPrefix: cv}},
	} {
		snap.Resources[cachev3.GetResponseType(typ)] = cachev3.NewResources(r.version, []types.Resource{r.res})
	}
	return snap
}

// BenchmarkSotWLoop: one op is a snapshot with a new cluster, endpoint and
// listener set for each of 500 proxies, until every proxy has ACKed all
// three (over one local gRPC connection per 50 proxies). "unordered" is
// go-control-plane's default loop (reflect.Select over a channel per type,
// a new channel per request), "ordered" the one sotwOptions selects, and
// "ordered-cache" that loop with OrderedCache, as the xds-server runs.
func BenchmarkSotWLoop(b *testing.B) {
	for _, tc := range []struct {
		name    string
		opts    []config.XDSOption
		ordered bool
	}{{"unordered", nil, false}, {"ordered", sotwOptions, false}, {"ordered-cache", sotwOptions, true}} {
		b.Run(tc.name, func(b *testing.B) { benchLoop(b, tc.opts, tc.ordered, false) })
		b.Run(tc.name+"/eds-only", func(b *testing.B) { benchLoop(b, tc.opts, tc.ordered, true) })
	}
}

func benchLoop(b *testing.B, opts []config.XDSOption, ordered, edsOnly bool) {
	const proxies, perConn = 500, 50
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cache cachev3.SnapshotCache = cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	if ordered {
		cache = NewOrderedCache(cache)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, &loopServer{cache: cache, opts: opts})
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	types := []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType}
	// acked[round] counts the proxies' ACKs of that round's responses.
	var mu sync.Mutex
	acked := map[string]int{}
	roundDone := make(chan struct{}, 1)
	want := proxies * len(types) // round 0: every type (under mu)
	for c := 0; c < proxies/perConn; c++ {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		for i := 0; i < perConn; i++ {
			id := fmt.Sprintf("p%d", c*perConn+i)
			if err := cache.SetSnapshot(ctx, id, loopSnapshot(b, 0, false)); err != nil {
				b.Fatal(err)
			}
			s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
			if err != nil {
				b.Fatal(err)
			}
			for j, typ := range types {
				req := &discoveryv3.DiscoveryRequest{TypeUrl: typ}
				if j == 0 {
					req.Node = &corev3.Node{Id: id}
				}
				if err := s.Send(req); err != nil {
					b.Fatal(err)
				}
			}
			go func() {
				for {
					resp, err := s.Recv()
					if err != nil {
						return
					}
					if s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}) != nil {
						return
					}
					mu.Lock()
					acked[resp.GetVersionInfo()]++
					if acked[resp.GetVersionInfo()] == want {
						roundDone <- struct{}{}
					}
					mu.Unlock()
				}
			}()
		}
	}
	<-roundDone // every proxy holds round 0
	if edsOnly {
		mu.Lock()
		want = proxies // later rounds: one response per proxy
		mu.Unlock()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for round := 1; round <= b.N; round++ {
		for p := 0; p < proxies; p++ {
			if err := cache.SetSnapshot(ctx, fmt.Sprintf("p%d", p), loopSnapshot(b, round, edsOnly)); err != nil {
				b.Fatal(err)
			}
		}
		<-roundDone
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*proxies), "ns/proxy")
}
