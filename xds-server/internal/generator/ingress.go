package generator

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/sni"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// IngressListenerName is the Envoy ingress's listener.
func IngressListenerName(addr string, port uint32) string { return "ingress:" + hostPort(addr, port) }

// GenerateIngress is the configuration of an Envoy zone ingress listening
// on addr:port, for the meshes of this zone (snapshots): TLS is never
// terminated. The tls_inspector reads the server name; one filter chain per
// name the ingress accepts — each local service (`sni.Service`) and each
// subset of it a TrafficRoute of the mesh names (`sni.Format`) — forwards with tcp_proxy
// to an EDS cluster of the matching healthy local endpoints (never another
// zone's: an ingress does not forward across zones again). A name with no
// chain matches nothing and Envoy closes the connection. This is the
// configuration the built-in ingress (ingress-manager) implements itself.
//
// One bad subset degrades that subset only: a name whose chain, cluster
// or assignment fails validation is left out (GenerateIngressReport says
// which and why).
func GenerateIngress(snaps []*Snapshot, addr string, port uint32) (Resources, error) {
	out, _, err := GenerateIngressReport(snaps, addr, port)
	return out, err
}

// GenerateIngressReport is GenerateIngress also returning the server
// names left out because their configuration did not validate, with why.
func GenerateIngressReport(snaps []*Snapshot, addr string, port uint32) (Resources, []string, error) {
	out := Resources{}
	var dropped []string
	l := &listenerv3.Listener{
		Name:    IngressListenerName(addr, port),
		Address: socketAddress(addr, port),
		ListenerFilters: []*listenerv3.ListenerFilter{{
			Name:       "envoy.filters.listener.tls_inspector",
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspectorv3.TlsInspector{})},
		}},
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].Mesh < snaps[j].Mesh })
	for _, s := range snaps {
		if s == nil || s.MeshSpec == nil {
			continue
		}
		for _, sub := range ingressSubsets(s) {
			name, err := sni.Format(s.Mesh, sub.service, sub.tags)
			if err != nil {
				continue // a tag set too long to name cannot be asked for either
			}
			chain := &listenerv3.FilterChain{
				Name:             name,
				FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: []string{name}, TransportProtocol: "tls"},
				Filters:          []*listenerv3.Filter{tcpProxyFilter(name, name)},
			}
			cluster := edsCluster(name) // plain TCP: the bytes are the caller's TLS
			cla := loadAssignment(name, sub.endpoints, nil)
			if err := validateAll(chain, cluster, cla); err != nil {
				dropped = append(dropped, name+": "+err.Error())
				continue
			}
			l.FilterChains = append(l.FilterChains, chain)
			out.add(resourcev3.ClusterType, cluster)
			out.add(resourcev3.EndpointType, cla)
		}
	}
	out.add(resourcev3.ListenerType, l)
	out.sort()
	if err := out.Validate(); err != nil {
		return nil, dropped, fmt.Errorf("ingress %s: generated invalid config: %w", net.JoinHostPort(addr, strconv.Itoa(int(port))), err)
	}
	return out, dropped, nil
}

func validateAll(ms ...interface{ ValidateAll() error }) error {
	for _, m := range ms {
		if err := m.ValidateAll(); err != nil {
			return err
		}
	}
	return nil
}

type ingressSubset struct {
	service   string
	tags      map[string]string // nil: the whole service
	endpoints []endpointKey
}

// routedSubsets lists, per service, the tag subsets some TrafficRoute of
// the mesh sends traffic to (split and destination entries, default and
// per HTTP match), without the service tag, deduplicated by tagString.
func routedSubsets(s *Snapshot) map[string]map[string]map[string]string {
	out := map[string]map[string]map[string]string{}
	add := func(dest map[string]string) {
		ss := subsetOf(dest)
		if ss.service == "" || len(ss.tags) == 0 {
			return
		}
		if out[ss.service] == nil {
			out[ss.service] = map[string]map[string]string{}
		}
		out[ss.service][tagString(ss.tags)] = ss.tags
	}
	if s.Policies == nil {
		return out
	}
	for _, r := range s.Policies.Of(resource.TrafficRouteType) {
		conf := r.Spec.(*meshv1.TrafficRoute).GetConf()
		add(conf.GetDestination())
		for _, sp := range conf.GetSplit() {
			add(sp.GetDestination())
		}
		for _, h := range conf.GetHttp() {
			add(h.GetDestination())
			for _, sp := range h.GetSplit() {
				add(sp.GetDestination())
			}
		}
	}
	return out
}

// ingressSubsets lists, per local service, the whole service and each
// subset a TrafficRoute of the mesh names (what a caller's SNI can ask
// for), with their healthy local endpoints, sorted by service then tag
// set. A subset with no healthy endpoint keeps its (empty) cluster; a
// service with no local inbound gets nothing.
func ingressSubsets(s *Snapshot) []ingressSubset {
	routed := routedSubsets(s)
	byKey := map[string]*ingressSubset{}
	names := slices.Sorted(maps.Keys(s.Dataplanes))
	for _, n := range names {
		dp := s.Dataplanes[n]
		for _, in := range dp.GetNetworking().GetInbound() {
			svc := in.GetTags()[resource.ServiceTag]
			if svc == "" {
				continue
			}
			ready := in.GetHealth() == nil || in.GetHealth().GetReady()
			zone := in.GetTags()[resource.ZoneTag]
			subs := []map[string]string{nil}
			for _, k := range slices.Sorted(maps.Keys(routed[svc])) {
				subs = append(subs, routed[svc][k])
			}
			for _, sub := range subs {
				key := svc + "\x00" + tagString(sub)
				e := byKey[key]
				if e == nil {
					e = &ingressSubset{service: svc, tags: sub}
					byKey[key] = e
				}
				if ready && (subset{service: svc, tags: sub}).matches(in.GetTags()) {
					e.endpoints = append(e.endpoints, endpointKey{zone: zone, addr: inboundAddress(dp, in), port: in.GetPort()})
				}
			}
		}
	}
	keys := slices.Sorted(maps.Keys(byKey))
	out := make([]ingressSubset, 0, len(keys))
	for _, k := range keys {
		sortEndpoints(byKey[k].endpoints)
		out = append(out, *byKey[k])
	}
	return out
}

func tagString(tags map[string]string) string {
	var b []byte
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		b = append(b, k...)
		b = append(b, 0)
		b = append(b, tags[k]...)
		b = append(b, 0)
	}
	return string(b)
}
