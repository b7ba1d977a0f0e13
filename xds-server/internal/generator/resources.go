package generator

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TypeURLs lists the types a proxy may get, in push order.
var TypeURLs = []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType, resourcev3.SecretType}

// Resources is a proxy's configuration: resources by type URL, each list
// sorted by name.
type Resources map[string][]types.Resource

func (r Resources) add(typeURL string, res ...types.Resource) {
	r[typeURL] = append(r[typeURL], res...)
}

func (r Resources) sort() {
	for _, list := range r {
		// Names are read once per resource, not once per comparison.
		names := make([]string, len(list))
		sorted := true
		for i, res := range list {
			names[i] = cachev3.GetResourceName(res)
			sorted = sorted && (i == 0 || names[i-1] <= names[i])
		}
		if sorted { // pieces are often added in order
			continue
		}
		sort.Stable(byName{names, list})
	}
}

type byName struct {
	names []string
	list  []types.Resource
}

func (b byName) Len() int           { return len(b.list) }
func (b byName) Less(i, j int) bool { return b.names[i] < b.names[j] }
func (b byName) Swap(i, j int) {
	b.names[i], b.names[j] = b.names[j], b.names[i]
	b.list[i], b.list[j] = b.list[j], b.list[i]
}

// Validate runs every resource's ValidateAll and checks names are unique.
func (r Resources) Validate() error { return r.validate(nil) }

func (r Resources) validate(skip func(types.Resource) bool) error {
	for typ, list := range r {
		seen := make(map[string]bool, len(list))
		for _, res := range list {
			name := cachev3.GetResourceName(res)
			if seen[name] {
				return fmt.Errorf("%s: duplicate resource %q", typ, name)
			}
			seen[name] = true
			if skip != nil && skip(res) {
				continue // validated once when built
			}
			if v, ok := res.(interface{ ValidateAll() error }); ok {
				if err := v.ValidateAll(); err != nil {
					return fmt.Errorf("%s %q: %w", typ, name, err)
				}
			}
		}
	}
	return nil
}

// Versions hashes each type's resources: the version changes exactly when
// the content does, and is the same on every replica.
func (r Resources) Versions() map[string]string { return r.versions(nil) }

// digester caches the digests of resources shared by many proxies.
type digester interface {
	digest(res types.Resource) ([32]byte, bool)
}

func digestOf(res types.Resource) [32]byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(res)
	if err != nil {
		// Generated resources always marshal; make a failure visible as a
		// digest that never matches.
		b = []byte(err.Error())
	}
	return digestBytes(cachev3.GetResourceName(res), b)
}

// hexVersion is a type's version: its digest's first 8 bytes, hex.
func hexVersion(sum []byte) string { return hex.EncodeToString(sum)[:16] }

func (r Resources) versions(cache digester) map[string]string {
	out := map[string]string{}
	for typ, list := range r {
		h := sha256.New()
		for _, res := range list {
			var d [32]byte
			ok := false
			if cache != nil {
				d, ok = cache.digest(res)
			}
			if !ok {
				d = digestOf(res)
			}
			h.Write(d[:])
		}
		out[typ] = hexVersion(h.Sum(nil))
	}
	return out
}

// CacheSnapshot wraps the resources for go-control-plane's snapshot cache
// with the given per-type versions (from Versions or Snapshot.Versions).
func (r Resources) CacheSnapshot(versions map[string]string) *cachev3.Snapshot {
	s := &cachev3.Snapshot{}
	for _, typ := range TypeURLs {
		v := versions[typ]
		if v == "" {
			v = "empty"
		}
		s.Resources[cachev3.GetResponseType(typ)] = cachev3.NewResources(v, r[typ])
	}
	return s
}

// sharedGroupTypes are the types whose resource groups SharedCacheSnapshot
// shares: the ones many proxies get alike (a service's endpoints, its
// route configurations, the clusters of proxies of one service). A proxy's
// listeners and its certificate are its own; an empty group of any type is
// shared too.
var sharedGroupTypes = map[string]bool{resourcev3.ClusterType: true, resourcev3.EndpointType: true, resourcev3.RouteType: true}

