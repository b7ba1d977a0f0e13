package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/xdsnames"
)

func TestMain(m *testing.M) {
	// The control plane re-executes this test binary as its xds-server.
	if os.Getenv(roleEnv) == "xds-server" {
		os.Exit(xdsServer())
	}
	os.Exit(m.Run())
}

// TestChurnConverges is correctness under load, CI-sized: 200 simulated
// Envoy proxies on one xds-server (a child process, TLS, dataplane
// tokens), then 10% of the Dataplanes churn at once — 10 re-registered at
// a new address and service (their proxies reconnect), 10 deleted (their
// proxies gone), 10 new ones connecting — while every proxy calls svc-0,
// whose endpoints churn too. After that, a fresh replica (new process,
// empty cache, the same etcd) computes every current Dataplane's
// configuration for a fresh proxy, and every long-lived proxy's last ACKed
// configuration must equal it, resource by resource (no proxy left on a
// stale version).
func TestChurnConverges(t *testing.T) {
	const n, services = 200, 20
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	o := options{n: n, services: services, conc: 16, kind: xdsnames.KindEnvoy, mesh: "default", log: io.Discard}
	cp, err := startControlPlane(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.stop()
	r := &rest{base: cp.apiURL, token: cp.token, hc: &http.Client{}}
	toks, err := register(ctx, r, o.mesh, 0, n, services, o.conc)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := cpTLS(ctx, cp.xdsAdmin)
	if err != nil {
		t.Fatal(err)
	}
	d := dialOpts{addr: cp.xds, tls: tc}
	f, _, err := connect(ctx, proxySpecs(o.mesh, o.kind, toks, 0, services), d, o.conc, 90*time.Second, nil)
	if f != nil {
		defer f.stop()
	}
	if err != nil {
		t.Fatalf("%v\nxds-server log:\n%s", err, cp.xdsLogTail())
	}

	// Churn 10% (every 10th Dataplane, so svc-0's endpoints churn too),
	// and add 10.
	live := map[string]*proxy{}
	for _, p := range f.proxies {
		live[p.spec.Name] = p
	}
	var respawn []proxySpec
	for i := 0; i < n; i += 10 {
		name := dpName(i)
		p := live[name]
		p.cancel()
		<-p.done
		delete(live, name)
		if _, err := r.do(ctx, "DELETE", "/meshes/default/dataplanes/"+name, nil); err != nil {
			t.Fatal(err)
		}
		if (i/10)%2 == 1 {
			continue // gone for good
		}
		dp := dataplane(i, services)
		nw := dp["networking"].(map[string]any)
		nw["address"] = fmt.Sprintf("10.200.%d.%d", i>>8&255, i&255)
		nw["inbound"].([]any)[0].(map[string]any)["tags"].(map[string]string)["weft.io/service"] = fmt.Sprintf("svc-%d", (i+1)%services)
		if _, err := r.do(ctx, "PUT", "/meshes/default/dataplanes/"+name, dp); err != nil {
			t.Fatal(err)
		}
		b, err := r.do(ctx, "POST", "/tokens/dataplane", map[string]any{"mesh": "default", "name": name, "validFor": "1h"})
		if err != nil {
			t.Fatal(err)
		}
		respawn = append(respawn, proxySpec{Mesh: "default", Name: name, Kind: o.kind, Token: tokenOf(t, b)})
	}
	added, err := register(ctx, r, o.mesh, n, n+10, services, o.conc)
	if err != nil {
		t.Fatal(err)
	}
	respawn = append(respawn, proxySpecs(o.mesh, o.kind, added, n, services)...)
	f2, _, err := connect(ctx, respawn, d, o.conc, 90*time.Second, nil)
	if f2 != nil {
		defer f2.stop()
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f2.proxies {
		live[p.spec.Name] = p
	}
	if len(live) != n {
		t.Fatalf("%d live proxies, want %d", len(live), n)
	}

	// A fresh replica computes every live Dataplane's configuration.
	freshAddr, _, err := cp.newReplica(ctx, "fresh")
	if err != nil {
		t.Fatal(err)
	}
	var specs []proxySpec
	for _, p := range live {
		specs = append(specs, p.spec)
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	fresh, _, err := connect(ctx, specs, dialOpts{addr: freshAddr, tls: tc}, o.conc, 90*time.Second, nil)
	if fresh != nil {
		defer fresh.stop()
	}
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]map[string][]byte{}
	for _, p := range fresh.proxies {
		want[p.spec.Name] = p.snapshot()
	}
	// The new endpoints reach every proxy (a stream on the fresh replica
	// saw the store after the churn, so its configuration is the target).
	var diff string
	deadline := time.Now().Add(60 * time.Second)
	for {
		diff = ""
		stale := 0
		for name, p := range live {
			if d := compareSnapshots(p.snapshot(), want[name]); d != "" {
				stale++
				if diff == "" {
					diff = name + ": " + d
				}
			}
		}
		if stale == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d proxies differ from a fresh generator's configuration; first: %s", stale, len(live), diff)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Every live proxy calls svc-0, whose members all churned: the old
	// ones (re-registered as svc-1) are gone, the added dp-00200 is in.
	for name, p := range live {
		eds := p.lastACKed(resourceTypeEDS)
		if !hasEndpoint("10.1.0.200").ok(eds) || hasEndpoint("10.1.0.0").ok(eds) {
			t.Fatalf("%s: svc-0's endpoints not churned (want 10.1.0.200, not 10.1.0.0)", name)
		}
	}
}

const resourceTypeEDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

func tokenOf(t *testing.T, b []byte) string {
	t.Helper()
	i := bytes.Index(b, []byte(`"token":"`))
	if i < 0 {
		t.Fatalf("no token in %s", b)
	}
	rest := b[i+len(`"token":"`):]
	return string(rest[:bytes.IndexByte(rest, '"')])
}
