// Package apptest starts a global control plane and zones in-process,
// each with its own embedded etcd and zone-sync, for tests and benchmarks.
package apptest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/trace"

	"github.com/weftmesh/weft/pkg/cptls"
	"github.com/weftmesh/weft/pkg/etcdembed"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/telemetry"
	"github.com/weftmesh/weft/pkg/token"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"

	"github.com/weftmesh/weft/zone-sync/app"
)

// ControlPlane is one control plane: its etcd, store and zone-sync.
type ControlPlane struct {
	Name     string
	Etcd     *etcdembed.Server
	Client   *clientv3.Client
	Keyring  *seal.Keyring
	Store    *store.Store
	App      *app.App
	Registry *prometheus.Registry
	cancel   context.CancelFunc
	done     chan error
}

// Stop stops the control plane's zone-sync (its etcd keeps running).
func (cp *ControlPlane) Stop(t testing.TB) {
	t.Helper()
	if cp.cancel == nil {
		return
	}
	cp.cancel()
	select {
	case err := <-cp.done:
		if err != nil {
			t.Errorf("%s zone-sync: %v", cp.Name, err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("%s zone-sync did not stop", cp.Name)
	}
	cp.cancel = nil
}

// Cluster is a global control plane and its zones.
type Cluster struct {
	Global *ControlPlane
	Zones  []*ControlPlane
	// GlobalAddress is where global's zone-sync listens (kept across
	// restarts).
	GlobalAddress string
	Options       Options
	serverTLS     *tls.Config
	clientTLS     *tls.Config
}

// Options tune a cluster.
type Options struct {
	// Zones to start (named zone-1, zone-2, ...).
	Zones int
	// LeaseTTL of zone presence on global (default 2s).
	LeaseTTL time.Duration
	// Log receives every zone-sync's logs (default: discarded).
	Log *slog.Logger
	// JanitorInterval and Retention configure global's janitor (defaults:
	// 1m, keep).
	JanitorInterval time.Duration
	Retention       time.Duration
	// TracerProvider, when set, gives each control plane's zone-sync its
	// tracer provider (by control-plane name: global, zone-1, ...).
	TracerProvider func(cp string) trace.TracerProvider
}

// ZoneName is the name of the i-th zone (from 0).
func ZoneName(i int) string { return fmt.Sprintf("zone-%d", i+1) }

func newControlPlane(t testing.TB, name string) *ControlPlane {
	t.Helper()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	key := make([]byte, seal.KeySize)
	_, _ = rand.Read(key)
	kr, err := seal.New(seal.Key{ID: name, Bytes: key})
	if err != nil {
		t.Fatal(err)
	}
	return &ControlPlane{Name: name, Etcd: srv, Client: cli, Keyring: kr, Store: store.New(cli, store.WithKeyring(kr))}
}

// Start starts global (with a "default" Mesh and a Zone per zone) and the
// zones, and waits until every zone is connected.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 2 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := &Cluster{Options: o}
	c.Global = newControlPlane(t, "global")
	ctx := context.Background()
	// Control-plane TLS from global's own CA (pkg/cptls): global serves a
	// leaf for the loopback names, zones trust global's CA.
	var err error
	if c.serverTLS, err = cptls.ServerConfig(ctx, c.Global.Store, nil); err != nil {
		t.Fatal(err)
	}
	if c.clientTLS, err = cptls.ClientConfig(ctx, c.Global.Store); err != nil {
		t.Fatal(err)
	}
	mesh := resource.New(resource.MeshType, "", "default")
	if _, err := c.Global.Store.Create(ctx, mesh); err != nil {
		t.Fatal(err)
	}
	c.StartGlobal(t)
	for i := 0; i < o.Zones; i++ {
		name := ZoneName(i)
		if _, err := c.Global.Store.Create(ctx, resource.New(resource.ZoneType, "", name)); err != nil {
			t.Fatal(err)
		}
		cp := newControlPlane(t, name)
		c.Zones = append(c.Zones, cp)
		c.StartZone(t, i, c.ZoneToken(t, name))
	}
	for _, z := range c.Zones {
		Eventually(t, 30*time.Second, func() error {
			if !z.App.Connected() {
				return fmt.Errorf("%s not connected: %v", z.Name, z.App.LastError())
			}
			return nil
		})
	}
	return c
}

// ZoneToken issues a zone token on global.
func (c *Cluster) ZoneToken(t testing.TB, zone string) string {
	t.Helper()
	tok, _, err := token.New(c.Global.Store).Issue(context.Background(),
		token.Claims{Kind: token.KindZone, Zone: zone, RegisteredClaims: jwt.RegisteredClaims{Subject: zone}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (c *Cluster) run(t testing.TB, cp *ControlPlane, cfg app.Config) {
	t.Helper()
	cp.Registry = telemetry.NewRegistry()
	cfg.Etcd.Client = cp.Client
	cfg.Encryption.Keyring = cp.Keyring
	cfg.AdminAddress = "127.0.0.1:0"
	cfg.InstanceID = cp.Name + "-1"
	if cp.Etcd == nil {
		cfg.InstanceID = cp.Name + "-replica"
	}
	cfg.Logger = c.Options.Log.With("cp", cp.Name)
	cfg.Registry = cp.Registry
	if c.Options.TracerProvider != nil {
		cfg.TracerProvider = c.Options.TracerProvider(cp.Name)
	}
	var err error
	for attempt := 0; ; attempt++ {
		cp.App, err = app.New(cfg)
		// A restarted global rebinds its old port, which may briefly still
		// be held.
		if err == nil || attempt > 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("%s: %v", cp.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cp.cancel, cp.done = cancel, make(chan error, 1)
	go func() { cp.done <- cp.App.Run(ctx) }()
	t.Cleanup(func() { cp.Stop(t) })
}

// StartGlobal starts (or restarts, on the same address) global's zone-sync.
func (c *Cluster) StartGlobal(t testing.TB) {
	t.Helper()
	cfg := app.Default()
	cfg.Mode = app.ModeGlobal
	cfg.Address = "127.0.0.1:0"
	if c.GlobalAddress != "" {
		cfg.Address = c.GlobalAddress
	}
	cfg.ServerTLS = c.serverTLS
	cfg.LeaseTTL = c.Options.LeaseTTL
	if c.Options.JanitorInterval > 0 {
		cfg.JanitorInterval = c.Options.JanitorInterval
	}
	cfg.Retention = c.Options.Retention
	c.run(t, c.Global, cfg)
	c.GlobalAddress = c.Global.App.Addr()
}

// ZoneConfig is the configuration zone i runs with.
func (c *Cluster) ZoneConfig(i int, tok string) app.Config {
	cfg := app.Default()
	cfg.Mode = app.ModeZone
	cfg.Zone = ZoneName(i)
	cfg.GlobalAddress = c.GlobalAddress
	cfg.Token = tok
	cfg.ClientTLS = c.clientTLS
	cfg.ReconnectMinBackoff = 50 * time.Millisecond
	cfg.ReconnectMaxBackoff = 500 * time.Millisecond
	return cfg
}

// StartZone starts zone i's zone-sync with a token.
func (c *Cluster) StartZone(t testing.TB, i int, tok string) {
	t.Helper()
	c.run(t, c.Zones[i], c.ZoneConfig(i, tok))
}

// StartReplica starts another zone-sync in zone i (same etcd), as a second
// replica; it stops when the test ends or when stop is called.
func (c *Cluster) StartReplica(t testing.TB, i int) (a *app.App, stop func()) {
	t.Helper()
	cp := &ControlPlane{Name: c.Zones[i].Name, Client: c.Zones[i].Client, Keyring: c.Zones[i].Keyring, Store: c.Zones[i].Store}
	cfg := c.ZoneConfig(i, c.ZoneToken(t, cp.Name))
	c.run(t, cp, cfg)
	return cp.App, func() { cp.Stop(t) }
}

// ClientTLS is the TLS configuration that trusts global.
func (c *Cluster) ClientTLS() *tls.Config { return c.clientTLS }

// Eventually polls cond until it returns nil or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		time.Sleep(wait)
		wait = min(wait*2, 100*time.Millisecond)
	}
}

// SelfSignedPEM returns a self-signed certificate for 127.0.0.1 and
// localhost and its key, PEM-encoded.
func SelfSignedPEM(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "zone-sync test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// Dataplane builds a Dataplane in mesh default with one inbound.
func Dataplane(name, service string, port uint32) *resource.Resource {
	r := resource.New(resource.DataplaneType, "default", name)
	r.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.1",
		Inbound: []*meshv1.Dataplane_Networking_Inbound{{Port: port, Tags: map[string]string{resource.ServiceTag: service}}}}}
	return r
}
