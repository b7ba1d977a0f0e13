package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/pkg/xdsnames"
)

// TestMTLSFleet: -mtls, CI-sized. 100 Envoy-like and 20 grpc-like proxies
// on a mesh with builtin mTLS (a real ca-service in process, the
// xds-server a child process): each is configured only once it has ACKed
// its SDS secrets, and the certificate it got names its own service
// (spiffe://default/svc-i) and chains to the trust bundle it got with it.
func TestMTLSFleet(t *testing.T) {
	const services = 10
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, kind := range []struct {
		kind string
		n    int
	}{{xdsnames.KindEnvoy, 100}, {xdsnames.KindGRPC, 20}} {
		t.Run(kind.kind, func(t *testing.T) {
			o := options{n: kind.n, services: services, conc: 16, kind: kind.kind, mesh: "default", mtls: true, meshes: 1, log: io.Discard}
			_, _, f := startTestFleet(ctx, t, o)
			for i, p := range f.proxies {
				checkIdentity(t, p, fmt.Sprintf("spiffe://default/svc-%d", i%services))
			}
		})
	}
}

// checkIdentity: p's ACKed secrets are its certificate, for want, and a
// trust bundle it chains to.
func checkIdentity(t *testing.T, p *proxy, want string) {
	t.Helper()
	var chain, bundle []byte
	for _, a := range p.lastACKed(resourcev3.SecretType) {
		s := &tlsv3.Secret{}
		if err := a.UnmarshalTo(s); err != nil {
			t.Fatal(err)
		}
		switch s.GetName() {
		case xdsnames.IdentityCertSecret:
			chain = s.GetTlsCertificate().GetCertificateChain().GetInlineBytes()
		case xdsnames.MeshCASecret:
			bundle = s.GetValidationContext().GetTrustedCa().GetInlineBytes()
		}
	}
	if chain == nil || bundle == nil {
		t.Fatalf("%s: configured without its secrets (certificate %d bytes, bundle %d bytes)", p.spec.Name, len(chain), len(bundle))
	}
	blk, rest := pem.Decode(chain)
	if blk == nil {
		t.Fatalf("%s: no certificate PEM", p.spec.Name)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != want {
		t.Fatalf("%s: certificate for %v, want %s", p.spec.Name, cert.URIs, want)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		t.Fatalf("%s: trust bundle holds no certificate", p.spec.Name)
	}
	inter.AppendCertsFromPEM(rest)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("%s: certificate does not chain to its trust bundle: %v", p.spec.Name, err)
	}
}

// TestMeshesIsolated: -meshes, CI-sized, through the benchmark's own run:
// 150 proxies in 3 meshes; the endpoint (a) and mesh-wide policy (b)
// changes in mesh-0 reach each of its 50 proxies, and none of the other
// 100 gets a response.
func TestMeshesIsolated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	o := options{n: 150, services: 10, conc: 16, kind: xdsnames.KindEnvoy, mesh: "default", meshes: 3,
		idle: 200 * time.Millisecond, timeout: 90 * time.Second, log: io.Discard}
	res, err := run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.affectedA != 50 || len(res.endpoint) != 50 || len(res.policy) != 50 {
		t.Fatalf("mesh-0: %d proxies, %d converged on (a), %d on (b); want 50", res.affectedA, len(res.endpoint), len(res.policy))
	}
	if res.othersPushedA != [2]int64{} || res.othersPushedB != [2]int64{} {
		t.Fatalf("the other meshes' proxies got pushes: (a) %v, (b) %v (proxies, responses)", res.othersPushedA, res.othersPushedB)
	}
}

// startTestFleet starts a control plane, registers o's fleet through the
// API and connects it; everything stops with the test.
func startTestFleet(ctx context.Context, t *testing.T, o options) (*controlPlane, *rest, *fleet) {
	t.Helper()
	cp, err := startControlPlane(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.stop)
	r := &rest{base: cp.apiURL, token: cp.token, hc: &http.Client{}}
	specs, err := setupFleet(ctx, r, o)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := cpTLS(ctx, cp.xdsAdmin)
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := connect(ctx, specs, dialOpts{addr: cp.xds, tls: tc}, o.conc, 90*time.Second, nil)
	if f != nil {
		t.Cleanup(f.stop)
	}
	if err != nil {
		t.Fatalf("%v\nxds-server log:\n%s", err, cp.xdsLogTail())
	}
	return cp, r, f
}
