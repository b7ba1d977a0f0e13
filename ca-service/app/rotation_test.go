package app_test

import (
	"crypto/x509"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/pkg/ca"
	"github.com/weftmesh/weft/pkg/resource"
	cav1 "github.com/weftmesh/weft/proto/gen/go/weft/ca/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func TestRootRotation(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.put(meshRes("default", "old", builtin("old"), builtin("new")))
	e.put(dataplane("default", "dp-1", "web"))
	e.put(dataplane("default", "dp-2", "api"))
	a := e.start(e.config())
	c := e.serviceClient(a)
	_, pub := newKey(t)
	sign := func(dp string) *x509.Certificate {
		t.Helper()
		r, err := c.SignWorkloadCertificate(ctx, &cav1.SignWorkloadCertificateRequest{Mesh: "default", Dataplane: dp, PublicKey: pub})
		if err != nil {
			t.Fatalf("sign %s: %v", dp, err)
		}
		return parseChain(t, r.GetCertificateChainPem())[0]
	}

	watch, err := c.WatchTrustBundle(ctx, &cav1.GetTrustBundleRequest{Mesh: "default"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := watch.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(first.GetBackends(), ",") != "old" {
		t.Fatalf("initial bundle backends %v", first.GetBackends())
	}
	old1, old2 := sign("dp-1"), sign("dp-2")

	// Switch the enabled backend.
	e.put(meshRes("default", "new", builtin("old"), builtin("new")))
	var during *cav1.TrustBundle
	for during == nil || strings.Join(during.GetBackends(), ",") != "new,old" {
		if during, err = watch.Recv(); err != nil {
			t.Fatalf("watch: %v", err)
		}
	}
	new1 := sign("dp-1") // dp-1 re-issued under the new root
	bundle, err := c.GetTrustBundle(ctx, &cav1.GetTrustBundleRequest{Mesh: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(bundle.GetBackends(), ","); got != "new,old" {
		t.Fatalf("during rotation (dp-2 still holds an old leaf) bundle has %s, want new,old", got)
	}
	for name, l := range map[string]*x509.Certificate{"old dp-1": old1, "old dp-2": old2, "new dp-1": new1} {
		if err := verify(l, bundle.GetPem()); err != nil {
			t.Errorf("during rotation %s leaf: %v", name, err)
		}
	}
	if verify(new1, first.GetPem()) == nil {
		t.Error("new leaf verified against the old root alone")
	}

	// dp-2 is re-issued too: nothing chains to the old root any more.
	new2 := sign("dp-2")
	var after *cav1.TrustBundle
	for after == nil || strings.Join(after.GetBackends(), ",") != "new" {
		if after, err = watch.Recv(); err != nil {
			t.Fatalf("watch: %v", err)
		}
	}
	for name, l := range map[string]*x509.Certificate{"new dp-1": new1, "new dp-2": new2} {
		if err := verify(l, after.GetPem()); err != nil {
			t.Errorf("after rotation %s leaf: %v", name, err)
		}
	}
	for name, l := range map[string]*x509.Certificate{"old dp-1": old1, "old dp-2": old2} {
		if verify(l, after.GetPem()) == nil {
			t.Errorf("after rotation %s leaf still verifies", name)
		}
	}
	// A second replica (state only from etcd) agrees.
	// (Records reach etcd at the next flush, so poll.)
	c2 := e.serviceClient(e.start(e.config()))
	eventually(t, "second replica to agree on the bundle", func() bool {
		b2, err := c2.GetTrustBundle(ctx, &cav1.GetTrustBundleRequest{Mesh: "default"})
		return err == nil && b2.GetVersion() == after.GetVersion()
	})
	// Deleting the mesh ends the watch.
	if err := e.st.Delete(ctx, resource.MeshType, "", "default", 0); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := watch.Recv()
		if err != nil {
			if status.Code(err) != codes.NotFound {
				t.Errorf("watch ended with %v, want NotFound", err)
			}
			break
		}
	}
}

func TestRotatedRootLeavesWhenOldLeavesExpire(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	short := builtin("old")
	short.DpCert = &meshv1.CertificateAuthorityBackend_DpCert{Rotation: &meshv1.CertificateAuthorityBackend_DpCert_Rotation{Expiration: "1s"}}
	e.put(meshRes("default", "old", short, builtin("new")))
	e.put(dataplane("default", "dp-1", "web"))
	a := e.start(e.config())
	c := e.serviceClient(a)
	_, pub := newKey(t)
	if _, err := c.SignWorkloadCertificate(ctx, &cav1.SignWorkloadCertificateRequest{Mesh: "default", Dataplane: "dp-1", PublicKey: pub}); err != nil {
		t.Fatal(err)
	}
	e.put(meshRes("default", "new", short, builtin("new")))
	// The old leaf (valid 1s) expires without being re-issued: the old root
	// leaves the bundle by itself.
	eventually(t, "old root to leave after its leaves expired", func() bool {
		b, err := c.GetTrustBundle(ctx, &cav1.GetTrustBundleRequest{Mesh: "default"})
		return err == nil && strings.Join(b.GetBackends(), ",") == "new"
	})
}

func TestProvidedCA(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	certPEM, keyPEM, err := ca.GenerateRoot(ca.RootOptions{CommonName: "corp root"})
	if err != nil {
		t.Fatal(err)
	}
	sec := resource.New(resource.SecretType, "default", "corp-key")
	sec.Spec = &meshv1.Secret{Data: keyPEM}
	prov := &meshv1.CertificateAuthorityBackend{Name: "corp", Type: "provided", Provided: &meshv1.CertificateAuthorityBackend_ProvidedConfig{
		Cert: &meshv1.DataSource{Type: &meshv1.DataSource_InlineString{InlineString: string(certPEM)}},
		Key:  &meshv1.DataSource{Type: &meshv1.DataSource_Secret{Secret: "corp-key"}},
	}}
	m := meshRes("default", "corp", prov)
	e.put(meshRes("default", ""))
	e.put(sec)
	if err := ca.ValidateMeshCA(ctx, ca.StoreSecrets(e.st), m); err != nil {
		t.Fatalf("valid provided CA rejected: %v", err)
	}
	e.put(m)
	e.put(dataplane("default", "dp-1", "web"))
	a := e.start(e.config())
	c := e.serviceClient(a)
	_, pub := newKey(t)
	r, err := c.SignWorkloadCertificate(ctx, &cav1.SignWorkloadCertificateRequest{Mesh: "default", Dataplane: "dp-1", PublicKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	leaf := parseChain(t, r.GetCertificateChainPem())[0]
	if leaf.Issuer.CommonName != "corp root" {
		t.Errorf("issuer %q", leaf.Issuer.CommonName)
	}
	if err := verify(leaf, certPEM); err != nil {
		t.Errorf("leaf vs provided root: %v", err)
	}
	assertNoPlaintextKeys(t, e.cli)

	// A provided key Secret that goes bad makes signing fail clearly.
	sec.Spec = &meshv1.Secret{Data: []byte("garbage")}
	e.put(sec)
	eventually(t, "signing to fail after the key went bad", func() bool {
		_, err := c.SignWorkloadCertificate(ctx, &cav1.SignWorkloadCertificateRequest{Mesh: "default", Dataplane: "dp-1", PublicKey: pub})
		return status.Code(err) == codes.FailedPrecondition && strings.Contains(err.Error(), "no PEM private key")
	})
}

func TestZoneWaitsForSyncedRoot(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.put(meshRes("default", "ca-1", builtin("ca-1")))
	e.put(dataplane("default", "dp-1", "web"))
	cfg := e.config()
	cfg.CreateBuiltinRoots = false // a zone: roots come from global
	c := e.serviceClient(e.start(cfg))
	_, pub := newKey(t)
	req := &cav1.SignWorkloadCertificateRequest{Mesh: "default", Dataplane: "dp-1", PublicKey: pub}
	_, err := c.SignWorkloadCertificate(ctx, req)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "builtin root not created yet") {
		t.Fatalf("before the root arrives: %v", err)
	}
	if _, err := e.st.Get(ctx, resource.SecretType, "default", "ca-builtin-ca-1"); err == nil {
		t.Fatal("a zone created a root")
	}
	// The root arrives (as zone-sync would write it).
	certPEM, keyPEM, _ := ca.GenerateRoot(ca.RootOptions{CommonName: "global root"})
	sec := resource.New(resource.SecretType, "default", "ca-builtin-ca-1")
	sec.Spec = &meshv1.Secret{Data: append(certPEM, keyPEM...)}
	e.put(sec)
	eventually(t, "signing with the synced root", func() bool {
		r, err := c.SignWorkloadCertificate(ctx, req)
		return err == nil && verify(parseChain(t, r.GetCertificateChainPem())[0], certPEM) == nil
	})
}
