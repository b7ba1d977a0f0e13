// Package ingress runs cross-zone traffic end to end: a global control
// plane and two zones (zone-sync between them, each zone with its own etcd,
// ca-service, xds-server and ingress-manager with the built-in ingress),
// and real proxyless grpc-go applications (test/e2e/xds/testapp) whose
// bootstrap and certificates come from weft-dp's agent. The client in
// zone-1 calls xds:///greeter.mesh; the greeter runs in zone-2 behind its
// ingress, which routes by SNI without terminating TLS.
package ingress

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	ingressapp "github.com/weftmesh/weft/ingress-manager/app"
	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/test/e2e/internal/meshtest"
	eproc "github.com/weftmesh/weft/test/e2e/internal/proc"
	"github.com/weftmesh/weft/zone-sync/apptest"
)

var binDir string

// zone is one control plane's services (meshtest.Zone).
type zone = meshtest.Zone

var (
	startServices = meshtest.StartServices
	apply         = meshtest.Apply
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "weft-ingress-e2e")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := func() int {
		defer os.RemoveAll(dir)
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "testapp"), "github.com/weftmesh/weft/test/e2e/xds/testapp")
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build testapp:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

const permissionYAML = `
type: TrafficPermission
mesh: default
name: client-to-greeter
sources:
- match:
    weft.io/service: client
destinations:
- match:
    weft.io/service: greeter
`

// startAgent registers a Dataplane in the zone and runs what
// `weft-dp run --proxy-type grpc` runs; it returns the bootstrap path.
func startAgent(t *testing.T, ctx context.Context, z *zone, name, service string, port int) string {
	t.Helper()
	apply(t, z.CP, eproc.DataplaneYAML(name, service, port))
	return meshtest.GRPCAgent(t, ctx, z.XDS, name, meshtest.DataplaneToken(t, ctx, z.CP.Store, name, service))
}

// The shared process helpers (package proc).
var (
	call     = eproc.Call
	freePort = eproc.FreePort
)

func start(t *testing.T, env []string, args ...string) *eproc.Proc {
	t.Helper()
	return eproc.Start(t, env, filepath.Join(binDir, "testapp"), args...)
}

var (
	controlRe = regexp.MustCompile(`^CONTROL (\S+)`)
	servingRe = regexp.MustCompile(`^SERVING`)
)

func TestCrossZone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c := apptest.Start(t, apptest.Options{Zones: 2, Log: log})
	startServices(t, ctx, log, "global", c.Global, "global")
	z1 := startServices(t, ctx, log, "zone-1", c.Zones[0], "zone")
	z2 := startServices(t, ctx, log, "zone-2", c.Zones[1], "zone")

	apply(t, c.Global, `
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
---`+permissionYAML)
	for _, z := range []*zone{z1, z2} {
		apptest.Eventually(t, time.Minute, func() error {
			_, err := z.CP.Store.Get(ctx, resource.TrafficPermissionType, "default", "client-to-greeter")
			return err
		})
	}

	// greeter in zone-2 only; client in zone-1.
	greeterPort := freePort(t)
	greeterBoot := startAgent(t, ctx, z2, "greeter-1", "greeter", greeterPort)
	greeter := start(t, []string{"GRPC_XDS_BOOTSTRAP=" + greeterBoot, "TESTAPP_NAME=zone-2"}, "server", "--port", fmt.Sprint(greeterPort))
	greeter.WaitLine(t, servingRe, time.Minute)
	clientBoot := startAgent(t, ctx, z1, "client-1", "client", freePort(t))
	client := start(t, []string{"GRPC_XDS_BOOTSTRAP=" + clientBoot, "GRPC_EXPERIMENTAL_XDS_SNI=true"}, "client", "--target", "xds:///greeter.mesh")
	control := client.WaitLine(t, controlRe, time.Minute)[1]

	// zone-2's ZoneIngress reaches zone-1 with the greeter.
	apptest.Eventually(t, time.Minute, func() error {
		for _, r := range listIngresses(t, z1) {
			for _, s := range r.Spec.(*meshv1.ZoneIngress).GetAvailableServices() {
				if s.GetTags()[resource.ServiceTag] == "greeter" && s.GetInstances() == 1 {
					return nil
				}
			}
		}
		return fmt.Errorf("zone-1 does not see zone-2's greeter yet")
	})

	expect := func(want string, within time.Duration) {
		t.Helper()
		start := time.Now()
		apptest.Eventually(t, within, func() error {
			if got := call(control); got != want {
				return fmt.Errorf("call: %s", got)
			}
			return nil
		})
		t.Logf("%q after %s", want, time.Since(start).Round(time.Millisecond))
	}
	// Cross zone, through zone-2's ingress: the greeter sees the client's
	// SPIFFE ID, so the TLS session is the client's, end to end.
	expect("OK spiffe://default/client zone-2", time.Minute)
	routed := func() float64 { return counter(t, z2.Ingress, "weft_ingress_connections_total") }
	if routed() < 1 {
		t.Fatalf("zone-2's ingress routed no connection")
	}

	// A TrafficPermission change on global applies across zones.
	if err := c.Global.Store.Delete(ctx, resource.TrafficPermissionType, "default", "client-to-greeter", 0); err != nil {
		t.Fatal(err)
	}
	apptest.Eventually(t, 30*time.Second, func() error {
		if got := call(control); !strings.HasPrefix(got, "ERR PermissionDenied") {
			return fmt.Errorf("call: %s", got)
		}
		return nil
	})
	apply(t, c.Global, permissionYAML)
	expect("OK spiffe://default/client zone-2", 30*time.Second)

	// A greeter in zone-1 takes the traffic (local first).
	localPort := freePort(t)
	localBoot := startAgent(t, ctx, z1, "greeter-z1", "greeter", localPort)
	local := start(t, []string{"GRPC_XDS_BOOTSTRAP=" + localBoot, "TESTAPP_NAME=zone-1"}, "server", "--port", fmt.Sprint(localPort))
	local.WaitLine(t, servingRe, time.Minute)
	expect("OK spiffe://default/client zone-1", 30*time.Second)
	for i := 0; i < 20; i++ {
		if got := call(control); got != "OK spiffe://default/client zone-1" {
			t.Fatalf("with a local greeter, call %d: %s", i, got)
		}
	}

	// Stopped: traffic returns to zone-2 within 5 s, and every call after
	// that window succeeds.
	local.Kill()
	stopped := time.Now()
	expect("OK spiffe://default/client zone-2", 5*time.Second)
	for i := 0; i < 20; i++ {
		if got := call(control); got != "OK spiffe://default/client zone-2" {
			t.Fatalf("after failover, call %d: %s", i, got)
		}
	}
	t.Logf("failed over to zone-2 within %s", time.Since(stopped).Round(time.Millisecond))
}

func listIngresses(t *testing.T, z *zone) []*resource.Resource {
	t.Helper()
	rs, _, err := z.CP.Store.ListAll(context.Background(), resource.ZoneIngressType, "")
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func counter(t *testing.T, a *ingressapp.App, name string) float64 {
	t.Helper()
	mfs, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
