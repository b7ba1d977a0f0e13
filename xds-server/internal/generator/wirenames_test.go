package generator

import (
	"regexp"
	"testing"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/pkg/xdsnames"
)

// TestWireNamesFromContract checks that what the generator emits uses the
// names weft-dp writes into its bootstraps (pkg/xdsnames): the server
// listener a proxyless server asks for, the certificate provider instance
// and the SDS secret names.
func TestWireNamesFromContract(t *testing.T) {
	// A proxyless server with mTLS: one server listener per inbound, named
	// as grpc-go fills the bootstrap template.
	s, p := loadInput(t, "testdata/07.input.yaml")
	res, err := Generate(s, p)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, in := range p.Dataplane.GetNetworking().GetInbound() {
		want[xdsnames.ServerListenerName(inboundAddress(p.Dataplane, in), in.GetPort())] = true
	}
	if len(want) == 0 {
		t.Fatal("test input has no inbound")
	}
	for _, l := range res[resourcev3.ListenerType] {
		delete(want, cachev3.GetResourceName(l))
	}
	if len(want) > 0 {
		t.Errorf("no server listener named %v", want)
	}
	out := string(normalise(t, res))
	checkAll(t, out, `instanceName: (\S+)`, xdsnames.CertProviderInstance)

	// An Envoy sidecar with mTLS: SDS configs and secrets use the
	// contract's secret names and nothing else.
	s, p = loadInput(t, "testdata/01.input.yaml")
	res, err = Generate(s, p)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, sec := range res[resourcev3.SecretType] {
		names[cachev3.GetResourceName(sec)] = true
	}
	if !names[xdsnames.IdentityCertSecret] || !names[xdsnames.MeshCASecret] || len(names) != 2 {
		t.Errorf("secrets %v, want exactly %s and %s", names, xdsnames.IdentityCertSecret, xdsnames.MeshCASecret)
	}
}

// checkAll asserts every match of re's group in out is want, and there is
// at least one.
func checkAll(t *testing.T, out, re, want string) {
	t.Helper()
	m := regexp.MustCompile(re).FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		t.Fatalf("no %s in the generated resources", re)
	}
	for _, g := range m {
		if g[1] != want {
			t.Errorf("%s: got %q, want %q", re, g[1], want)
		}
	}
}
