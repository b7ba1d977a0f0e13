package generator

import (
	"os"
	"regexp"
	"testing"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/pkg/policy"
	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

var yamlBlock = regexp.MustCompile("(?ms)^```yaml\n(.*?)^```")

// TestPolicyDocExamples: every YAML example of docs/policies.md is valid,
// every policy type but TrafficPermission (docs/xds-server.md) has one, and
// together they generate valid configuration for an Envoy sidecar and a
// proxyless client that each policy selects.
func TestPolicyDocExamples(t *testing.T) {
	b, err := os.ReadFile("../../../docs/policies.md")
	if err != nil {
		t.Fatal(err)
	}
	mesh := &meshv1.Mesh{Mtls: &meshv1.Mesh_Mtls{EnabledBackend: "ca", Backends: []*meshv1.CertificateAuthorityBackend{{Name: "ca", Type: "builtin"}}}}
	var policies []*resource.Resource
	seen := map[*resource.Type]bool{}
	for _, m := range yamlBlock.FindAllStringSubmatch(string(b), -1) {
		r, err := resource.Unmarshal([]byte(m[1]), nil)
		if err != nil {
			t.Fatalf("example does not decode: %v\n%s", err, m[1])
		}
		if err := resource.Validate(r); err != nil {
			t.Fatalf("example %s is not valid: %v", r.Key(), err)
		}
		seen[r.Type()] = true
		if r.Type() == resource.MeshType {
			proto.Merge(mesh, r.Spec) // the examples' backends, one mesh
			continue
		}
		policies = append(policies, r)
	}
	for _, typ := range policy.Types {
		if typ != resource.TrafficPermissionType && !seen[typ] {
			t.Errorf("docs/policies.md has no example of %s", typ.Name)
		}
	}
	dp := func(name, svc, protocol string, tags map[string]string, outbound ...string) *resource.Resource {
		in := &meshv1.Dataplane_Networking_Inbound{Port: 8080, Tags: map[string]string{resource.ServiceTag: svc, resource.ProtocolTag: protocol}}
		for k, v := range tags {
			in.Tags[k] = v
		}
		d := &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.1", Inbound: []*meshv1.Dataplane_Networking_Inbound{in}}}
		for i, o := range outbound {
			d.Networking.Outbound = append(d.Networking.Outbound, &meshv1.Dataplane_Networking_Outbound{Port: uint32(20000 + i), Tags: map[string]string{resource.ServiceTag: o}})
		}
		return &resource.Resource{Meta: &meshv1.Meta{Type: "Dataplane", Mesh: "default", Name: name}, Spec: d}
	}
	dps := []*resource.Resource{
		dp("web-1", "web", "http", nil, "backend"),
		dp("client-1", "client", "grpc", nil, "backend"),
		dp("backend-v1", "backend", "grpc", map[string]string{"version": "v1"}),
		dp("backend-v2", "backend", "grpc", map[string]string{"version": "v2"}),
	}
	s := NewSnapshotWithPolicies("default", mesh, dps, nil, nil, policies)
	for _, tc := range []struct {
		proxy, kind string
		want        []string
	}{
		// web's own route (by zone) is more specific than the canary's '*'.
		{"web-1", KindEnvoy, []string{"backend{weft.io/zone=zone-1}", "backend{weft.io/zone=zone-2}", "external-auth", "tracing:zipkin"}},
		{"client-1", KindEnvoy, []string{"backend{version=v1}", "backend{version=v2}"}},
		{"client-1", KindGRPC, []string{"backend{version=v1}", "backend{version=v2}"}},
	} {
		kind, want := tc.kind, tc.want
		res, err := Generate(s, &Proxy{Mesh: "default", Name: tc.proxy, Kind: kind, Dataplane: s.Dataplanes[tc.proxy], Identity: identity})
		if err != nil {
			t.Errorf("%s %s: %v", tc.proxy, kind, err)
			continue
		}
		clusters := map[string]bool{}
		for _, c := range res[resourcev3.ClusterType] {
			clusters[cachev3.GetResourceName(c)] = true
		}
		for _, name := range want {
			if !clusters[name] {
				t.Errorf("%s: no cluster %q from the examples (have %v)", kind, name, clusters)
			}
		}
	}
}
