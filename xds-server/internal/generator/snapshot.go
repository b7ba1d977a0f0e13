// Package generator turns a mesh's resources into xDS configuration for one
// proxy. It is pure: no etcd, no clock, sorted output, so the same inputs give
// byte-identical resources (and so identical versions) on every replica.
package generator

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/weftmesh/weft/pkg/ca"
	"github.com/weftmesh/weft/pkg/policy"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/sni"
	"github.com/weftmesh/weft/pkg/xdsnames"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/xds-server/internal/meshview"
)

// Proxy kinds, from the node metadata key xdsnames.MetadataKind.
const (
	KindEnvoy   = xdsnames.KindEnvoy
	KindGRPC    = xdsnames.KindGRPC
	KindIngress = xdsnames.KindIngress
)

// Snapshot is one mesh at one revision: its resources and the pieces shared
// by every proxy of the mesh, built once by NewSnapshot. It is read-only.
type Snapshot struct {
	Mesh       string
	MeshSpec   *meshv1.Mesh
	Dataplanes map[string]*meshv1.Dataplane
	// TrafficPermissions sorted by name.
	TrafficPermissions []*resource.Resource
	// Policies are every policy of the mesh by type (pkg/policy decides
	// which applies where).
	Policies *policy.Set
	// VIPs by service (released VIPs left out).
	VIPs map[string]string

	// Shared pieces.
	services  []string                                     // every service with an inbound, sorted
	protocols map[string]string                            // service → protocol tag of its inbounds
	endpoints map[string]*endpointv3.ClusterLoadAssignment // service → healthy endpoints
	// Per-kind shared pieces, built on first use by a proxy of that kind
	// (reuse.go): a mesh without proxyless clients never builds grpc's.
	grpcOnce   sync.Once
	grpcBuilt  atomic.Pointer[grpcShared]
	envoyOnce  sync.Once
	envoyBuilt atomic.Pointer[envoyShared]
	// What the rebuild may reuse from the previous snapshot (reuse.go).
	members    map[string][]member      // service → its inbounds, by (dataplane name, inbound index)
	remote     map[string][]endpointKey // service → other zones' ingress endpoints
	grpcCarry  *grpcCarry
	grpcIdx    grpcIndexes // requested.go
	envoyCarry *envoyCarry
	// shared marks resources built once for the whole mesh: validated at
	// build time, digests cached.
	shared    map[types.Resource]bool
	reused    map[types.Resource]bool // shared, taken from the previous snapshot
	sharedErr error
	digests   sync.Map // types.Resource → [32]byte
	wires     sync.Map // shared types.Resource → *wireRes (wire.go)
	groups    sync.Map // type URL + " " + version → cachev3.Resources (SharedCacheSnapshot)
	// policy-shaped pieces, built on first use (policy_*.go)
	pol policyPieces
	// epoch is shared with the previous snapshot when the two can differ
	// only in ClusterLoadAssignments (endpoints.go); the inputs below are
	// what that comparison needs.
	epoch     uint64
	inbound   uint64 // InboundEpoch
	policyIn  []*resource.Resource
	ingressIn []*resource.Resource
}

func (s *Snapshot) share(res types.Resource) {
	s.shared[res] = true
}

func (s *Snapshot) digest(res types.Resource) ([32]byte, bool) {
	if !s.sharedPiece(res) {
		return s.lazyDigest(res)
	}
	if d, ok := s.digests.Load(res); ok {
		return d.([32]byte), true
	}
	d := digestOf(res)
	s.digests.Store(res, d)
	return d, true
}

// Versions is Resources.Versions with the digests of shared resources
// computed once per snapshot.
func (s *Snapshot) Versions(r Resources) map[string]string { return r.versions(s) }

// FromView builds the snapshot of a mesh as the model holds it; a nil view
// is a mesh that does not exist.
func FromView(mesh string, v *meshview.Mesh) *Snapshot {
	if v == nil {
		return NewSnapshot(mesh, nil, nil, nil, nil)
	}
	return newSnapshot(v.Name, v.Spec, v.Dataplanes, v.TrafficPermissions, v.VirtualIPs, v.Policies, v.ZoneIngresses)
}

