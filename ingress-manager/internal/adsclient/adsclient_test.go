package adsclient

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/goleak"

	"github.com/weftmesh/weft/ingress-manager/internal/xdstest"
	"github.com/weftmesh/weft/ingress-manager/proxy"
	"github.com/weftmesh/weft/pkg/sni"
	"github.com/weftmesh/weft/pkg/xdsnames"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func lookup(tab *atomic.Pointer[proxy.Table], name string) ([]proxy.Endpoint, bool) {
	n, err := sni.Parse(name)
	if err != nil {
		return nil, false
	}
	return tab.Load().Lookup(name, n)
}

// TestFollowAckNackReconnect: the client connects as the ingress node,
// builds its table from Listener chains, Clusters and assignments, ACKs
// each version, NACKs a listener it cannot use (keeping the last good
// table) and recovers from a cut stream.
func TestFollowAckNackReconnect(t *testing.T) {
	srv := xdstest.Start(t)
	node := xdsnames.IngressNodeID("zone-1", "ingress")
	greeter := sni.Service("default", "greeter")
	v1, err := sni.Format("default", "greeter", map[string]string{"version": "v1"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Set(t, node, xdstest.Snapshot("1", xdstest.Route{Name: greeter, Endpoints: []string{"127.0.0.1:1001", "127.0.0.1:1002"}},
		xdstest.Route{Name: v1, Endpoints: []string{"127.0.0.1:1001"}}))
	var tab atomic.Pointer[proxy.Table]
	tab.Store(&proxy.Table{})
	c, err := New(Config{Server: srv.Addr, Token: "tok", Zone: "zone-1", Name: "ingress", MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Apply: func(t *proxy.Table, _ int) { tab.Store(t) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitFor(t, "the first table", func() bool { eps, _ := lookup(&tab, greeter); return len(eps) == 2 })
	if eps, ok := lookup(&tab, v1); !ok || len(eps) != 1 || eps[0].Addr != "127.0.0.1:1001" {
		t.Fatalf("subset %s: %v %v", v1, eps, ok)
	}
	v2, _ := sni.Format("default", "greeter", map[string]string{"version": "v2"})
	if _, ok := lookup(&tab, v2); ok {
		t.Fatal("a subset without a chain is known")
	}
	first := srv.Requests()[0]
	if first.GetNode().GetId() != node || first.GetNode().GetMetadata().GetFields()[xdsnames.MetadataKind].GetStringValue() != xdsnames.KindIngress {
		t.Fatalf("first request's node: %v", first.GetNode())
	}
	acked := func(typ, version string) bool {
		for _, r := range srv.Requests() {
			if r.GetTypeUrl() == typ && r.GetVersionInfo() == version && r.GetResponseNonce() != "" && r.GetErrorDetail() == nil {
				return true
			}
		}
		return false
	}
	for _, typ := range typeURLs {
		waitFor(t, "ACK of "+typ, func() bool { return acked(typ, "1") })
	}

	// A listener whose chain has no tcp_proxy: NACKed, the table kept.
	bad := xdstest.Snapshot("2", xdstest.Route{Name: greeter, Endpoints: []string{"127.0.0.1:1003"}})
	l := bad.GetResources(resourcev3.ListenerType)["ingress:0.0.0.0:10001"].(*listenerv3.Listener)
	l.FilterChains[0].Filters = nil
	badSnap, err := cachev3.NewSnapshot("2", map[resourcev3.Type][]types.Resource{
		resourcev3.ListenerType: {l}, resourcev3.ClusterType: values(bad, resourcev3.ClusterType), resourcev3.EndpointType: values(bad, resourcev3.EndpointType)})
	if err != nil {
		t.Fatal(err)
	}
	srv.Set(t, node, badSnap)
	waitFor(t, "NACK", func() bool {
		for _, r := range srv.Requests() {
			if r.GetTypeUrl() == ListenerType && r.GetErrorDetail() != nil && r.GetVersionInfo() == "1" {
				return true
			}
		}
		return false
	})
	// Clusters and endpoints of version 2 were accepted (each type on its
	// own), but the routes are still the good listener's.
	waitFor(t, "endpoints of version 2 applied under the kept listener", func() bool {
		eps, _ := lookup(&tab, greeter)
		return len(eps) == 1 && eps[0].Addr == "127.0.0.1:1003"
	})
	if _, ok := lookup(&tab, v1); !ok {
		t.Fatal("the NACKed listener replaced the good one")
	}

	// A good version 3, then a cut stream: the client reconnects and
	// rebuilds.
	srv.Set(t, node, xdstest.Snapshot("3", xdstest.Route{Name: greeter, Endpoints: []string{"127.0.0.1:1004"}}))
	waitFor(t, "version 3", func() bool { _, ok := lookup(&tab, v1); return !ok })
	opened := srv.Opened()
	srv.FailNext()
	srv.Set(t, node, xdstest.Snapshot("4", xdstest.Route{Name: greeter, Endpoints: []string{"127.0.0.1:1005"}}))
	waitFor(t, "a new stream and version 4", func() bool {
		eps, _ := lookup(&tab, greeter)
		return srv.Opened() > opened && len(eps) == 1 && eps[0].Addr == "127.0.0.1:1005"
	})
}

func values(s *cachev3.Snapshot, typ resourcev3.Type) []types.Resource {
	var out []types.Resource
	for _, r := range s.GetResources(typ) {
		out = append(out, r)
	}
	return out
}
