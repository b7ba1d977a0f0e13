package ingress

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sort"
	"testing"
	"time"

	ingressapp "github.com/weftmesh/weft/ingress-manager/app"
	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/test/e2e/internal/meshtest"
	"github.com/weftmesh/weft/zone-sync/apptest"
)

// taggedDataplaneYAML is a proxyless Dataplane of mesh default on loopback
// with extra inbound tags.
func taggedDataplaneYAML(name, service string, port int, tags map[string]string) string {
	y := fmt.Sprintf("\ntype: Dataplane\nmesh: default\nname: %s\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: %d\n    tags:\n      weft.io/service: %s\n      weft.io/protocol: grpc\n", name, port, service)
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		y += fmt.Sprintf("      %s: %s\n", k, tags[k])
	}
	return y
}

// startTaggedAgent is startAgent for a Dataplane given as YAML.
func startTaggedAgent(t *testing.T, ctx context.Context, z *zone, name, service, dpYAML string) string {
	t.Helper()
	apply(t, z.CP, dpYAML)
	return meshtest.GRPCAgent(t, ctx, z.XDS, name, meshtest.DataplaneToken(t, ctx, z.CP.Store, name, service))
}

// startIngressInstance runs one more built-in ingress in a zone under its
// own ZoneIngress name (advertising its own loopback address, drain 50 ms)
// and returns it with a function that stops it.
func startIngressInstance(t *testing.T, ctx context.Context, log *slog.Logger, z *zone, name string) (*ingressapp.App, func()) {
	return meshtest.StartIngressStoppable(t, ctx, log, z, name, 50*time.Millisecond)
}

