package crd_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/weftmesh/weft/k8s-controller/crd"
	"github.com/weftmesh/weft/pkg/resource"
)

// ValidSpecs reads one valid spec per kind (testdata/valid-specs.json).
func validSpecs(t *testing.T) map[string]map[string]any {
	t.Helper()
	b, err := os.ReadFile("testdata/valid-specs.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func cr(k crd.Kind, name, mesh string, spec map[string]any) map[string]any {
	obj := map[string]any{"apiVersion": "weft.io/v1alpha1", "kind": k.Kind, "metadata": map[string]any{"name": name, "labels": map[string]any{"team": "a"}}, "spec": spec}
	if mesh != "" {
		obj["mesh"] = mesh
	}
	return obj
}

func TestEveryKindConvertsWithItsMeshOriginAndLabels(t *testing.T) {
	specs := validSpecs(t)
	for _, k := range crd.Kinds() {
		spec, ok := specs[k.Kind]
		if !ok {
			t.Errorf("%s: no valid spec in testdata/valid-specs.json", k.Kind)
			continue
		}
		r, err := crd.ToResource(k, cr(k, "x1", "", spec), "zone-1")
		if err != nil {
			t.Errorf("%s: %v", k.Kind, err)
			continue
		}
		if r.Meta.GetName() != "x1" || r.Meta.GetOrigin() != "zone-1" || r.Meta.GetLabels()["team"] != "a" || r.Meta.GetLabels()[crd.ManagedByLabel] != crd.ManagedBy {
			t.Errorf("%s: meta %v", k.Kind, r.Meta)
		}
		if wantMesh := map[bool]string{true: crd.DefaultMesh, false: ""}[k.Type.MeshScoped()]; r.Meta.GetMesh() != wantMesh {
			t.Errorf("%s: mesh %q, want %q", k.Kind, r.Meta.GetMesh(), wantMesh)
		}
	}
}

// A bad spec gets the REST API's field paths.
func TestInvalidSpecsHaveTheRESTFieldPaths(t *testing.T) {
	k, _ := crd.KindOf("TrafficPermission")
	cases := []struct {
		spec  map[string]any
		field string
	}{
		{map[string]any{"sources": []any{}, "destinations": []any{map[string]any{"match": map[string]any{"weft.io/service": "*"}}}}, "sources"},
		{map[string]any{"sauces": 1}, ""},
		{map[string]any{"name": "other"}, "spec.name"},
	}
	for _, c := range cases {
		_, err := crd.ToResource(k, cr(k, "p", "m", c.spec), "")
		if err == nil {
			t.Fatalf("%v: accepted", c.spec)
		}
		causes := crd.Causes(err)
		found := false
		for _, cs := range causes {
			if cs.Field == c.field || (c.field == "" && strings.Contains(cs.Message, "sauces")) {
				found = true
			}
		}
		if !found {
			t.Errorf("%v: causes %+v, want field %q", c.spec, causes, c.field)
		}
	}
	// The same document through the REST API's decoder reports the same path.
	_, err := resource.Unmarshal([]byte(`{"type":"TrafficPermission","mesh":"m","name":"p","sources":[],"destinations":[{"match":{"weft.io/service":"*"}}]}`), nil)
	if err == nil {
		r, _ := resource.Unmarshal([]byte(`{"type":"TrafficPermission","mesh":"m","name":"p","sources":[],"destinations":[{"match":{"weft.io/service":"*"}}]}`), nil)
		err = resource.ValidateWrite(r)
	}
	if c := crd.Causes(err); len(c) == 0 || c[0].Field != "sources" {
		t.Fatalf("REST causes %+v", c)
	}
}

func TestWritableFollowsTheOwner(t *testing.T) {
	tp, _ := crd.KindOf("TrafficPermission")
	dp, _ := crd.KindOf("Dataplane")
	for _, c := range []struct {
		k    crd.Kind
		mode string
		ok   bool
	}{{tp, "standalone", true}, {dp, "standalone", true}, {tp, "zone", false}, {dp, "zone", true}, {tp, "global", true}, {dp, "global", false}} {
		if err := crd.Writable(c.k, c.mode, "z"); (err == nil) != c.ok {
			t.Errorf("%s in %s: %v", c.k.Kind, c.mode, err)
		}
	}
}
