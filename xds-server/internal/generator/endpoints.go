package generator

import (
	"fmt"
	"maps"
	"slices"
	"sync/atomic"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Endpoint-only changes.
//
// Most changes of a mesh move, add, remove or mark (un)ready one instance of
// a service: only the ClusterLoadAssignments of that service change, for
// every proxy that calls it. A snapshot's epoch says so: two snapshots of
// a mesh with the same epoch give an Envoy sidecar with the same Dataplane
// object, identity and required tags the same Clusters, Listeners, Routes
// and Secrets. Only its ClusterLoadAssignments may differ, and only by
// content, not by name. GenerateEndpoints builds those alone. The
// reconciler reuses the other types as it pushed them.
//
// A snapshot keeps its predecessor's epoch when it was built from it
// (same Mesh object, so the same mTLS settings and tracing backends) and
// it has the same policy objects (TrafficPermissions and every other
// policy: routes, timeouts, templates…), the same ZoneIngress objects, the
// same VIPs, the same services with the same protocols, and no
// ProxyTemplate: a template may modify anything, ClusterLoadAssignments
// included, so a mesh with one regenerates in full. Everything else a
// sidecar's non-EDS resources read from the snapshot is one of those:
// the shared clusters and VIP listeners per service (protocol, VIP,
// mTLS), the outbound policy selection (policies, the destination's
// protocol), the inbound RBAC (TrafficPermissions), tracing (policies and
// the Mesh). Subsets (TrafficRoute splits by tag) are named by the policy,
// so the other instances' tags change only their ClusterLoadAssignments.
// TestEndpointOnlyChanges checks it against generations from scratch.

// The inbound epoch is the same idea for a sidecar's inbound listeners and
// clusters: they depend on its Dataplane, the Mesh (mTLS, tracing
// backends), the TrafficPermissions (RBAC) and the TrafficTraces. A
// snapshot keeps its predecessor's inbound epoch when those are the same
// objects and there is no ProxyTemplate, so a mesh-wide route or timeout
// change reuses every sidecar's inbound resources as the cache holds them
// (Proxy.Reuse) instead of building them again. TestInboundReuse checks
// it against generations from scratch.

var epochs atomic.Uint64

func newEpoch() uint64 { return epochs.Add(1) }

// Epoch is the snapshot's epoch (see above); never 0.
func (s *Snapshot) Epoch() uint64 { return s.epoch }

// epochAfter is s's epoch: prev's when only endpoints can differ (prev is
// nil when it is not a base for s).
func (s *Snapshot) epochAfter(prev *Snapshot) uint64 {
	if prev == nil || prev.epoch == 0 || s.MeshSpec == nil || prev.MeshSpec != s.MeshSpec ||
		s.Policies.Len(resource.ProxyTemplateType) > 0 ||
		!samePointers(prev.TrafficPermissions, s.TrafficPermissions) ||
		!sameSet(prev.policyIn, s.policyIn) || !sameSet(prev.ingressIn, s.ingressIn) ||
		!maps.Equal(prev.VIPs, s.VIPs) || !slices.Equal(prev.services, s.services) ||
		!maps.Equal(prev.protocols, s.protocols) {
		return newEpoch()
	}
	return prev.epoch
}

// InboundEpoch is the snapshot's inbound epoch (see above); never 0.
func (s *Snapshot) InboundEpoch() uint64 { return s.inbound }

func (s *Snapshot) inboundEpochAfter(prev *Snapshot) uint64 {
	if prev == nil || prev.inbound == 0 || s.MeshSpec == nil || prev.MeshSpec != s.MeshSpec ||
		// A template may have modified the inbound resources built at
		// prev: neither side may have one.
		s.Policies.Len(resource.ProxyTemplateType) > 0 || prev.Policies.Len(resource.ProxyTemplateType) > 0 ||
		!samePointers(prev.TrafficPermissions, s.TrafficPermissions) ||
		!samePointers(prev.Policies.Of(resource.TrafficTraceType), s.Policies.Of(resource.TrafficTraceType)) {
		return newEpoch()
	}
	return prev.inbound
}

// reusedInbound returns the inbound listener and cluster of in as p was
// given them before (Proxy.Reuse), or nils.
func reusedInbound(p *Proxy, in *meshv1.Dataplane_Networking_Inbound) (types.Resource, types.Resource) {
	listener, cluster, ok := inboundNames(p.Dataplane, in)
	if !ok {
		return nil, nil
	}
	l, c := p.Reuse(resourcev3.ListenerType, listener), p.Reuse(resourcev3.ClusterType, cluster)
	if l == nil || c == nil {
		return nil, nil
	}
	return l, c
}

// reused reports whether res is what p.Reuse gives for its name.
func reused(p *Proxy, res types.Resource) bool {
	typ := typeURLOf(res)
	if typ != resourcev3.ListenerType && typ != resourcev3.ClusterType {
		return false
	}
	return p.Reuse(typ, cachev3.GetResourceName(res)) == res
}

// samePointers reports whether a and b hold the same objects in the same
// order (TrafficPermissions are sorted by name).
func samePointers(a, b []*resource.Resource) bool {
	return slices.Equal(a, b)
}

// sameSet reports whether a and b hold the same objects, in any order.
func sameSet(a, b []*resource.Resource) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) <= 8 {
		for _, r := range a {
			if !slices.Contains(b, r) {
				return false
			}
		}
		return true
	}
	in := make(map[*resource.Resource]bool, len(a))
	for _, r := range a {
		in[r] = true
	}
	for _, r := range b {
		if !in[r] {
			return false
		}
	}
	return true
}

