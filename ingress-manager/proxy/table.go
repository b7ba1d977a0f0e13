package proxy

import (
	"net"
	"slices"
	"sort"
	"strconv"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/sni"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Endpoint is one healthy local instance of a service.
type Endpoint struct {
	Addr string // host:port
	Tags map[string]string
}

// Table is the ingress's routing table: the healthy local endpoints of
// every (mesh, service). It is read-only once built; a change builds a new
// one.
type Table struct {
	meshes map[string]map[string][]Endpoint
	// names, when set (a table from the xds-server's ingress
	// configuration), routes by exact server name: only the names the
	// configuration has a filter chain for are served.
	names map[string][]Endpoint
	size  int
}

// NewNamedTable is a table routing exact server names (pkg/sni) to
// endpoints, as the xds-server's ingress configuration does: one entry per
// filter chain. Names that are not mesh service names are left out. A mesh
// or service is known once one of its names is, even without endpoints.
// At most maxEndpoints endpoints are kept (0: no limit); dropped counts
// the rest.
func NewNamedTable(routes map[string][]Endpoint, maxEndpoints int) (t *Table, dropped int) {
	t = &Table{meshes: map[string]map[string][]Endpoint{}, names: map[string][]Endpoint{}}
	names := make([]string, 0, len(routes))
	for name := range routes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		n, err := sni.Parse(name)
		if err != nil {
			continue
		}
		eps := routes[name]
		if maxEndpoints > 0 && t.size+len(eps) > maxEndpoints {
			keep := max(0, maxEndpoints-t.size)
			dropped += len(eps) - keep
			eps = eps[:keep]
		}
		eps = slices.Clone(eps)
		sort.Slice(eps, func(i, j int) bool { return eps[i].Addr < eps[j].Addr })
		t.names[name] = eps
		t.size += len(eps)
		if t.meshes[n.Mesh] == nil {
			t.meshes[n.Mesh] = map[string][]Endpoint{}
		}
		if len(n.Tags) == 0 {
			t.meshes[n.Mesh][n.Service] = eps
		} else if _, ok := t.meshes[n.Mesh][n.Service]; !ok {
			t.meshes[n.Mesh][n.Service] = nil
		}
	}
	return t, dropped
}

// Lookup returns the endpoints for a server name (n is its parse), and
// whether the name is known. A named table knows only its names; a table
// built from Dataplanes matches n's subset against endpoint tags.
func (t *Table) Lookup(name string, n sni.Name) ([]Endpoint, bool) {
	if t != nil && t.names != nil {
		eps, ok := t.names[name]
		return eps, ok
	}
	return t.Endpoints(n.Mesh, n.Service, n.Tags)
}

// Size is the number of endpoints held.
func (t *Table) Size() int {
	if t == nil {
		return 0
	}
	return t.size
}

// HasMesh reports whether this zone serves any service of mesh.
func (t *Table) HasMesh(mesh string) bool {
	if t == nil {
		return false
	}
	_, ok := t.meshes[mesh]
	return ok
}

// Endpoints returns the endpoints of (mesh, service) that carry every tag
// of subset, and whether the service is known at all.
func (t *Table) Endpoints(mesh, service string, subset map[string]string) ([]Endpoint, bool) {
	if t == nil {
		return nil, false
	}
	all, ok := t.meshes[mesh][service]
	if !ok {
		return nil, false
	}
	if len(subset) == 0 {
		return all, true
	}
	var out []Endpoint
next:
	for _, e := range all {
		for k, v := range subset {
			if e.Tags[k] != v {
				continue next
			}
		}
		out = append(out, e)
	}
	return out, true
}

// BuildTable makes the table from this zone's Dataplanes: every inbound
// with a service, ready (or without health) and an address. At most
// maxEndpoints endpoints are kept (0: no limit); dropped counts the rest.
// A mesh appears once it has a Dataplane with an inbound, even when none is
// healthy, so a connection to it is "no endpoint", not "foreign mesh".
func BuildTable(dataplanes []*resource.Resource, maxEndpoints int) (t *Table, dropped int) {
	t = &Table{meshes: map[string]map[string][]Endpoint{}}
	for _, r := range dataplanes {
		dp, ok := r.Spec.(*meshv1.Dataplane)
		if !ok {
			continue
		}
		mesh := r.Meta.GetMesh()
		for _, in := range dp.GetNetworking().GetInbound() {
			svc := in.GetTags()[resource.ServiceTag]
			if svc == "" {
				continue
			}
			if t.meshes[mesh] == nil {
				t.meshes[mesh] = map[string][]Endpoint{}
			}
			list, known := t.meshes[mesh][svc]
			if !known {
				t.meshes[mesh][svc] = nil
			}
			if h := in.GetHealth(); h != nil && !h.GetReady() {
				continue
			}
			addr := InboundAddress(dp, in)
			if addr == "" || in.GetPort() == 0 {
				continue
			}
			if maxEndpoints > 0 && t.size >= maxEndpoints {
				dropped++
				continue
			}
			t.meshes[mesh][svc] = append(list, Endpoint{Addr: net.JoinHostPort(addr, strconv.Itoa(int(in.GetPort()))), Tags: in.GetTags()})
			t.size++
		}
	}
	for _, svcs := range t.meshes {
		for _, list := range svcs {
			sort.Slice(list, func(i, j int) bool { return list[i].Addr < list[j].Addr })
		}
	}
	return t, dropped
}

// InboundAddress is where an inbound is reached from inside its zone: the
// inbound's own address, else the Dataplane's.
func InboundAddress(dp *meshv1.Dataplane, in *meshv1.Dataplane_Networking_Inbound) string {
	if a := in.GetAddress(); a != "" {
		return a
	}
	return dp.GetNetworking().GetAddress()
}
