package generator

import (
	"bytes"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestWire checks, for every golden input, that the wire forms the cache
// gets marshal to exactly the originals' bytes (what go-control-plane puts
// in a response), keep their names, carry the same versions as Versions,
// expand back to equal messages, and are hollow (cheap to marshal) for
// every resource with a name — and that a shared resource's wire form is
// built once per snapshot.
func TestWire(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.input.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	det := proto.MarshalOptions{Deterministic: true}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".input.yaml")
		t.Run(name, func(t *testing.T) {
			s, p := loadInput(t, in)
			res, err := Generate(s, p)
			if err != nil {
				t.Fatal(err)
			}
			wire, versions := s.Wire(res)
			if want := res.Versions(); len(versions) != len(want) {
				t.Fatalf("versions %v, want %v", versions, want)
			} else {
				for typ, v := range want {
					if versions[typ] != v {
						t.Errorf("%s: version %s, want %s", typ, versions[typ], v)
					}
				}
			}
			for typ, list := range res {
				if len(wire[typ]) != len(list) {
					t.Fatalf("%s: %d wire resources, want %d", typ, len(wire[typ]), len(list))
				}
				for i, orig := range list {
					w := wire[typ][i]
					n := cachev3.GetResourceName(orig)
					if got := cachev3.GetResourceName(w); got != n {
						t.Errorf("%s %q: wire name %q", typ, n, got)
					}
					want, err := det.Marshal(orig)
					if err != nil {
						t.Fatal(err)
					}
					got, err := cachev3.MarshalResource(w)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Errorf("%s %q: wire bytes differ from the original's", typ, n)
					}
					if n != "" && w == orig {
						t.Errorf("%s %q: not hollowed", typ, n)
					}
					if e := Expand(w); !proto.Equal(e, orig) {
						t.Errorf("%s %q: expanded wire form differs from the original", typ, n)
					}
					if l, ok := orig.(*listenerv3.Listener); ok {
						if got, want := listenerReferences(l), gcpReferences(l); !reflect.DeepEqual(got, want) {
							t.Errorf("listener %q references %v, go-control-plane's %v", n, got, want)
						}
					}
					if s.isShared(orig) && s.wire(orig) != s.wire(orig) {
						t.Errorf("%s %q: shared wire form built twice", typ, n)
					}
				}
			}
			// Consistent agrees with go-control-plane's, also when a
			// referenced ClusterLoadAssignment is missing.
			gcp := func(r Resources) error { return r.CacheSnapshot(r.Versions()).Consistent() }
			if got, want := s.Consistent(res), gcp(res); (got == nil) != (want == nil) {
				t.Errorf("Consistent: %v, go-control-plane's: %v", got, want)
			}
			if eds := res[resourcev3.EndpointType]; len(eds) > 0 {
				broken := Resources{}
				for typ, list := range res {
					broken[typ] = list
				}
				broken[resourcev3.EndpointType] = eds[1:]
				if got, want := s.Consistent(broken), gcp(broken); got == nil || want == nil {
					t.Errorf("a missing ClusterLoadAssignment: Consistent %v, go-control-plane's %v", got, want)
				}
			}
		})
	}
}

// TestListenerReferences covers what the goldens do not: route_specifier
// members replacing each other, scoped routes and undecodable configs,
// against go-control-plane's reader.
func TestListenerReferences(t *testing.T) {
	rds := func(name string) *hcmv3.HttpConnectionManager {
		return &hcmv3.HttpConnectionManager{RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: name}}}
	}
	listener := func(values ...[]byte) *listenerv3.Listener {
		l := &listenerv3.Listener{Name: "l"}
		for _, v := range values {
			l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{Filters: []*listenerv3.Filter{{
				Name:       "hcm",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAnyBytes(hcmName, v)},
			}}})
		}
		return l
	}
	enc := func(m *hcmv3.HttpConnectionManager) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	inline := enc(&hcmv3.HttpConnectionManager{RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: "inline"}}})
	scoped := enc(&hcmv3.HttpConnectionManager{RouteSpecifier: &hcmv3.HttpConnectionManager_ScopedRoutes{ScopedRoutes: &hcmv3.ScopedRoutes{
		ConfigSpecifier: &hcmv3.ScopedRoutes_ScopedRouteConfigurationsList{ScopedRouteConfigurationsList: &hcmv3.ScopedRouteConfigurationsList{
			ScopedRouteConfigurations: []*routev3.ScopedRouteConfiguration{{Name: "s", RouteConfigurationName: "scoped-route"}}}}}}})
	for name, l := range map[string]*listenerv3.Listener{
		"rds":                   listener(enc(rds("r1"))),
		"two chains":            listener(enc(rds("r1")), enc(rds("r2"))),
		"rds then inline":       listener(append(enc(rds("r1")), inline...)),
		"inline then rds":       listener(append(inline, enc(rds("r1"))...)),
		"rds merged":            listener(append(enc(rds("r1")), enc(rds("r2"))...)),
		"rds merged, empty":     listener(append(enc(rds("r1")), enc(rds(""))...)),
		"inline":                listener(inline),
		"scoped":                listener(scoped),
		"undecodable":           listener([]byte{0xff, 0xff}),
		"undecodable, then rds": listener([]byte{0x1a, 0x05, 0x00}, enc(rds("r1"))),
	} {
		if got, want := listenerReferences(l), gcpReferences(l); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: references %v, go-control-plane's %v", name, got, want)
		}
	}
}

