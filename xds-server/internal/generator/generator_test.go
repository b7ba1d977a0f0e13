package generator

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

var update = flag.Bool("update", false, "rewrite golden files")

// testCase is the first document of an NN.input.yaml: the proxy under test.
type testCase struct {
	Proxy struct {
		Mesh     string `json:"mesh"`
		Name     string `json:"name"`
		Kind     string `json:"kind"`
		Identity bool   `json:"identity"`
	} `json:"proxy"`
}

func loadInput(t *testing.T, path string) (*Snapshot, *Proxy) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(data), "\n---\n")
	var tc testCase
	if err := yaml.UnmarshalStrict([]byte(docs[0]), &tc); err != nil {
		t.Fatalf("%s: proxy header: %v", path, err)
	}
	var mesh *meshv1.Mesh
	var dps, tps, vips, zis []*resource.Resource
	for _, d := range docs[1:] {
		if strings.TrimSpace(d) == "" {
			continue
		}
		r, err := resource.Unmarshal([]byte(d), nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if err := resource.Validate(r); err != nil {
			t.Fatalf("%s: %s: %v", path, r.Key(), err)
		}
		switch r.Type() {
		case resource.MeshType:
			if r.Meta.GetName() == tc.Proxy.Mesh {
				mesh = r.Spec.(*meshv1.Mesh)
			}
		case resource.DataplaneType:
			dps = append(dps, r)
		case resource.TrafficPermissionType:
			tps = append(tps, r)
		case resource.VirtualIPType:
			vips = append(vips, r)
		case resource.ZoneIngressType:
			zis = append(zis, r) // other zones' ingresses
		}
	}
	s := newSnapshot(tc.Proxy.Mesh, mesh, dps, tps, vips, zis)
	p := &Proxy{Mesh: tc.Proxy.Mesh, Name: tc.Proxy.Name, Kind: tc.Proxy.Kind, Dataplane: s.Dataplanes[tc.Proxy.Name]}
	if tc.Proxy.Identity {
		p.Identity = &Identity{CertChainPEM: []byte("CERT"), KeyPEM: []byte("KEY"), TrustBundlePEM: []byte("CA")}
	}
	return s, p
}

// normalise renders resources as sorted YAML: type URL → name → resource.
func normalise(t *testing.T, res Resources) []byte {
	t.Helper()
	out := map[string]map[string]any{}
	for typ, list := range res {
		byName := map[string]any{}
		for _, r := range list {
			js, err := protojson.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			var v any
			if err := json.Unmarshal(js, &v); err != nil {
				t.Fatal(err)
			}
			byName[cachev3.GetResourceName(r)] = v
		}
		out[typ[strings.LastIndex(typ, ".")+1:]] = byName
	}
	js, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.JSONToYAML(js)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.input.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".input.yaml")
		t.Run(name, func(t *testing.T) {
			s, p := loadInput(t, in)
			res, err := Generate(s, p)
			if err != nil {
				t.Fatal(err)
			}
			if p.Kind != KindGRPC {
				// Consistent does not follow api_listener route names, so it
				// is checked for Envoy proxies only.
				snap := res.CacheSnapshot(res.Versions())
				if err := snap.Consistent(); err != nil {
					t.Fatalf("inconsistent: %v", err)
				}
			}
			got := normalise(t, res)
			golden := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from generated config (run with -update and review the diff)\n%s", golden, diffLines(string(want), string(got)))
			}
			// Same inputs, same versions — also from a snapshot built anew,
			// as another replica would.
			s2, p2 := loadInput(t, in)
			res2, _ := Generate(s2, p2)
			v1, v2 := res.Versions(), s.Versions(res2)
			for k := range v1 {
				if v1[k] != v2[k] {
					t.Errorf("version of %s not stable: %s vs %s", k, v1[k], v2[k])
				}
			}
		})
	}
}

func diffLines(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			out = append(out, "- "+x, "+ "+y)
			if len(out) > 40 {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

func TestVersionsChangeWithContent(t *testing.T) {
	s, p := loadInput(t, "testdata/01.input.yaml")
	a, err := Generate(s, p)
	if err != nil {
		t.Fatal(err)
	}
	p2 := *p
	p2.Dataplane = proto.Clone(p.Dataplane).(*meshv1.Dataplane)
	p2.Dataplane.Networking.Inbound[0].Port++
	b, err := Generate(s, &p2)
	if err != nil {
		t.Fatal(err)
	}
	va, vb := a.Versions(), b.Versions()
	if va["type.googleapis.com/envoy.config.listener.v3.Listener"] == vb["type.googleapis.com/envoy.config.listener.v3.Listener"] {
		t.Error("listener version did not change with the inbound port")
	}
	if va["type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"] != vb["type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"] {
		t.Error("endpoint version changed though endpoints did not")
	}
}

func TestRequiredTags(t *testing.T) {
	s, p := loadInput(t, "testdata/01.input.yaml")
	p.RequiredTags = map[string]string{"weft.io/service": "redis"}
	if _, err := Generate(s, p); err != nil {
		t.Fatal(err)
	}
	p.RequiredTags = map[string]string{"team": "payments"}
	if _, err := Generate(s, p); err == nil || !strings.Contains(err.Error(), "lacks tag team=payments required by its token") {
		t.Fatalf("err = %v", err)
	}
}