// manyCalls makes n RPCs from a testapp client to target, one after the
// other, and counts the replies ("ERR <code>" for errors).
func manyCalls(t *testing.T, control, target string, n int, deadline time.Duration) map[string]int {
	t.Helper()
	q := url.Values{"n": {fmt.Sprint(n)}, "target": {target}, "deadline": {deadline.String()}}
	c := &http.Client{Timeout: 5 * time.Minute}
	resp, err := c.Get("http://" + control + "/calls?" + q.Encode())
	if err != nil {
		t.Fatalf("calls: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]int{}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("calls: %v", err)
	}
	return out
}

// crossZonePolicyYAML is a policy from client to dest with conf (YAML
// indented under conf:).
func crossZonePolicyYAML(typ, name, dest, conf string) string {
	return fmt.Sprintf("\ntype: %s\nmesh: default\nname: %s\nsources:\n- match:\n    weft.io/service: client\ndestinations:\n- match:\n    weft.io/service: '%s'\nconf:\n%s", typ, name, dest, conf)
}

// TestCrossZonePolicies: policies written on global shape calls from
// zone-1 to services reached through zone-2's built-in ingress, as they
// do within a zone (test/e2e/xds TestProxylessPolicies):
//   - a TrafficRoute 80/20 between a local subset (greeter version v1 in
//     zone-1) and a remote one (version v2, in zone-2 beside a v1: the
//     subset's SNI names it and zone-2's ingress routes to v2 only) holds
//     within ±5 % over 1,000 RPCs;
//   - a Retry on a remote destination turns a backend failing every other
//     call into 100 % success; a Timeout on a remote destination cuts a
//     slow backend's calls with DeadlineExceeded;
//   - with two ingress instances in zone-2 (each its own ZoneIngress,
//     advertising its own loopback address: on one host two instances
//     cannot share one address without a load balancer), killing one loses
//     at most the calls in flight on the connections it held, and calls
//     keep succeeding through the other.
//
// TrafficPermission across zones (removed on global → PermissionDenied,
// restored → allowed) is TestCrossZone's.
func TestCrossZonePolicies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c := apptest.Start(t, apptest.Options{Zones: 2, Log: log})
	startServices(t, ctx, log, "global", c.Global, "global")
	z1 := startServices(t, ctx, log, "zone-1", c.Zones[0], "zone")
	z2 := startServices(t, ctx, log, "zone-2", c.Zones[1], "zone")
	// A second ingress instance in zone-2, for the kill below.
	ingressB, killB := startIngressInstance(t, ctx, log, z2, "ingress-b")

	apply(t, c.Global, `
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
---
type: TrafficPermission
mesh: default
name: client-to-all
sources:
- match:
    weft.io/service: client
destinations:
- match:
    weft.io/service: '*'
`)
	apptest.Eventually(t, time.Minute, func() error {
		_, err := z1.CP.Store.Get(ctx, resource.TrafficPermissionType, "default", "client-to-all")
		return err
	})

	type workload struct {
		z       *zone
		name    string
		service string
		tags    map[string]string
		args    []string
	}
	workloads := []workload{
		{z1, "greeter-v1", "greeter", map[string]string{"version": "v1"}, nil},
		{z2, "greeter-v2", "greeter", map[string]string{"version": "v2"}, nil},
		// zone-2 has a v1 too: only a subset SNI keeps the v2 subset's
		// calls off it (and v1 stays local: priority 0).
		{z2, "greeter-v1-zone-2", "greeter", map[string]string{"version": "v1"}, nil},
		{z2, "flaky-1", "flaky", nil, []string{"--fail-every", "2"}},
		{z2, "slow-1", "slow", nil, []string{"--delay", "3s"}},
		{z2, "hello-1", "hello", nil, nil},
	}
	for _, w := range workloads {
		port := freePort(t)
		boot := startTaggedAgent(t, ctx, w.z, w.name, w.service, taggedDataplaneYAML(w.name, w.service, port, w.tags))
		args := append([]string{"server", "--port", fmt.Sprint(port), "--name", w.name}, w.args...)
		start(t, []string{"GRPC_XDS_BOOTSTRAP=" + boot}, args...).WaitLine(t, servingRe, time.Minute)
	}
	clientBoot := startAgent(t, ctx, z1, "client-1", "client", freePort(t))
	client := start(t, []string{"GRPC_XDS_BOOTSTRAP=" + clientBoot, "GRPC_EXPERIMENTAL_XDS_SNI=true"}, "client", "--target", "xds:///greeter.mesh")
	control := client.WaitLine(t, controlRe, time.Minute)[1]
	do := func(target string, n int) map[string]int { return manyCalls(t, control, target, n, 10*time.Second) }

	// zone-1 sees both of zone-2's ingresses offering every remote service.
	apptest.Eventually(t, time.Minute, func() error {
		offering := map[string]int{}
		for _, r := range listIngresses(t, z1) {
			if r.Spec.(*meshv1.ZoneIngress).GetZone() != "zone-2" {
				continue
			}
			for _, s := range r.Spec.(*meshv1.ZoneIngress).GetAvailableServices() {
				offering[s.GetTags()[resource.ServiceTag]]++
			}
		}
		for _, svc := range []string{"greeter", "flaky", "slow", "hello"} {
			if want := map[string]int{"greeter": 4}[svc]; offering[svc] != max(want, 2) {
				return fmt.Errorf("zone-1 sees %d tag sets of %s from zone-2's two ingresses", offering[svc], svc)
			}
		}
		return nil
	})
	// Without a route the local greeter takes every call (priority 0).
	apptest.Eventually(t, time.Minute, func() error {
		if got := do("xds:///greeter.mesh", 20); got["greeter-v1"] != 20 {
			return fmt.Errorf("no route: %v", got)
		}
		return nil
	})

	t.Run("TrafficRoute 80/20 local and remote subsets", func(t *testing.T) {
		apply(t, c.Global, crossZonePolicyYAML("TrafficRoute", "greeter-split", "greeter", `  split:
  - weight: 80
    destination:
      weft.io/service: greeter
      version: v1
  - weight: 20
    destination:
      weft.io/service: greeter
      version: v2
`))
		apptest.Eventually(t, time.Minute, func() error {
			got := do("xds:///greeter.mesh", 100)
			if v1 := got["greeter-v1"]; v1 < 65 || v1 > 95 || got["greeter-v2"] != 100-v1 {
				return fmt.Errorf("not split yet: %v", got)
			}
			return nil
		})
		const n = 1000
		got := do("xds:///greeter.mesh", n)
		share := float64(got["greeter-v1"]) / n
		t.Logf("80/20 local/remote over %d RPCs: %v (local v1 %.1f%%)", n, got, share*100)
		if share < 0.75 || share > 0.85 || got["greeter-v1"]+got["greeter-v2"] != n {
			t.Fatalf("80/20 split not held within ±5%%: %v", got)
		}
	})

	t.Run("Retry on a remote destination", func(t *testing.T) {
		before := do("xds:///flaky.mesh", 100)
		if before["ERR Unavailable"] < 30 || before["flaky-1"] < 30 {
			t.Fatalf("the remote flaky backend does not fail every other call: %v", before)
		}
		apply(t, c.Global, crossZonePolicyYAML("Retry", "flaky-retry", "flaky", `  grpc:
    numRetries: 2
    retryOn: [unavailable]
    backOff:
      baseInterval: 5ms
`))
		apptest.Eventually(t, time.Minute, func() error {
			if got := do("xds:///flaky.mesh", 20); got["flaky-1"] != 20 {
				return fmt.Errorf("still failing: %v", got)
			}
			return nil
		})
		got := do("xds:///flaky.mesh", 200)
		t.Logf("remote, without Retry over 100 RPCs: %v; with Retry over 200: %v", before, got)
		if got["flaky-1"] != 200 {
			t.Fatalf("with Retry: %v", got)
		}
	})

	t.Run("Timeout on a remote destination", func(t *testing.T) {
		began := time.Now()
		if got := do("xds:///slow.mesh", 1); got["slow-1"] != 1 {
			t.Fatalf("remote slow backend without a Timeout: %v", got)
		}
		if d := time.Since(began); d < 3*time.Second {
			t.Fatalf("the slow backend answered in %s", d)
		}
		apply(t, c.Global, crossZonePolicyYAML("Timeout", "slow-timeout", "slow", `  grpc:
    maxStreamDuration: 500ms
`))
		apptest.Eventually(t, time.Minute, func() error {
			if got := do("xds:///slow.mesh", 1); got["ERR DeadlineExceeded"] != 1 {
				return fmt.Errorf("not cut: %v", got)
			}
			return nil
		})
		for i := 0; i < 5; i++ {
			began := time.Now()
			got := do("xds:///slow.mesh", 1)
			took := time.Since(began)
			// Cut at the configured 500 ms, far from the backend's 3 s
			// (generous bound for a loaded machine).
			if got["ERR DeadlineExceeded"] != 1 || took < 450*time.Millisecond || took > 2500*time.Millisecond {
				t.Fatalf("call %d: %v after %s, want DeadlineExceeded after about 500ms", i, got, took)
			}
		}
	})

	t.Run("killing one of two ingress instances", func(t *testing.T) {
		// Both instances carry connections of the client (round robin
		// over the two endpoints of zone-2's locality).
		apptest.Eventually(t, time.Minute, func() error {
			do("xds:///hello.mesh", 20)
			a, b := z2.Ingress.Proxy().Active(), ingressB.Proxy().Active()
			if a == 0 || b == 0 {
				return fmt.Errorf("open connections: ingress %d, ingress-b %d", a, b)
			}
			return nil
		})
		held := ingressB.Proxy().Active()
		// Calls run while the instance is killed.
		during := make(chan map[string]int, 1)
		go func() {
			q := url.Values{"n": {"400"}, "target": {"xds:///hello.mesh"}, "deadline": {"10s"}}
			resp, err := (&http.Client{Timeout: 5 * time.Minute}).Get("http://" + control + "/calls?" + q.Encode())
			out := map[string]int{}
			if err == nil {
				_ = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
			} else {
				out["transport "+err.Error()] = 1
			}
			during <- out
		}()
		killB()
		killed := time.Now()
		got := <-during
		failed := 400 - got["hello-1"]
		if got["hello-1"] == 0 {
			t.Fatalf("no call succeeded across the kill: %v", got)
		}
		t.Logf("ingress-b held %d connections; 400 calls across the kill: %v", held, got)
		if failed > held {
			t.Fatalf("%d calls failed across the kill, more than the %d connections ingress-b held: %v", failed, held, got)
		}
		// The client reconnects through the remaining instance within a
		// few seconds; from then on every call succeeds.
		apptest.Eventually(t, 30*time.Second, func() error {
			if got := do("xds:///hello.mesh", 20); got["hello-1"] != 20 {
				return fmt.Errorf("after the kill: %v", got)
			}
			return nil
		})
		t.Logf("calls succeed %s after the kill", time.Since(killed).Round(time.Millisecond))
		if got := do("xds:///hello.mesh", 200); got["hello-1"] != 200 {
			t.Fatalf("after the kill: %v", got)
		}
	})
}
