package generator

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The wire form of a resource serializes it once and shares the bytes.
//
// go-control-plane's snapshot cache marshals every resource of every
// response it sends (cache.RawResponse.GetDiscoveryResponse, once per
// stream), and the versions marshal every resource once more to hash it: a
// change that reaches 2,000 proxies marshaled the same shared
// ClusterLoadAssignment 2,000 times, and every per-proxy Cluster and
// Listener twice. Wire marshals each resource once — a shared one once per
// Snapshot, a per-proxy one once per generation — hashes those bytes, and
// hands the cache a hollow message of the same type that marshals back to
// exactly those bytes: the name (field 1 of every xDS resource type Weft
// serves, so GetResourceName and the cache's bookkeeping work) and the rest
// of the encoding as unknown fields, which protobuf copies verbatim when it
// marshals. Marshaling it is a copy of the bytes, whichever stream sends
// it.
//
// A hollow resource is only for the cache: everything that reads a
// resource's fields (Consistent, the config dump) uses the originals or
// Expand. Shared resources' wire forms live in the Snapshot, so they go
// when the snapshot and the cache snapshots using them go.

// wireRes is one resource's wire form, and the names it references
// (Consistent).
type wireRes struct {
	digest   [32]byte
	hollow   types.Resource
	refsOnce sync.Once
	refs     map[string]map[string]bool
}

// Wire returns the resources' wire forms (same types, order and names)
// and their per-type versions (equal to Versions(r)).
func (s *Snapshot) Wire(r Resources) (Resources, map[string]string) {
	out := make(Resources, len(r))
	versions := make(map[string]string, len(r))
	for typ, list := range r {
		h := sha256.New()
		wl := make([]types.Resource, len(list))
		for i, res := range list {
			w := s.wire(res)
			h.Write(w.digest[:])
			wl[i] = w.hollow
		}
		out[typ] = wl
		versions[typ] = hexVersion(h.Sum(nil))
	}
	return out, versions
}

// wire returns a resource's wire form, cached for the Snapshot's life when
// the resource is shared by many proxies.
func (s *Snapshot) wire(res types.Resource) *wireRes {
	if s == nil || !s.isShared(res) {
		return newWire(res)
	}
	if w, ok := s.wires.Load(res); ok {
		return w.(*wireRes)
	}
	w, _ := s.wires.LoadOrStore(res, newWire(res))
	return w.(*wireRes)
}

func newWire(res types.Resource) *wireRes {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(res)
	if err != nil {
		// Generated resources always marshal; make a failure visible as a
		// digest that never matches, and let the cache report the error
		// when it marshals the original.
		return &wireRes{digest: digestBytes(cachev3.GetResourceName(res), []byte(err.Error())), hollow: res}
	}
	name := cachev3.GetResourceName(res)
	return &wireRes{digest: digestBytes(name, b), hollow: hollowOf(res, name, b)}
}

// hollowOf is a message of res's type holding only its name (field 1),
// with the rest of b, res's deterministic encoding, as unknown fields.
// When b does not start with the name (a type without a string field 1, or
// an empty name), res itself is returned: correct, only not cheaper.
func hollowOf(res types.Resource, name string, b []byte) types.Resource {
	m := res.ProtoReflect()
	fd := m.Descriptor().Fields().ByNumber(1)
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.Cardinality() == protoreflect.Repeated || fd.ContainingOneof() != nil || name == "" {
		return res
	}
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num != 1 || typ != protowire.BytesType {
		return res
	}
	v, m2 := protowire.ConsumeBytes(b[n:])
	if m2 < 0 || string(v) != name {
		return res
	}
	h := m.New()
	h.Set(fd, protoreflect.ValueOfString(name))
	if rest := b[n+m2:]; len(rest) > 0 {
		h.SetUnknown(rest)
	}
	return h.Interface()
}

// Expand returns a resource with its fields readable: the original for a
// resource Wire did not hollow, a decoded copy for a hollow one.
func Expand(res types.Resource) types.Resource {
	if res == nil || len(res.ProtoReflect().GetUnknown()) == 0 {
		return res
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(res)
	if err != nil {
		return res
	}
	full := res.ProtoReflect().New().Interface()
	if err := proto.Unmarshal(b, full); err != nil {
		return res
	}
	return full
}

// Consistent is go-control-plane's Snapshot.Consistent for r, without
// building a cache snapshot and reading the references of shared resources
// once per Snapshot (a listener's references cost unpacking its
// HttpConnectionManager): every ClusterLoadAssignment and
// RouteConfiguration is referenced by a Cluster or a Listener, and every
// reference resolves. A nil Snapshot caches nothing.
func (s *Snapshot) Consistent(r Resources) error {
	refs := map[string]map[string]bool{}
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		for _, res := range r[typ] {
			for t, names := range s.references(res) {
				if refs[t] == nil {
					refs[t] = map[string]bool{}
				}
				for n := range names {
					refs[t][n] = true
				}
			}
		}
	}
	for _, typ := range []string{resourcev3.EndpointType, resourcev3.RouteType} {
		have := make(map[string]bool, len(r[typ]))
		for _, res := range r[typ] {
			have[cachev3.GetResourceName(res)] = true
		}
		if len(refs[typ]) != len(have) {
			return fmt.Errorf("mismatched %q reference and resource lengths: len(%v) != %d", typ, refs[typ], len(have))
		}
		for n := range refs[typ] {
			if !have[n] {
				return fmt.Errorf("inconsistent %q reference: %q not listed", typ, n)
			}
		}
	}
	return nil
}

