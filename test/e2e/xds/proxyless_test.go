// Package xds runs proxyless grpc-go applications (built from testapp) with
// weft-dp's bootstrap and certificates against xds-server processes (xDS
// over TLS from the control-plane CA) and the real ca-service.
package xds

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	eproc "github.com/weftmesh/weft/test/e2e/internal/proc"
	"github.com/weftmesh/weft/weft-dp/agent"
)

const meshYAML = `
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
`

const permissionYAML = `
type: TrafficPermission
mesh: default
name: client-to-backend
sources:
- match:
    weft.io/service: client
destinations:
- match:
    weft.io/service: backend
`

var dataplaneYAML = eproc.DataplaneYAML

// startAgent runs what `weft-dp run --proxy-type grpc` runs and waits for
// the bootstrap and the certificate files.
func (e *env) startAgent(t *testing.T, ctx context.Context, cp, name string) string {
	dir := t.TempDir()
	cfg := &agent.Config{CP: cp, Mesh: "default", Name: name, Token: e.dataplaneToken("default", name, time.Hour),
		ProxyType: agent.ProxyGRPC, Workdir: dir, CertRefresh: 500 * time.Millisecond, CPCAFile: e.cpRoot,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	b, err := agent.GRPCBootstrap(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.WriteFileAtomic(cfg.GRPCBootstrapPath(), b, 0o600); err != nil {
		t.Fatal(err)
	}
	go func() {
		if err := agent.RunCertificates(ctx, cfg, nil); err != nil {
			t.Errorf("agent %s: %v", name, err)
		}
	}()
	eventually(t, 20*time.Second, func() error {
		_, err := os.Stat(filepath.Join(cfg.CertDir(), "cert.pem"))
		return err
	})
	return cfg.GRPCBootstrapPath()
}

// startWeftDP runs the weft-dp binary (`weft-dp run --proxy-type grpc`)
// and waits for its bootstrap and certificate files.
func (e *env) startWeftDP(t *testing.T, cp, name string) string {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte(e.dataplaneToken("default", name, time.Hour)), 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, nil, "weft-dp", "run", "--cp", cp, "--cp-ca-file", e.cpRoot, "--mesh", "default", "--name", name,
		"--token-file", tok, "--proxy-type", "grpc", "--workdir", dir, "--cert-refresh", "500ms", "--log-level", "warn")
	eventually(t, 20*time.Second, func() error {
		for _, f := range []string{"bootstrap.json", "certs/cert.pem", "certs/key.pem", "certs/ca.pem"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				return err
			}
		}
		return nil
	})
	return filepath.Join(dir, "bootstrap.json")
}

var (
	controlRe = regexp.MustCompile(`^CONTROL (\S+)`)
	servingRe = regexp.MustCompile(`^SERVING`)
)

func TestProxylessMTLSAndTrafficPermission(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	a := e.startReplica(t, "replica-a")
	b := e.startReplica(t, "replica-b")
	// The forwarder stands for the Service both replicas sit behind: every
	// stream lands on replica-a while it lives.
	fwd := newForwarder(t, a.addr, b.addr)

	backendPort, clientPort := freePort(t), freePort(t)
	e.apply(meshYAML + "---" + dataplaneYAML("backend-1", "backend", backendPort) +
		"---" + dataplaneYAML("client-1", "client", clientPort) + "---" + permissionYAML)

	// solo-1's agent talks to replica-a directly: when replica-a dies it has
	// nowhere to go, so only the lease TTL can take its insight offline.
	e.apply(dataplaneYAML("solo-1", "solo", freePort(t)))
	e.startAgent(t, ctx, a.addr, "solo-1")

	// The backend's agent is the weft-dp binary; the client's runs the same
	// code (package agent) in the test process.
	backendBoot := e.startWeftDP(t, fwd.addr(), "backend-1")
	clientBoot := e.startAgent(t, ctx, fwd.addr(), "client-1")

	server := start(t, []string{"GRPC_XDS_BOOTSTRAP=" + backendBoot}, "testapp", "server", "--port", fmt.Sprint(backendPort))
	server.WaitLine(t, servingRe, 30*time.Second)
	client := start(t, []string{"GRPC_XDS_BOOTSTRAP=" + clientBoot, "GRPC_EXPERIMENTAL_XDS_SNI=true"}, "testapp", "client", "--target", "xds:///backend.mesh")
	control := client.WaitLine(t, controlRe, 30*time.Second)[1]

	expectOK := func(within time.Duration) {
		t.Helper()
		eventually(t, within, func() error {
			if got := call(control); got != "OK spiffe://default/client" {
				return fmt.Errorf("call: %s", got)
			}
			return nil
		})
	}
	expectDenied := func(within time.Duration) {
		t.Helper()
		start := time.Now()
		eventually(t, within, func() error {
			if got := call(control); !strings.HasPrefix(got, "ERR PermissionDenied") {
				return fmt.Errorf("call: %s", got)
			}
			return nil
		})
		t.Logf("denied %s after the permission was removed", time.Since(start).Round(time.Millisecond))
	}

	// Allowed: mTLS both ways, and the server sees the client's identity.
	expectOK(30 * time.Second)

	// Removed: RBAC denies within 5 s; restored: allowed again.
	e.delete(resource.TrafficPermissionType, "default", "client-to-backend")
	expectDenied(5 * time.Second)
	e.apply(permissionYAML)
	expectOK(5 * time.Second)

	// Every stream is on replica-a; kill it hard (no lease revoke).
	connectedTo := func(name string) []string {
		r, err := e.st.Get(ctx, resource.DataplaneInsightType, "default", name)
		if err != nil {
			return nil
		}
		var out []string
		for _, s := range r.Spec.(*meshv1.DataplaneInsight).GetSubscriptions() {
			out = append(out, s.GetControlPlaneInstanceId())
		}
		return out
	}
	eventually(t, 5*time.Second, func() error {
		for _, n := range []string{"client-1", "solo-1"} {
			if got := connectedTo(n); len(got) == 0 || got[0] != "replica-a" {
				return fmt.Errorf("%s insight: %v", n, got)
			}
		}
		return nil
	})
	killed := time.Now()
	a.Kill()

	// RPCs keep working, and config now flows through replica-b: the client
	// re-subscribes there (same versions), and a permission change still
	// takes effect.
	expectOK(5 * time.Second)
	eventually(t, 15*time.Second, func() error {
		for _, n := range []string{"client-1", "backend-1"} {
			got := connectedTo(n)
			if len(got) == 0 {
				return fmt.Errorf("%s: no insight", n)
			}
			for _, inst := range got {
				if inst != "replica-b" {
					return fmt.Errorf("%s still shows %v", n, got)
				}
			}
		}
		return nil
	})
	t.Logf("insights moved to replica-b %s after the kill", time.Since(killed).Round(time.Millisecond))
	// The killed replica's own insights expire with its lease (TTL 2s).
	eventually(t, 2*time.Second+3*time.Second-time.Since(killed), func() error {
		if got := connectedTo("solo-1"); len(got) != 0 {
			return fmt.Errorf("solo-1 still online at %v", got)
		}
		return nil
	})
	t.Logf("solo-1 offline %s after the kill (lease TTL 2s)", time.Since(killed).Round(time.Millisecond))
	e.delete(resource.TrafficPermissionType, "default", "client-to-backend")
	expectDenied(5 * time.Second)
	e.apply(permissionYAML)
	expectOK(5 * time.Second)
	_ = b
}
