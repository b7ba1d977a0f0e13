package app_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weftmesh/weft/ca-service/app"
	"github.com/weftmesh/weft/pkg/cptls"
	"github.com/weftmesh/weft/pkg/token"
	cav1 "github.com/weftmesh/weft/proto/gen/go/weft/ca/v1"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminReadinessAndMetrics(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.put(meshRes("default", "ca-1", builtin("ca-1")))
	e.put(dataplane("default", "dp-1", "web"))
	a := e.start(e.config())
	eventually(t, "readyz", func() bool { code, _ := get(t, "http://"+a.AdminAddr()+"/readyz"); return code == 200 })
	_, pub := newKey(t)
	if _, err := e.serviceClient(a).SignWorkloadCertificate(ctx, &cav1.SignWorkloadCertificateRequest{Mesh: "default", Dataplane: "dp-1", PublicKey: pub}); err != nil {
		t.Fatal(err)
	}
	_, body := get(t, "http://"+a.AdminAddr()+"/metrics")
	for _, want := range []string{
		`weft_ca_certificates_issued_total{backend="ca-1",mesh="default"} 1`,
		`weft_ca_sign_duration_seconds_count 1`,
		`weft_ca_root_expiry_seconds{backend="ca-1",mesh="default"} 3.15`,
		`weft_ca_trust_bundle_roots{mesh="default"} 1`,
		`weft_ca_control_plane_ca_expiry_seconds 3.15`,
		`weft_grpc_server_handled_total{code="OK",method="/weft.ca.v1.CertificateAuthorityService/SignWorkloadCertificate",service="ca-service"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestTLSFilesAndInsecureDev(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.put(meshRes("default", "ca-1", builtin("ca-1")))
	dir := t.TempDir()
	certPEM, keyPEM, err := cptls.GenerateSelfSigned(cptls.GenerateOptions{Type: cptls.TypeServer, Hostnames: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.config()
	cfg.TLSCertFile, cfg.TLSKeyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	_ = os.WriteFile(cfg.TLSCertFile, certPEM, 0o600)
	_ = os.WriteFile(cfg.TLSKeyFile, keyPEM, 0o600)
	a := e.start(cfg)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	tok := tokenCreds{e.token(token.KindService, "xds-server")}
	conn, err := grpc.NewClient(a.Addr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})), grpc.WithPerRPCCredentials(tok))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := cav1.NewCertificateAuthorityServiceClient(conn).GetTrustBundle(ctx, &cav1.GetTrustBundleRequest{Mesh: "default"}); err != nil {
		t.Errorf("with operator certificate: %v", err)
	}

	cfg = e.config()
	cfg.InsecureDev = true
	b := e.start(cfg)
	pconn, err := grpc.NewClient(b.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(insecureTok(tok)))
	if err != nil {
		t.Fatal(err)
	}
	defer pconn.Close()
	if _, err := cav1.NewCertificateAuthorityServiceClient(pconn).GetTrustBundle(ctx, &cav1.GetTrustBundleRequest{Mesh: "default"}); err != nil {
		t.Errorf("insecure-dev: %v", err)
	}
	bad := e.config()
	bad.TLSCertFile = "/nonexistent"
	if err := bad.Validate(); err == nil {
		t.Error("cert without key accepted")
	}
}

type insecureTok struct{ tok string }

func (c insecureTok) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + c.tok}, nil
}
func (insecureTok) RequireTransportSecurity() bool { return false }

func TestMainFlags(t *testing.T) {
	var out strings.Builder
	if code := app.Main(context.Background(), []string{"--help"}, &out); code != 0 || !strings.Contains(out.String(), "--tls-cert-file") && !strings.Contains(out.String(), "-tls-cert-file") {
		t.Errorf("--help: code %d, output %q", code, out.String())
	}
	out.Reset()
	if code := app.Main(context.Background(), []string{"--tls-cert-file", "x.crt"}, &out); code != 1 || !strings.Contains(out.String(), "tls-cert-file and tls-key-file go together") {
		t.Errorf("half a TLS pair: code %d, output %q", code, out.String())
	}
	out.Reset()
	if code := app.Main(context.Background(), []string{"--no-such-flag"}, &out); code != 2 {
		t.Errorf("unknown flag: code %d", code)
	}
}
