package generator

import (
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/pkg/policy"
	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// newGRPCCluster is a proxyless client's EDS cluster of a service.
func newGRPCCluster(s *Snapshot, svc string) *clusterv3.Cluster {
	c := edsCluster(svc)
	if mtls, _ := s.MTLS(); mtls {
		c.TransportSocket = tlsSocket(grpcUpstreamTLS(s.Mesh, svc))
	}
	return c
}

// cluster returns the shared proxyless cluster of a service.
func (g *grpcShared) cluster(s *Snapshot, svc string) *clusterv3.Cluster {
	for i, c := range g.clusters {
		if c.GetName() == svc {
			return g.clusters[i]
		}
	}
	return newGRPCCluster(s, svc)
}

// addGRPCClients adds a proxyless client's resources for every service of
// the mesh, shaped by the client's policies where any apply: what grpc-go
// implements (weighted clusters, path and header matches, retry on gRPC
// codes, max stream duration, fault delay/abort, success-rate outlier
// detection, max_requests, ring hash) and nothing it would NACK.
func addGRPCClients(out Resources, s *Snapshot, sel *outboundSelector) error {
	list, err := grpcClientList(s, sel)
	if err != nil {
		return err
	}
	for start := 0; start < len(list); {
		typ, end := typeURLOf(list[start]), start+1
		for end < len(list) && typeURLOf(list[end]) == typ {
			end++
		}
		out.add(typ, list[start:end:end]...)
		start = end
	}
	return nil
}

// grpcClientList is a proxyless client's resources for every service of
// the mesh, grouped by type and sorted by name. The client resources
// depend only on what the caller selects, so callers with the same tag
// sets share one list.
func grpcClientList(s *Snapshot, sel *outboundSelector) ([]types.Resource, error) {
	return sel.piece(pieceKey{kind: "grpc-clients"}, func() ([]types.Resource, error) {
		// Callers with other tag sets often select the same policies:
		// one list per distinct selection over the mesh's services.
		var b strings.Builder
		for _, svc := range s.services {
			b.WriteString(sel.lookup(svc).key)
			b.WriteByte(';')
		}
		if v, ok := s.pol.grpcClients.Load(b.String()); ok {
			return v.([]types.Resource), nil
		}
		part := Resources{}
		if err := buildGRPCClients(part, s, sel); err != nil {
			return nil, err
		}
		// Grouped by type and sorted by name, so a proxy's lists are
		// appended in runs and need no sorting.
		part.sort()
		var list []types.Resource
		for _, typ := range TypeURLs {
			list = append(list, part[typ]...)
		}
		v, _ := s.pol.grpcClients.LoadOrStore(b.String(), list)
		return v.([]types.Resource), nil
	})
}

func typeURLOf(res types.Resource) string {
	switch res.(type) {
	case *clusterv3.Cluster:
		return resourcev3.ClusterType
	case *listenerv3.Listener:
		return resourcev3.ListenerType
	case *routev3.RouteConfiguration:
		return resourcev3.RouteType
	case *endpointv3.ClusterLoadAssignment:
		return resourcev3.EndpointType
	}
	return resourcev3.SecretType
}

func buildGRPCClients(out Resources, s *Snapshot, sel *outboundSelector) error {
	added := map[string]bool{}
	for i, svc := range s.services {
		if err := addGRPCService(out, s, sel, i, svc, added); err != nil {
			return err
		}
	}
	return nil
}

// addGRPCService adds the client resources of s.services[i] as sel shapes
// them: its listener and route, and the clusters and endpoints its route
// leads to (other services' subsets included).
func addGRPCService(out Resources, s *Snapshot, sel *outboundSelector, i int, svc string, added map[string]bool) error {
	sh, err := s.grpc()
	if err != nil {
		return err
	}
	sl := sel.lookup(svc)
	o := sl.o
	if o.Empty() {
		out.add(resourcev3.ListenerType, sh.listeners[i])
		out.add(resourcev3.RouteType, sh.routes[i])
	} else {
		l := sh.listeners[i]
		if o.FaultInjection != nil {
			r, err := s.memo("grpc-listener|"+svc+"|"+o.FaultInjection.Meta.GetName(), func() types.Resource {
				return grpcClientListener(svc, faultFilter(o.FaultInjection, true))
			})
			if err != nil {
				return err
			}
			l = r.(*listenerv3.Listener)
		}
		rc, err := s.memo("grpc-route|"+svc+"|"+sl.key, func() types.Resource { return grpcPolicyRoute(svc, o) })
		if err != nil {
			return err
		}
		out.add(resourcev3.ListenerType, l)
		out.add(resourcev3.RouteType, rc)
	}
	return addDestination(out, s, svc, true, sel, added, true)
}

// addRequestedGRPCClients adds what a client named of its policy-shaped
// client resources, building only the services it named: a listener or
// route "<svc>.mesh", a cluster or endpoints "<svc>" or "<svc>{tags}".
// The clusters a route leads to are built with the route's service, so
// a subset of another service, named by the route, is found too.
func addRequestedGRPCClients(out Resources, s *Snapshot, sel *outboundSelector, q *Requested) error {
	svcs := map[string]bool{}
	for _, typ := range requestedTypes {
		for n := range q.names[typ] {
			switch typ {
			case resourcev3.ListenerType, resourcev3.RouteType:
				n, _ = strings.CutSuffix(n, ".mesh")
			default:
				n, _, _ = strings.Cut(n, "{")
			}
			svcs[n] = true
		}
	}
	part := Resources{}
	added := map[string]bool{}
	for i, svc := range s.services {
		if !svcs[svc] {
			continue
		}
		if err := addGRPCService(part, s, sel, i, svc, added); err != nil {
			return err
		}
	}
	var list []types.Resource
	for _, typ := range requestedTypes {
		list = append(list, part[typ]...)
	}
	newClientIndex(list).addRequested(out, q)
	return nil
}

// grpcClientListener is the api_listener of a service: RDS over ADS, the
// given HTTP filters, then the router.
func grpcClientListener(svc string, filters ...*hcmv3.HttpFilter) *listenerv3.Listener {
	name := ClientListenerName(svc)
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: name,
		}},
		// grpc-go's RBAC filter is server-only: a client listener carrying
		// it would be NACKed, so clients get the router and, with a
		// FaultInjection, the fault filter (client-only in grpc-go).
		HttpFilters: append(filters, routerFilter()),
	}
	return &listenerv3.Listener{Name: name, ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(hcm)}}
}

