package app_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftmesh/weft/ca-service/app"
	"github.com/weftmesh/weft/pkg/ca"
	"github.com/weftmesh/weft/pkg/cptls"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/token"
	cav1 "github.com/weftmesh/weft/proto/gen/go/weft/ca/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func TestSignLeafVerifiesWithExactIdentity(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	rsaBackend := builtin("rsa")
	rsaBackend.Builtin = &meshv1.CertificateAuthorityBackend_BuiltinConfig{CaCert: &meshv1.CertificateAuthorityBackend_BuiltinConfig_CaCert{KeyType: "rsa", RsaBits: 2048}}
	rsaBackend.DpCert = &meshv1.CertificateAuthorityBackend_DpCert{Rotation: &meshv1.CertificateAuthorityBackend_DpCert_Rotation{Expiration: "2h"}}
	e.put(meshRes("alpha", "ca-1", builtin("ca-1")))
	e.put(meshRes("beta", "rsa", rsaBackend))
	e.put(meshRes("off", ""))
	e.put(dataplane("alpha", "web-1", "web", "api", "web"))
	e.put(dataplane("beta", "web-1", "web"))
	gw := resource.New(resource.DataplaneType, "alpha", "gw-1")
	gw.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.2",
		Gateway: &meshv1.Dataplane_Networking_Gateway{Tags: map[string]string{resource.ServiceTag: "edge"}}}}
	e.put(gw)
	zi := resource.New(resource.ZoneIngressType, "", "ingress-1")
	zi.Spec = &meshv1.ZoneIngress{Zone: "z1"}
	e.put(zi)

	a := e.start(e.config())
	c := e.serviceClient(a)
	key, pub := newKey(t)

	before := time.Now()
	resp, err := c.SignWorkloadCertificate(ctx, &cav1.SignWorkloadCertificateRequest{Mesh: "alpha", Dataplane: "web-1", PublicKey: pub})
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	after := time.Now()
	leaf := parseChain(t, resp.GetCertificateChainPem())[0]
	bundleA, err := c.GetTrustBundle(ctx, &cav1.GetTrustBundleRequest{Mesh: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	if string(bundleA.GetPem()) != string(resp.GetTrustBundlePem()) {
		t.Error("bundle in the response differs from GetTrustBundle")
	}
	if err := verify(leaf, bundleA.GetPem()); err != nil {
		t.Fatalf("leaf does not verify against its mesh bundle: %v", err)
	}
	var uris []string
	for _, u := range leaf.URIs {
		uris = append(uris, u.String())
	}
	want := []string{"spiffe://alpha/api", "spiffe://alpha/web"}
	if !slices.Equal(uris, want) || !slices.Equal(resp.GetSpiffeIds(), want) {
		t.Errorf("URI SANs %v, spiffe_ids %v; want %v", uris, resp.GetSpiffeIds(), want)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("unexpected SANs: %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("EKU %v", leaf.ExtKeyUsage)
	}
	if leaf.IsCA {
		t.Error("leaf is a CA")
	}
	if !ca.KeyMatches(leaf.PublicKey, key.Public()) {
		t.Error("leaf is not for the requested key")
	}
	if nb := leaf.NotBefore; nb.Before(before.Add(-11*time.Second).Truncate(time.Second)) || nb.After(after.Add(-9*time.Second)) {
		t.Errorf("NotBefore %v not ~10s before %v", nb, before)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d < 24*time.Hour+9*time.Second || d > 24*time.Hour+11*time.Second {
		t.Errorf("validity %v, want 24h (+10s backdate)", d)
	}
	if resp.GetBackend() != "ca-1" {
		t.Errorf("backend %q", resp.GetBackend())
	}

	// A leaf of mesh alpha does not verify against mesh beta's bundle.
	bundleB, err := c.GetTrustBundle(ctx, &cav1.GetTrustBundleRequest{Mesh: "beta"})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(leaf, bundleB.GetPem()); err == nil {
		t.Error("alpha leaf verified against beta's bundle")
	}

	// RSA root, backend default validity 2h, a shorter request wins, CSR input.
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}, DNSNames: []string{"evil.example"}}, key)
	rb, err := c.SignWorkloadCertificate(ctx, &cav1.SignWorkloadCertificateRequest{Mesh: "beta", Dataplane: "web-1",
		Csr: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})})
	if err != nil {
		t.Fatalf("sign beta: %v", err)
	}
	bl := parseChain(t, rb.GetCertificateChainPem())[0]
	if err := verify(bl, bundleB.GetPem()); err != nil {
		t.Fatalf("beta leaf: %v", err)
	}
	if err := verify(bl, bundleA.GetPem()); err == nil {
		t.Error("beta leaf verified against alpha's bundle")
	}
	if len(bl.DNSNames) != 0 || bl.Subject.CommonName != "" {
		t.Errorf("CSR names leaked into the leaf: %v %q", bl.DNSNames, bl.Subject.CommonName)
	}
	if d := bl.NotAfter.Sub(bl.NotBefore); d != 2*time.Hour+10*time.Second {
		t.Errorf("beta validity %v, want 2h10s", d)
	}
	if _, ok := parseChain(t, bundleB.GetPem())[0].PublicKey.(interface{ Size() int }); !ok {
		t.Error("beta root is not RSA")
	}
	rs, err := c.SignWorkloadCertificate(ctx, &cav1.SignWorkloadCertificateRequest{Mesh: "beta", Dataplane: "web-1", PublicKey: pub, Validity: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if d := rs.GetNotAfter().AsTime().Sub(rs.GetNotBefore().AsTime()); d != time.Hour+10*time.Second {
		t.Errorf("requested 1h, got %v", d)
	}

	// Gateway and ZoneIngress identities.
	g, err := c.SignWorkloadCertificate(ctx, &cav1.SignWorkloadCertificateRequest{Mesh: "alpha", Dataplane: "gw-1", PublicKey: pub})
	if err != nil || !slices.Equal(g.GetSpiffeIds(), []string{"spiffe://alpha/edge"}) {
		t.Errorf("gateway: %v %v", g.GetSpiffeIds(), err)
	}
	z, err := c.SignWorkloadCertificate(ctx, &cav1.SignWorkloadCertificateRequest{Mesh: "alpha", Dataplane: "ingress-1", PublicKey: pub})
	if err != nil || !slices.Equal(z.GetSpiffeIds(), []string{"spiffe://alpha/zone-ingress/ingress-1"}) {
		t.Errorf("zone ingress: %v %v", z.GetSpiffeIds(), err)
	}

	// Clear errors.
	for _, tc := range []struct {
		name string
		req  *cav1.SignWorkloadCertificateRequest
		code codes.Code
		msg  string
	}{
		{"unknown mesh", &cav1.SignWorkloadCertificateRequest{Mesh: "nope", Dataplane: "web-1", PublicKey: pub}, codes.NotFound, `mesh "nope" not found`},
		{"unknown dataplane", &cav1.SignWorkloadCertificateRequest{Mesh: "alpha", Dataplane: "ghost", PublicKey: pub}, codes.NotFound, `no Dataplane "ghost" in mesh "alpha"`},
		{"other mesh's dataplane", &cav1.SignWorkloadCertificateRequest{Mesh: "beta", Dataplane: "gw-1", PublicKey: pub}, codes.NotFound, `no Dataplane "gw-1" in mesh "beta"`},
		{"mtls off", &cav1.SignWorkloadCertificateRequest{Mesh: "off", Dataplane: "web-1", PublicKey: pub}, codes.FailedPrecondition, "mTLS disabled"},
		{"no key", &cav1.SignWorkloadCertificateRequest{Mesh: "alpha", Dataplane: "web-1"}, codes.InvalidArgument, "csr or public_key is required"},
		{"garbage key", &cav1.SignWorkloadCertificateRequest{Mesh: "alpha", Dataplane: "web-1", PublicKey: []byte("junk")}, codes.InvalidArgument, "public_key"},
		{"bad csr signature", &cav1.SignWorkloadCertificateRequest{Mesh: "alpha", Dataplane: "web-1", Csr: tamper(csr)}, codes.InvalidArgument, "csr"},
		{"no mesh", &cav1.SignWorkloadCertificateRequest{Dataplane: "web-1", PublicKey: pub}, codes.InvalidArgument, "mesh is required"},
		{"bad name", &cav1.SignWorkloadCertificateRequest{Mesh: "alpha", Dataplane: strings.Repeat("x", 300), PublicKey: pub}, codes.InvalidArgument, "validation failed"},
	} {
		_, err := c.SignWorkloadCertificate(ctx, tc.req)
		if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
			t.Errorf("%s: got %v, want %v containing %q", tc.name, err, tc.code, tc.msg)
		}
	}
}