// NewSnapshot builds a mesh snapshot. mesh may be nil when the Mesh resource
// is missing (proxies of such a mesh get no configuration).
func NewSnapshot(meshName string, mesh *meshv1.Mesh, dataplanes []*resource.Resource, permissions []*resource.Resource, vips []*resource.Resource) *Snapshot {
	return newSnapshot(meshName, mesh, dataplanes, permissions, vips, nil, nil)
}

// NewSnapshotWithPolicies is NewSnapshot with the mesh's other policies
// (TrafficRoute, Retry, …: any of policy.Types).
func NewSnapshotWithPolicies(meshName string, mesh *meshv1.Mesh, dataplanes, permissions, vips, policies []*resource.Resource) *Snapshot {
	return newSnapshot(meshName, mesh, dataplanes, permissions, vips, policies, nil)
}

// newSnapshot also takes other zones' ZoneIngresses (cross-zone endpoints).
func newSnapshot(meshName string, mesh *meshv1.Mesh, dataplanes, permissions, vips, policies, ingresses []*resource.Resource) *Snapshot {
	return buildSnapshot(nil, meshName, mesh, dataplanes, permissions, vips, policies, ingresses)
}

// buildSnapshot builds a mesh snapshot, reusing from prev (when not nil)
// the pieces the change cannot have touched (reuse.go).
func buildSnapshot(prev *Snapshot, meshName string, mesh *meshv1.Mesh, dataplanes, permissions, vips, policies, ingresses []*resource.Resource) *Snapshot {
	s := &Snapshot{
		Mesh:       meshName,
		MeshSpec:   mesh,
		Dataplanes: make(map[string]*meshv1.Dataplane, len(dataplanes)),
		VIPs:       make(map[string]string, len(vips)),
		protocols:  map[string]string{},
		endpoints:  map[string]*endpointv3.ClusterLoadAssignment{},
		shared:     map[types.Resource]bool{},
	}
	for _, d := range dataplanes {
		if dp, ok := d.Spec.(*meshv1.Dataplane); ok {
			s.Dataplanes[d.Meta.GetName()] = dp
		}
	}
	s.TrafficPermissions = append([]*resource.Resource(nil), permissions...)
	sort.Slice(s.TrafficPermissions, func(i, j int) bool {
		return s.TrafficPermissions[i].Meta.GetName() < s.TrafficPermissions[j].Meta.GetName()
	})
	for _, v := range vips {
		vip, ok := v.Spec.(*meshv1.VirtualIP)
		if !ok || vip.GetReleasedTime() != nil || vip.GetIp() == "" {
			continue
		}
		svc := vip.GetService()
		if svc == "" {
			svc = v.Meta.GetName()
		}
		s.VIPs[svc] = vip.GetIp()
	}
	s.Policies = policy.NewSet(permissions, policies)
	s.policyIn, s.ingressIn = slices.Clone(policies), slices.Clone(ingresses)
	if !prev.reusableFor(s) {
		prev = nil
	}
	s.buildEndpoints(prev, ingresses)
	s.carryFrom(prev)
	s.epoch = s.epochAfter(prev)
	s.inbound = s.inboundEpochAfter(prev)
	for res := range s.shared {
		if s.reused[res] {
			continue // valid in prev
		}
		if v, ok := res.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil && s.sharedErr == nil {
				s.sharedErr = fmt.Errorf("mesh %s: invalid shared resource %q: %w", meshName, cachev3.GetResourceName(res), err)
			}
		}
	}
	if s.sharedErr != nil {
		s.epoch, s.inbound = newEpoch(), newEpoch()
	}
	return s
}

type endpointKey struct {
	zone string
	addr string
	port uint32
	// weight > 0 marks another zone's ingress: the service's instance
	// count behind it.
	weight uint32
}

