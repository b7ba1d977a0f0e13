package cmd_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/weftctl/internal/up"
)

// TestConfigDumpAndExplainAgainstRealControlPlane: `inspect dataplane
// --config-dump` and `apply --dry-run --explain` against the api-server
// and xds-server of `weftctl up` (real etcd).
func TestConfigDumpAndExplainAgainstRealControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and the control plane")
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan up.Endpoints, 1)
	done := make(chan error, 1)
	go func() {
		done <- up.Run(ctx, up.Options{DataDir: t.TempDir(), EphemeralPorts: true, OnReady: func(e up.Endpoints) { ready <- e }})
	}()
	var cp up.Endpoint
	select {
	case eps := <-ready:
		cp = eps.ControlPlanes[0]
	case err := <-done:
		cancel()
		t.Fatalf("up: %v", err)
	case <-time.After(2 * time.Minute):
		cancel()
		t.Fatal("up not ready in 2 minutes")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("up: %v", err)
		}
	})
	h := &harness{t: t, conf: filepath.Join(t.TempDir(), "w.yaml")}
	h.env = map[string]string{"WEFTCTL_CONFIG": h.conf, "HOME": "/nonexistent"}
	h.ok("", "config", "control-planes", "add", "--name", "local", "--address", cp.APIURL, "--token", cp.AdminToken)
	h.ok(manifest+`---
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 10.0.0.2
  inbound:
  - port: 9090
    tags:
      weft.io/service: backend
`, "apply", "-f", "-")
	h.ok(`
type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags:
      weft.io/service: web
  outbound:
  - port: 20001
    tags:
      weft.io/service: backend
`, "apply", "-f", "-")

	// No proxy is connected: the xds-server computes web-1's config.
	var dump struct {
		Source string `json:"source"`
		Types  []struct {
			TypeURL   string            `json:"typeUrl"`
			Resources []json.RawMessage `json:"resources"`
		} `json:"types"`
	}
	// The xds-server's model may not hold web-1 yet (404 until it does).
	r := h.run("", "inspect", "dataplane", "web-1", "--config-dump")
	for deadline := time.Now().Add(30 * time.Second); r.code != 0 && strings.Contains(r.stderr, "not found") && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		r = h.run("", "inspect", "dataplane", "web-1", "--config-dump")
	}
	if r.code != 0 {
		t.Fatalf("weftctl inspect dataplane web-1 --config-dump: exit %d\n%s", r.code, r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), &dump); err != nil || dump.Source != "computed" || len(dump.Types) == 0 {
		t.Fatalf("config dump: %v\n%s", err, r.stdout)
	}
	r = h.ok("", "inspect", "dataplane", "web-1", "--config-dump", "-o", "table")
	if !strings.Contains(r.stdout, "computed by xds-server up-standalone") || !strings.Contains(r.stdout, "Listener") {
		t.Fatalf("config dump table:\n%s", r.stdout)
	}
	if r := h.run("", "inspect", "dataplane", "nope", "--config-dump"); r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("unknown dataplane: %d %s", r.code, r.stderr)
	}

	// A more specific permission for web overrides allow-all there; a
	// Timeout changes web-1's cluster for backend; nothing is stored.
	policy := h.writeFile("p.yaml", `
type: TrafficPermission
mesh: default
name: backend-to-web
sources:
- match:
    weft.io/service: backend
destinations:
- match:
    weft.io/service: web
---
type: Timeout
mesh: default
name: web-to-backend
sources:
- match:
    weft.io/service: web
destinations:
- match:
    weft.io/service: backend
conf:
  connectTimeout: 1s
`)
	r = h.ok("", "apply", "--dry-run", "--explain", "-f", policy)
	for _, want := range []string{
		"TrafficPermission default/backend-to-web (new): matches 1 of 2 dataplane(s)",
		"web-1 -> web: applies, overriding allow-all",
		// Without mTLS permissions change no generated config.
		"generated config changes for 0 of 2 proxies compared",
		"Timeout default/web-to-backend (new): matches 1 of 2 dataplane(s)",
		"web-1 -> backend: applies",
		"generated config changes for 1 of 2 proxies compared",
		"web-1 (envoy): ~1 Cluster (backend)",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("explain lacks %q:\n%s", want, r.stdout)
		}
	}
	if r := h.run("", "get", "traffic-permission", "backend-to-web"); r.code == 0 {
		t.Fatalf("the dry run stored the policy:\n%s", r.stdout)
	}
	if r := h.run("", "apply", "--explain", "-f", policy); r.code == 0 || !strings.Contains(r.stderr, "--explain goes with --dry-run") {
		t.Fatalf("--explain alone: %d %s", r.code, r.stderr)
	}
}