func tamper(der []byte) []byte {
	b := append([]byte(nil), der...)
	b[len(b)-3] ^= 0xff
	return b
}

func TestTwoReplicasCreateOneRoot(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.put(meshRes("default", "ca-1", builtin("ca-1")))
	e.put(dataplane("default", "dp-1", "web"))
	// Start both at once: each watch sees the mesh and races to create.
	var apps [2]*app.App
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range apps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := e.config()
			cfg.InstanceID = "replica-" + string(rune('a'+i))
			a, err := app.New(cfg)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			apps[i] = a
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	runCtx, cancel := context.WithCancel(context.Background())
	var runs sync.WaitGroup
	for _, a := range apps {
		runs.Add(1)
		go func() { defer runs.Done(); _ = a.Run(runCtx) }()
	}
	t.Cleanup(func() { cancel(); runs.Wait() })
	// The Mesh watch creates the root before anyone asks for a certificate.
	eventually(t, "root Secret created by the mesh watch", func() bool {
		_, err := e.st.Get(ctx, resource.SecretType, "default", "ca-builtin-ca-1")
		return err == nil
	})
	_, pub := newKey(t)
	var bundles [2][]byte
	var leaves [2]*x509.Certificate
	for i, a := range apps {
		c := e.serviceClient(a)
		resp, err := c.SignWorkloadCertificate(ctx, &cav1.SignWorkloadCertificateRequest{Mesh: "default", Dataplane: "dp-1", PublicKey: pub})
		if err != nil {
			t.Fatal(err)
		}
		bundles[i] = resp.GetTrustBundlePem()
		leaves[i] = parseChain(t, resp.GetCertificateChainPem())[0]
	}
	if string(bundles[0]) != string(bundles[1]) || len(parseChain(t, bundles[0])) != 1 {
		t.Fatal("replicas disagree on the root")
	}
	for i := range leaves {
		if err := verify(leaves[i], bundles[1-i]); err != nil {
			t.Errorf("leaf of replica %d does not verify against the other's bundle: %v", i, err)
		}
	}
	secrets, _, err := e.st.ListAll(ctx, resource.SecretType, "default")
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets) != 1 || secrets[0].Meta.GetName() != "ca-builtin-ca-1" {
		t.Fatalf("want exactly one root Secret, got %d", len(secrets))
	}
	// And the control-plane CA is one too.
	gs, _, _ := e.st.ListAll(ctx, resource.GlobalSecretType, "")
	n := 0
	for _, s := range gs {
		if s.Meta.GetName() == cptls.SecretName {
			n++
		}
	}
	if n != 1 {
		t.Errorf("control-plane CA secrets: %d", n)
	}
	assertNoPlaintextKeys(t, e.cli)
}

