package app

import (
	"sort"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// TestProxylessNewNameLater: a proxyless (grpc) proxy gets only what it
// names, so a service it starts calling later — a name it never asked
// for, with no store change since — must still come, through the whole
// LDS → RDS → CDS → EDS chain, as grpc-go asks for it: each request
// carries the last nonce of its type and every name it still wants.
func TestProxylessNewNameLater(t *testing.T) {
	e := newTestEnv(t)
	e.apply(`
type: Dataplane
mesh: default
name: orders-1
networking:
  address: 127.0.0.3
  inbound:
  - port: 10003
    tags:
      weft.io/service: orders
`)
	s := e.stream(e.token("default", "web-1", e.keys, time.Hour))
	last := map[string]*discoveryv3.DiscoveryResponse{}
	subs := map[string][]string{} // type → the names subscribed
	// ask sends a request for typ with names, as an update of the
	// subscription (last nonce and version of typ), and waits for the
	// response of typ holding want, ACKing whatever else arrives.
	ask := func(typ string, names []string, want string, msg proto.Message) {
		t.Helper()
		subs[typ] = names
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typ, ResourceNames: names}
		if len(last) == 0 {
			req.Node = node("default.web-1", "grpc")
		}
		if r := last[typ]; r != nil {
			req.VersionInfo, req.ResponseNonce = r.GetVersionInfo(), r.GetNonce()
		}
		if err := s.Send(req); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			resp, err := s.Recv() // the stream's context ends the wait
			if err != nil {
				t.Fatalf("waiting for %s %q: %v", typ, want, err)
			}
			last[resp.GetTypeUrl()] = resp
			if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce(),
				ResourceNames: subs[resp.GetTypeUrl()]}); err != nil {
				t.Fatal(err)
			}
			if resp.GetTypeUrl() != typ {
				continue
			}
			var got []string
			for _, a := range resp.GetResources() {
				m := proto.Clone(msg)
				if err := a.UnmarshalTo(m); err != nil {
					t.Fatal(err)
				}
				got = append(got, resourceName(m))
			}
			sort.Strings(got)
			if strings.Join(got, ",") != strings.Join(sortedCopy(names), ",") {
				t.Fatalf("%s response holds %v, want exactly the requested %v", typ, got, names)
			}
			for _, g := range got {
				if g == want {
					return
				}
			}
		}
		t.Fatalf("no %s response with %q", typ, want)
	}
	ask(resourcev3.ListenerType, []string{"backend.mesh"}, "backend.mesh", &listenerv3.Listener{})
	ask(resourcev3.RouteType, []string{"backend.mesh"}, "backend.mesh", &routev3.RouteConfiguration{})
	ask(resourcev3.ClusterType, []string{"backend"}, "backend", &clusterv3.Cluster{})
	ask(resourcev3.EndpointType, []string{"backend"}, "backend", &endpointv3.ClusterLoadAssignment{})
	// Now a service it never named: every step must be answered.
	ask(resourcev3.ListenerType, []string{"backend.mesh", "orders.mesh"}, "orders.mesh", &listenerv3.Listener{})
	ask(resourcev3.RouteType, []string{"backend.mesh", "orders.mesh"}, "orders.mesh", &routev3.RouteConfiguration{})
	ask(resourcev3.ClusterType, []string{"backend", "orders"}, "orders", &clusterv3.Cluster{})
	ask(resourcev3.EndpointType, []string{"backend", "orders"}, "orders", &endpointv3.ClusterLoadAssignment{})
	cla := &endpointv3.ClusterLoadAssignment{}
	for _, a := range last[resourcev3.EndpointType].GetResources() {
		if err := a.UnmarshalTo(cla); err != nil {
			t.Fatal(err)
		}
		if cla.GetClusterName() == "orders" {
			break
		}
	}
	if addr := cla.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress(); addr.GetAddress() != "127.0.0.3" || addr.GetPortValue() != 10003 {
		t.Fatalf("orders endpoints: %v", cla)
	}
}

func resourceName(m proto.Message) string {
	switch r := m.(type) {
	case *listenerv3.Listener:
		return r.GetName()
	case *routev3.RouteConfiguration:
		return r.GetName()
	case *clusterv3.Cluster:
		return r.GetName()
	case *endpointv3.ClusterLoadAssignment:
		return r.GetClusterName()
	}
	return ""
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
