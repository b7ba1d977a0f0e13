package authority

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/ca-service/internal/backend"
	"github.com/weftmesh/weft/ca-service/internal/issued"
	"github.com/weftmesh/weft/ca-service/internal/signer"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	cav1 "github.com/weftmesh/weft/proto/gen/go/weft/ca/v1"
)

type fixture struct {
	st  *store.Store
	m   *Manager
	ctx context.Context
	pub []byte
}

// start runs a real Manager (with its issued-certificate tracker and
// builtin backend loader) on a real etcd.
func start(t *testing.T) *fixture {
	t.Helper()
	cli := etcdtest.Client(t, nil)
	ring, err := seal.New(seal.Key{ID: "k1", Bytes: make([]byte, seal.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(cli, store.WithKeyring(ring))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var m *Manager
	tracker := issued.New(cli, 50*time.Millisecond, log, func(mesh string) { m.Changed(mesh) })
	m = New(Config{Store: st, Loader: backend.New(st, true), Tracker: tracker, Log: log,
		Metrics: NewMetrics(prometheus.NewRegistry()), Recheck: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = tracker.Run(ctx) }()
	go func() { defer wg.Done(); _ = m.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	waitFor(t, "manager ready", m.Ready)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	tctx, tcancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(tcancel)
	return &fixture{st: st, m: m, ctx: tctx, pub: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (f *fixture) apply(t *testing.T, y string) {
	t.Helper()
	rs, err := resource.UnmarshalAll(strings.NewReader(y))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if _, _, err := f.st.Upsert(f.ctx, r); err != nil {
			t.Fatalf("%s: %v", r.Key(), err)
		}
	}
}

const meshMTLS = `
type: Mesh
name: m
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
`

const dataplane = `
type: Dataplane
mesh: m
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 80
    tags: {weft.io/service: web}
  - port: 81
    tags: {weft.io/service: api}
  - port: 82
    tags: {weft.io/service: web}
`

func parseChain(t *testing.T, pemData []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, pemData = pem.Decode(pemData)
		if b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

func uris(c *x509.Certificate) []string {
	var out []string
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	slices.Sort(out)
	return out
}

// TestSignDerivesIdentity: the certificate's SPIFFE IDs come from the
// Dataplane in etcd (one per distinct service), the chain verifies against
// the mesh's trust bundle, and a request for a dataplane that does not
// exist is refused (no identity can be claimed by naming one).
func TestSignDerivesIdentity(t *testing.T) {
	f := start(t)
	f.apply(t, meshMTLS+"---"+dataplane)
	resp, err := f.m.Sign(f.ctx, SignRequest{Mesh: "m", Dataplane: "web-1", PublicKey: f.pub})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{signer.SPIFFEID("m", "api"), signer.SPIFFEID("m", "web")}
	if !slices.Equal(resp.GetSpiffeIds(), want) || resp.GetBackend() != "ca-1" {
		t.Fatalf("ids %v backend %q", resp.GetSpiffeIds(), resp.GetBackend())
	}
	chain := parseChain(t, resp.GetCertificateChainPem())
	if len(chain) == 0 || !slices.Equal(uris(chain[0]), want) {
		t.Fatalf("leaf URIs %v, want %v", uris(chain[0]), want)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(resp.GetTrustBundlePem()) {
		t.Fatal("no roots in the trust bundle")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("chain does not verify against the bundle: %v", err)
	}
	// A shorter validity is honoured.
	short, err := f.m.Sign(f.ctx, SignRequest{Mesh: "m", Dataplane: "web-1", PublicKey: f.pub, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if d := short.GetNotAfter().AsTime().Sub(short.GetNotBefore().AsTime()); d > time.Hour+time.Minute {
		t.Fatalf("validity %s, asked for 1h", d)
	}
	// Naming a dataplane that does not exist gets nothing.
	if _, err := f.m.Sign(f.ctx, SignRequest{Mesh: "m", Dataplane: "ghost", PublicKey: f.pub}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown dataplane: %v", err)
	}
	// Nor does naming it in another mesh.
	f.apply(t, "type: Mesh\nname: other\n")
	if _, err := f.m.Sign(f.ctx, SignRequest{Mesh: "other", Dataplane: "web-1", PublicKey: f.pub}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("mesh without mTLS: %v", err)
	}
	// A ZoneIngress gets its two-segment identity.
	f.apply(t, "type: ZoneIngress\nname: zi-1\nnetworking:\n  address: 10.0.0.9\n  port: 10001\n")
	zi, err := f.m.Sign(f.ctx, SignRequest{Mesh: "m", Dataplane: "zi-1", PublicKey: f.pub})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(zi.GetSpiffeIds(), []string{signer.SPIFFEID("m", ZoneIngressIdentity+"zi-1")}) {
		t.Fatalf("zone ingress ids %v", zi.GetSpiffeIds())
	}
}

// TestSignRefusesBadInput: every bad request is an error with the right
// code, and issues nothing.
func TestSignRefusesBadInput(t *testing.T) {
	f := start(t)
	f.apply(t, meshMTLS+"---"+dataplane)
	for name, c := range map[string]struct {
		r    SignRequest
		code codes.Code
	}{
		"no mesh":        {SignRequest{Dataplane: "web-1", PublicKey: f.pub}, codes.InvalidArgument},
		"no dataplane":   {SignRequest{Mesh: "m", PublicKey: f.pub}, codes.InvalidArgument},
		"no key":         {SignRequest{Mesh: "m", Dataplane: "web-1"}, codes.InvalidArgument},
		"key and csr":    {SignRequest{Mesh: "m", Dataplane: "web-1", PublicKey: f.pub, CSR: f.pub}, codes.InvalidArgument},
		"garbage key":    {SignRequest{Mesh: "m", Dataplane: "web-1", PublicKey: []byte("nope")}, codes.InvalidArgument},
		"short validity": {SignRequest{Mesh: "m", Dataplane: "web-1", PublicKey: f.pub, Validity: signer.MinValidity - time.Millisecond}, codes.InvalidArgument},
		"negative":       {SignRequest{Mesh: "m", Dataplane: "web-1", PublicKey: f.pub, Validity: -time.Hour}, codes.InvalidArgument},
		"unknown mesh":   {SignRequest{Mesh: "nope", Dataplane: "web-1", PublicKey: f.pub}, codes.NotFound},
	} {
		_, err := f.m.Sign(f.ctx, c.r)
		if err == nil {
			t.Errorf("%s: signed", name)
			continue
		}
		if status.Code(err) != c.code {
			t.Errorf("%s: %v, want %s", name, err, c.code)
		}
	}
	// Names that are not resource names are validation errors with their
	// field.
	_, err := f.m.Sign(f.ctx, SignRequest{Mesh: "M!", Dataplane: "web-1", PublicKey: f.pub})
	var ve *resource.ValidationError
	if !asValidation(err, &ve) || ve.Causes[0].Field != "mesh" {
		t.Fatalf("bad mesh name: %v", err)
	}
	if _, err := f.m.Bundle(f.ctx, ""); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bundle without mesh: %v", err)
	}
}

func asValidation(err error, ve **resource.ValidationError) bool {
	v, ok := err.(*resource.ValidationError)
	*ve = v
	return ok && len(v.Causes) > 0
}

// TestRotationKeepsOldRootInBundle: switching the enabled backend sends a
// new bundle on WatchBundle that still trusts the old root while
// certificates it issued are alive; new certificates chain to the new root.
func TestRotationKeepsOldRootInBundle(t *testing.T) {
	f := start(t)
	f.apply(t, meshMTLS+"---"+dataplane)
	if _, err := f.m.Sign(f.ctx, SignRequest{Mesh: "m", Dataplane: "web-1", PublicKey: f.pub}); err != nil {
		t.Fatal(err)
	}
	bundles := make(chan *cav1.TrustBundle, 16)
	wctx, wcancel := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() {
		done <- f.m.WatchBundle(wctx, "m", func(b *cav1.TrustBundle) error { bundles <- b; return nil })
	}()
	defer func() {
		wcancel()
		<-done
	}()
	first := <-bundles
	if n := len(parseChain(t, first.GetPem())); n != 1 {
		t.Fatalf("first bundle has %d roots", n)
	}
	f.apply(t, `
type: Mesh
name: m
mtls:
  enabledBackend: ca-2
  backends:
  - name: ca-1
    type: builtin
  - name: ca-2
    type: builtin
`)
	var got *cav1.TrustBundle
	deadline := time.After(30 * time.Second)
	for got == nil {
		select {
		case b := <-bundles:
			if len(parseChain(t, b.GetPem())) == 2 {
				got = b
			}
		case <-deadline:
			t.Fatal("no bundle with both roots after rotation")
		}
	}
	if got.GetVersion() == first.GetVersion() {
		t.Fatal("bundle version did not change")
	}
	// Checked before signing again: once web-1 holds a ca-2 certificate no
	// workload's current certificate chains to ca-1, and a rebuild may drop it.
	if roots := f.m.Roots()["m"]; len(roots) != 2 {
		t.Fatalf("Roots() has %d roots for m", len(roots))
	}
	resp, err := f.m.Sign(f.ctx, SignRequest{Mesh: "m", Dataplane: "web-1", PublicKey: f.pub})
	if err != nil || resp.GetBackend() != "ca-2" {
		t.Fatalf("after rotation: backend %q, %v", resp.GetBackend(), err)
	}
}
