package generator

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// MaxRequestedNames bounds the names a proxyless client's Requested holds;
// a client asking for more gets every service's resources instead
// (Requested.With reports it).
const MaxRequestedNames = 10000

// Requested is what a proxyless client has asked for over its streams:
// resource names by type URL, only ever added to while it is connected.
// generateGRPC gives such a client the client resources (listener, route,
// cluster, endpoints of a service) it named and no others, so a client
// costs what it uses, not what the mesh has: with 500 services, 4 or 5
// resources instead of 2000 in its set, its cache snapshot and its
// versions. Its server listeners and secrets are always there.
//
// A nil *Requested is a client whose names are not tracked (a delta or a
// wildcard subscription, or too many names): it gets every service's.
// A Requested is immutable; With returns a new one.
type Requested struct {
	names map[string]map[string]struct{}
	n     int
}

// NewRequested is a client that has asked for nothing yet.
func NewRequested() *Requested { return &Requested{} }

// requestedTypes are the types whose names select client resources.
var requestedTypes = []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType}

// With records a request for names of typeURL. It returns the Requested
// to use from now on and whether it differs from q (a name was added, or
// the client must now get everything: nil with changed true).
// An SotW request naming no listener or cluster is a wildcard one; a
// request past MaxRequestedNames in total is refused as a selection: both
// return nil (everything).
func (q *Requested) With(typeURL string, names []string) (next *Requested, changed bool) {
	if q == nil {
		return nil, false
	}
	tracked := false
	for _, t := range requestedTypes {
		tracked = tracked || t == typeURL
	}
	if !tracked {
		return q, false // secrets: always there
	}
	if len(names) == 0 {
		if typeURL == resourcev3.ListenerType || typeURL == resourcev3.ClusterType {
			return nil, true
		}
		return q, false
	}
	var added []string
	have := q.names[typeURL]
	for _, n := range names {
		if _, ok := have[n]; !ok {
			added = append(added, n)
		}
	}
	if len(added) == 0 {
		return q, false
	}
	if q.n+len(added) > MaxRequestedNames {
		return nil, true
	}
	next = &Requested{names: make(map[string]map[string]struct{}, len(q.names)+1), n: q.n}
	for t, set := range q.names {
		next.names[t] = set
	}
	set := make(map[string]struct{}, len(have)+len(added))
	for n := range have {
		set[n] = struct{}{}
	}
	for _, n := range added {
		if _, ok := set[n]; !ok {
			set[n] = struct{}{}
			next.n++
		}
	}
	next.names[typeURL] = set
	return next, true
}

// Len is the number of names held.
func (q *Requested) Len() int {
	if q == nil {
		return 0
	}
	return q.n
}

// clientIndex finds a client resource by type URL and name.
type clientIndex map[string]map[string]types.Resource

func newClientIndex(list []types.Resource) clientIndex {
	idx := clientIndex{}
	for _, res := range list {
		typ := typeURLOf(res)
		if idx[typ] == nil {
			idx[typ] = map[string]types.Resource{}
		}
		idx[typ][cachev3.GetResourceName(res)] = res
	}
	return idx
}

// addRequested adds the resources of idx that q names.
func (idx clientIndex) addRequested(out Resources, q *Requested) {
	for _, typ := range requestedTypes {
		byName := idx[typ]
		if len(byName) == 0 {
			continue
		}
		for n := range q.names[typ] {
			if res, ok := byName[n]; ok {
				out.add(typ, res)
			}
		}
	}
}

// grpcIndexes caches, per snapshot, the index of the policy-free client
// resources and the versions of every client list.
type grpcIndexes struct {
	once          sync.Once
	plain         clientIndex
	plainOnce     sync.Once
	plainVersions clientVersions
	shaped        sync.Map // *types.Resource (a cached list's first element) → clientVersions
}

// plainIndex indexes the shared, policy-free client resources, once per
// snapshot.
func (s *Snapshot) plainIndex() clientIndex {
	s.grpcIdx.once.Do(func() {
		sh, _ := s.grpc() // built: the proxy's generation succeeded
		list := make([]types.Resource, 0, 4*len(sh.listeners))
		for i := range sh.listeners {
			list = append(list, sh.listeners[i], sh.routes[i], sh.clusters[i], sh.endpoints[i])
		}
		s.grpcIdx.plain = newClientIndex(list)
	})
	return s.grpcIdx.plain
}

// clientVersions are the sorted client resources of one list (every
// service's, plain or shaped by one selection of policies) per type, with
// their digests and the version they hash to: computed once per list.
type clientVersions map[string]*sortedClients

