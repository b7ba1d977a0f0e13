package agent

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/weftmesh/weft/pkg/xdsnames"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestEnvoyIngressBootstrap: --proxy-type ingress bootstraps Envoy as the
// zone ingress — node id from xdsnames.IngressNodeID, the ingress token as
// the ADS stream's authorization header, admin on loopback, no SDS and no
// access-log sink — and the bootstrap is a valid Envoy v3 Bootstrap
// (protojson, then ValidateAll). Golden: testdata/ingress-bootstrap.json.
func TestEnvoyIngressBootstrap(t *testing.T) {
	c := &Config{CP: "dns:///xds-server.weft:5678", Zone: "zone-2", Name: "ingress", Token: "ingress-tok", ProxyType: ProxyIngress, Workdir: "/w"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got, want := c.NodeID(), xdsnames.IngressNodeID("zone-2", "ingress"); got != want || got != "_ingress.zone-2.ingress" {
		t.Fatalf("NodeID() = %q, want %q", got, want)
	}
	b, err := EnvoyBootstrap(c, 9901)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "ingress-bootstrap.json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./agent -run TestEnvoyIngressBootstrap -update)", err)
	}
	if !bytes.Equal(bytes.TrimSpace(want), bytes.TrimSpace(b)) {
		t.Errorf("bootstrap differs from %s (-update to accept):\n%s", golden, b)
	}

	bs := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(b, bs); err != nil {
		t.Fatalf("not an Envoy v3 bootstrap: %v", err)
	}
	if err := bs.ValidateAll(); err != nil {
		t.Fatalf("invalid bootstrap: %v", err)
	}
	n := bs.GetNode()
	if n.GetId() != "_ingress.zone-2.ingress" || n.GetCluster() != "zone-2" || n.GetMetadata().GetFields()[MetadataKind].GetStringValue() != xdsnames.KindIngress {
		t.Errorf("node = %v", n)
	}
	if _, ok := n.GetMetadata().GetFields()[MetadataToken]; ok {
		t.Error("the token is in node metadata: it belongs in the authorization header only")
	}
	gs := bs.GetDynamicResources().GetAdsConfig().GetGrpcServices()
	if len(gs) != 1 || gs[0].GetEnvoyGrpc().GetClusterName() != "weft_xds" || len(gs[0].GetInitialMetadata()) != 1 ||
		gs[0].GetInitialMetadata()[0].GetKey() != "authorization" || gs[0].GetInitialMetadata()[0].GetValue() != "Bearer ingress-tok" {
		t.Errorf("ads grpc_services = %v", gs)
	}
	if bs.GetDynamicResources().GetLdsConfig().GetAds() == nil || bs.GetDynamicResources().GetCdsConfig().GetAds() == nil {
		t.Error("LDS/CDS are not over ADS")
	}
	if a := bs.GetAdmin().GetAddress().GetSocketAddress(); a.GetAddress() != "127.0.0.1" || a.GetPortValue() != 9901 {
		t.Errorf("admin = %v, want 127.0.0.1:9901", a)
	}
	cl := bs.GetStaticResources().GetClusters()
	if len(cl) != 1 || cl[0].GetName() != "weft_xds" {
		t.Errorf("static clusters = %d, want only weft_xds (no access-log sink)", len(cl))
	}
	for _, absent := range []string{"sds", IdentityCertSecret, MeshCASecret, xdsnames.AccessLogSinkCluster, "certificate"} {
		if strings.Contains(string(b), absent) {
			t.Errorf("ingress bootstrap mentions %q", absent)
		}
	}

	// With the control-plane CA: still valid, TLS to the xds-server.
	c.CPCAFile = "/etc/weft/cp-ca.pem"
	b, _ = EnvoyBootstrap(c, 9901)
	if err := protojson.Unmarshal(b, bs); err != nil || bs.ValidateAll() != nil {
		t.Fatalf("TLS bootstrap: %v %v", err, bs.ValidateAll())
	}
}

func TestValidateIngress(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{CP: "x:1", Name: "ingress", Token: "t", ProxyType: ProxyIngress, Workdir: "."}, "--zone"},
		{Config{CP: "x:1", Zone: "a.b", Name: "ingress", Token: "t", ProxyType: ProxyIngress, Workdir: "."}, "--zone"},
		{Config{CP: "x:1", Zone: "z", Mesh: "default", Name: "ingress", Token: "t", ProxyType: ProxyIngress, Workdir: "."}, "--mesh"},
		{Config{CP: "x:1", Zone: "z", Token: "t", ProxyType: ProxyIngress, Workdir: "."}, "--name"},
		{Config{CP: "x:1", Zone: "z", Name: "ingress", ProxyType: ProxyIngress, Workdir: "."}, "ingress token"},
		{Config{CP: "x:1", Zone: "z", Mesh: "default", Name: "web", Token: "t", ProxyType: ProxyEnvoy, Workdir: "."}, "--zone"},
	} {
		if err := tc.c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %s", tc.c, err, tc.want)
		}
	}
	ok := Config{CP: "x:1", Zone: "z", Name: "ingress", Token: "t", ProxyType: ProxyIngress, Workdir: "."}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v", ok, err)
	}
}
