package generator

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func templateSnapshot(t *testing.T, conf *meshv1.ProxyTemplate_Conf) *Snapshot {
	t.Helper()
	dp := func(name, svc string, outbound ...string) *resource.Resource {
		d := &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.1",
			Inbound: []*meshv1.Dataplane_Networking_Inbound{{Port: 8080, Tags: map[string]string{resource.ServiceTag: svc}}}}}
		for i, o := range outbound {
			d.Networking.Outbound = append(d.Networking.Outbound, &meshv1.Dataplane_Networking_Outbound{Port: uint32(20000 + i), Tags: map[string]string{resource.ServiceTag: o}})
		}
		return &resource.Resource{Meta: &meshv1.Meta{Type: "Dataplane", Mesh: "m", Name: name}, Spec: d}
	}
	pt := &resource.Resource{Meta: &meshv1.Meta{Type: "ProxyTemplate", Mesh: "m", Name: "tpl"},
		Spec: &meshv1.ProxyTemplate{Selectors: []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: "web"}}}, Conf: conf}}
	return NewSnapshotWithPolicies("m", &meshv1.Mesh{}, []*resource.Resource{dp("web-1", "web", "api"), dp("other-1", "other", "api"), dp("api-1", "api")}, nil, nil, []*resource.Resource{pt})
}

func mod(typ, op, name, value string) *meshv1.ProxyTemplate_Modification {
	return &meshv1.ProxyTemplate_Modification{Type: typ, Operation: op, Match: &meshv1.ProxyTemplate_Modification_Match{Name: name}, Value: value}
}

// TestProxyTemplateErrors: a template that cannot be decoded, adds a type
// it may not, or leaves the configuration invalid fails the generation of
// the proxies it selects (they keep their previous configuration) with an
// error naming the template and the field; other proxies are unaffected.
func TestProxyTemplateErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		conf *meshv1.ProxyTemplate_Conf
		want string
	}{
		{"yaml", &meshv1.ProxyTemplate_Conf{Resources: []*meshv1.ProxyTemplate_Resource{{Name: "r", Resource: "'@type': [unclosed"}}}, "ProxyTemplate tpl: conf.resources[0].resource"},
		{"unknown field", &meshv1.ProxyTemplate_Conf{Modifications: []*meshv1.ProxyTemplate_Modification{mod("cluster", "patch", "api", "connectTimeoutt: 1s")}}, "conf.modifications[0].value"},
		{"secret", &meshv1.ProxyTemplate_Conf{Resources: []*meshv1.ProxyTemplate_Resource{{Name: "r", Resource: "'@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\nname: s"}}}, "cannot be added"},
		{"invalid after patch", &meshv1.ProxyTemplate_Conf{Modifications: []*meshv1.ProxyTemplate_Modification{mod("cluster", "patch", "api", "connectTimeout: -1s")}}, "leaves the configuration invalid"},
		{"duplicate", &meshv1.ProxyTemplate_Conf{Modifications: []*meshv1.ProxyTemplate_Modification{mod("cluster", "add", "", "name: api\nconnectTimeout: 1s\ntype: STATIC")}}, `duplicate resource "api"`},
		{"too large", &meshv1.ProxyTemplate_Conf{Modifications: []*meshv1.ProxyTemplate_Modification{mod("cluster", "patch", "api", "name: "+strings.Repeat("x", MaxTemplateValue))}}, "more than"},
	} {
		s := templateSnapshot(t, tc.conf)
		_, err := Generate(s, &Proxy{Mesh: "m", Name: "web-1", Kind: KindEnvoy, Dataplane: s.Dataplanes["web-1"]})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "ProxyTemplate tpl") {
			t.Errorf("%s: error %v, want it to name the template and %q", tc.name, err, tc.want)
		}
		if _, err := Generate(s, &Proxy{Mesh: "m", Name: "other-1", Kind: KindEnvoy, Dataplane: s.Dataplanes["other-1"]}); err != nil {
			t.Errorf("%s: a proxy the template does not select failed: %v", tc.name, err)
		}
	}
}

// TestProxyTemplateDoesNotChangeSharedResources: a patch changes a copy,
// never the mesh's shared cluster other proxies get.
func TestProxyTemplateDoesNotChangeSharedResources(t *testing.T) {
	s := templateSnapshot(t, &meshv1.ProxyTemplate_Conf{Modifications: []*meshv1.ProxyTemplate_Modification{mod("cluster", "patch", "api", "connectTimeout: 0.25s")}})
	get := func(name string) *clusterv3.Cluster {
		res, err := Generate(s, &Proxy{Mesh: "m", Name: name, Kind: KindEnvoy, Dataplane: s.Dataplanes[name]})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res[resourcev3.ClusterType] {
			if c := r.(*clusterv3.Cluster); c.GetName() == "api" {
				return c
			}
		}
		t.Fatalf("%s: no api cluster", name)
		return nil
	}
	if d := get("web-1").GetConnectTimeout().AsDuration(); d.Milliseconds() != 250 {
		t.Errorf("patched: %s", d)
	}
	if d := get("other-1").GetConnectTimeout().AsDuration(); d.Seconds() != 5 {
		t.Errorf("the shared cluster was changed: %s", d)
	}
}

// FuzzProxyTemplate: any resource or modification text decodes to an
// error or a template that applies without panicking to a generated
// configuration, never touching the shared resources.
func FuzzProxyTemplate(f *testing.F) {
	f.Add("'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: x\nconnectTimeout: 1s", "cluster", "patch", "connectTimeout: 0.25s")
	f.Add("", "httpFilter", "add", "name: f\ntypedConfig:\n  '@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router")
	f.Add("{}", "networkFilter", "remove", "")
	f.Add("[", "virtualHost", "add", "name: v\ndomains: ['*']")
	f.Fuzz(func(t *testing.T, res, typ, op, value string) {
		conf := &meshv1.ProxyTemplate_Conf{Modifications: []*meshv1.ProxyTemplate_Modification{mod(typ, op, "", value)}}
		if res != "" {
			conf.Resources = []*meshv1.ProxyTemplate_Resource{{Name: "r", Resource: res}}
		}
		s := templateSnapshot(t, conf)
		sh, err := s.envoy()
		if err != nil {
			t.Fatal(err)
		}
		before := sh.cluster(s, "api").String()
		_, _ = Generate(s, &Proxy{Mesh: "m", Name: "web-1", Kind: KindEnvoy, Dataplane: s.Dataplanes["web-1"]})
		if after := sh.cluster(s, "api").String(); after != before {
			t.Fatalf("the shared cluster changed: %s", after)
		}
	})
}
