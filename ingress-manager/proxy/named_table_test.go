package proxy_test

import (
	"testing"

	"github.com/weftmesh/weft/ingress-manager/proxy"
	"github.com/weftmesh/weft/pkg/sni"
)

// TestNamedTable: a table from the xds-server's ingress configuration
// serves exactly its names: a subset without a name of its own is unknown
// even when endpoints carry its tags, a mesh without a name is foreign,
// and the endpoint bound holds.
func TestNamedTable(t *testing.T) {
	svc := sni.Service("default", "greeter")
	v1, err := sni.Format("default", "greeter", map[string]string{"version": "v1"})
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := sni.Format("default", "greeter", map[string]string{"version": "v2"})
	tab, dropped := proxy.NewNamedTable(map[string][]proxy.Endpoint{
		svc:                  {{Addr: "10.0.0.2:1"}, {Addr: "10.0.0.1:1"}},
		v1:                   {{Addr: "10.0.0.1:1"}},
		"not-a-mesh-name.io": {{Addr: "10.0.0.9:1"}},
	}, 0)
	if dropped != 0 || tab.Size() != 3 {
		t.Fatalf("size %d dropped %d, want 3 and 0", tab.Size(), dropped)
	}
	lookup := func(name string) ([]proxy.Endpoint, bool) {
		n, err := sni.Parse(name)
		if err != nil {
			t.Fatal(err)
		}
		return tab.Lookup(name, n)
	}
	if eps, ok := lookup(svc); !ok || len(eps) != 2 || eps[0].Addr != "10.0.0.1:1" {
		t.Fatalf("%s: %v %v (sorted by address)", svc, eps, ok)
	}
	if eps, ok := lookup(v1); !ok || len(eps) != 1 {
		t.Fatalf("%s: %v %v", v1, eps, ok)
	}
	if _, ok := lookup(v2); ok {
		t.Fatalf("%s has no chain but is known", v2)
	}
	if !tab.HasMesh("default") || tab.HasMesh("other") {
		t.Fatal("meshes: want default only")
	}
	if _, dropped := proxy.NewNamedTable(map[string][]proxy.Endpoint{svc: {{Addr: "a:1"}, {Addr: "b:1"}}, v1: {{Addr: "a:1"}}}, 2); dropped != 1 {
		t.Fatalf("dropped %d over a bound of 2, want 1", dropped)
	}
}
