package app

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/xds-server/internal/ads"
)

// TestADSResponsesInProtocolOrder: a store change that changes an Envoy
// proxy's clusters and listeners reaches it over SotW ADS clusters first,
// every time — the xDS protocol's order for ADS ("make before break";
// ads.OrderedCache). Each change is made once the proxy's ACKs have
// reopened every watch: a type whose ACK is still in flight is answered
// when it arrives, in any order.
func TestADSResponsesInProtocolOrder(t *testing.T) {
	e := newTestEnv(t)
	// A grpc backend: a Timeout's connectTimeout is in its cluster and
	// grpc.streamIdleTimeout in web-1's outbound listener (an Envoy's
	// routes are inline there): two types change, keeping their names.
	e.setBackendProtocol("grpc")
	tok := e.token("default", "web-1", e.keys, time.Hour)
	s := e.stream(tok)
	// Every type without names (all of the proxy's resources), so no
	// subscription change follows a response: what arrives after a change
	// is only the snapshot's answers.
	types := []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType}
	for i, typ := range types {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typ}
		if i == 0 {
			req.Node = node("default.web-1", "envoy")
		}
		if err := s.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	version := map[string]string{}
	// recvUntil reads and ACKs responses until want() holds; it returns
	// the types in the order their responses arrived.
	recvUntil := func(what string, want func() bool) []string {
		t.Helper()
		var order []string
		timer := time.AfterFunc(15*time.Second, func() { t.Errorf("timed out waiting for %s (got %v)", what, order) })
		defer timer.Stop()
		for !want() {
			resp, err := s.Recv()
			if err != nil {
				t.Fatalf("waiting for %s (got %v): %v", what, order, err)
			}
			typ := resp.GetTypeUrl()
			order = append(order, typ)
			version[typ] = resp.GetVersionInfo()
			if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: typ, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
				t.Fatal(err)
			}
		}
		return order
	}
	watchesOpen := func() {
		t.Helper()
		e.waitUntil("the proxy's watches to reopen after its ACKs", func() bool {
			return e.app.cache.GetStatusInfo("default.web-1").GetNumWatches() >= len(types)
		})
	}
	recvUntil("the first configuration", func() bool {
		for _, typ := range types {
			if version[typ] == "" {
				return false
			}
		}
		return true
	})
	changed := []string{resourcev3.ClusterType, resourcev3.ListenerType}
	short := func(typ string) string { return typ[strings.LastIndex(typ, ".")+1:] }
	rank := func(typ string) int { return slices.Index(types, typ) }
	for round := 1; round <= 12; round++ {
		watchesOpen()
		before := map[string]string{}
		for _, typ := range changed {
			before[typ] = version[typ]
		}
		e.apply(fmt.Sprintf(`
type: Timeout
mesh: default
name: backend-timeouts
sources:
- match:
    weft.io/service: '*'
destinations:
- match:
    weft.io/service: backend
conf:
  connectTimeout: %ds
  grpc:
    streamIdleTimeout: %dm
`, 1+round, 5+round))
		order := recvUntil(fmt.Sprintf("round %d's clusters and listeners", round), func() bool {
			for _, typ := range changed {
				if version[typ] == before[typ] {
					return false
				}
			}
			return true
		})
		for i := 1; i < len(order); i++ {
			if rank(order[i]) < rank(order[i-1]) {
				names := make([]string, len(order))
				for j, typ := range order {
					names[j] = short(typ)
				}
				t.Fatalf("round %d: responses arrived as %v; want clusters, endpoints, listeners in that order", round, names)
			}
		}
	}
	// The proxy's last stream ends: the ordering records go with it.
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	oc := e.app.cache.(*ads.OrderedCache)
	e.waitUntil("the node's ordering record to go with its only stream", func() bool { return oc.Len() == 0 })
}