// LocalZone is the locality zone of endpoints without a weft.io/zone tag
// (grpc-go rejects localities without an id).
const LocalZone = "local"

// maxRemoteWeight caps an ingress endpoint's weight (a locality's weight,
// the sum over its endpoints, must stay within uint32).
const maxRemoteWeight = 1 << 20

// Services returns every service that has an inbound in the mesh, sorted.
func (s *Snapshot) Services() []string { return s.services }

// Protocol returns a service's protocol tag (tcp when unset).
func (s *Snapshot) Protocol(svc string) string {
	if p := s.protocols[svc]; p != "" {
		return p
	}
	return "tcp"
}

// MTLS reports whether the mesh has mTLS on, and whether it is permissive.
func (s *Snapshot) MTLS() (on, permissive bool) {
	m := s.MeshSpec.GetMtls()
	if m.GetEnabledBackend() == "" {
		return false, false
	}
	return true, m.GetMode() == "permissive"
}

// Proxy is the proxy configuration is generated for.
type Proxy struct {
	Mesh      string
	Name      string
	Kind      string
	Dataplane *meshv1.Dataplane
	// Identity is the proxy's certificate material; nil when mTLS is off or
	// the certificate is not there yet.
	Identity *Identity
	// RequiredTags come from the dataplane token: every inbound must carry
	// them, or the proxy gets nothing.
	RequiredTags map[string]string
	// Reuse, when not nil, returns a resource pushed to the proxy before
	// (nil: none), by type URL and name: an Envoy sidecar's inbound
	// listeners and clusters are taken from it instead of built. Set it
	// only when the snapshot's InboundEpoch is the one those were
	// generated at, for the same Dataplane object (endpoints.go).
	Reuse func(typeURL, name string) types.Resource
	// Requested is what a proxyless (KindGRPC) proxy has asked for: it gets
	// only those of the mesh's client resources. nil: all of them.
	Requested *Requested
}

// Identity is a workload certificate, its key and the mesh trust bundle, PEM.
type Identity = meshview.Identity

// SpiffeID is a service's identity in a mesh.
func SpiffeID(mesh, service string) string { return ca.SPIFFEID(mesh, service) }

// SNI names a service of a mesh in upstream TLS, so that an SNI-routing
// ingress can pick the destination without terminating TLS (pkg/sni).
func SNI(mesh, service string) string { return sni.Service(mesh, service) }

// NodeID is the xDS node id of a dataplane.
func NodeID(mesh, name string) string { return xdsnames.NodeID(mesh, name) }

// ParseNodeID splits a node id "<mesh>.<name>"; mesh names carry no dots.
func ParseNodeID(id string) (mesh, name string, err error) { return xdsnames.ParseNodeID(id) }

func hostPort(addr string, port uint32) string {
	return net.JoinHostPort(addr, strconv.Itoa(int(port)))
}

func inboundAddress(dp *meshv1.Dataplane, in *meshv1.Dataplane_Networking_Inbound) string {
	if a := in.GetAddress(); a != "" {
		return a
	}
	return dp.GetNetworking().GetAddress()
}

// sortEndpoints orders endpoints by (zone, address, port).
func sortEndpoints(list []endpointKey) {
	sort.Slice(list, func(i, j int) bool {
		if list[i].zone != list[j].zone {
			return list[i].zone < list[j].zone
		}
		if list[i].addr != list[j].addr {
			return list[i].addr < list[j].addr
		}
		return list[i].port < list[j].port
	})
}

// FromViewAfter is FromView for a mesh whose previous snapshot is prev (nil:
// none). It may reuse from prev what the change cannot have touched; the
// result is the same as FromView's.
func FromViewAfter(mesh string, v *meshview.Mesh, prev *Snapshot) *Snapshot {
	if v == nil {
		return NewSnapshot(mesh, nil, nil, nil, nil)
	}
	return buildSnapshot(prev, v.Name, v.Spec, v.Dataplanes, v.TrafficPermissions, v.VirtualIPs, v.Policies, v.ZoneIngresses)
}
