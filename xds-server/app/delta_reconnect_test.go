package app

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/metadata"
)

// TestDeltaReconnectHoldingResources: a delta proxy that reconnects with
// initial_resource_versions equal to what this replica would send gets no
// response for its named types (go-control-plane sends only changes) and
// is left with nothing pending, its insight holding the snapshot's
// versions; one stale endpoint gets a response, pending until its ACK.
func TestDeltaReconnectHoldingResources(t *testing.T) {
	e := newTestEnv(t)
	// Without mTLS: a reconnect (after the proxy's last stream closed)
	// issues a new certificate, so its secrets differ anyway.
	e.apply("type: Mesh\nname: default\n")
	const id = "default.web-1"
	tok := e.token("default", "web-1", e.keys, time.Hour)
	types := []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType, resourcev3.SecretType}
	wildcard := map[string]bool{resourcev3.ClusterType: true, resourcev3.ListenerType: true}
	waitUntil := e.waitUntil
	open := func() (discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, context.CancelFunc) {
		t.Helper()
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(e.ctx, "authorization", "Bearer "+tok), 20*time.Second)
		s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(e.conn).DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s, cancel
	}
	send := func(s discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, req *discoveryv3.DeltaDiscoveryRequest) {
		t.Helper()
		if err := s.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(s discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient) *discoveryv3.DeltaDiscoveryResponse {
		t.Helper()
		resp, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// subscribe sends each type's first request: CDS and LDS wildcard,
	// the others naming what the snapshot has, holding held.
	var names map[string][]string
	subscribe := func(s discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, held map[string]map[string]string) {
		t.Helper()
		for i, typ := range types {
			req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResourceNamesSubscribe: names[typ], InitialResourceVersions: held[typ]}
			if i == 0 {
				req.Node = node(id, "envoy")
			}
			send(s, req)
		}
	}

	// First connection: everything, each response ACKed.
	s1, cancel1 := open()
	send(s1, &discoveryv3.DeltaDiscoveryRequest{Node: node(id, "envoy"), TypeUrl: resourcev3.ClusterType})
	// Wait for the snapshot without mTLS: no secrets (and an Envoy gets
	// no route configurations: its routes are in its listeners).
	waitUntil("a snapshot without mTLS", func() bool {
		snap, err := e.app.cache.GetSnapshot(id)
		return err == nil && len(snap.GetResources(resourcev3.SecretType)) == 0
	})
	snap, _ := e.app.cache.GetSnapshot(id)
	names = map[string][]string{}
	for _, typ := range types {
		if len(snap.GetResources(typ)) == 0 {
			// Nothing to name: a wildcard subscription, answered at once.
			wildcard[typ] = true
		}
		if !wildcard[typ] {
			names[typ] = slices.Sorted(maps.Keys(snap.GetResources(typ)))
		}
	}
	if len(names[resourcev3.EndpointType]) == 0 {
		t.Fatalf("no named types to hold: %v", names)
	}
	for _, typ := range types[1:] {
		send(s1, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResourceNamesSubscribe: names[typ]})
	}
	held := map[string]map[string]string{}
	for _, typ := range types {
		held[typ] = map[string]string{}
	}
	// Every response ACKed until each type was answered and nothing is
	// pending (a response may still follow the mesh change).
	resps := make(chan *discoveryv3.DeltaDiscoveryResponse, 16)
	go func() {
		for {
			resp, err := s1.Recv()
			if err != nil {
				close(resps)
				return
			}
			resps <- resp
		}
	}()
	seen := map[string]bool{}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(10 * time.Second); len(seen) < len(types) || e.app.rec.Pending(id) != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("first stream: answered %v, %d types pending", seen, e.app.rec.Pending(id))
		}
		select {
		case resp, ok := <-resps:
			if !ok {
				t.Fatal("first stream ended")
			}
			for _, r := range resp.GetResources() {
				held[resp.GetTypeUrl()][r.GetName()] = r.GetVersion()
			}
			for _, n := range resp.GetRemovedResources() {
				delete(held[resp.GetTypeUrl()], n)
			}
			seen[resp.GetTypeUrl()] = true
			send(s1, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()})
		case <-tick.C:
		}
	}
	snap, _ = e.app.cache.GetSnapshot(id)
	cancel1()
	waitUntil("the proxy to disconnect", func() bool { _, err := e.app.cache.GetSnapshot(id); return err != nil })

	// A stale endpoint: that type gets a response and waits for its ACK.
	stale := map[string]map[string]string{}
	for typ, h := range held {
		stale[typ] = maps.Clone(h)
	}
	staleName := names[resourcev3.EndpointType][0]
	stale[resourcev3.EndpointType][staleName] = strings.Repeat("0", 64)
	s2, cancel2 := open()
	subscribe(s2, stale)
	// The wildcard types' first responses (empty) and the endpoints'.
	for range len(wildcard) + 1 {
		resp := recv(s2)
		if resp.GetTypeUrl() != resourcev3.EndpointType {
			if len(resp.GetResources())+len(resp.GetRemovedResources()) != 0 {
				t.Fatalf("%s: %d resources, %v removed, to a proxy holding them", resp.GetTypeUrl(), len(resp.GetResources()), resp.GetRemovedResources())
			}
			send(s2, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()})
			continue
		}
		if len(resp.GetResources()) != 1 || resp.GetResources()[0].GetName() != staleName {
			t.Fatalf("endpoints sent for a stale %s: %v", staleName, resp.GetResources())
		}
		if n := e.app.rec.Pending(id); n == 0 {
			t.Fatal("the stale endpoints' push is not pending before its ACK")
		}
		send(s2, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()})
	}
	waitUntil("nothing pending after the ACK", func() bool { return e.app.rec.Pending(id) == 0 })
	cancel2()
	waitUntil("the proxy to disconnect", func() bool { _, err := e.app.cache.GetSnapshot(id); return err != nil })

	// Holding exactly the snapshot: nothing pending, the insight holds its
	// versions.
	s3, cancel3 := open()
	defer cancel3()
	subscribe(s3, held)
	// The wildcard types' first responses (empty), ACKed.
	for range len(wildcard) {
		resp := recv(s3)
		if !wildcard[resp.GetTypeUrl()] || len(resp.GetResources())+len(resp.GetRemovedResources()) != 0 {
			t.Fatalf("a %s response (%d resources, %v removed) to a proxy holding the snapshot", resp.GetTypeUrl(), len(resp.GetResources()), resp.GetRemovedResources())
		}
		send(s3, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()})
	}
	waitUntil("a snapshot and nothing pending", func() bool {
		_, err := e.app.cache.GetSnapshot(id)
		return err == nil && e.app.rec.Pending(id) == 0
	})
	waitUntil("the insight to hold every type", func() bool {
		for _, sub := range e.app.ins.Subscriptions("default", "web-1") {
			if sub.GetDisconnectTime() != nil {
				continue
			}
			for _, typ := range types {
				if sub.GetTypes()[typ].GetLastVersion() != snap.GetVersion(typ) {
					return false
				}
			}
			return true
		}
		return false
	})
	// No response for a named type: the next one answers a change.
	e.setBackendProtocol("http2")
	// (The backend's cluster and web-1's outbound listener change, in
	// either order.)
	if resp := recv(s3); (resp.GetTypeUrl() != resourcev3.ClusterType && resp.GetTypeUrl() != resourcev3.ListenerType) || len(resp.GetResources()) != 1 {
		t.Fatalf("after a backend change: %s %d resources, want the backend cluster or web-1's outbound listener", resp.GetTypeUrl(), len(resp.GetResources()))
	}
}
