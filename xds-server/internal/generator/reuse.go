package generator

import (
	"fmt"
	"sort"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/xds-server/internal/meshview"
)

// A snapshot is rebuilt on every change of its mesh. After a Dataplane
// change most of it is what it was: the endpoints, protocol and shared
// clusters and listeners of every service the Dataplane does not offer.
// buildSnapshot takes those from the previous snapshot, with their cached
// digests, when nothing else they depend on changed (the Mesh resource is
// the same object, the service's protocol, VIP and remote endpoints are
// equal), and builds the rest. The result is the same as a build from
// scratch (TestIncrementalSnapshot). A snapshot never points at its
// predecessor: it copies the pieces, so old snapshots are freed.

// member is one inbound of a service.
type member struct {
	dp       string // Dataplane name
	key      endpointKey
	ready    bool
	protocol string
	tags     map[string]string
}

// maxIncremental is how many Dataplanes may change between two snapshots
// for the second to be built from the first: beyond it, from scratch is as
// cheap.
func maxIncremental(n int) int { return max(n/8, 16) }

// reusableFor reports whether s may reuse prev's pieces.
func (prev *Snapshot) reusableFor(s *Snapshot) bool {
	return prev != nil && prev.Mesh == s.Mesh && prev.MeshSpec != nil && prev.MeshSpec == s.MeshSpec &&
		prev.sharedErr == nil && prev.members != nil
}

// reuse marks res, taken from prev, as shared by s, with its digest.
func (s *Snapshot) reuse(prev *Snapshot, res types.Resource) {
	s.share(res)
	if s.reused == nil {
		s.reused = map[types.Resource]bool{}
	}
	s.reused[res] = true
	if d, ok := prev.digests.Load(res); ok {
		s.digests.Store(res, d)
	}
}

func appendMembers(ms []member, svc, name string, dp *meshv1.Dataplane) []member {
	for _, in := range dp.GetNetworking().GetInbound() {
		if in.GetTags()[resource.ServiceTag] != svc {
			continue
		}
		addr := in.GetAddress()
		if addr == "" {
			addr = dp.GetNetworking().GetAdvertisedAddress()
		}
		if addr == "" {
			addr = dp.GetNetworking().GetAddress()
		}
		zone := in.GetTags()[resource.ZoneTag]
		if zone == "" {
			zone = LocalZone
		}
		h := in.GetHealth()
		ms = append(ms, member{
			dp:       name,
			key:      endpointKey{zone: zone, addr: addr, port: in.GetPort()},
			ready:    h == nil || h.GetReady(),
			protocol: in.GetTags()[resource.ProtocolTag],
			tags:     in.GetTags(),
		})
	}
	return ms
}

// buildMembers fills s.members, from prev's when few Dataplanes changed. It
// returns the services whose members may differ from prev's, and false
// when everything was built from scratch.
func (s *Snapshot) buildMembers(prev *Snapshot) (map[string]bool, bool) {
	if prev != nil {
		var changed []string
		for name, dp := range s.Dataplanes {
			if prev.Dataplanes[name] != dp {
				changed = append(changed, name)
			}
		}
		for name := range prev.Dataplanes {
			if _, ok := s.Dataplanes[name]; !ok {
				changed = append(changed, name)
			}
		}
		if len(changed) <= maxIncremental(len(s.Dataplanes)) {
			affected := map[string]bool{}
			isChanged := make(map[string]bool, len(changed))
			for _, name := range changed {
				isChanged[name] = true
				for _, dp := range []*meshv1.Dataplane{prev.Dataplanes[name], s.Dataplanes[name]} {
					for _, in := range dp.GetNetworking().GetInbound() {
						if svc := in.GetTags()[resource.ServiceTag]; svc != "" {
							affected[svc] = true
						}
					}
				}
			}
			s.members = make(map[string][]member, len(prev.members)+len(affected))
			for svc, ms := range prev.members {
				if !affected[svc] {
					s.members[svc] = ms
				}
			}
			for svc := range affected {
				var ms []member
				for _, m := range prev.members[svc] {
					if !isChanged[m.dp] {
						ms = append(ms, m)
					}
				}
				for _, name := range changed {
					ms = appendMembers(ms, svc, name, s.Dataplanes[name])
				}
				// Stable: one Dataplane's inbounds keep their order.
				sort.SliceStable(ms, func(i, j int) bool { return ms[i].dp < ms[j].dp })
				if len(ms) > 0 {
					s.members[svc] = ms
				}
			}
			return affected, true
		}
	}
	s.members = map[string][]member{}
	names := make([]string, 0, len(s.Dataplanes))
	for n := range s.Dataplanes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		dp := s.Dataplanes[name]
		done := map[string]bool{}
		for _, in := range dp.GetNetworking().GetInbound() {
			svc := in.GetTags()[resource.ServiceTag]
			if svc == "" || done[svc] {
				continue
			}
			done[svc] = true
			s.members[svc] = appendMembers(s.members[svc], svc, name, dp)
		}
	}
	return nil, false
}

