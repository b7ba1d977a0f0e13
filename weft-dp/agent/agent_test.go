package agent

import (
	"encoding/json"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestGRPCBootstrap(t *testing.T) {
	c := &Config{CP: "127.0.0.1:5678", Mesh: "default", Name: "backend-1", Token: "tok", ProxyType: ProxyGRPC, Workdir: "/w"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := GRPCBootstrap(c)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		XDSServers []struct {
			ServerURI string `json:"server_uri"`
		} `json:"xds_servers"`
		Node struct {
			ID       string            `json:"id"`
			Metadata map[string]string `json:"metadata"`
		} `json:"node"`
		Providers map[string]struct {
			Plugin string            `json:"plugin_name"`
			Config map[string]string `json:"config"`
		} `json:"certificate_providers"`
		Template string `json:"server_listener_resource_name_template"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	p := got.Providers["default"]
	switch {
	case got.XDSServers[0].ServerURI != "127.0.0.1:5678":
		t.Error("server_uri")
	case got.Node.ID != "default.backend-1" || got.Node.Metadata["dataplane.token"] != "tok" || got.Node.Metadata["kind"] != "grpc":
		t.Errorf("node: %+v", got.Node)
	case p.Plugin != "file_watcher" || p.Config["certificate_file"] != "/w/certs/cert.pem" || p.Config["private_key_file"] != "/w/certs/key.pem" || p.Config["ca_certificate_file"] != "/w/certs/ca.pem" || p.Config["refresh_interval"] != "10s":
		t.Errorf("provider: %+v", p)
	case got.Template != "grpc/server?xds.resource.listening_address=%s":
		t.Errorf("template: %s", got.Template)
	}
}

func TestEnvoyBootstrap(t *testing.T) {
	c := &Config{CP: "xds.weft:5678", Mesh: "default", Name: "web-1", Token: "tok", ProxyType: ProxyEnvoy, Workdir: "/w"}
	b, err := EnvoyBootstrap(c, 9901)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"id": "default.web-1"`, `"value": "Bearer tok"`, `"address": "xds.weft"`, `"port_value": 5678`, `"ads": {}`,
		`"name": "weft_access_log_sink"`, `"path": "/w/access-log.sock"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("bootstrap lacks %s:\n%s", want, b)
		}
	}
	// Envoy is not installed here: check the bootstrap the way Envoy would
	// parse it — protojson into the v3 Bootstrap, then its validation rules.
	bs := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(b, bs); err != nil {
		t.Fatalf("not an Envoy v3 bootstrap: %v", err)
	}
	if err := bs.ValidateAll(); err != nil {
		t.Fatalf("invalid bootstrap: %v", err)
	}
	c.CPCAFile = "/etc/weft/cp-ca.pem"
	b, _ = EnvoyBootstrap(c, 9901)
	if err := protojson.Unmarshal(b, bs); err != nil || bs.ValidateAll() != nil {
		t.Fatalf("TLS bootstrap: %v %v", err, bs.ValidateAll())
	}
	if _, err := EnvoyBootstrap(&Config{CP: "no-port"}, 1); err == nil {
		t.Error("a --cp without a port was accepted")
	}
}

func TestValidate(t *testing.T) {
	c := &Config{Mesh: "a.b", ProxyType: "nginx"}
	err := c.Validate()
	for _, want := range []string{"--cp", "--mesh", "--name", "--token-file", "--proxy-type", "--workdir"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want %s", err, want)
		}
	}
}

func secretResponse(secrets ...*tlsv3.Secret) *discoveryv3.DiscoveryResponse {
	resp := &discoveryv3.DiscoveryResponse{}
	for _, s := range secrets {
		a, _ := anypb.New(s)
		resp.Resources = append(resp.Resources, a)
	}
	return resp
}

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

func TestParseSecretsRejectsBadMaterial(t *testing.T) {
	resp := secretResponse(
		&tlsv3.Secret{Name: IdentityCertSecret, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{CertificateChain: inline([]byte("x")), PrivateKey: inline([]byte("y"))}}},
		&tlsv3.Secret{Name: MeshCASecret, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: inline([]byte("z"))}}},
	)
	if _, _, _, err := ParseSecrets(resp); err == nil || !strings.Contains(err.Error(), "identity_cert") {
		t.Fatalf("err = %v", err)
	}
	if _, _, _, err := ParseSecrets(secretResponse()); err == nil {
		t.Fatal("empty response accepted")
	}
}

// FuzzParseSecrets feeds arbitrary SDS resources (bounded like the gRPC
// receive limit) to the parser: it must never panic.
func FuzzParseSecrets(f *testing.F) {
	seed, _ := proto.Marshal(secretResponse(&tlsv3.Secret{Name: IdentityCertSecret}, &tlsv3.Secret{Name: MeshCASecret}))
	f.Add(seed)
	f.Add([]byte{0x0a, 0x03, 'a', 'b', 'c'})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > MaxSecretResponse {
			return
		}
		resp := &discoveryv3.DiscoveryResponse{}
		if err := proto.Unmarshal(data, resp); err != nil {
			return
		}
		_, _, _, _ = ParseSecrets(resp)
	})
}