// SharedCacheSnapshot is r.CacheSnapshot(versions) where each type's
// resource group (go-control-plane's Resources: the version and a map of
// the resources by name, about 0.4 KB per type per proxy) is shared with
// every other proxy of this Snapshot that gets the same version of that
// type, instead of one map per proxy and type.
//
// Only for versions that hash the resources themselves (Wire's): then one
// version means the same resources, byte for byte. A proxyless proxy's
// versions from VersionsFor do not (they leave out what it requested), so
// its snapshots must use CacheSnapshot. The cache only reads the groups.
// A nil Snapshot shares nothing.
func (s *Snapshot) SharedCacheSnapshot(r Resources, versions map[string]string) *cachev3.Snapshot {
	if s == nil {
		return r.CacheSnapshot(versions)
	}
	cs := &cachev3.Snapshot{}
	for _, typ := range TypeURLs {
		v := versions[typ]
		if v == "" {
			v = "empty"
		}
		rt := cachev3.GetResponseType(typ)
		if len(r[typ]) > 0 && !sharedGroupTypes[typ] {
			cs.Resources[rt] = cachev3.NewResources(v, r[typ])
			continue
		}
		cs.Resources[rt] = s.SharedGroup(typ, v, r[typ])
	}
	return cs
}

// SharedGroup is the resource group of typ at cache version v (see
// SharedCacheSnapshot), made from rs the first time. Only for versions that
// hash the resources themselves.
func (s *Snapshot) SharedGroup(typ, v string, rs []types.Resource) cachev3.Resources {
	key := typ + " " + v
	if g, ok := s.groups.Load(key); ok {
		return g.(cachev3.Resources)
	}
	g, _ := s.groups.LoadOrStore(key, cachev3.NewResources(v, rs))
	return g.(cachev3.Resources)
}

// mustAny packs m deterministically: map fields (RBAC policies) must
// serialise the same way every time, or versions would differ between
// replicas and between runs.
func mustAny(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		panic(fmt.Sprintf("marshal %T: %v", m, err))
	}
	return a
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func socketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       addr,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// loadAssignment groups endpoints (sorted by zone) into one locality per
// zone, weighted by its endpoint count, at priority 0. Other zones'
// ingresses (remote, sorted by zone) follow as one locality per zone,
// weighted by the instances behind them, at priority 1 — or 0 when there is
// no local endpoint, since priorities must start at 0 without a gap
// (grpc-go refuses gaps). Local endpoints take all traffic while one is
// healthy; clients fail over to other zones by themselves when none is.
func loadAssignment(cluster string, eps, remote []endpointKey) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: cluster}
	var loc *endpointv3.LocalityLbEndpoints
	for _, e := range eps {
		zone := e.zone
		if zone == "" {
			zone = LocalZone
		}
		if loc == nil || loc.GetLocality().GetZone() != zone {
			// grpc-go ignores localities without a weight or an id.
			loc = &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{Zone: zone}, LoadBalancingWeight: wrapperspb.UInt32(0)}
			cla.Endpoints = append(cla.Endpoints, loc)
		}
		loc.LbEndpoints = append(loc.LbEndpoints, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(e.addr, e.port)}},
			HealthStatus:   corev3.HealthStatus_HEALTHY,
		})
		loc.LoadBalancingWeight.Value++
	}
	priority := uint32(0)
	if len(cla.Endpoints) > 0 {
		priority = 1
	}
	loc = nil
	for _, e := range remote {
		if loc == nil || loc.GetLocality().GetZone() != e.zone {
			loc = &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{Zone: e.zone}, LoadBalancingWeight: wrapperspb.UInt32(0), Priority: priority}
			cla.Endpoints = append(cla.Endpoints, loc)
		}
		loc.LbEndpoints = append(loc.LbEndpoints, &endpointv3.LbEndpoint{
			HostIdentifier:      &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(e.addr, e.port)}},
			HealthStatus:        corev3.HealthStatus_HEALTHY,
			LoadBalancingWeight: wrapperspb.UInt32(e.weight),
		})
		loc.LoadBalancingWeight.Value += e.weight
	}
	return cla
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(5e9),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: name},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
}
