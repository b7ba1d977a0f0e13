package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/anypb"
)

// logBuf collects weft-dp's log lines for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) count(s string) int { return strings.Count(l.String(), s) }

// first answers the subscription only.
func first(r func() *discoveryv3.DiscoveryResponse) func(int) *discoveryv3.DiscoveryResponse {
	return func(n int) *discoveryv3.DiscoveryResponse {
		if n == 0 {
			return r()
		}
		return nil
	}
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 30s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// adsServer is a real gRPC ADS server whose answers the test chooses:
// respond returns the response to the n-th request of a stream, the
// subscription or an ACK (nil: stay silent).
type adsServer struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	respond func(n int) *discoveryv3.DiscoveryResponse
}

func (s *adsServer) StreamAggregatedResources(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	for n := 0; ; n++ {
		if _, err := stream.Recv(); err != nil {
			return err
		}
		if resp := s.respond(n); resp != nil {
			resp.Nonce = "n"
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
	}
}

func serveADS(t *testing.T, lis net.Listener, respond func(int) *discoveryv3.DiscoveryResponse, opts ...grpc.ServerOption) *grpc.Server {
	t.Helper()
	srv := grpc.NewServer(opts...)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, &adsServer{respond: respond})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return srv
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// testCert is a self-signed certificate with a SPIFFE URI SAN.
func testCert(t *testing.T, spiffe string) (certPEM, keyPEM []byte, leaf *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(spiffe)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		URIs: []*url.URL{u}, DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ = x509.ParseCertificate(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), leaf
}

func secretsResponse(t *testing.T, cert, key []byte) *discoveryv3.DiscoveryResponse {
	t.Helper()
	id, err := anypb.New(&tlsv3.Secret{Name: IdentityCertSecret, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: inline(cert), PrivateKey: inline(key)}}})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := anypb.New(&tlsv3.Secret{Name: MeshCASecret, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: inline(cert)}}})
	if err != nil {
		t.Fatal(err)
	}
	return &discoveryv3.DiscoveryResponse{VersionInfo: "1", TypeUrl: secretTypeURL, Resources: []*anypb.Any{id, ca}}
}

// runAgent runs RunCertificates against cp until the test ends.
func runAgent(t *testing.T, cp, caFile string) (*logBuf, *Config) {
	t.Helper()
	logs := &logBuf{}
	c := &Config{CP: cp, Mesh: "default", Name: "backend-1", Token: "tok", ProxyType: ProxyGRPC, Workdir: t.TempDir(), CPCAFile: caFile,
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := RunCertificates(ctx, c, nil); err != nil {
			t.Errorf("RunCertificates: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("weft-dp log:\n%s", logs.String())
		}
	})
	return logs, c
}

