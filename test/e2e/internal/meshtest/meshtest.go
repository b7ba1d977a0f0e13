// Package meshtest holds the e2e helpers that put workloads and ingresses
// into a running control plane the way a user's processes join it: tokens
// issued by the control plane's keys, and what `weft-dp run --proxy-type
// grpc` runs for a proxyless workload.
package meshtest

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	caapp "github.com/weftmesh/weft/ca-service/app"
	ingressapp "github.com/weftmesh/weft/ingress-manager/app"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/run"
	xdsapp "github.com/weftmesh/weft/xds-server/app"
	"github.com/weftmesh/weft/zone-sync/apptest"

	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
	"github.com/weftmesh/weft/test/e2e/internal/proc"
	"github.com/weftmesh/weft/weft-dp/agent"
)

// Mesh is the mesh the helpers' workloads join.
const Mesh = "default"

// DataplaneToken issues an hour's dataplane token for Dataplane name of
// Mesh, bound to services.
func DataplaneToken(t *testing.T, ctx context.Context, st *store.Store, name string, services ...string) string {
	t.Helper()
	c := token.Claims{Kind: token.KindDataplane, Mesh: Mesh, Services: services}
	c.Subject = name
	return issue(t, ctx, st, c)
}

// IngressToken issues an hour's ingress token for the ZoneIngress name of
// zone.
func IngressToken(t *testing.T, ctx context.Context, st *store.Store, zone, name string) string {
	t.Helper()
	c := token.Claims{Kind: token.KindIngress, Zone: zone}
	c.Subject = name
	return issue(t, ctx, st, c)
}

func issue(t *testing.T, ctx context.Context, st *store.Store, c token.Claims) string {
	t.Helper()
	tok, _, err := token.New(st).Issue(ctx, c, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// GRPCAgent runs what `weft-dp run --proxy-type grpc` runs for Dataplane
// name of Mesh against the xds-server at xds, with tok, until the test
// ends; it returns the grpc-go bootstrap path once a certificate is there.
func GRPCAgent(t *testing.T, ctx context.Context, xds, name, tok string) string {
	t.Helper()
	cfg := &agent.Config{CP: xds, Mesh: Mesh, Name: name, Token: tok, ProxyType: agent.ProxyGRPC, Workdir: t.TempDir(),
		CertRefresh: 500 * time.Millisecond, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	b, err := agent.GRPCBootstrap(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.WriteFileAtomic(cfg.GRPCBootstrapPath(), b, 0o600); err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := agent.RunCertificates(actx, cfg, nil); err != nil && actx.Err() == nil {
			t.Errorf("agent %s: %v", name, err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	proc.Eventually(t, time.Minute, func() error {
		_, err := os.Stat(filepath.Join(cfg.CertDir(), "cert.pem"))
		return err
	})
	return cfg.GRPCBootstrapPath()
}

// Zone is one control plane's services besides zone-sync (which apptest
// runs): ca-service and, in a zone, xds-server and a built-in ingress.
type Zone struct {
	// Name is the zone's name ("global" on global).
	Name string
	CP   *apptest.ControlPlane
	// XDS is the zone's xds-server address ("" on global).
	XDS     string
	Ingress *ingressapp.App
}

// StartServices runs a control plane's ca-service and, in a zone (mode
// "zone"), its xds-server (proxies' side without TLS; xds-server to
// ca-service is TLS) and a built-in ingress named "ingress", until the test
// ends. Mesh roots are made on global (mode "global") and synced, one root
// for all zones.
func StartServices(t *testing.T, ctx context.Context, log *slog.Logger, name string, cp *apptest.ControlPlane, mode string) *Zone {
	t.Helper()
	z := &Zone{Name: name, CP: cp}
	g := run.New(log)
	caCfg := caapp.Default()
	caCfg.Address, caCfg.AdminAddress, caCfg.InstanceID = "127.0.0.1:0", "", name+"-ca"
	caCfg.Etcd.Client, caCfg.Encryption.Keyring, caCfg.Logger = cp.Client, cp.Keyring, log
	caCfg.CreateBuiltinRoots = mode == "global"
	ca, err := caapp.New(caCfg)
	if err != nil {
		t.Fatal(err)
	}
	g.Add("ca-service", ca.Run)
	if mode == "zone" {
		xdsCfg := xdsapp.Default()
		xdsCfg.Address, xdsCfg.AdminAddress, xdsCfg.InstanceID, xdsCfg.Zone = "127.0.0.1:0", "", name+"-xds", name
		xdsCfg.Etcd.Client, xdsCfg.Encryption.Keyring, xdsCfg.Logger = cp.Client, cp.Keyring, log
		xdsCfg.CA.Address = ca.Addr()
		xdsCfg.InsecureDev = true
		x, err := xdsapp.New(xdsCfg)
		if err != nil {
			t.Fatal(err)
		}
		z.XDS = x.Addr()
		g.Add("xds-server", x.Run)
		z.Ingress = StartIngress(t, ctx, log, z, "ingress", 0)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	return z
}

// StartIngress runs an ingress-manager named name in z on 127.0.0.1:0
// whose built-in data path gets its routes from z's xds-server over ADS
// with an ingress token (drain 0: the default drain timeout). It runs
// until the test ends; Stop ends it earlier.
func StartIngress(t *testing.T, ctx context.Context, log *slog.Logger, z *Zone, name string, drain time.Duration) *ingressapp.App {
	a, _ := StartIngressStoppable(t, ctx, log, z, name, drain)
	return a
}

// StartIngressStoppable is StartIngress also returning a stop function
// (safe to call more than once; the test fails if the ingress does not
// stop within 30 s).
func StartIngressStoppable(t *testing.T, ctx context.Context, log *slog.Logger, z *Zone, name string, drain time.Duration) (*ingressapp.App, func()) {
	t.Helper()
	cfg := ingressapp.Default()
	cfg.Zone, cfg.Name, cfg.Address, cfg.AdminAddress = z.Name, name, "127.0.0.1:0", ""
	cfg.Etcd.Client, cfg.Logger = z.CP.Client, log
	if drain > 0 {
		cfg.DrainTimeout = drain
	}
	cfg.XDSServer = z.XDS
	cfg.Token = IngressToken(t, ctx, z.CP.Store, z.Name, name)
	a, err := ingressapp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Errorf("ingress %s did not stop within 30 s", name)
			}
		})
	}
	t.Cleanup(stop)
	return a, stop
}

// Apply upserts the resources of a YAML document into cp's store.
func Apply(t *testing.T, cp *apptest.ControlPlane, y string) {
	t.Helper()
	rs, err := resource.UnmarshalAll(strings.NewReader(y))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if _, _, err := cp.Store.Upsert(context.Background(), r); err != nil {
			t.Fatalf("apply %s: %v", r.Key(), err)
		}
	}
}