func mustAnyBytes(fullName string, v []byte) *anypb.Any {
	return &anypb.Any{TypeUrl: "type.googleapis.com/" + fullName, Value: v}
}

// TestSharedCacheSnapshot: proxies that get the same version of a shared
// type share one resource group, which holds exactly what
// CacheSnapshot would; a different version gets its own group; listeners
// (a proxy's own) are never shared.
func TestSharedCacheSnapshot(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.input.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	items := func(cs *cachev3.Snapshot, typ string) uintptr {
		return reflect.ValueOf(cs.Resources[cachev3.GetResponseType(typ)].Items).Pointer()
	}
	same := func(t *testing.T, got, want *cachev3.Snapshot) {
		t.Helper()
		for _, typ := range TypeURLs {
			if g, w := got.GetVersion(typ), want.GetVersion(typ); g != w {
				t.Errorf("%s: version %s, want %s", typ, g, w)
			}
			g, w := got.GetResourcesAndTTL(typ), want.GetResourcesAndTTL(typ)
			if len(g) != len(w) {
				t.Fatalf("%s: %d resources, want %d", typ, len(g), len(w))
			}
			for name, wr := range w {
				gr, ok := g[name]
				if !ok {
					t.Fatalf("%s: %q missing", typ, name)
				}
				gb, _ := cachev3.MarshalResource(gr.Resource)
				wb, _ := cachev3.MarshalResource(wr.Resource)
				if !bytes.Equal(gb, wb) {
					t.Errorf("%s %q: bytes differ", typ, name)
				}
			}
		}
	}
	shared := 0
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".input.yaml")
		t.Run(name, func(t *testing.T) {
			s, p := loadInput(t, in)
			gen := func() (Resources, map[string]string) {
				res, err := Generate(s, p)
				if err != nil {
					t.Fatal(err)
				}
				return s.Wire(res)
			}
			w1, v1 := gen()
			a := s.SharedCacheSnapshot(w1, v1)
			same(t, a, w1.CacheSnapshot(v1))
			// The same proxy generated again (new objects, same content),
			// as another proxy with the same configuration would be.
			w2, v2 := gen()
			b := s.SharedCacheSnapshot(w2, v2)
			same(t, b, w2.CacheSnapshot(v2))
			for _, typ := range TypeURLs {
				n := len(w1[typ])
				switch {
				case n > 0 && !sharedGroupTypes[typ]:
					if items(a, typ) == items(b, typ) {
						t.Errorf("%s: a proxy's own resources were shared", typ)
					}
				case items(a, typ) != items(b, typ):
					t.Errorf("%s (%d resources): same version, not shared", typ, n)
				default:
					shared++
				}
			}
			// A different list of a shared type: its own group.
			for _, typ := range []string{resourcev3.EndpointType, resourcev3.ClusterType} {
				if len(w1[typ]) < 2 {
					continue
				}
				w3 := Resources{}
				for k, l := range w2 {
					w3[k] = l
				}
				w3[typ] = w3[typ][1:]
				v3 := map[string]string{}
				for k, v := range v2 {
					v3[k] = v
				}
				_, vv := s.Wire(Resources{typ: w3[typ]})
				v3[typ] = vv[typ]
				c := s.SharedCacheSnapshot(w3, v3)
				same(t, c, w3.CacheSnapshot(v3))
				if items(c, typ) == items(a, typ) {
					t.Errorf("%s: a different version shared the group", typ)
				}
			}
		})
	}
	if shared == 0 {
		t.Fatal("no group was shared in any golden")
	}
}