// GenerateEndpoints returns the ClusterLoadAssignments Generate(s, p)
// gives an Envoy sidecar (sorted by name; nil when it gets none), without
// building its other resources. Its error is Generate's when the
// endpoints cannot be built; a caller that needs Generate's exact error
// for other failures calls Generate.
func GenerateEndpoints(s *Snapshot, p *Proxy) ([]types.Resource, error) {
	if p.Kind != KindEnvoy && p.Kind != "" {
		return nil, fmt.Errorf("endpoints alone are generated for Envoy sidecars only, not %q", p.Kind)
	}
	if err := checkProxy(s, p); err != nil {
		return nil, err
	}
	dp := p.Dataplane
	sel := newOutboundSelector(s, p)
	if sel.template != nil {
		out, err := Generate(s, p)
		if err != nil {
			return nil, err
		}
		return out[resourcev3.EndpointType], nil
	}
	outbound := map[string]bool{}
	for i, ob := range dp.GetNetworking().GetOutbound() {
		svc := ob.GetTags()[resource.ServiceTag]
		if svc == "" {
			return nil, fmt.Errorf("dataplane %s/%s: networking.outbound[%d]: no %s tag", p.Mesh, p.Name, i, resource.ServiceTag)
		}
		outbound[svc] = true
	}
	if dp.GetNetworking().GetTransparentProxying() != nil {
		sh, err := s.envoy()
		if err != nil {
			return nil, fmt.Errorf("dataplane %s/%s: %w", p.Mesh, p.Name, err)
		}
		for _, svc := range sh.vipServices {
			outbound[svc] = true
		}
	}
	out := Resources{}
	added := make(map[string]bool, 2*len(outbound))
	for _, svc := range sortedKeys(outbound) {
		if err := addDestination(out, s, svc, isHTTP(s.Protocol(svc)), sel, added, false); err != nil {
			return nil, fmt.Errorf("dataplane %s/%s: %w", p.Mesh, p.Name, err)
		}
	}
	eds := Resources{resourcev3.EndpointType: out[resourcev3.EndpointType]}
	if len(eds[resourcev3.EndpointType]) == 0 {
		return nil, nil
	}
	eds.sort()
	if err := eds.validate(s.isShared); err != nil {
		return nil, fmt.Errorf("dataplane %s/%s: generated invalid config: %w", p.Mesh, p.Name, err)
	}
	return eds[resourcev3.EndpointType], nil
}