type sortedClients struct {
	list    []types.Resource
	digests [][32]byte
	version string
	names   map[string]bool
}

func (s *Snapshot) newClientVersions(list []types.Resource) clientVersions {
	part := Resources{}
	for _, res := range list {
		part.add(typeURLOf(res), res)
	}
	part.sort()
	cv := clientVersions{}
	for typ, l := range part {
		sc := &sortedClients{list: l, digests: make([][32]byte, len(l))}
		if typ == resourcev3.ListenerType {
			sc.names = make(map[string]bool, len(l))
		}
		h := sha256.New()
		for i, res := range l {
			if sc.names != nil {
				sc.names[cachev3.GetResourceName(res)] = true
			}
			sc.digests[i] = s.digestFor(res)
			h.Write(sc.digests[i][:])
		}
		sc.version = hex.EncodeToString(h.Sum(nil))[:16]
		cv[typ] = sc
	}
	return cv
}

func (s *Snapshot) digestFor(res types.Resource) [32]byte {
	if d, ok := s.digest(res); ok {
		return d
	}
	return digestOf(res)
}

// VersionsFor is Versions for p's configuration r. A proxyless proxy that
// gets only what it requested has the versions its full configuration
// (every service's client resources) would have: they depend on the mesh
// and the proxy, never on what its stream asked for, so every replica
// computes the same ones (inspect's computed config dumps) and a name
// asked for later comes with the version the proxy already has
// (go-control-plane answers a newly requested name at an unchanged
// version). The shared part is hashed once per snapshot and list; per
// proxy only its listener names are merged with its server listeners.
func (s *Snapshot) VersionsFor(p *Proxy, r Resources) (map[string]string, error) {
	if p.Kind != KindGRPC || p.Requested == nil {
		return s.Versions(r), nil
	}
	var cv clientVersions
	if sel := newOutboundSelector(s, p); sel.any() {
		list, err := grpcClientList(s, sel)
		if err != nil {
			return nil, err
		}
		if len(list) > 0 {
			key := &list[0]
			v, ok := s.grpcIdx.shaped.Load(key)
			if !ok {
				v, _ = s.grpcIdx.shaped.LoadOrStore(key, s.newClientVersions(list))
			}
			cv = v.(clientVersions)
		}
	} else {
		s.grpcIdx.plainOnce.Do(func() {
			sh, _ := s.grpc() // built: the proxy's generation succeeded
			list := make([]types.Resource, 0, 4*len(sh.listeners))
			for i := range sh.listeners {
				list = append(list, sh.listeners[i], sh.routes[i], sh.clusters[i], sh.endpoints[i])
			}
			s.grpcIdx.plainVersions = s.newClientVersions(list)
		})
		cv = s.grpcIdx.plainVersions
	}
	out := map[string]string{}
	for _, typ := range []string{resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
		// generateGRPC adds nothing of these types but client resources.
		if sc := cv[typ]; sc != nil {
			out[typ] = sc.version
		}
	}
	if list := r[resourcev3.SecretType]; list != nil {
		out[resourcev3.SecretType] = s.Versions(Resources{resourcev3.SecretType: list})[resourcev3.SecretType]
	}
	// Listeners: the client ones merged, by name, with the proxy's own
	// (its server listeners), as the full configuration sorts them.
	sc := cv[resourcev3.ListenerType]
	if sc == nil {
		sc = &sortedClients{}
	}
	var own []types.Resource
	for _, res := range r[resourcev3.ListenerType] {
		if !sc.names[cachev3.GetResourceName(res)] {
			own = append(own, res)
		}
	}
	if len(own) == 0 && len(sc.list) == 0 {
		if _, ok := r[resourcev3.ListenerType]; ok {
			out[resourcev3.ListenerType] = s.Versions(Resources{resourcev3.ListenerType: nil})[resourcev3.ListenerType]
		}
		return out, nil
	}
	h := sha256.New()
	i, j := 0, 0
	for i < len(sc.list) || j < len(own) {
		if j == len(own) || i < len(sc.list) && cachev3.GetResourceName(sc.list[i]) <= cachev3.GetResourceName(own[j]) {
			h.Write(sc.digests[i][:])
			i++
			continue
		}
		d := s.digestFor(own[j])
		h.Write(d[:])
		j++
	}
	out[resourcev3.ListenerType] = hex.EncodeToString(h.Sum(nil))[:16]
	return out, nil
}
