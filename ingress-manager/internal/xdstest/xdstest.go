// Package xdstest runs a real go-control-plane ADS server on loopback for
// ingress-manager tests: snapshots of ingress configuration (a Listener
// with one tcp_proxy filter chain per server name, EDS clusters and their
// assignments), and a record of every request (ACKs and NACKs). The
// end-to-end tests against Weft's own xds-server are in test/e2e/ingress.
package xdstest

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// Server is an ADS server on 127.0.0.1.
type Server struct {
	Addr  string
	Cache cachev3.SnapshotCache

	mu       sync.Mutex
	requests []*discoverygrpc.DiscoveryRequest
	opened   int
	// FailNext, when set, ends the next stream request with this error.
	failNext error
}

// Start serves until the test ends.
func Start(t testing.TB) *Server {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: ln.Addr().String(), Cache: cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)}
	ctx, cancel := context.WithCancel(context.Background())
	g := grpc.NewServer()
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, serverv3.NewServer(ctx, s.Cache, s))
	done := make(chan struct{})
	go func() { _ = g.Serve(ln); close(done) }()
	t.Cleanup(func() { cancel(); g.Stop(); <-done })
	return s
}

// Route is one server name and the endpoints (host:port) its cluster has.
type Route struct {
	Name      string
	Endpoints []string
}

// Snapshot is the ingress configuration of routes, as GenerateIngress
// shapes it.
func Snapshot(version string, routes ...Route) *cachev3.Snapshot {
	l := &listenerv3.Listener{Name: "ingress:0.0.0.0:10001"}
	var clusters, clas []types.Resource
	sort.Slice(routes, func(i, j int) bool { return routes[i].Name < routes[j].Name })
	for _, r := range routes {
		tp, _ := anypb.New(&tcpproxyv3.TcpProxy{StatPrefix: r.Name, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: r.Name}})
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
			Name:             r.Name,
			FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: []string{r.Name}, TransportProtocol: "tls"},
			Filters:          []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tp}}},
		})
		clusters = append(clusters, &clusterv3.Cluster{Name: r.Name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{ServiceName: r.Name}})
		loc := &endpointv3.LocalityLbEndpoints{}
		for _, e := range r.Endpoints {
			host, port, _ := net.SplitHostPort(e)
			p, _ := strconv.Atoi(port)
			loc.LbEndpoints = append(loc.LbEndpoints, &endpointv3.LbEndpoint{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
					SocketAddress: &corev3.SocketAddress{Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)}}}}}},
				HealthStatus: corev3.HealthStatus_HEALTHY})
		}
		clas = append(clas, &endpointv3.ClusterLoadAssignment{ClusterName: r.Name, Endpoints: []*endpointv3.LocalityLbEndpoints{loc}})
	}
	s, err := cachev3.NewSnapshot(version, map[resourcev3.Type][]types.Resource{
		resourcev3.ListenerType: {l}, resourcev3.ClusterType: clusters, resourcev3.EndpointType: clas})
	if err != nil {
		panic(fmt.Sprintf("snapshot: %v", err))
	}
	return s
}

// Set installs a snapshot for node.
func (s *Server) Set(t testing.TB, node string, snap *cachev3.Snapshot) {
	t.Helper()
	if err := s.Cache.SetSnapshot(context.Background(), node, snap); err != nil {
		t.Fatal(err)
	}
}

// FailNext ends the next stream at its next request (a server-side
// stream failure the client must recover from).
func (s *Server) FailNext() {
	s.mu.Lock()
	s.failNext = status.Error(codes.Unavailable, "xdstest: stream cut")
	s.mu.Unlock()
}

// Requests returns the requests received so far.
func (s *Server) Requests() []*discoverygrpc.DiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*discoverygrpc.DiscoveryRequest(nil), s.requests...)
}

// Opened is the number of streams opened so far.
func (s *Server) Opened() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opened
}

// Server callbacks.

func (s *Server) OnStreamOpen(context.Context, int64, string) error {
	s.mu.Lock()
	s.opened++
	s.mu.Unlock()
	return nil
}
func (s *Server) OnStreamClosed(int64, *corev3.Node) {}
func (s *Server) OnStreamRequest(_ int64, r *discoverygrpc.DiscoveryRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r)
	if err := s.failNext; err != nil {
		s.failNext = nil
		return err
	}
	return nil
}
func (s *Server) OnStreamResponse(context.Context, int64, *discoverygrpc.DiscoveryRequest, *discoverygrpc.DiscoveryResponse) {
}
func (s *Server) OnFetchRequest(context.Context, *discoverygrpc.DiscoveryRequest) error { return nil }
func (s *Server) OnFetchResponse(*discoverygrpc.DiscoveryRequest, *discoverygrpc.DiscoveryResponse) {
}
func (s *Server) OnDeltaStreamOpen(context.Context, int64, string) error { return nil }
func (s *Server) OnDeltaStreamClosed(int64, *corev3.Node)                {}
func (s *Server) OnStreamDeltaRequest(int64, *discoverygrpc.DeltaDiscoveryRequest) error {
	return nil
}
func (s *Server) OnStreamDeltaResponse(int64, *discoverygrpc.DeltaDiscoveryRequest, *discoverygrpc.DeltaDiscoveryResponse) {
}