// buildEndpoints fills services, protocols, endpoints and the endpoint tags
// of subsets, taking a service's from prev when its members and remote
// endpoints are unchanged.
func (s *Snapshot) buildEndpoints(prev *Snapshot, ingresses []*resource.Resource) {
	affected, incremental := s.buildMembers(prev)
	if !incremental {
		prev = nil
	}
	var remoteProto map[string]string
	s.remote, remoteProto = s.remoteEndpoints(ingresses)
	s.services = make([]string, 0, len(s.members)+len(s.remote))
	s.protocols = make(map[string]string, len(s.members))
	s.endpoints = make(map[string]*endpointv3.ClusterLoadAssignment, len(s.members))
	s.shared = make(map[types.Resource]bool, len(s.members))
	for svc := range s.members {
		s.services = append(s.services, svc)
	}
	for svc := range s.remote {
		if _, ok := s.members[svc]; !ok {
			s.services = append(s.services, svc)
		}
	}
	sort.Strings(s.services)
	for _, svc := range s.services {
		ms := s.members[svc]
		for _, m := range ms {
			if m.protocol != "" {
				s.protocols[svc] = m.protocol
				break
			}
		}
		if s.protocols[svc] == "" && remoteProto[svc] != "" {
			s.protocols[svc] = remoteProto[svc]
		}
		same := prev != nil && !affected[svc]
		if same {
			if t, ok := prev.pol.endpointTags[svc]; ok {
				if s.pol.endpointTags == nil {
					s.pol.endpointTags = map[string][]taggedEndpoint{}
				}
				s.pol.endpointTags[svc] = t
			}
		} else {
			for _, m := range ms {
				if m.ready {
					s.noteEndpointTags(svc, m.key, m.tags)
				}
			}
		}
		if same && equalKeys(s.remote[svc], prev.remote[svc]) {
			if cla := prev.endpoints[svc]; cla != nil {
				s.endpoints[svc] = cla
				s.reuse(prev, cla)
				continue
			}
		}
		var list []endpointKey
		for _, m := range ms {
			if m.ready {
				list = append(list, m.key)
			}
		}
		sortEndpoints(list)
		s.endpoints[svc] = loadAssignment(svc, list, s.remote[svc])
		s.share(s.endpoints[svc])
	}
}

func equalKeys(a, b []endpointKey) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// remoteEndpoints turns other zones' ZoneIngresses into endpoints: per
// service, one endpoint per ingress advertised address, weighted by the
// instances of the service behind it, sorted by (zone, address, port). It
// also returns the first protocol tag an ingress gives each service.
func (s *Snapshot) remoteEndpoints(ingresses []*resource.Resource) (map[string][]endpointKey, map[string]string) {
	sums := map[string]map[endpointKey]uint32{}
	protos := map[string]string{}
	for _, r := range ingresses {
		zi, ok := r.Spec.(*meshv1.ZoneIngress)
		if !ok {
			continue
		}
		zone := meshview.IngressZone(r)
		nw := zi.GetNetworking()
		addr, port := nw.GetAdvertisedAddress(), nw.GetAdvertisedPort()
		if addr == "" {
			addr = nw.GetAddress()
		}
		if port == 0 {
			port = nw.GetPort()
		}
		if zone == "" || addr == "" || port == 0 {
			continue
		}
		for _, as := range zi.GetAvailableServices() {
			svc := as.GetTags()[resource.ServiceTag]
			if as.GetMesh() != s.Mesh || svc == "" || as.GetInstances() == 0 {
				continue
			}
			if p := as.GetTags()[resource.ProtocolTag]; p != "" && protos[svc] == "" {
				protos[svc] = p
			}
			if sums[svc] == nil {
				sums[svc] = map[endpointKey]uint32{}
			}
			k := endpointKey{zone: zone, addr: addr, port: port}
			sums[svc][k] = min(sums[svc][k]+as.GetInstances(), maxRemoteWeight)
			if s.pol.remoteTags == nil {
				s.pol.remoteTags = map[string][]remoteTagSet{}
			}
			s.pol.remoteTags[svc] = append(s.pol.remoteTags[svc], remoteTagSet{key: k, tags: as.GetTags(), instances: as.GetInstances()})
		}
	}
	out := map[string][]endpointKey{}
	for svc, m := range sums {
		list := make([]endpointKey, 0, len(m))
		for k, w := range m {
			k.weight = w
			list = append(list, k)
		}
		sortEndpoints(list)
		out[svc] = list
	}
	return out, protos
}

