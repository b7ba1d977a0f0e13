// Package generator turns a mesh's resources into xDS configuration for one
// proxy. It is pure: no etcd, no clock, sorted output, so the same inputs give
// byte-identical resources (and so identical versions) on every replica.
package generator

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"

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
	services    []string                                     // every service with an inbound, sorted
	protocols   map[string]string                            // service → protocol tag of its inbounds
	endpoints   map[string]*endpointv3.ClusterLoadAssignment // service → healthy endpoints
	grpcShared  *grpcShared
	envoyShared *envoyShared
	// shared marks resources built once for the whole mesh: validated at
	// build time, digests cached.
	shared    map[types.Resource]bool
	sharedErr error
	digests   sync.Map // types.Resource → [32]byte
	// policy-shaped pieces, built on first use (policy_*.go)
	pol policyPieces
}

func (s *Snapshot) share(res types.Resource) {
	s.shared[res] = true
}

func (s *Snapshot) digest(res types.Resource) ([32]byte, bool) {
	if !s.shared[res] {
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
	s := &Snapshot{
		Mesh:       meshName,
		MeshSpec:   mesh,
		Dataplanes: map[string]*meshv1.Dataplane{},
		VIPs:       map[string]string{},
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
	s.buildEndpoints(ingresses)
	s.grpcShared = buildGRPCShared(s)
	s.envoyShared = buildEnvoyShared(s)
	for res := range s.shared {
		if v, ok := res.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil && s.sharedErr == nil {
				s.sharedErr = fmt.Errorf("mesh %s: invalid shared resource %q: %w", meshName, cachev3.GetResourceName(res), err)
			}
		}
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

func (s *Snapshot) buildEndpoints(ingresses []*resource.Resource) {
	eps := map[string][]endpointKey{}
	seen := map[string]bool{}
	names := make([]string, 0, len(s.Dataplanes))
	for n := range s.Dataplanes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		dp := s.Dataplanes[name]
		for _, in := range dp.GetNetworking().GetInbound() {
			svc := in.GetTags()[resource.ServiceTag]
			if svc == "" {
				continue
			}
			if !seen[svc] {
				seen[svc] = true
				s.services = append(s.services, svc)
			}
			if p := in.GetTags()[resource.ProtocolTag]; p != "" && s.protocols[svc] == "" {
				s.protocols[svc] = p
			}
			if h := in.GetHealth(); h != nil && !h.GetReady() {
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
			eps[svc] = append(eps[svc], endpointKey{zone: zone, addr: addr, port: in.GetPort()})
			s.noteEndpointTags(svc, eps[svc][len(eps[svc])-1], in.GetTags())
		}
	}
	remote := s.remoteEndpoints(ingresses, seen)
	sort.Strings(s.services)
	for _, svc := range s.services {
		list := eps[svc]
		sortEndpoints(list)
		s.endpoints[svc] = loadAssignment(svc, list, remote[svc])
		s.share(s.endpoints[svc])
	}
}

// remoteEndpoints turns other zones' ZoneIngresses into endpoints: per
// service, one endpoint per ingress advertised address, weighted by the
// instances of the service behind it, sorted by (zone, address, port).
// Services offered only remotely join s.services.
func (s *Snapshot) remoteEndpoints(ingresses []*resource.Resource, seen map[string]bool) map[string][]endpointKey {
	sums := map[string]map[endpointKey]uint32{}
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
			if !seen[svc] {
				seen[svc] = true
				s.services = append(s.services, svc)
			}
			if p := as.GetTags()[resource.ProtocolTag]; p != "" && s.protocols[svc] == "" {
				s.protocols[svc] = p
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
	return out
}

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
	return FromView(mesh, v)
}
