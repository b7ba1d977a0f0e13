package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/pkg/xdsnames"
)

// TestDeltaFleetConverges: -delta through the benchmark's own run: 40
// Envoy-like proxies on delta streams (a real xds-server child process)
// are configured, and the endpoint (a) and mesh-wide policy (b) changes
// reach every one of them, each ACKing the response after which it holds
// the change; every proxy's state was built from delta responses. Then 4
// Dataplanes churn (a new address and proxy each), and every proxy's
// state, built response by response (resources added, updated and
// removed), must equal what a fresh replica serves a SotW twin.
func TestDeltaFleetConverges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	o := options{n: 40, services: 10, conc: 16, kind: xdsnames.KindEnvoy, mesh: "default", meshes: 1, delta: true,
		idle: 200 * time.Millisecond, timeout: 90 * time.Second, log: io.Discard,
		churn: 6 * time.Second, churnRate: 1}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	res, err := run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.configured) != 40 || len(res.endpoint) != 40 || len(res.policy) != 40 {
		t.Fatalf("%d configured, %d converged on (a), %d on (b); want 40", len(res.configured), len(res.endpoint), len(res.policy))
	}
	if res.deltaProxies != 40 {
		t.Fatalf("%d of 40 proxies hold delta state", res.deltaProxies)
	}
	if c := res.churn; c == nil || c.events != 4 || c.checked != 40 || c.stale != 0 {
		t.Fatalf("churn: %+v; want 4 events, 40 proxies checked equal to a fresh replica's", c)
	}
}

// TestDeltaGRPCRefused: there is no grpc-like delta proxy.
func TestDeltaGRPCRefused(t *testing.T) {
	if err := (options{kind: xdsnames.KindGRPC, delta: true}).validate(); err == nil {
		t.Fatal("-delta -kind grpc accepted")
	}
	for _, f := range []float64{-0.1, 1.5} {
		if err := (options{kind: xdsnames.KindEnvoy, nack: f}).validate(); err == nil {
			t.Fatalf("-nack %v accepted", f)
		}
	}
}

// TestNackPick: -nack F picks F of the proxies, spread.
func TestNackPick(t *testing.T) {
	n := 0
	for i := 0; i < 1000; i++ {
		if nackPick(i, 0.1) {
			n++
			if i%10 != 9 {
				t.Fatalf("proxy %d picked", i)
			}
		}
	}
	if n != 100 || nackPick(0, 0) || !nackPick(0, 1) {
		t.Fatalf("0.1 of 1000 picked %d", n)
	}
}

// TestNackFleet: -nack, SotW and delta, CI-sized. 40 Envoy-like proxies,
// 10 of them NACKing the first response that carries the endpoint change:
// the other 30 converge, each NACKing proxy sent one NACK, the
// xds-server's weft_xds_nacks_total rose by at least as many, and a
// NACKing proxy's DataplaneInsight counts it. Over SotW the server sends
// the snapshot again after its NACK backoff and the NACKing proxies ACK
// it; over delta it does not resend (it recorded the resources as sent),
// so they are only accounted for.
func TestNackFleet(t *testing.T) {
	defer func(w time.Duration) { nackWait = w }(nackWait)
	nackWait = 3 * time.Second
	for _, delta := range []bool{false, true} {
		name := "sotw"
		if delta {
			name = "delta"
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			o := options{n: 40, services: 10, conc: 16, kind: xdsnames.KindEnvoy, mesh: "default", meshes: 1, delta: delta, nack: 0.25,
				timeout: 90 * time.Second, log: io.Discard}
			cp, r, f := startTestFleet(ctx, t, o)
			times, n, so, err := f.scenario(ctx, o, cp.xdsAdmin, cp.xdsPID, hasEndpoint("10.250.0.1"), func() error {
				dp := dataplane(0, o.services)
				dp["networking"].(map[string]any)["address"] = "10.250.0.1"
				_, err := r.do(ctx, "PUT", "/meshes/default/dataplanes/new-endpoint", dp)
				return err
			})
			if err != nil {
				t.Fatalf("%v\nxds-server log:\n%s", err, cp.xdsLogTail())
			}
			t.Logf("%s", n)
			if len(times) != 30 || n.proxies != 10 || n.sent != 10 || n.metric < 10 {
				t.Fatalf("%d ACKing proxies converged (want 30); %s (want 10 proxies, 10 NACKs, metric +10)", len(times), n)
			}
			if len(n.converged)+n.missing != 10 {
				t.Fatalf("NACKing proxies: %d converged + %d missing, want 10", len(n.converged), n.missing)
			}
			if !delta && len(n.converged) != 10 {
				t.Fatalf("SotW: the server's resend after a NACK reached %d of 10 NACKing proxies", len(n.converged))
			}
			// Over SotW the server matched every proxy's ACK of the new
			// EDS version (the NACKing ones' after the resend); over
			// delta the 30 ACKing proxies' (a delta ACK names the nonce,
			// which the server maps to the response's version).
			if want := map[bool]float64{false: 40, true: 30}[delta]; so.serverAcks < want {
				t.Fatalf("delta=%v: weft_xds_acks_total +%.0f, want at least %.0f", delta, so.serverAcks, want)
			}
			// dp-00003 is a NACKing one (0.25: every fourth).
			if !nackPick(3, o.nack) {
				t.Fatal("dp-00003 does not NACK")
			}
			waitInsightNacks(ctx, t, r, "default", dpName(3))
		})
	}
}

