package generator

import (
	"fmt"
	"sort"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Envoy listener and cluster names.
func inboundListenerName(addr string, port uint32) string  { return "inbound:" + hostPort(addr, port) }
func outboundListenerName(addr string, port uint32) string { return "outbound:" + hostPort(addr, port) }
func localClusterName(addr string, port uint32) string     { return "localhost:" + hostPort(addr, port) }

const passthroughCluster = "outbound:passthrough"

func isHTTP(protocol string) bool {
	return protocol == "http" || protocol == "http2" || protocol == "grpc"
}

func isHTTP2(protocol string) bool { return protocol == "http2" || protocol == "grpc" }

func generateEnvoy(s *Snapshot, p *Proxy) (Resources, error) {
	out := Resources{}
	dp := p.Dataplane
	sel := newOutboundSelector(s, p) // policies per destination (policy_envoy.go)
	mtls, permissive := s.MTLS()
	if mtls && p.Identity != nil {
		for _, sec := range identitySecrets(p.Identity) {
			out.add(resourcev3.SecretType, sec)
		}
	}
	// Transparent proxying with an inbound redirect port: the inbounds are
	// filter chains of one redirect listener (inbound_redirect.go).
	redirectIn := dp.GetNetworking().GetTransparentProxying().GetRedirectPortInbound()
	var redirected []*listenerv3.Listener
	var redirectedPorts []uint32
	for i, in := range dp.GetNetworking().GetInbound() {
		if redirectIn == 0 && p.Reuse != nil && sel.template == nil {
			if l, c := reusedInbound(p, in); l != nil {
				out.add(resourcev3.ClusterType, c)
				out.add(resourcev3.ListenerType, l)
				continue
			}
		}
		l, c, err := envoyInbound(s, dp, in, mtls, permissive, sel.inboundTracing())
		if err != nil {
			return nil, fmt.Errorf("networking.inbound[%d]: %w", i, err)
		}
		out.add(resourcev3.ClusterType, c)
		if redirectIn != 0 {
			redirected, redirectedPorts = append(redirected, l), append(redirectedPorts, in.GetPort())
			continue
		}
		out.add(resourcev3.ListenerType, l)
	}
	if redirectIn != 0 {
		out.add(resourcev3.ListenerType, inboundRedirect(redirectIn, redirected, redirectedPorts))
	}
	outbound := map[string]bool{}
	for i, ob := range dp.GetNetworking().GetOutbound() {
		svc := ob.GetTags()[resource.ServiceTag]
		if svc == "" {
			return nil, fmt.Errorf("networking.outbound[%d]: no %s tag", i, resource.ServiceTag)
		}
		addr := ob.GetAddress()
		if addr == "" {
			addr = "127.0.0.1"
		}
		l, err := envoyOutbound(s, sel, nil, outboundListenerName(addr, ob.GetPort()), addr, ob.GetPort(), svc, true)
		if err != nil {
			return nil, fmt.Errorf("networking.outbound[%d]: %w", i, err)
		}
		out.add(resourcev3.ListenerType, l)
		outbound[svc] = true
	}
	if tp := dp.GetNetworking().GetTransparentProxying(); tp != nil {
		// One VIP:80 listener per reachable service; the redirect listener
		// hands intercepted connections to them by original destination.
		sh, err := s.envoy()
		if err != nil {
			return nil, err
		}
		for _, svc := range sh.vipServices {
			l, err := envoyOutbound(s, sel, sh.vipListeners[svc], outboundListenerName(s.VIPs[svc], 80), s.VIPs[svc], 80, svc, false)
			if err != nil {
				return nil, err
			}
			out.add(resourcev3.ListenerType, l)
			outbound[svc] = true
		}
		if port := tp.GetRedirectPortOutbound(); port != 0 {
			out.add(resourcev3.ListenerType, &listenerv3.Listener{
				Name:           fmt.Sprintf("outbound:redirect:%d", port),
				Address:        socketAddress("0.0.0.0", port),
				UseOriginalDst: wrapperspb.Bool(true),
				FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{
					tcpProxyFilter("outbound_passthrough", passthroughCluster),
				}}},
			})
			out.add(resourcev3.ClusterType, &clusterv3.Cluster{
				Name:                 passthroughCluster,
				ConnectTimeout:       durationpb.New(5e9),
				ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
				LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
			})
		}
	}
	added := make(map[string]bool, 2*len(outbound))
	for _, svc := range sortedKeys(outbound) {
		if err := addDestination(out, s, svc, isHTTP(s.Protocol(svc)), sel, added, false); err != nil {
			return nil, err
		}
	}
	if err := addTracingCluster(out, s, sel.trace); err != nil {
		return nil, err
	}
	if err := applyProxyTemplate(out, s, sel); err != nil { // last: it sees everything
		return nil, err
	}
	return out, nil
}