func grpcPolicyRoute(svc string, o policy.Outbound) *routev3.RouteConfiguration {
	name := ClientListenerName(svc)
	var routes []*routev3.Route
	for _, e := range routeEntries(o, svc, true) {
		a := &routev3.RouteAction{}
		clusterSpecifier(a, e.to)
		applyGRPCRetry(a, o.Retry)
		applyGRPCTimeout(a, o.Timeout)
		routes = append(routes, &routev3.Route{Match: routeMatch(e.match), Action: &routev3.Route_Route{Route: a}})
	}
	return &routev3.RouteConfiguration{
		Name:         name,
		VirtualHosts: []*routev3.VirtualHost{{Name: svc, Domains: []string{name, name + ":*"}, Routes: routes}},
	}
}

// applyGRPCRetry: grpc-go reads retry_on (gRPC codes only), num_retries
// (≥ 1) and the back-off; per-try timeouts and HTTP conditions are
// Envoy's.
func applyGRPCRetry(a *routev3.RouteAction, r *resource.Resource) {
	if r == nil {
		return
	}
	g := r.Spec.(*meshv1.Retry).GetConf().GetGrpc()
	if g == nil {
		return
	}
	rp := &routev3.RetryPolicy{RetryOn: grpcRetryOn(g.GetRetryOn()), NumRetries: optUInt32(g.GetNumRetries()), RetryBackOff: backOff(g.GetBackOff())}
	a.RetryPolicy = rp
}

// applyGRPCTimeout: grpc-go's only call timeout is max_stream_duration;
// a Timeout's grpc.maxStreamDuration sets it, else its http.requestTimeout.
func applyGRPCTimeout(a *routev3.RouteAction, t *resource.Resource) {
	if t == nil {
		return
	}
	conf := t.Spec.(*meshv1.Timeout).GetConf()
	d := duration(conf.GetGrpc().GetMaxStreamDuration())
	if d == nil {
		d = duration(conf.GetHttp().GetRequestTimeout())
	}
	if d != nil {
		a.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: d}
	}
}
