package generator

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/pkg/xdsnames"
)

// ServerListenerNameTemplate is the server listener resource name grpc-go
// servers ask for (bootstrap server_listener_resource_name_template).
const ServerListenerNameTemplate = xdsnames.ServerListenerNameTemplate

// ClientListenerName is what a proxyless client dials: xds:///<service>.mesh.
func ClientListenerName(service string) string { return xdsnames.ClientListenerName(service) }

// grpcShared holds the client-side resources of every service of a mesh:
// the same for every proxyless client, so built once per mesh snapshot, on
// first use by one (Snapshot.grpc).
type grpcShared struct {
	services  []string
	listeners []*listenerv3.Listener
	routes    []*routev3.RouteConfiguration
	clusters  []*clusterv3.Cluster
	endpoints []*endpointv3.ClusterLoadAssignment
	// set marks the pieces built here (shared: validated once, digests
	// cached); err is the first invalid one.
	set map[types.Resource]bool
	err error
}

func buildGRPCShared(s *Snapshot) *grpcShared {
	g := &grpcShared{set: map[types.Resource]bool{}}
	if s.MeshSpec == nil {
		return g
	}
	carry := s.grpcCarry
	if carry == nil {
		carry = &grpcCarry{}
	}
	g.services = s.services
	for _, svc := range s.services {
		p, ok := carry.pieces[svc]
		if !ok {
			name := ClientListenerName(svc)
			p = grpcPiece{
				listener: grpcClientListener(svc),
				route: &routev3.RouteConfiguration{
					Name: name,
					VirtualHosts: []*routev3.VirtualHost{{
						Name:    svc,
						Domains: []string{name, name + ":*"},
						Routes:  []*routev3.Route{routeTo(svc)},
					}},
				},
				cluster: newGRPCCluster(s, svc),
			}
		}
		g.listeners = append(g.listeners, p.listener)
		g.routes = append(g.routes, p.route)
		g.clusters = append(g.clusters, p.cluster)
		g.endpoints = append(g.endpoints, s.endpoints[svc])
		s.lazyShare(g.set, p.listener, carry.digests, ok, &g.err)
		s.lazyShare(g.set, p.route, carry.digests, ok, &g.err)
		s.lazyShare(g.set, p.cluster, carry.digests, ok, &g.err)
	}
	return g
}

func generateGRPC(s *Snapshot, p *Proxy) (Resources, error) {
	out := Resources{}
	mtls, _ := s.MTLS()
	sh, err := s.grpc()
	if err != nil {
		return nil, err
	}
	sel := newOutboundSelector(s, p)
	switch {
	case p.Requested != nil && sel.any():
		// Only what the client named (requested.go), shaped by its
		// policies.
		if err := addRequestedGRPCClients(out, s, sel, p.Requested); err != nil { // policy_grpc.go
			return nil, err
		}
	case p.Requested != nil:
		s.plainIndex().addRequested(out, p.Requested)
	case sel.any():
		if err := addGRPCClients(out, s, sel); err != nil { // policy_grpc.go
			return nil, err
		}
	default:
		for i := range sh.listeners {
			out.add(resourcev3.ListenerType, sh.listeners[i])
			out.add(resourcev3.RouteType, sh.routes[i])
			out.add(resourcev3.ClusterType, sh.clusters[i])
			out.add(resourcev3.EndpointType, sh.endpoints[i])
		}
	}
	// weft-dp fetches the certificate over the same ADS as secrets and
	// writes the files grpc-go's file_watcher provider reads.
	if mtls && p.Identity != nil {
		for _, sec := range identitySecrets(p.Identity) {
			out.add(resourcev3.SecretType, sec)
		}
	}
	dp := p.Dataplane
	for i, in := range dp.GetNetworking().GetInbound() {
		addr := inboundAddress(dp, in)
		if addr == "" {
			return nil, fmt.Errorf("networking.inbound[%d]: no address", i)
		}
		out.add(resourcev3.ListenerType, grpcServerListener(s, addr, in.GetPort(), in.GetTags(), mtls))
	}
	return out, nil
}

func grpcServerListener(s *Snapshot, addr string, port uint32, tags map[string]string, mtls bool) *listenerv3.Listener {
	name := xdsnames.ServerListenerName(addr, port)
	var filters []*hcmv3.HttpFilter
	if mtls {
		filters = append(filters, &hcmv3.HttpFilter{
			Name:       "envoy.filters.http.rbac",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&rbachttpv3.RBAC{Rules: rbacRules(s, tags)})},
		})
	}
	filters = append(filters, routerFilter())
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "inbound:" + hostPort(addr, port),
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    "inbound",
				Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
				}},
			}},
		}},
		HttpFilters: filters,
	}
	chain := &listenerv3.FilterChain{Name: "inbound", Filters: []*listenerv3.Filter{hcmFilter(hcm)}}
	if mtls {
		// grpc-go cannot tell TLS from plaintext on one port, so even a
		// permissive mesh gets mTLS-only proxyless servers.
		chain.TransportSocket = tlsSocket(grpcDownstreamTLS())
	}
	return &listenerv3.Listener{
		Name:         name,
		Address:      socketAddress(addr, port),
		FilterChains: []*listenerv3.FilterChain{chain},
	}
}
