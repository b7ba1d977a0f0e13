package app_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/ca-service/app"
	"github.com/weftmesh/weft/pkg/cptls"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
	cav1 "github.com/weftmesh/weft/proto/gen/go/weft/ca/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

type env struct {
	t    testing.TB
	cli  *clientv3.Client
	keys *seal.Keyring
	st   *store.Store
}

func newEnv(t testing.TB) *env {
	t.Helper()
	keys, err := seal.New(seal.Key{ID: "k1", Bytes: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	cli := etcdtest.Client(t, nil)
	return &env{t: t, cli: cli, keys: keys, st: store.New(cli, store.WithKeyring(keys))}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) config() app.Config {
	cfg := app.Default()
	cfg.Address = "127.0.0.1:0"
	cfg.AdminAddress = "127.0.0.1:0"
	cfg.InstanceID = "test"
	cfg.Etcd.Client = e.cli
	cfg.Encryption.Keyring = e.keys
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.IssuedFlushInterval = 20 * time.Millisecond
	cfg.BundleRecheckInterval = 50 * time.Millisecond
	return cfg
}

// start runs a ca-service until the test ends.
func (e *env) start(cfg app.Config) *app.App {
	e.t.Helper()
	a, err := app.New(cfg)
	if err != nil {
		e.t.Fatalf("app.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("Run: %v", err)
		}
	})
	return a
}

type tokenCreds struct{ tok string }

func (c tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + c.tok}, nil
}
func (tokenCreds) RequireTransportSecurity() bool { return true }

func (e *env) token(kind, subject string) string {
	e.t.Helper()
	c := token.Claims{Kind: kind}
	c.Subject = subject
	if kind == token.KindDataplane {
		c.Mesh = "default"
	}
	tok, _, err := token.New(e.st).Issue(context.Background(), c, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// client dials a over TLS trusting the control-plane CA, with a token
// (none when tok is "").
func (e *env) client(a *app.App, tok string, opts ...cptls.Option) cav1.CertificateAuthorityServiceClient {
	e.t.Helper()
	tc, err := cptls.ClientConfig(context.Background(), e.st, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	dial := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc)), grpc.WithUnaryInterceptor(e.withDataplaneToken)}
	if tok != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(tokenCreds{tok}))
	}
	conn, err := grpc.NewClient(a.Addr(), dial...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return cav1.NewCertificateAuthorityServiceClient(conn)
}

// withDataplaneToken gives a signing request without a dataplane token an
// unbound one for its mesh/dataplane, as xds-server forwards the proxy's:
// the tests of signing itself need not mint one each.
func (e *env) withDataplaneToken(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if r, ok := req.(*cav1.SignWorkloadCertificateRequest); ok && ctx.Value(noAutoToken{}) == nil && r.GetDataplaneToken() == "" && r.GetMesh() != "" && r.GetDataplane() != "" {
		r = proto.Clone(r).(*cav1.SignWorkloadCertificateRequest)
		r.DataplaneToken = e.dataplaneToken(r.GetMesh(), r.GetDataplane(), token.Claims{Unbound: true})
		req = r
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// noAutoToken in a context stops withDataplaneToken.
type noAutoToken struct{}

// dataplaneToken issues a dataplane token for mesh/name with c's binding.
func (e *env) dataplaneToken(mesh, name string, c token.Claims) string {
	c.Kind, c.Mesh, c.Subject = token.KindDataplane, mesh, name
	tok, _, err := token.New(e.st).Issue(context.Background(), c, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) serviceClient(a *app.App) cav1.CertificateAuthorityServiceClient {
	return e.client(a, e.token(token.KindService, "xds-server"))
}

func (e *env) put(r *resource.Resource) {
	e.t.Helper()
	if _, _, err := e.st.Upsert(context.Background(), r); err != nil {
		e.t.Fatalf("put %s: %v", r.Key(), err)
	}
}

func builtin(name string) *meshv1.CertificateAuthorityBackend {
	return &meshv1.CertificateAuthorityBackend{Name: name, Type: "builtin"}
}

func meshRes(name, enabled string, backends ...*meshv1.CertificateAuthorityBackend) *resource.Resource {
	r := resource.New(resource.MeshType, "", name)
	r.Spec = &meshv1.Mesh{Mtls: &meshv1.Mesh_Mtls{EnabledBackend: enabled, Backends: backends}}
	return r
}

func dataplane(mesh, name string, services ...string) *resource.Resource {
	r := resource.New(resource.DataplaneType, mesh, name)
	dp := &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.1"}}
	for i, s := range services {
		dp.Networking.Inbound = append(dp.Networking.Inbound, &meshv1.Dataplane_Networking_Inbound{
			Port: uint32(8000 + i), Tags: map[string]string{resource.ServiceTag: s}})
	}
	r.Spec = dp
	return r
}

func newKey(t testing.TB) (crypto.Signer, []byte) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return k, der
}

func parseChain(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatal("no certificates")
	}
	return out
}

func verify(leaf *x509.Certificate, bundle []byte) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