// Lazily built per-kind pieces, and what they carry over to the next
// snapshot.

// grpcCarry is a proxyless client's listener, route and cluster per
// service, with their digests: they depend only on the service and the
// Mesh resource.
type grpcCarry struct {
	pieces  map[string]grpcPiece
	digests map[types.Resource][32]byte
}

type grpcPiece struct {
	listener *listenerv3.Listener
	route    *routev3.RouteConfiguration
	cluster  *clusterv3.Cluster
}

// envoyCarry is the shared Envoy clusters and VIP listeners, each with the
// protocol (and VIP) it was built for.
type envoyCarry struct {
	clusters map[string]carriedCluster
	vips     map[string]carriedVIP
	digests  map[types.Resource][32]byte
}

type carriedCluster struct {
	c        *clusterv3.Cluster
	protocol string
}

type carriedVIP struct {
	l             *listenerv3.Listener
	vip, protocol string
}

// carryFrom takes over prev's per-kind pieces (built or carried) for the
// lazy builds of s.
func (s *Snapshot) carryFrom(prev *Snapshot) {
	if prev == nil {
		return
	}
	if g := prev.grpcBuilt.Load(); g != nil && g.err == nil {
		c := &grpcCarry{pieces: make(map[string]grpcPiece, len(g.services)), digests: map[types.Resource][32]byte{}}
		for i, svc := range g.services {
			c.pieces[svc] = grpcPiece{g.listeners[i], g.routes[i], g.clusters[i]}
			for _, res := range []types.Resource{g.listeners[i], g.routes[i], g.clusters[i]} {
				if d, ok := prev.digests.Load(res); ok {
					c.digests[res] = d.([32]byte)
				}
			}
		}
		s.grpcCarry = c
	} else {
		s.grpcCarry = prev.grpcCarry
	}
	if e := prev.envoyBuilt.Load(); e != nil && e.err == nil {
		c := &envoyCarry{clusters: make(map[string]carriedCluster, len(e.clusters)), vips: make(map[string]carriedVIP, len(e.vipListeners)), digests: map[types.Resource][32]byte{}}
		for svc, cl := range e.clusters {
			c.clusters[svc] = carriedCluster{cl, prev.protocols[svc]}
			if d, ok := prev.digests.Load(cl); ok {
				c.digests[cl] = d.([32]byte)
			}
		}
		for svc, l := range e.vipListeners {
			c.vips[svc] = carriedVIP{l, prev.VIPs[svc], prev.protocols[svc]}
			if d, ok := prev.digests.Load(l); ok {
				c.digests[l] = d.([32]byte)
			}
		}
		s.envoyCarry = c
	} else {
		s.envoyCarry = prev.envoyCarry
	}
}

// lazyShare marks res as shared by a lazily built piece set: carried (digest
// known, valid when built) or new (validated; the first error returned).
func (s *Snapshot) lazyShare(set map[types.Resource]bool, res types.Resource, carried map[types.Resource][32]byte, isCarried bool, errp *error) {
	set[res] = true
	if isCarried {
		if d, ok := carried[res]; ok {
			s.digests.Store(res, d)
		}
		return
	}
	if v, ok := res.(interface{ ValidateAll() error }); ok && *errp == nil {
		if err := v.ValidateAll(); err != nil {
			*errp = fmt.Errorf("mesh %s: invalid shared resource %q: %w", s.Mesh, cachev3.GetResourceName(res), err)
		}
	}
}

// grpc returns the proxyless clients' shared pieces, built on first use.
func (s *Snapshot) grpc() (*grpcShared, error) {
	s.grpcOnce.Do(func() { s.grpcBuilt.Store(buildGRPCShared(s)) })
	g := s.grpcBuilt.Load()
	return g, g.err
}

// envoy returns the Envoy sidecars' shared pieces, built on first use.
func (s *Snapshot) envoy() (*envoyShared, error) {
	s.envoyOnce.Do(func() { s.envoyBuilt.Store(buildEnvoyShared(s)) })
	e := s.envoyBuilt.Load()
	return e, e.err
}

// sharedPiece reports whether res is shared by the whole snapshot: built
// eagerly or by a lazy per-kind build.
func (s *Snapshot) sharedPiece(res types.Resource) bool {
	if s.shared[res] {
		return true
	}
	if g := s.grpcBuilt.Load(); g != nil && g.set[res] {
		return true
	}
	if e := s.envoyBuilt.Load(); e != nil && e.set[res] {
		return true
	}
	return false
}