// envoyShared holds the Envoy resources that are the same for every
// sidecar of a mesh: a cluster per service and a VIP listener per service.
type envoyShared struct {
	clusters     map[string]*clusterv3.Cluster
	vipServices  []string
	vipListeners map[string]*listenerv3.Listener
	// set marks the pieces built here (shared: validated once, digests
	// cached); err is the first invalid one.
	set map[types.Resource]bool
	err error
}

// buildEnvoyShared builds the pieces on first use by a sidecar
// (Snapshot.envoy), taking from the previous snapshot those built for the
// same protocol and VIP.
func buildEnvoyShared(s *Snapshot) *envoyShared {
	e := &envoyShared{clusters: map[string]*clusterv3.Cluster{}, vipListeners: map[string]*listenerv3.Listener{}, set: map[types.Resource]bool{}}
	if s.MeshSpec == nil {
		return e
	}
	carry := s.envoyCarry
	if carry == nil {
		carry = &envoyCarry{}
	}
	for _, svc := range s.services {
		c, ok := carry.clusters[svc]
		if !ok || c.protocol != s.protocols[svc] {
			c, ok = carriedCluster{c: newOutboundCluster(s, svc)}, false
		}
		e.clusters[svc] = c.c
		s.lazyShare(e.set, c.c, carry.digests, ok, &e.err)
	}
	e.vipServices = sortedKeys(s.VIPs)
	for _, svc := range e.vipServices {
		vip := s.VIPs[svc]
		l, ok := carry.vips[svc]
		if !ok || l.vip != vip || l.protocol != s.protocols[svc] {
			l, ok = carriedVIP{l: envoyOutboundListener(s, outboundListenerName(vip, 80), vip, 80, svc, false)}, false
		}
		e.vipListeners[svc] = l.l
		s.lazyShare(e.set, l.l, carry.digests, ok, &e.err)
	}
	return e
}

// cluster returns the shared cluster of a service, or a new one for a
// service no dataplane offers (yet).
func (e *envoyShared) cluster(s *Snapshot, svc string) *clusterv3.Cluster {
	if c := e.clusters[svc]; c != nil {
		return c
	}
	return newOutboundCluster(s, svc)
}

func newOutboundCluster(s *Snapshot, svc string) *clusterv3.Cluster {
	c := edsCluster(svc)
	if mtls, _ := s.MTLS(); mtls {
		c.TransportSocket = tlsSocket(envoyUpstreamTLS(s.Mesh, svc))
	}
	if isHTTP2(s.Protocol(svc)) {
		c.TypedExtensionProtocolOptions = http2Options()
	}
	return c
}

func envoyInbound(s *Snapshot, dp *meshv1.Dataplane, in *meshv1.Dataplane_Networking_Inbound, mtls, permissive bool, tracing *hcmv3.HttpConnectionManager_Tracing) (*listenerv3.Listener, *clusterv3.Cluster, error) {
	addr := inboundAddress(dp, in)
	if addr == "" {
		return nil, nil, fmt.Errorf("no address")
	}
	svcAddr, svcPort := inboundService(in)
	protocol := in.GetTags()[resource.ProtocolTag]
	clusterName := localClusterName(svcAddr, svcPort)
	cluster := &clusterv3.Cluster{
		Name:                 clusterName,
		ConnectTimeout:       durationpb.New(5e9),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment:       loadAssignment(clusterName, []endpointKey{{addr: svcAddr, port: svcPort}}, nil),
	}
	if isHTTP2(protocol) {
		cluster.TypedExtensionProtocolOptions = http2Options()
	}
	name := inboundListenerName(addr, in.GetPort())
	chain := func(withRBAC bool) *listenerv3.FilterChain {
		var rules *rbacv3.RBAC
		if withRBAC {
			rules = rbacRules(s, in.GetTags())
		}
		if isHTTP(protocol) {
			return &listenerv3.FilterChain{Filters: []*listenerv3.Filter{inboundHCM(name, clusterName, rules, protocol, tracing)}}
		}
		var filters []*listenerv3.Filter
		if rules != nil {
			filters = append(filters, &listenerv3.Filter{
				Name:       "envoy.filters.network.rbac",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&rbacnetv3.RBAC{StatPrefix: name + ".rbac", Rules: rules})},
			})
		}
		return &listenerv3.FilterChain{Filters: append(filters, tcpProxyFilter(name, clusterName))}
	}
	l := &listenerv3.Listener{
		Name:             name,
		Address:          socketAddress(addr, in.GetPort()),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
	}
	switch {
	case !mtls:
		l.FilterChains = []*listenerv3.FilterChain{chain(false)}
	case permissive:
		// TLS goes to the mTLS+RBAC chain; anything else is accepted as is.
		tls := chain(true)
		tls.Name = "mtls"
		tls.FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: "tls"}
		tls.TransportSocket = tlsSocket(envoyDownstreamTLS(s.Mesh))
		plain := chain(false)
		plain.Name = "plaintext"
		plain.FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer"}
		l.FilterChains = []*listenerv3.FilterChain{tls, plain}
		l.ListenerFilters = []*listenerv3.ListenerFilter{{
			Name:       "envoy.filters.listener.tls_inspector",
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspectorv3.TlsInspector{})},
		}}
	default:
		c := chain(true)
		c.Name = "mtls"
		c.TransportSocket = tlsSocket(envoyDownstreamTLS(s.Mesh))
		l.FilterChains = []*listenerv3.FilterChain{c}
	}
	return l, cluster, nil
}

