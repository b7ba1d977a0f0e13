package cmd_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/weftctl/internal/client"
	"github.com/weftmesh/weft/weftctl/internal/cmd"
	"github.com/weftmesh/weft/weftctl/internal/up"
)

// TestAgainstRealAPIServer runs the CLI against the real api-server on real
// embedded etcd (started the way `weftctl up` does), to catch drift between
// the fixture and the server. The acceptance path: apply a Mesh, a
// Dataplane and a TrafficPermission, get them with metadata, see a 400 with
// both causes, a 409 on a stale version, a 401 without a token.
func TestAgainstRealAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and the api-server")
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

	r := h.ok("", "version")
	if !strings.Contains(r.stdout, "Control plane: Weft") || !strings.Contains(r.stdout, "mode standalone") {
		t.Fatalf("version: %s", r.stdout)
	}
	r = h.ok(manifest, "apply", "-f", "-")
	if strings.Count(r.stdout, "created ") != 3 {
		t.Fatalf("apply: %s", r.stdout)
	}
	if r = h.ok(manifest, "apply", "-f", "-"); strings.Count(r.stdout, "unchanged ") != 3 {
		t.Fatalf("re-apply: %s", r.stdout)
	}
	r = h.ok("", "get", "dataplanes", "-o", "yaml")
	for _, w := range []string{"type: Dataplane", "name: web-1", "creationTime:", "modificationTime:", "version:"} {
		if !strings.Contains(r.stdout, w) {
			t.Fatalf("get -o yaml lacks %q:\n%s", w, r.stdout)
		}
	}
	// The YAML goes back in unchanged (its version is current).
	if back := h.ok(r.stdout, "apply", "-f", "-"); !strings.Contains(back.stdout, "unchanged Dataplane default/web-1") {
		t.Fatalf("round trip: %s", back.stdout)
	}
	r = h.ok("", "get", "dp", "--page-size", "1")
	if l := lines(r.stdout); len(l) != 2 || !strings.Contains(l[1], "10.0.0.1") || !strings.Contains(l[1], "web") {
		t.Fatalf("get dp table:\n%s", r.stdout)
	}
	h.ok("", "get", "meshes")
	h.ok("", "get", "tp", "allow-all", "-o", "json")

	// apply validates locally, so the server's own 400 is checked through
	// the client: both causes, with field paths, and nothing stored.
	c, err := client.New(cp.APIURL, cp.AdminToken)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := resource.Unmarshal([]byte("type: Dataplane\nmesh: default\nname: bad\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 0\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Put(context.Background(), bad)
	out := cmd.FormatError(err)
	if !client.IsBadRequest(err) || !strings.Contains(out, "networking.inbound[0].port") || !strings.Contains(out, "weft.io/service") {
		t.Fatalf("invalid dataplane: %s", out)
	}
	t.Logf("server 400 as printed:\n%s", out)
	if _, err := c.Get(context.Background(), resource.DataplaneType, "default", "bad"); !client.IsNotFound(err) {
		t.Fatalf("invalid dataplane stored: %v", err)
	}
	// A locally valid document with a stale version: 409.
	stale := strings.Replace(manifest, "port: 8080", "port: 8081", 1)
	stale = strings.Replace(stale, "name: web-1\n", "name: web-1\nversion: 1\n", 1)
	r = h.run(stale, "apply", "-f", "-")
	if r.code != 1 || !strings.Contains(r.stderr, "HTTP 409") {
		t.Fatalf("stale version: exit %d\n%s", r.code, r.stderr)
	}

	h.env["WEFT_TOKEN"] = "not-a-token"
	r = h.run("", "get", "meshes")
	if r.code != 1 || !strings.Contains(r.stderr, "HTTP 401") {
		t.Fatalf("bad token: exit %d\n%s", r.code, r.stderr)
	}
	delete(h.env, "WEFT_TOKEN")

	r = h.ok("", "inspect", "dataplanes")
	if !strings.Contains(r.stdout, "offline") {
		t.Fatalf("inspect dataplanes:\n%s", r.stdout)
	}
	h.ok("", "inspect", "zones")
	// The policies of one dataplane (the manifest's allow-all selects every
	// service, as destination and as source); inspect meshes and services.
	wantTable(t, h.ok("", "inspect", "dataplane", "web-1", "--policies").stdout, [][]string{
		{"TYPE", "NAME", "ROLE", "SERVICE"},
		{"TrafficPermission", "allow-all", "destination", "web"},
		{"TrafficPermission", "allow-all", "source", "web"},
	})
	if r := h.ok("", "inspect", "dp", "web-1", "--policies", "-o", "json"); !strings.Contains(r.stdout, `"role": "destination"`) {
		t.Fatalf("--policies -o json:\n%s", r.stdout)
	}
	if r := h.run("", "inspect", "dp", "nope", "--policies"); r.code != 1 || !strings.Contains(r.stderr, "HTTP 404") {
		t.Fatalf("--policies of a missing dataplane: %d %s", r.code, r.stderr)
	}
	wantTable(t, h.ok("", "inspect", "meshes").stdout, [][]string{
		{"NAME", "DATAPLANES", "POLICIES", "MTLS", "CA-EXPIRY"},
		{"default", "0/1", "1", "off", "-"},
	})
	h.ok("", "inspect", "services")
	if r := h.run("", "inspect", "global"); r.code != 1 || !strings.Contains(r.stderr, "only a zone control plane has a link to global") {
		t.Fatalf("inspect global on standalone: %d %s", r.code, r.stderr)
	}
	for _, args := range [][]string{
		{"generate", "dataplane-token", "--mesh", "default", "--name", "web-1", "--valid-for", "1h"},
		{"generate", "zone-token", "--zone", "east"},
		{"generate", "user-token", "--name", "alice", "--group", "ops"},
	} {
		if r := h.ok("", args...); len(strings.TrimSpace(r.stdout)) < 20 {
			t.Fatalf("%v: %q", args, r.stdout)
		}
	}
	// Bound tokens: no registered Dataplane and no --service is refused;
	// a revoked token gets 401.
	if r := h.run("", "generate", "dataplane-token", "--name", "nobody"); r.code != 1 || !strings.Contains(r.stderr, "--service") {
		t.Fatalf("token for an unregistered dataplane: %d %s", r.code, r.stderr)
	}
	dpTok := filepath.Join(t.TempDir(), "web-9.token")
	r = h.ok("", "generate", "dataplane-token", "--name", "web-9", "--service", "web")
	if err := os.WriteFile(dpTok, []byte(r.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := h.ok("", "revoke", "token", "--token-file", dpTok); !strings.Contains(r.stdout, "revoked token ") {
		t.Fatalf("revoke: %s", r.stdout)
	}
	if r := h.run("", "revoke", "signing-key"); r.code != 2 || !strings.Contains(r.stderr, "--yes") {
		t.Fatalf("rotate without --yes: %d %s", r.code, r.stderr)
	}
	r = h.run("", "delete", "dp", "nope")
	if r.code != 1 || !strings.Contains(r.stderr, "HTTP 404") {
		t.Fatalf("delete missing: %d %s", r.code, r.stderr)
	}
	h.ok("", "delete", "mesh", "default")
	if r := h.ok("", "get", "dp", "-o", "json"); !strings.Contains(r.stdout, `"total": 0`) {
		t.Fatalf("after mesh delete:\n%s", r.stdout)
	}

	// A mesh with a builtin CA: up's ca-service creates the root (10
	// years by default) and inspect meshes shows when it expires.
	h.ok("type: Mesh\nname: secure\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n", "apply", "-f", "-")
	deadline := time.Now().Add(time.Minute)
	for {
		var row []string
		out := h.ok("", "inspect", "meshes", "-o", "wide").stdout
		for _, l := range lines(out) {
			if f := fields(l); len(f) > 0 && f[0] == "secure" {
				row = f
			}
		}
		if len(row) != 7 {
			t.Fatalf("inspect meshes -o wide:\n%s", out)
		}
		if row[4] != "?" {
			exp, err := time.Parse(time.RFC3339, row[4])
			if err != nil || time.Until(exp) < 9*365*24*time.Hour || time.Until(exp) > 11*365*24*time.Hour || row[6] != "ca-1(builtin):"+row[4] {
				t.Fatalf("CA expiry of mesh secure: %q %q (%v)", row[4], row[6], err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the builtin root's expiry not shown within a minute:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