// references are the names a Cluster or a Listener references, by type.
func (s *Snapshot) references(res types.Resource) map[string]map[string]bool {
	read := func() map[string]map[string]bool {
		if l, ok := res.(*listenerv3.Listener); ok {
			return listenerReferences(l)
		}
		return gcpReferences(res)
	}
	if s == nil || !s.isShared(res) {
		return read()
	}
	w := s.wire(res)
	w.refsOnce.Do(func() { w.refs = read() })
	return w.refs
}

// listenerReferences is what go-control-plane's GetResourceReferences
// finds in a listener — the RDS route names of its HttpConnectionManagers —
// read from the filters' packed bytes with protowire instead of unpacking
// every HttpConnectionManager (with its inline routes) into messages.
// Scoped routes (Weft generates none) and anything not decodable go to
// go-control-plane's reader. TestWire compares the two on every golden.
func listenerReferences(l *listenerv3.Listener) map[string]map[string]bool {
	routes := map[string]bool{}
	chains := l.GetFilterChains()
	if d := l.GetDefaultFilterChain(); d != nil {
		chains = append(chains[:len(chains):len(chains)], d)
	}
	for _, c := range chains {
		for _, f := range c.GetFilters() {
			tc := f.GetTypedConfig()
			if tc == nil {
				continue
			}
			u := tc.GetTypeUrl()
			if u[strings.LastIndexByte(u, '/')+1:] != hcmName {
				continue
			}
			if !hcmRoutes(tc.GetValue(), routes) {
				return gcpReferences(l)
			}
		}
	}
	if len(routes) == 0 {
		return map[string]map[string]bool{}
	}
	return map[string]map[string]bool{resourcev3.RouteType: routes}
}

func gcpReferences(res types.Resource) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for t, names := range cachev3.GetResourceReferences(map[string]types.ResourceWithTTL{"": {Resource: res}}) {
		out[t] = names
	}
	return out
}

var (
	hcmName = string((&hcmv3.HttpConnectionManager{}).ProtoReflect().Descriptor().FullName())
	// Field numbers, from the descriptors: the route_specifier oneof's
	// members, and Rds's name.
	hcmRds         = fieldNum(&hcmv3.HttpConnectionManager{}, "rds")
	hcmRouteConfig = fieldNum(&hcmv3.HttpConnectionManager{}, "route_config")
	hcmScoped      = fieldNum(&hcmv3.HttpConnectionManager{}, "scoped_routes")
	rdsName        = fieldNum(&hcmv3.Rds{}, "route_config_name")
)

func fieldNum(m proto.Message, name protoreflect.Name) protowire.Number {
	return m.ProtoReflect().Descriptor().Fields().ByName(name).Number()
}

// hcmRoutes adds the RDS route name an encoded HttpConnectionManager
// references, decoding as protobuf does: the last route_specifier member
// wins, occurrences of rds merge (the last route_config_name set wins).
// false: b is malformed or uses scoped routes (left to go-control-plane).
func hcmRoutes(b []byte, routes map[string]bool) bool {
	var member protowire.Number
	rds := ""
	ok := eachField(b, func(num protowire.Number, v []byte) bool {
		switch num {
		case hcmScoped:
			return false
		case hcmRouteConfig:
			member, rds = num, ""
		case hcmRds:
			if member != hcmRds {
				member, rds = num, ""
			}
			return eachField(v, func(num protowire.Number, v []byte) bool {
				if num == rdsName {
					rds = string(v)
				}
				return true
			})
		}
		return true
	})
	if ok && member == hcmRds && rds != "" {
		routes[rds] = true
	}
	return ok
}

// eachField calls f with each length-delimited field of an encoded
// message (other wire types are skipped); false when b is malformed or f
// says so.
func eachField(b []byte, f func(protowire.Number, []byte) bool) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return false
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 || !f(num, v) {
			return false
		}
		b = b[n:]
	}
	return true
}

func digestBytes(name string, b []byte) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s:%d:", len(name), name, len(b))
	h.Write(b)
	var d [32]byte
	h.Sum(d[:0])
	return d
}
