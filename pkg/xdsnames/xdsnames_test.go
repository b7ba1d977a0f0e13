package xdsnames

import (
	"fmt"
	"strings"
	"testing"
)

// TestWireValues pins the literal values: they are what deployed weft-dp
// bootstraps and proxies send and expect, so changing one is a protocol
// break, not a refactoring.
func TestWireValues(t *testing.T) {
	pins := map[string][2]string{
		"MetadataToken":              {MetadataToken, "dataplane.token"},
		"MetadataKind":               {MetadataKind, "kind"},
		"KindEnvoy":                  {KindEnvoy, "envoy"},
		"KindGRPC":                   {KindGRPC, "grpc"},
		"KindIngress":                {KindIngress, "ingress"},
		"IdentityCertSecret":         {IdentityCertSecret, "identity_cert"},
		"MeshCASecret":               {MeshCASecret, "mesh_ca"},
		"CertProviderInstance":       {CertProviderInstance, "default"},
		"CertDir":                    {CertDir, "certs"},
		"CertFile":                   {CertFile, "cert.pem"},
		"KeyFile":                    {KeyFile, "key.pem"},
		"CAFile":                     {CAFile, "ca.pem"},
		"GRPCBootstrapFile":          {GRPCBootstrapFile, "bootstrap.json"},
		"ServerListenerNameTemplate": {ServerListenerNameTemplate, "grpc/server?xds.resource.listening_address=%s"},
		"ServerListenerName":         {ServerListenerName("10.0.0.1", 8080), "grpc/server?xds.resource.listening_address=10.0.0.1:8080"},
		"ServerListenerName(v6)":     {ServerListenerName("::1", 80), "grpc/server?xds.resource.listening_address=[::1]:80"},
		"ClientListenerName":         {ClientListenerName("web"), "web.mesh"},
		"NodeID":                     {NodeID("m", "web-1"), "m.web-1"},
		"IngressNodeID":              {IngressNodeID("zone-1", "ingress"), "_ingress.zone-1.ingress"},
	}
	for name, p := range pins {
		if p[0] != p[1] {
			t.Errorf("%s = %q, the wire contract says %q", name, p[0], p[1])
		}
	}
	// The template is what grpc-go fills with the listening address.
	if got := fmt.Sprintf(ServerListenerNameTemplate, "0.0.0.0:1"); got != ServerListenerName("0.0.0.0", 1) {
		t.Errorf("template and ServerListenerName disagree: %q vs %q", got, ServerListenerName("0.0.0.0", 1))
	}
}

func TestParseNodeID(t *testing.T) {
	for _, tc := range []struct {
		id, mesh, name string
		ok             bool
	}{
		{"m.web-1", "m", "web-1", true},
		{"m.web.1", "m", "web.1", true}, // dataplane names may carry dots, meshes not
		{"", "", "", false},
		{"nodot", "", "", false},
		{".web", "", "", false},
		{"m.", "", "", false},
	} {
		mesh, name, err := ParseNodeID(tc.id)
		if (err == nil) != tc.ok || mesh != tc.mesh || name != tc.name {
			t.Errorf("ParseNodeID(%q) = %q, %q, %v; want %q, %q, ok=%v", tc.id, mesh, name, err, tc.mesh, tc.name, tc.ok)
		}
		if tc.ok && NodeID(mesh, name) != tc.id {
			t.Errorf("NodeID(ParseNodeID(%q)) = %q", tc.id, NodeID(mesh, name))
		}
	}
}

// FuzzParseNodeID: node ids come from the network (every ADS stream's first
// request). Whatever the input, ParseNodeID either refuses it or returns a
// mesh without dots and a non-empty name that NodeID joins back to it.
func FuzzParseNodeID(f *testing.F) {
	for _, s := range []string{"m.web-1", "", ".", "m.", ".n", "a.b.c", "m\x00.n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		mesh, name, err := ParseNodeID(id)
		if err != nil {
			if mesh != "" || name != "" {
				t.Fatalf("error with results %q %q", mesh, name)
			}
			return
		}
		if mesh == "" || name == "" || strings.Contains(mesh, ".") || NodeID(mesh, name) != id {
			t.Fatalf("ParseNodeID(%q) = %q, %q", id, mesh, name)
		}
	})
}

func TestParseIngressNodeID(t *testing.T) {
	for _, tc := range []struct {
		id, zone, name string
		ok             bool
	}{
		{"_ingress.zone-1.ingress", "zone-1", "ingress", true},
		{"_ingress.z.ing.a", "z", "ing.a", true},
		{"_ingress.z.", "", "", false},
		{"_ingress..n", "", "", false},
		{"_ingress.z", "", "", false},
		{"m.web-1", "", "", false},
		{"", "", "", false},
	} {
		zone, name, err := ParseIngressNodeID(tc.id)
		if (err == nil) != tc.ok || zone != tc.zone || name != tc.name {
			t.Errorf("ParseIngressNodeID(%q) = %q, %q, %v; want %q, %q, ok=%v", tc.id, zone, name, err, tc.zone, tc.name, tc.ok)
		}
		if tc.ok && (IngressNodeID(zone, name) != tc.id || !IsIngressNodeID(tc.id)) {
			t.Errorf("IngressNodeID(ParseIngressNodeID(%q)) = %q", tc.id, IngressNodeID(zone, name))
		}
	}
	// No dataplane node id is an ingress node id: mesh names are DNS labels.
	if IsIngressNodeID(NodeID("ingress", "x")) {
		t.Error("a dataplane node id parses as an ingress")
	}
}
