package xds

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/config"
	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// startReplicaArgs is startReplica with extra xds-server flags.
func (e *env) startReplicaArgs(t *testing.T, instance string, extra ...string) *replica {
	p := start(t, []string{config.EncryptionKeysEnv + "=" + keyText}, "xds-server",
		append([]string{"--address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0",
			"--instance-id", instance, "--etcd-endpoints", e.etcd.Endpoint(),
			"--ca-address", e.caAddr, "--insight-ttl", "2s", "--log-level", "info"}, extra...)...)
	m := p.WaitLine(t, addrRe, 30*time.Second)
	return &replica{proc: p, addr: m[1], instance: instance}
}

// TestMaxConnectionAgeRebalances: a scale-out. Proxyless grpc-go clients
// (grpc-go's own xDS client, weft-dp's bootstrap) sit on replica-a, which
// runs with --max-connection-age 3s; a new replica-b joins and the "load
// balancer" (the forwarder) sends new connections to it. Within the age
// (+10% jitter, + grace) every proxy is moved off replica-a onto
// replica-b, gets its full configuration there (a permission change made
// after the move takes effect), and no RPC fails meanwhile: grpc-go keeps
// its last configuration across the reconnect, so there is no gap.
func TestMaxConnectionAgeRebalances(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	const age, grace = 3 * time.Second, time.Second
	a := e.startReplicaArgs(t, "replica-a", "--max-connection-age", age.String(), "--max-connection-age-grace", grace.String())
	fwd := newForwarder(t, a.addr)

	backendPort, clientPort := freePort(t), freePort(t)
	e.apply(meshYAML + "---" + dataplaneYAML("backend-1", "backend", backendPort) +
		"---" + dataplaneYAML("client-1", "client", clientPort) + "---" + permissionYAML)
	backendBoot := e.startWeftDP(t, fwd.addr(), "backend-1", "")
	clientBoot := e.startAgent(t, ctx, fwd.addr(), "client-1")
	server := start(t, []string{"GRPC_XDS_BOOTSTRAP=" + backendBoot}, "testapp", "server", "--port", fmt.Sprint(backendPort))
	server.WaitLine(t, servingRe, 30*time.Second)
	client := start(t, []string{"GRPC_XDS_BOOTSTRAP=" + clientBoot, "GRPC_EXPERIMENTAL_XDS_SNI=true"}, "testapp", "client", "--target", "xds:///backend.mesh")
	control := client.WaitLine(t, controlRe, 30*time.Second)[1]
	eventually(t, 30*time.Second, func() error {
		if got := call(control); got != "OK spiffe://default/client" {
			return fmt.Errorf("call: %s", got)
		}
		return nil
	})

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

	// Scale out: replica-b joins, new connections go to it first.
	b := e.startReplicaArgs(t, "replica-b")
	fwd.mu.Lock()
	fwd.backends = []string{b.addr, a.addr}
	fwd.mu.Unlock()
	scaled := time.Now()

	// Calls run back to back through the move; none may fail.
	var calls, failed atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			calls.Add(1)
			if got := call(control); got != "OK spiffe://default/client" {
				failed.Add(1)
				lastErr.Store(got)
			}
		}
	}()
	// Moved: every subscription of both proxies is on replica-b. Slack for
	// a loaded CI machine on top of age + 10% jitter + grace.
	eventually(t, age*11/10+grace+20*time.Second, func() error {
		for _, n := range []string{"client-1", "backend-1"} {
			got := connectedTo(n)
			if len(got) == 0 {
				return fmt.Errorf("%s: no insight", n)
			}
			for _, inst := range got {
				if inst != "replica-b" {
					return fmt.Errorf("%s on %v", n, got)
				}
			}
		}
		return nil
	})
	moved := time.Since(scaled)
	// Keep calling a little after the move (the old connection's grace).
	time.Sleep(grace)
	close(stop)
	<-done
	if calls.Load() == 0 {
		t.Fatal("no calls made during the move")
	}
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d calls failed during the move; last: %v", f, calls.Load(), lastErr.Load())
	}
	t.Logf("both proxies on replica-b %s after it joined (max connection age %s, grace %s); %d calls, none failed",
		moved.Round(time.Millisecond), age, grace, calls.Load())

	// The configuration now comes from replica-b: a permission change
	// takes effect.
	e.delete(resource.TrafficPermissionType, "default", "client-to-backend")
	eventually(t, 10*time.Second, func() error {
		if got := call(control); !strings.HasPrefix(got, "ERR PermissionDenied") {
			return fmt.Errorf("call: %s", got)
		}
		return nil
	})
	e.apply(permissionYAML)
	eventually(t, 10*time.Second, func() error {
		if got := call(control); got != "OK spiffe://default/client" {
			return fmt.Errorf("call: %s", got)
		}
		return nil
	})
}