func TestSaysConnectedAndCertificateWritten(t *testing.T) {
	cert, key, leaf := testCert(t, "spiffe://default/backend")
	lis := listen(t, "127.0.0.1:0")
	serveADS(t, lis, first(func() *discoveryv3.DiscoveryResponse { return secretsResponse(t, cert, key) }))
	logs, c := runAgent(t, lis.Addr().String(), "")
	waitFor(t, "certificate written", func() bool { return logs.count(`msg="certificate written"`) > 0 })
	out := logs.String()
	for _, want := range []string{
		`msg="connected to xds-server" cp=` + lis.Addr().String() + ` address=` + lis.Addr().String(),
		`spiffeID=spiffe://default/backend expires=` + leaf.NotAfter.UTC().Format(time.RFC3339),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if got, err := os.ReadFile(filepath.Join(c.CertDir(), "cert.pem")); err != nil || !bytes.Equal(got, cert) {
		t.Errorf("cert.pem: %v", err)
	}
}

func TestSaysWhenWaitingForTheDataplane(t *testing.T) {
	defer func(d time.Duration) { WaitForConfig = d }(WaitForConfig)
	WaitForConfig = 200 * time.Millisecond
	lis := listen(t, "127.0.0.1:0")
	// The xds-server answers nothing while the proxy's Dataplane is missing.
	serveADS(t, lis, func(int) *discoveryv3.DiscoveryResponse { return nil })
	logs, _ := runAgent(t, lis.Addr().String(), "")
	waitFor(t, "waiting for the Dataplane", func() bool {
		return logs.count(`waiting for the Dataplane to exist in its mesh`) > 0 &&
			strings.Contains(logs.String(), "mesh=default dataplane=backend-1")
	})
	if logs.count("connected to xds-server") != 0 {
		t.Errorf("said connected before any response:\n%s", logs)
	}
}

func TestSaysMeshHasMTLSOff(t *testing.T) {
	defer func(d time.Duration) { WaitForCert = d }(WaitForCert)
	WaitForCert = 200 * time.Millisecond
	lis := listen(t, "127.0.0.1:0")
	serveADS(t, lis, first(func() *discoveryv3.DiscoveryResponse {
		return &discoveryv3.DiscoveryResponse{VersionInfo: "1", TypeUrl: secretTypeURL}
	}))
	logs, _ := runAgent(t, lis.Addr().String(), "")
	waitFor(t, "mTLS off", func() bool { return logs.count("the mesh has mTLS off") == 1 })
}

func TestSaysCertificateWithdrawn(t *testing.T) {
	cert, key, _ := testCert(t, "spiffe://default/backend")
	lis := listen(t, "127.0.0.1:0")
	// A certificate, then (after its ACK) none: mTLS was turned off.
	serveADS(t, lis, func(n int) *discoveryv3.DiscoveryResponse {
		switch n {
		case 0:
			return secretsResponse(t, cert, key)
		case 1:
			return &discoveryv3.DiscoveryResponse{VersionInfo: "2", TypeUrl: secretTypeURL}
		}
		return nil
	})
	logs, _ := runAgent(t, lis.Addr().String(), "")
	waitFor(t, "certificate withdrawn", func() bool { return logs.count("withdrew this dataplane's certificate") == 1 })
	if logs.count(`msg="certificate written"`) != 1 {
		t.Fatalf("log:\n%s", logs)
	}
}

func TestReconnectsToARestartedXDSServer(t *testing.T) {
	if MaxConnectBackoff+MaxStreamBackoff > 5*time.Second || connectParams.Backoff.MaxDelay > MaxConnectBackoff {
		t.Fatalf("combined reconnect back-off %s + %s is over a few seconds", MaxConnectBackoff, MaxStreamBackoff)
	}
	cert, key, _ := testCert(t, "spiffe://default/backend")
	respond := first(func() *discoveryv3.DiscoveryResponse { return secretsResponse(t, cert, key) })
	lis := listen(t, "127.0.0.1:0")
	addr := lis.Addr().String()
	srv := serveADS(t, lis, respond)
	logs, _ := runAgent(t, addr, "")
	waitFor(t, "connected", func() bool { return logs.count("connected to xds-server") == 1 })
	srv.Stop()
	waitFor(t, "stream ended", func() bool { return logs.count("xds-server stream ended, reconnecting") == 1 })
	serveADS(t, listen(t, addr), respond)
	waitFor(t, "connected again", func() bool { return logs.count("connected to xds-server") == 2 })
}

func TestTLSPortWithoutCAFileIsExplainedOnce(t *testing.T) {
	cert, key, _ := testCert(t, "spiffe://test/xds")
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	lis := listen(t, "127.0.0.1:0")
	serveADS(t, lis, func(int) *discoveryv3.DiscoveryResponse { return nil },
		grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}})))
	logs, _ := runAgent(t, lis.Addr().String(), "")
	// The hint once, then retries that stay at debug.
	waitFor(t, "TLS hint and quiet retries", func() bool { return logs.count("xds-server still unreachable, retrying") >= 2 })
	if n := logs.count("the xds-server port speaks TLS but --cp-ca-file is not set"); n != 1 {
		t.Fatalf("hint logged %d times, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "control-plane-ca.pem") {
		t.Fatalf("hint does not say how to get the CA:\n%s", logs)
	}
}