// inboundService is where an inbound forwards to.
func inboundService(in *meshv1.Dataplane_Networking_Inbound) (string, uint32) {
	svcPort := in.GetServicePort()
	if svcPort == 0 {
		svcPort = in.GetPort()
	}
	svcAddr := in.GetServiceAddress()
	if svcAddr == "" {
		svcAddr = "127.0.0.1"
	}
	return svcAddr, svcPort
}

// inboundNames are the names of an inbound's listener and cluster (false:
// it has no address).
func inboundNames(dp *meshv1.Dataplane, in *meshv1.Dataplane_Networking_Inbound) (string, string, bool) {
	addr := inboundAddress(dp, in)
	if addr == "" {
		return "", "", false
	}
	return inboundListenerName(addr, in.GetPort()), localClusterName(inboundService(in)), true
}

func inboundHCM(statPrefix, cluster string, rules *rbacv3.RBAC, protocol string, tracing *hcmv3.HttpConnectionManager_Tracing) *listenerv3.Filter {
	var filters []*hcmv3.HttpFilter
	if rules != nil {
		filters = append(filters, &hcmv3.HttpFilter{
			Name:       "envoy.filters.http.rbac",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&rbachttpv3.RBAC{Rules: rules})},
		})
	}
	filters = append(filters, routerFilter())
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: statPrefix,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    cluster,
				Domains: []string{"*"},
				Routes:  []*routev3.Route{routeTo(cluster)},
			}},
			ValidateClusters: wrapperspb.Bool(false),
		}},
		HttpFilters: filters,
		Tracing:     tracing, // TrafficTrace (policy_trace.go)
	}
	return hcmFilter(hcm)
}

func envoyOutboundListener(s *Snapshot, name, addr string, port uint32, svc string, bind bool) *listenerv3.Listener {
	l := &listenerv3.Listener{
		Name:             name,
		Address:          socketAddress(addr, port),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
	}
	if !bind {
		l.BindToPort = wrapperspb.Bool(false)
	}
	if isHTTP(s.Protocol(svc)) {
		hcm := &hcmv3.HttpConnectionManager{
			StatPrefix: name,
			CodecType:  hcmv3.HttpConnectionManager_AUTO,
			RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
				Name: name,
				VirtualHosts: []*routev3.VirtualHost{{
					Name:    svc,
					Domains: []string{"*"},
					Routes:  []*routev3.Route{routeTo(svc)},
				}},
				ValidateClusters: wrapperspb.Bool(false),
			}},
			HttpFilters: []*hcmv3.HttpFilter{routerFilter()},
		}
		l.FilterChains = []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcmFilter(hcm)}}}
		return l
	}
	l.FilterChains = []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{tcpProxyFilter(name, svc)}}}
	return l
}

func routeTo(cluster string) *routev3.Route {
	return &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
	}
}

func routerFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{
		Name:       "envoy.filters.http.router",
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
	}
}

func hcmFilter(hcm *hcmv3.HttpConnectionManager) *listenerv3.Filter {
	return &listenerv3.Filter{
		Name:       "envoy.filters.network.http_connection_manager",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
	}
}

func tcpProxyFilter(statPrefix, cluster string) *listenerv3.Filter {
	return &listenerv3.Filter{
		Name: "envoy.filters.network.tcp_proxy",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&tcpproxyv3.TcpProxy{
			StatPrefix:       statPrefix,
			ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
		})},
	}
}

func http2Options() map[string]*anypb.Any {
	return map[string]*anypb.Any{
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&upstreamhttpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
			}},
		}),
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
