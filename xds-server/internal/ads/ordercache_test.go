package ads

import (
	"context"
	"fmt"
	"sync"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"

	"github.com/weftmesh/weft/xds-server/internal/generator"
)

// everyType is a snapshot with one resource of each served type at
// version v, each resource's content changed by v too (a SotW answer is
// due wherever the version differs, a delta one where the content does).
func everyType(t testing.TB, v string) *cachev3.Snapshot {
	t.Helper()
	snap, err := cachev3.NewSnapshot(v, map[string][]types.Resource{
		resourcev3.ClusterType:  {&clusterv3.Cluster{Name: "c", AltStatName: v}},
		resourcev3.EndpointType: {&endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{{Locality: &corev3.Locality{Zone: v}}}}},
		resourcev3.ListenerType: {&listenerv3.Listener{Name: "l", StatPrefix: v}},
		resourcev3.RouteType:    {&routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: v}}}},
		resourcev3.SecretType: {&tlsv3.Secret{Name: "s", Type: &tlsv3.Secret_GenericSecret{GenericSecret: &tlsv3.GenericSecret{
			Secret: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: v}}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// everyTypeNames is everyType's resource name per type.
var everyTypeNames = map[string]string{resourcev3.ClusterType: "c", resourcev3.EndpointType: "c", resourcev3.ListenerType: "l",
	resourcev3.RouteType: "r", resourcev3.SecretType: "s"}

// openAll opens a watch per served type for node at version (a stream's
// watches, all answering on ch), in a shuffled order.
func openAll(t *testing.T, c cachev3.SnapshotCache, node, version string, ch chan cachev3.Response, round int) []func() {
	t.Helper()
	var cancels []func()
	n := len(generator.TypeURLs)
	for k := range n {
		typ := generator.TypeURLs[(k+round)%n]
		req := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: node}, TypeUrl: typ, VersionInfo: version}
		// The stream holds the snapshot's one resource of the type.
		sub := stream.NewSotwSubscription(nil, true)
		sub.SetReturnedResources(map[string]string{everyTypeNames[typ]: version})
		cancel, err := c.CreateWatch(req, sub, ch)
		if err != nil {
			t.Fatal(err)
		}
		cancels = append(cancels, cancel)
	}
	return cancels
}

// TestOrderedCacheAnswersInTypeOrder: every snapshot's answers reach the
// stream's channel as clusters, endpoints, listeners, routes, secrets,
// whatever order the watches were opened in. go-control-plane's cache on
// its own (not in ADS mode) answers in map order, which fails this in a
// few rounds.
func TestOrderedCacheAnswersInTypeOrder(t *testing.T) {
	ctx := context.Background()
	c := NewOrderedCache(cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil))
	if err := c.SetSnapshot(ctx, "n", everyType(t, "v0")); err != nil {
		t.Fatal(err)
	}
	ch := make(chan cachev3.Response, 10)
	version := "v0"
	for round := 1; round <= 30; round++ {
		cancels := openAll(t, c, "n", version, ch, round)
		version = fmt.Sprint("v", round)
		if err := c.SetSnapshot(ctx, "n", everyType(t, version)); err != nil {
			t.Fatal(err)
		}
		var got []string
		for range generator.TypeURLs {
			select {
			case r := <-ch:
				got = append(got, r.GetRequest().GetTypeUrl())
			default:
				t.Fatalf("round %d: %d answers, want %d", round, len(got), len(generator.TypeURLs))
			}
		}
		for i, typ := range generator.TypeURLs {
			if got[i] != typ {
				t.Fatalf("round %d: answers in the order %v, want %v", round, got, generator.TypeURLs)
			}
		}
		for _, cancel := range cancels {
			cancel()
		}
	}
	c.ClearSnapshot("n")
	if n := c.Len(); n != 0 {
		t.Fatalf("%d nodes recorded after ClearSnapshot", n)
	}
}

