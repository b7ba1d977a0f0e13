// Package catest is a small but real certificate authority serving
// cav1.CertificateAuthorityService for tests: one ECDSA root per mesh,
// workload certificates with spiffe://<mesh>/<service> URI SANs taken from
// the Dataplane's inbound tags in the store.
package catest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	cav1 "github.com/weftmesh/weft/proto/gen/go/weft/ca/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// CA is the test authority.
type CA struct {
	cav1.UnimplementedCertificateAuthorityServiceServer
	st       *store.Store
	Validity time.Duration

	mu      sync.Mutex
	roots   map[string]*root
	changed chan struct{}
	Addr    string
	Signed  int
}

type root struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	pem     []byte
	version int
}

// Start serves a CA on 127.0.0.1:0 until the test ends.
func Start(t testing.TB, st *store.Store) *CA {
	ca := &CA{st: st, Validity: time.Hour, roots: map[string]*root{}, changed: make(chan struct{})}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	cav1.RegisterCertificateAuthorityServiceServer(srv, ca)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	ca.Addr = lis.Addr().String()
	return ca
}

func (c *CA) rootFor(mesh string) (*root, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.roots[mesh]; r != nil {
		return r, nil
	}
	return c.newRoot(mesh, 1)
}

func (c *CA) newRoot(mesh string, version int) (*root, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{Organization: []string{"weft"}, CommonName: "mesh " + mesh + " root " + strconv.Itoa(version)},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	r := &root{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), version: version}
	c.roots[mesh] = r
	return r, nil
}

// Rotate replaces a mesh's root, which changes its trust bundle.
func (c *CA) Rotate(mesh string) error {
	c.mu.Lock()
	v := 1
	if r := c.roots[mesh]; r != nil {
		v = r.version + 1
	}
	_, err := c.newRoot(mesh, v)
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	return err
}

// SignWorkloadCertificate signs a public key for a dataplane's services.
func (c *CA) SignWorkloadCertificate(ctx context.Context, req *cav1.SignWorkloadCertificateRequest) (*cav1.SignWorkloadCertificateResponse, error) {
	r, err := c.st.Get(ctx, resource.DataplaneType, req.GetMesh(), req.GetDataplane())
	if err != nil {
		return nil, status.Errorf(codes.NotFound, "dataplane %s/%s: %v", req.GetMesh(), req.GetDataplane(), err)
	}
	var services []string
	seen := map[string]bool{}
	for _, in := range r.Spec.(*meshv1.Dataplane).GetNetworking().GetInbound() {
		if s := in.GetTags()[resource.ServiceTag]; s != "" && !seen[s] {
			seen[s] = true
			services = append(services, s)
		}
	}
	sort.Strings(services)
	pubAny, err := x509.ParsePKIXPublicKey(pemOrDER(req.GetPublicKey()))
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "public_key: %v", err)
	}
	rt, err := c.rootFor(req.GetMesh())
	if err != nil {
		return nil, err
	}
	validity := c.Validity
	if req.GetValidity() != nil {
		validity = req.GetValidity().AsDuration()
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{Organization: []string{req.GetMesh()}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	var ids []string
	for _, s := range services {
		u, _ := url.Parse(fmt.Sprintf("spiffe://%s/%s", req.GetMesh(), s))
		tmpl.URIs = append(tmpl.URIs, u)
		ids = append(ids, u.String())
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, rt.cert, pubAny, rt.key)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.Signed++
	c.mu.Unlock()
	return &cav1.SignWorkloadCertificateResponse{
		CertificateChainPem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		TrustBundlePem:      rt.pem,
		SpiffeIds:           ids,
		NotBefore:           timestamppb.New(tmpl.NotBefore),
		NotAfter:            timestamppb.New(tmpl.NotAfter),
		Backend:             "catest",
	}, nil
}

func pemOrDER(b []byte) []byte {
	if blk, _ := pem.Decode(b); blk != nil {
		return blk.Bytes
	}
	return b
}

// GetTrustBundle returns a mesh's root.
func (c *CA) GetTrustBundle(ctx context.Context, req *cav1.GetTrustBundleRequest) (*cav1.TrustBundle, error) {
	rt, err := c.rootFor(req.GetMesh())
	if err != nil {
		return nil, err
	}
	return &cav1.TrustBundle{Mesh: req.GetMesh(), Pem: rt.pem, Backends: []string{"catest"}, Version: strconv.Itoa(rt.version)}, nil
}

// WatchTrustBundle sends the bundle, then every rotation.
func (c *CA) WatchTrustBundle(req *cav1.GetTrustBundleRequest, stream grpc.ServerStreamingServer[cav1.TrustBundle]) error {
	for {
		c.mu.Lock()
		changed := c.changed
		c.mu.Unlock()
		b, err := c.GetTrustBundle(stream.Context(), req)
		if err != nil {
			return err
		}
		if err := stream.Send(b); err != nil {
			return err
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-changed:
		}
	}
}

// SignedCount is how many certificates were signed.
func (c *CA) SignedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Signed
}
