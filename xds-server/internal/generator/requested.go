package generator

import (
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

// grpcIndexes caches the index of a snapshot's policy-free client
// resources.
type grpcIndexes struct {
	once  sync.Once
	plain clientIndex
}

// plainIndex indexes the shared, policy-free client resources, once per
// snapshot.
func (s *Snapshot) plainIndex() clientIndex {
	s.grpcIdx.once.Do(func() {
		sh := s.grpcShared
		list := make([]types.Resource, 0, 4*len(sh.listeners))
		for i := range sh.listeners {
			list = append(list, sh.listeners[i], sh.routes[i], sh.clusters[i], sh.endpoints[i])
		}
		s.grpcIdx.plain = newClientIndex(list)
	})
	return s.grpcIdx.plain
}
