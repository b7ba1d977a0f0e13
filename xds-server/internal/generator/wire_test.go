package generator

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
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