// assertNoPlaintextKeys reads etcd directly: no value may hold a PEM key.
func assertNoPlaintextKeys(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	resp, err := cli.Get(context.Background(), "/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Value), "PRIVATE KEY") || strings.Contains(string(kv.Value), "BEGIN CERTIFICATE") && strings.Contains(string(kv.Key), "ecret") {
			t.Errorf("etcd key %s holds plaintext key material", kv.Key)
		}
	}
}

func TestAuthDenials(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.put(meshRes("default", "ca-1", builtin("ca-1")))
	e.put(dataplane("default", "dp-1", "web"))
	cfg := e.config()
	cfg.AllowedServices = []string{"xds-server", "zone-sync"}
	a := e.start(cfg)
	_, pub := newKey(t)
	req := &cav1.SignWorkloadCertificateRequest{Mesh: "default", Dataplane: "dp-1", PublicKey: pub}
	foreign := newEnv(t)
	for _, tc := range []struct {
		name string
		c    cav1.CertificateAuthorityServiceClient
		code codes.Code
	}{
		{"no token", e.client(a, ""), codes.Unauthenticated},
		{"dataplane token", e.client(a, e.token(token.KindDataplane, "dp-1")), codes.PermissionDenied},
		{"user token", e.client(a, e.token(token.KindUser, "admin")), codes.PermissionDenied},
		{"zone token", e.client(a, e.token(token.KindZone, "z1")), codes.PermissionDenied},
		{"service not allowed", e.client(a, e.token(token.KindService, "dns-server")), codes.PermissionDenied},
		{"token of another control plane", e.client(a, foreign.token(token.KindService, "xds-server")), codes.Unauthenticated},
		{"client cert of a service not allowed", e.client(a, "", cptls.WithService("api-server")), codes.PermissionDenied},
	} {
		_, err := tc.c.SignWorkloadCertificate(ctx, req)
		if status.Code(err) != tc.code {
			t.Errorf("%s: sign got %v, want %v", tc.name, err, tc.code)
		}
		_, err = tc.c.GetTrustBundle(ctx, &cav1.GetTrustBundleRequest{Mesh: "default"})
		if status.Code(err) != tc.code {
			t.Errorf("%s: bundle got %v, want %v", tc.name, err, tc.code)
		}
	}
	// Allowed: service token, and a control-plane client certificate.
	if _, err := e.serviceClient(a).SignWorkloadCertificate(ctx, req); err != nil {
		t.Errorf("service token: %v", err)
	}
	if _, err := e.client(a, "", cptls.WithService("zone-sync")).SignWorkloadCertificate(ctx, req); err != nil {
		t.Errorf("control-plane client certificate: %v", err)
	}
}
