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
	"testing"
	"time"

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
