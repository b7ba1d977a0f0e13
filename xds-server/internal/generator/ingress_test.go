package generator

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/sni"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// TestIngressGolden: the Envoy zone ingress's configuration, golden and
// ValidateAll-clean (GenerateIngress validates).
func TestIngressGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/ingress/*.input.yaml")
	if err != nil || len(inputs) < 2 {
		t.Fatalf("inputs %v: %v", inputs, err)
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) { ingressGolden(t, in, strings.TrimSuffix(in, ".input.yaml")+".golden.yaml") })
	}
}

func ingressGolden(t *testing.T, in, golden string) {
	data, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(data), "\n---\n")
	var hdr struct {
		Ingress struct {
			Address string `json:"address"`
			Port    uint32 `json:"port"`
		} `json:"ingress"`
	}
	if err := yaml.UnmarshalStrict([]byte(docs[0]), &hdr); err != nil {
		t.Fatal(err)
	}
	meshes := map[string]*meshv1.Mesh{}
	dps := map[string][]*resource.Resource{}
	pols := map[string][]*resource.Resource{}
	for _, d := range docs[1:] {
		r, err := resource.Unmarshal([]byte(d), nil)
		if err != nil {
			t.Fatal(err)
		}
		switch r.Type() {
		case resource.MeshType:
			meshes[r.Meta.GetName()] = r.Spec.(*meshv1.Mesh)
		case resource.DataplaneType:
			dps[r.Meta.GetMesh()] = append(dps[r.Meta.GetMesh()], r)
		default:
			pols[r.Meta.GetMesh()] = append(pols[r.Meta.GetMesh()], r)
		}
	}
	var snaps []*Snapshot
	for m, list := range dps {
		snaps = append(snaps, NewSnapshotWithPolicies(m, meshes[m], list, nil, nil, pols[m]))
	}
	res, err := GenerateIngress(snaps, hdr.Ingress.Address, hdr.Ingress.Port)
	if err != nil {
		t.Fatal(err)
	}
	got := normalise(t, res)
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("ingress config differs from %s (run with -update):\n%s", golden, got)
	}
	// Every chain is named by what pkg/sni parses back to its service.
	l := res[resourcev3.ListenerType][0].(*listenerv3.Listener)
	for _, c := range l.GetFilterChains() {
		n, err := sni.Parse(c.GetFilterChainMatch().GetServerNames()[0])
		if err != nil || !strings.HasPrefix(c.GetName(), n.Service+".") {
			t.Errorf("chain %q: %+v, %v", c.GetName(), n, err)
		}
	}
}

// TestIngressOneBadSubset: a subset whose configuration does not validate
// (an endpoint without an address) is left out and reported; the other
// names are served.
func TestIngressOneBadSubset(t *testing.T) {
	mk := func(name, svc, addr string) *resource.Resource {
		r := resource.New(resource.DataplaneType, "default", name)
		r.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: addr,
			Inbound: []*meshv1.Dataplane_Networking_Inbound{{Port: 8080, Tags: map[string]string{resource.ServiceTag: svc}}}}}
		return r
	}
	snap := NewSnapshot("default", &meshv1.Mesh{}, []*resource.Resource{mk("good-1", "good", "10.0.0.1"), mk("bad-1", "bad", "")}, nil, nil)
	res, dropped, err := GenerateIngressReport([]*Snapshot{snap}, "0.0.0.0", 10001)
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 1 || !strings.HasPrefix(dropped[0], sni.Service("default", "bad")+": ") {
		t.Fatalf("dropped %v, want the bad service's name only", dropped)
	}
	l := res[resourcev3.ListenerType][0].(*listenerv3.Listener)
	if len(l.GetFilterChains()) != 1 || l.GetFilterChains()[0].GetName() != sni.Service("default", "good") {
		t.Fatalf("chains %v, want the good service's only", l.GetFilterChains())
	}
}