// TestOrderedCacheAnswersDeltaInTypeOrder: the same for delta watches,
// each holding the previous snapshot's resources.
func TestOrderedCacheAnswersDeltaInTypeOrder(t *testing.T) {
	ctx := context.Background()
	c := NewOrderedCache(cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil))
	prev := everyType(t, "v0")
	if err := c.SetSnapshot(ctx, "n", prev); err != nil {
		t.Fatal(err)
	}
	ch := make(chan cachev3.DeltaResponse, 20)
	n := len(generator.TypeURLs)
	for round := 1; round <= 30; round++ {
		if err := prev.ConstructVersionMap(); err != nil {
			t.Fatal(err)
		}
		var cancels []func()
		for k := range n {
			typ := generator.TypeURLs[(k+round)%n]
			sub := stream.NewDeltaSubscription(nil, nil, prev.GetVersionMap(typ), true)
			// Not the stream's first request of the type (which is answered
			// at once).
			req := &discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "n"}, TypeUrl: typ, ResponseNonce: "1"}
			cancel, err := c.CreateDeltaWatch(req, sub, ch)
			if err != nil {
				t.Fatal(err)
			}
			cancels = append(cancels, cancel)
		}
		if len(ch) != 0 {
			t.Fatalf("round %d: %d answers before the snapshot changed", round, len(ch))
		}
		prev = everyType(t, fmt.Sprint("v", round))
		if err := c.SetSnapshot(ctx, "n", prev); err != nil {
			t.Fatal(err)
		}
		var got []string
		for range n {
			select {
			case r := <-ch:
				got = append(got, r.GetDeltaRequest().GetTypeUrl())
			default:
				t.Fatalf("round %d: %d answers, want %d", round, len(got), n)
			}
		}
		for i, typ := range generator.TypeURLs {
			if got[i] != typ {
				t.Fatalf("round %d: answers in the order %v, want %v", round, got, generator.TypeURLs)
			}
		}
		for _, cancel := range cancels {
			cancel()
		}
	}
}

// TestOrderedCacheLosesNoAnswer: in each round a stream opens a watch at
// the node's version while the reconciler sets a newer snapshot, at the
// same time; once both returned, with no later snapshot to move anything,
// the answer must be in the stream's channel, whichever went first. The
// watch is cancelled between rounds, so the node has no watch recorded
// when a round starts.
func TestOrderedCacheLosesNoAnswer(t *testing.T) {
	ctx := context.Background()
	c := NewOrderedCache(cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil))
	const rounds, nodes = 500, 4
	var wg sync.WaitGroup
	for k := range nodes {
		node := fmt.Sprint("n", k)
		if err := c.SetSnapshot(ctx, node, everyType(t, "v0")); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				typ := generator.TypeURLs[r%len(generator.TypeURLs)]
				v := fmt.Sprint("v", r)
				sub := stream.NewSotwSubscription(nil, true)
				sub.SetReturnedResources(map[string]string{everyTypeNames[typ]: v})
				ch := make(chan cachev3.Response, 1)
				var cancel func()
				var werr, serr error
				var both sync.WaitGroup
				both.Add(2)
				go func() {
					defer both.Done()
					cancel, werr = c.CreateWatch(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: node}, TypeUrl: typ, VersionInfo: v}, sub, ch)
				}()
				go func() {
					defer both.Done()
					serr = c.SetSnapshot(ctx, node, everyType(t, fmt.Sprint("v", r+1)))
				}()
				both.Wait()
				if werr != nil || serr != nil {
					t.Error(werr, serr)
					return
				}
				select {
				case <-ch:
				default:
					t.Errorf("node %s round %d: the watch at %s has no answer after the snapshot v%d was set", node, r, v, r+1)
					return
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	for k := range nodes {
		c.ClearSnapshot(fmt.Sprint("n", k))
	}
	if n := c.Len(); n != 0 {
		t.Fatalf("%d nodes recorded after ClearSnapshot", n)
	}
}
