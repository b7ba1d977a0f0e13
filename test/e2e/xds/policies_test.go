package xds

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/resource"
)

// taggedDataplaneYAML is a proxyless Dataplane with extra inbound tags.
func taggedDataplaneYAML(name, service string, port int, tags map[string]string) string {
	y := dataplaneYAML(name, service, port)
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

// calls makes n RPCs from the client to target (one after the other) and
// counts the replies (the server's name) and errors ("ERR <code>").
func calls(t *testing.T, control, target string, n int, deadline time.Duration) map[string]int {
	t.Helper()
	q := url.Values{"n": {fmt.Sprint(n)}, "target": {target}, "deadline": {deadline.String()}}
	resp, err := http.Get("http://" + control + "/calls?" + q.Encode())
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

// clientPolicyYAML is a policy from the client to a destination service
// with the given conf (YAML indented under conf:, or "" for none).
func clientPolicyYAML(typ, name, dest, conf string) string {
	y := fmt.Sprintf("\ntype: %s\nmesh: default\nname: %s\nsources:\n- match:\n    weft.io/service: client\ndestinations:\n- match:\n    weft.io/service: '%s'\n", typ, name, dest)
	if conf != "" {
		y += "conf:\n" + conf
	}
	return y
}

var clientToAllYAML = clientPolicyYAML("TrafficPermission", "client-to-all", "*", "")

func routeYAML(v1, v2 int) string {
	return clientPolicyYAML("TrafficRoute", "backend-split", "backend", fmt.Sprintf(`  split:
  - weight: %d
    destination:
      weft.io/service: backend
      version: v1
  - weight: %d
    destination:
      weft.io/service: backend
      version: v2
`, v1, v2))
}

// TestProxylessPolicies: grpc-go clients and servers with weft-dp
// bootstraps against a real xds-server and ca-service; every policy is
// observed in the RPCs it shapes.
func TestProxylessPolicies(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := e.startReplica(t, "replica-a")

	type backend struct {
		name, service string
		tags          map[string]string
		args          []string
	}
	backends := []backend{
		{"backend-v1", "backend", map[string]string{"version": "v1"}, nil},
		{"backend-v2", "backend", map[string]string{"version": "v2"}, nil},
		{"flaky-1", "flaky", nil, []string{"--fail-every", "2"}},
		{"slow-1", "slow", nil, []string{"--delay", "3s"}},
		{"od-1", "od", nil, nil},
		{"od-2", "od", nil, nil},
		{"od-bad", "od", nil, []string{"--fail-every", "1"}},
	}
	yaml := meshYAML + "---" + clientToAllYAML + "---" + dataplaneYAML("client-1", "client", freePort(t))
	ports := map[string]int{}
	for _, b := range backends {
		ports[b.name] = freePort(t)
		yaml += "---" + taggedDataplaneYAML(b.name, b.service, ports[b.name], b.tags)
	}
	e.apply(yaml)
	for _, b := range backends {
		boot := e.startAgent(t, ctx, r.addr, b.name)
		args := append([]string{"server", "--port", fmt.Sprint(ports[b.name]), "--name", b.name}, b.args...)
		start(t, []string{"GRPC_XDS_BOOTSTRAP=" + boot}, "testapp", args...).WaitLine(t, servingRe, 30*time.Second)
	}
	clientBoot := e.startAgent(t, ctx, r.addr, "client-1")
	client := start(t, []string{"GRPC_XDS_BOOTSTRAP=" + clientBoot, "GRPC_EXPERIMENTAL_XDS_SNI=true"}, "testapp", "client", "--target", "xds:///backend.mesh")
	control := client.WaitLine(t, controlRe, 30*time.Second)[1]
	do := func(target string, n int) map[string]int { return calls(t, control, target, n, 10*time.Second) }

	// Without a route both versions answer.
	eventually(t, 30*time.Second, func() error {
		if got := do("xds:///backend.mesh", 20); got["backend-v1"] == 0 || got["backend-v2"] == 0 || got["backend-v1"]+got["backend-v2"] != 20 {
			return fmt.Errorf("no route: %v", got)
		}
		return nil
	})

	t.Run("TrafficRoute 80/20 then 0/100", func(t *testing.T) {
		e.apply(routeYAML(80, 20))
		// The route is in place once only subsets answer; wait for a
		// batch that looks split, then measure.
		eventually(t, 10*time.Second, func() error {
			got := do("xds:///backend.mesh", 100)
			if v1 := got["backend-v1"]; v1 < 65 || v1 > 95 || got["backend-v2"] != 100-v1 {
				return fmt.Errorf("not split yet: %v", got)
			}
			return nil
		})
		const n = 1000
		got := do("xds:///backend.mesh", n)
		share := float64(got["backend-v1"]) / n
		t.Logf("80/20 over %d RPCs: %v (v1 %.1f%%)", n, got, share*100)
		if share < 0.75 || share > 0.85 || got["backend-v1"]+got["backend-v2"] != n {
			t.Fatalf("80/20 split not held within ±5%%: %v", got)
		}
		updated := time.Now()
		e.apply(routeYAML(0, 100))
		eventually(t, 5*time.Second, func() error {
			if got := do("xds:///backend.mesh", 20); got["backend-v2"] != 20 {
				return fmt.Errorf("not flipped: %v", got)
			}
			return nil
		})
		t.Logf("flipped to 0/100 %s after the update", time.Since(updated).Round(time.Millisecond))
		if got := do("xds:///backend.mesh", 200); got["backend-v2"] != 200 {
			t.Fatalf("after the flip: %v", got)
		}
	})

	t.Run("FaultInjection abort 50%", func(t *testing.T) {
		// A fault names its destination's (HTTP-family) protocol, as in Kuma.
		fault := strings.Replace(clientPolicyYAML("FaultInjection", "backend-abort", "backend", `  abort:
    percentage: 50
    httpStatus: 503
`), "weft.io/service: 'backend'\n", "weft.io/service: 'backend'\n    weft.io/protocol: grpc\n", 1)
		e.apply(fault)
		eventually(t, 10*time.Second, func() error {
			if got := do("xds:///backend.mesh", 50); got["ERR Unavailable"] == 0 {
				return fmt.Errorf("no fault yet: %v", got)
			}
			return nil
		})
		const n = 1000
		got := do("xds:///backend.mesh", n)
		share := float64(got["ERR Unavailable"]) / n
		t.Logf("abort 50%% over %d RPCs: %v (%.1f%% aborted)", n, got, share*100)
		if share < 0.40 || share > 0.60 {
			t.Fatalf("abort share %.3f not within 50%% ±10%%: %v", share, got)
		}
		e.delete(resource.FaultInjectionType, "default", "backend-abort")
		eventually(t, 10*time.Second, func() error {
			if got := do("xds:///backend.mesh", 50); got["backend-v2"] != 50 {
				return fmt.Errorf("fault still there: %v", got)
			}
			return nil
		})
	})

	t.Run("Retry makes a flaky backend reliable", func(t *testing.T) {
		before := do("xds:///flaky.mesh", 100)
		if before["ERR Unavailable"] < 30 {
			t.Fatalf("flaky backend does not fail every other call: %v", before)
		}
		e.apply(clientPolicyYAML("Retry", "flaky-retry", "flaky", `  grpc:
    numRetries: 2
    retryOn: [unavailable]
    backOff:
      baseInterval: 5ms
`))
		eventually(t, 10*time.Second, func() error {
			if got := do("xds:///flaky.mesh", 20); got["flaky-1"] != 20 {
				return fmt.Errorf("still failing: %v", got)
			}
			return nil
		})
		got := do("xds:///flaky.mesh", 200)
		t.Logf("without Retry: %v; with Retry over 200 RPCs: %v", before, got)
		if got["flaky-1"] != 200 {
			t.Fatalf("with Retry: %v", got)
		}
	})

	t.Run("Timeout cuts a slow backend", func(t *testing.T) {
		began := time.Now()
		if got := do("xds:///slow.mesh", 1); got["slow-1"] != 1 {
			t.Fatalf("slow backend without a Timeout: %v", got)
		}
		if d := time.Since(began); d < 3*time.Second {
			t.Fatalf("slow backend answered in %s", d)
		}
		e.apply(clientPolicyYAML("Timeout", "slow-timeout", "slow", `  grpc:
    maxStreamDuration: 500ms
`))
		eventually(t, 20*time.Second, func() error {
			if got := do("xds:///slow.mesh", 1); got["ERR DeadlineExceeded"] != 1 {
				return fmt.Errorf("not cut: %v", got)
			}
			return nil
		})
		for i := 0; i < 5; i++ {
			began := time.Now()
			got := do("xds:///slow.mesh", 1)
			took := time.Since(began)
			if got["ERR DeadlineExceeded"] != 1 || took < 450*time.Millisecond || took > 2500*time.Millisecond {
				t.Fatalf("call %d: %v after %s, want DeadlineExceeded after about 500ms", i, got, took)
			}
		}
	})

	t.Run("CircuitBreaker outlier detection ejects a failing endpoint", func(t *testing.T) {
		// A new channel's round robin uses the endpoints connected so far:
		// until all three are, a batch may miss the failing one.
		var before map[string]int
		eventually(t, 30*time.Second, func() error {
			if before = do("xds:///od.mesh", 90); before["ERR Unavailable"] < 15 || before["od-1"] == 0 || before["od-2"] == 0 {
				return fmt.Errorf("not every endpoint answers yet (the failing one must fail): %v", before)
			}
			return nil
		})
		e.apply(clientPolicyYAML("CircuitBreaker", "od-outliers", "od", `  interval: 1s
  baseEjectionTime: 60s
  maxEjectionPercent: 50
  detectors:
    standardDeviation:
      requestVolume: 5
      minimumHosts: 3
      factor: 1
`))
		eventually(t, 30*time.Second, func() error {
			if got := do("xds:///od.mesh", 30); got["ERR Unavailable"] != 0 {
				return fmt.Errorf("not ejected: %v", got)
			}
			return nil
		})
		got := do("xds:///od.mesh", 100)
		t.Logf("before ejection over 90 RPCs: %v; after: %v", before, got)
		if got["od-1"]+got["od-2"] != 100 || got["od-1"] == 0 || got["od-2"] == 0 {
			t.Fatalf("after ejection: %v", got)
		}
	})
}