// waitInsightNacks waits (deadline 20 s) until the Dataplane's insight
// counts a NACK on some type (the xds-server flushes insights each second).
func waitInsightNacks(ctx context.Context, t *testing.T, r *rest, mesh, name string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		b, err := r.do(ctx, "GET", "/meshes/"+mesh+"/dataplanes+insights/"+name, nil)
		if err == nil {
			last = string(b)
			var v struct {
				Insight struct {
					Subscriptions []struct {
						Types map[string]struct {
							Nacks json.RawMessage `json:"nacks"`
						} `json:"types"`
					} `json:"subscriptions"`
				} `json:"insight"`
			}
			if json.Unmarshal(b, &v) == nil {
				for _, s := range v.Insight.Subscriptions {
					for _, ts := range s.Types {
						q, _ := strconv.Unquote(string(ts.Nacks))
						if q == "" {
							q = string(ts.Nacks)
						}
						if n, _ := strconv.Atoi(q); n > 0 {
							return
						}
					}
				}
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("%s's insight shows no NACK: %s", name, last)
}

// TestDeltaState: a delta response updates and removes by name without
// touching the state it was applied to (a NACKed response leaves the
// proxy's state as it was), and a changed named subscription is sent as
// the difference, dropping the unsubscribed resources the proxy held.
func TestDeltaState(t *testing.T) {
	res := func(name, version string) *discoveryv3.Resource {
		return &discoveryv3.Resource{Name: name, Version: version, Resource: &anypb.Any{TypeUrl: resourcev3.EndpointType, Value: []byte(name + "@" + version)}}
	}
	held := map[string]*discoveryv3.Resource{"a": res("a", "1"), "b": res("b", "1"), "c": res("c", "1")}
	next := applyDelta(held, &discoveryv3.DeltaDiscoveryResponse{
		Resources: []*discoveryv3.Resource{res("b", "2"), res("d", "1")}, RemovedResources: []string{"c", "x"}})
	got := map[string]string{}
	for n, r := range next {
		got[n] = r.GetVersion()
	}
	if want := map[string]string{"a": "1", "b": "2", "d": "1"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("applied: %v, want %v", got, want)
	}
	if len(held) != 3 || held["b"].GetVersion() != "1" || held["c"] == nil {
		t.Fatalf("the state applied to changed: %v", held)
	}
	if l := heldList(next); len(l) != 3 || string(l[0].GetValue()) != "a@1" || string(l[2].GetValue()) != "d@1" {
		t.Fatalf("heldList: %v", l)
	}

	p := newProxy(proxySpec{})
	p.held[resourcev3.EndpointType] = next
	p.names[resourcev3.EndpointType] = []string{"a", "b", "d"}
	p.acked[resourcev3.EndpointType] = &discoveryv3.DiscoveryResponse{Resources: heldList(next)}
	r := p.resubscribe(resourcev3.EndpointType, []string{"a", "e"})
	if r == nil || fmt.Sprint(r.GetResourceNamesSubscribe()) != "[e]" || fmt.Sprint(r.GetResourceNamesUnsubscribe()) != "[b d]" {
		t.Fatalf("resubscribe: %v", r)
	}
	if len(p.held[resourcev3.EndpointType]) != 1 || p.held[resourcev3.EndpointType]["a"] == nil || len(p.acked[resourcev3.EndpointType].GetResources()) != 1 {
		t.Fatalf("after unsubscribing b and d: held %v, acked %d resources", p.held[resourcev3.EndpointType], len(p.acked[resourcev3.EndpointType].GetResources()))
	}
	if p.resubscribe(resourcev3.EndpointType, []string{"a", "e"}) != nil {
		t.Fatal("an unchanged subscription sent again")
	}
	if p.heldVersions(resourcev3.EndpointType)["a"] != "1" {
		t.Fatalf("initial_resource_versions: %v", p.heldVersions(resourcev3.EndpointType))
	}
}
