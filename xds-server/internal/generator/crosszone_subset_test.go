package generator

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/sni"
)

// A subset gets other zones' ingresses only when it has a server name: a
// subset too long to be named (over sni.MaxLen) stays local, with the
// service's SNI, and the configuration is still valid.
func TestCrossZoneSubsetTooLongToName(t *testing.T) {
	s, p := loadInput(t, "testdata/21.input.yaml")
	long := strings.Repeat("x", 200)
	if n := s.Policies.Len(resource.TrafficRouteType); n != 1 {
		t.Fatalf("routes: %d", n)
	}
	ss := subset{service: "backend", tags: map[string]string{"version": "v2", "team": long}}
	if _, ok := s.subsetSNI(ss); ok {
		t.Fatal("a 200-byte tag value has a server name")
	}
	cla, err := s.subsetEndpoints(ss)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(cla.GetEndpoints()); n != 0 {
		t.Fatalf("an unnameable subset got %d localities: %v", n, cla)
	}
	// A nameable subset of the same input reaches zone-2 with its SNI.
	ok := subset{service: "backend", tags: map[string]string{"version": "v2"}}
	cla, err = s.subsetEndpoints(ok)
	if err != nil {
		t.Fatal(err)
	}
	if len(cla.GetEndpoints()) != 1 || cla.GetEndpoints()[0].GetLocality().GetZone() != "zone-2" || cla.GetEndpoints()[0].GetLoadBalancingWeight().GetValue() != 3 {
		t.Fatalf("version=v2: %v", cla)
	}
	res, err := Generate(s, p)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := sni.Format("default", "backend", map[string]string{"version": "v2"})
	for _, r := range res[resourcev3.ClusterType] {
		c := r.(*clusterv3.Cluster)
		if c.GetName() != "backend{version=v2}" {
			continue
		}
		u := &tlsv3.UpstreamTlsContext{}
		if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(u); err != nil {
			t.Fatal(err)
		}
		if u.GetSni() != want {
			t.Fatalf("sni %q, want %q", u.GetSni(), want)
		}
		n, err := sni.Parse(u.GetSni())
		if err != nil || n.Tags["version"] != "v2" || len(n.Tags) != 1 {
			t.Fatalf("sni %q parses as %v, %v", u.GetSni(), n, err)
		}
		return
	}
	t.Fatal("no backend{version=v2} cluster")
}
