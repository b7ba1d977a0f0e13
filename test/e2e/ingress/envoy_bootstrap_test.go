package ingress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/sni"
	"github.com/weftmesh/weft/pkg/token"
	"github.com/weftmesh/weft/pkg/xdsnames"
	"github.com/weftmesh/weft/weft-dp/agent"
	"github.com/weftmesh/weft/zone-sync/apptest"
)

const (
	listenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	clusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	endpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

// envoyIngressBootstrap is what `weft-dp bootstrap --proxy-type ingress`
// writes for Envoy, parsed the way Envoy parses it and validated.
func envoyIngressBootstrap(t *testing.T, xds, zone, name, tok string) *bootstrapv3.Bootstrap {
	t.Helper()
	c := &agent.Config{CP: xds, Zone: zone, Name: name, Token: tok, ProxyType: agent.ProxyIngress, Workdir: t.TempDir()}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := agent.EnvoyBootstrap(c, 9901)
	if err != nil {
		t.Fatal(err)
	}
	bs := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(b, bs); err != nil {
		t.Fatalf("not an Envoy v3 bootstrap: %v", err)
	}
	if err := bs.ValidateAll(); err != nil {
		t.Fatalf("invalid bootstrap: %v", err)
	}
	return bs
}

// adsLikeEnvoy opens the ADS stream the bootstrap describes — the address
// of its weft_xds cluster, its ads_config initial metadata, its node — and
// subscribes as Envoy does: LDS and CDS wildcard, then EDS for the clusters
// CDS named. It returns the first error of the stream, or nil when got
// says the configuration is what it waited for.
func adsLikeEnvoy(ctx context.Context, bs *bootstrapv3.Bootstrap, got func(l []*listenerv3.Listener, c map[string]*clusterv3.Cluster, e map[string]*endpointv3.ClusterLoadAssignment) bool) error {
	sa := bs.GetStaticResources().GetClusters()[0].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	conn, err := grpc.NewClient(net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	gs := bs.GetDynamicResources().GetAdsConfig().GetGrpcServices()[0]
	for _, h := range gs.GetInitialMetadata() {
		ctx = metadata.AppendToOutgoingContext(ctx, h.GetKey(), h.GetValue())
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	if err := s.Send(&discoveryv3.DiscoveryRequest{Node: bs.GetNode(), TypeUrl: listenerType}); err != nil {
		return streamErr(s, err)
	}
	if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: clusterType}); err != nil {
		return streamErr(s, err)
	}
	var listeners []*listenerv3.Listener
	clusters := map[string]*clusterv3.Cluster{}
	endpoints := map[string]*endpointv3.ClusterLoadAssignment{}
	for {
		resp, err := s.Recv()
		if err != nil {
			return err
		}
		switch resp.GetTypeUrl() {
		case listenerType:
			listeners = nil
			for _, a := range resp.GetResources() {
				l := &listenerv3.Listener{}
				if err := a.UnmarshalTo(l); err != nil {
					return err
				}
				listeners = append(listeners, l)
			}
		case clusterType:
			clear(clusters)
			var names []string
			for _, a := range resp.GetResources() {
				c := &clusterv3.Cluster{}
				if err := a.UnmarshalTo(c); err != nil {
					return err
				}
				clusters[c.GetName()] = c
				names = append(names, c.GetName())
			}
			if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: endpointType, ResourceNames: names}); err != nil {
				return streamErr(s, err)
			}
		case endpointType:
			for _, a := range resp.GetResources() {
				e := &endpointv3.ClusterLoadAssignment{}
				if err := a.UnmarshalTo(e); err != nil {
					return err
				}
				endpoints[e.GetClusterName()] = e
			}
		}
		if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce(),
			ResourceNames: resourceNames(resp.GetTypeUrl(), clusters)}); err != nil {
			return err
		}
		if got(listeners, clusters, endpoints) {
			return nil
		}
	}
}

func resourceNames(typ string, clusters map[string]*clusterv3.Cluster) []string {
	if typ != endpointType {
		return nil
	}
	names := make([]string, 0, len(clusters))
	for n := range clusters {
		names = append(names, n)
	}
	return names
}

// TestEnvoyIngressBootstrapOverADS: the Envoy ingress bootstrap weft-dp
// writes (--proxy-type ingress) gets the zone ingress's configuration from
// a real xds-server on etcd — a raw ADS client using exactly the
// bootstrap's address, node and authorization metadata receives the
// tls_inspector listener at the ZoneIngress's address, a filter chain and
// an EDS cluster for the local service's SNI, and its endpoint — and the
// same bootstrap carrying a dataplane token is refused. Envoy itself does
// not run here.
func TestEnvoyIngressBootstrapOverADS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c := apptest.Start(t, apptest.Options{Zones: 1, Log: log})
	startServices(t, ctx, log, "global", c.Global, "global")
	// The zone's ingress-manager (named "ingress") keeps the ZoneIngress
	// whose networking address the Envoy ingress listener binds.
	z := startServices(t, ctx, log, "zone-1", c.Zones[0], "zone")
	apply(t, c.Global, "type: Mesh\nname: default\n")
	apptest.Eventually(t, time.Minute, func() error {
		_, err := z.CP.Store.Get(ctx, resource.MeshType, "", "default")
		return err
	})
	port, _ := backend(t)
	apply(t, z.CP, fmt.Sprintf(`
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 127.0.0.1
  inbound:
  - port: %d
    tags:
      weft.io/service: backend
`, port))

	ic := token.Claims{Kind: token.KindIngress, Zone: "zone-1"}
	ic.Subject = "ingress"
	itok, _, err := token.New(z.CP.Store).Issue(ctx, ic, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bs := envoyIngressBootstrap(t, z.XDS, "zone-1", "ingress", itok)
	if bs.GetNode().GetId() != xdsnames.IngressNodeID("zone-1", "ingress") {
		t.Fatalf("bootstrap node id %q", bs.GetNode().GetId())
	}
	ingHost, ingPort, err := net.SplitHostPort(z.Ingress.Addr())
	if err != nil {
		t.Fatal(err)
	}
	name := sni.Service("default", "backend")
	wantEndpoint := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var last string
	sctx, scancel := context.WithTimeout(ctx, 2*time.Minute)
	defer scancel()
	err = adsLikeEnvoy(sctx, bs, func(ls []*listenerv3.Listener, cs map[string]*clusterv3.Cluster, es map[string]*endpointv3.ClusterLoadAssignment) bool {
		if len(ls) != 1 {
			last = fmt.Sprintf("%d listeners", len(ls))
			return false
		}
		l := ls[0]
		if sa := l.GetAddress().GetSocketAddress(); sa.GetAddress() != ingHost || strconv.Itoa(int(sa.GetPortValue())) != ingPort {
			last = fmt.Sprintf("listener at %s:%d, want the ZoneIngress's %s", sa.GetAddress(), sa.GetPortValue(), z.Ingress.Addr())
			return false
		}
		if len(l.GetListenerFilters()) != 1 || l.GetListenerFilters()[0].GetName() != "envoy.filters.listener.tls_inspector" {
			last = "no tls_inspector"
			return false
		}
		found := false
		for _, fc := range l.GetFilterChains() {
			for _, sn := range fc.GetFilterChainMatch().GetServerNames() {
				found = found || sn == name
			}
		}
		if !found {
			last = "no filter chain for " + name
			return false
		}
		if cs[name] == nil {
			last = "no cluster " + name
			return false
		}
		for _, le := range es[name].GetEndpoints() {
			for _, lb := range le.GetLbEndpoints() {
				a := lb.GetEndpoint().GetAddress().GetSocketAddress()
				if net.JoinHostPort(a.GetAddress(), strconv.Itoa(int(a.GetPortValue()))) == wantEndpoint {
					return true
				}
			}
		}
		last = "no endpoint " + wantEndpoint + " in " + name
		return false
	})
	if err != nil {
		t.Fatalf("ingress configuration not received (%s): %v", last, err)
	}

	// The same bootstrap with a dataplane token (of a Dataplane named like
	// the ingress) is refused before anything is sent.
	dc := token.Claims{Kind: token.KindDataplane, Mesh: "default", Services: []string{"backend"}}
	dc.Subject = "ingress"
	dtok, _, err := token.New(z.CP.Store).Issue(ctx, dc, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// An ingress token of another zone, and of another ingress name, too.
	oz := token.Claims{Kind: token.KindIngress, Zone: "zone-2"}
	oz.Subject = "ingress"
	oztok, _, err := token.New(z.CP.Store).Issue(ctx, oz, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	on := token.Claims{Kind: token.KindIngress, Zone: "zone-1"}
	on.Subject = "other"
	ontok, _, err := token.New(z.CP.Store).Issue(ctx, on, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for what, tok := range map[string]string{"dataplane token": dtok, "zone-2 ingress token": oztok, "ingress token for another name": ontok} {
		fctx, fcancel := context.WithTimeout(ctx, time.Minute)
		err := adsLikeEnvoy(fctx, envoyIngressBootstrap(t, z.XDS, "zone-1", "ingress", tok), func([]*listenerv3.Listener, map[string]*clusterv3.Cluster, map[string]*endpointv3.ClusterLoadAssignment) bool {
			return true
		})
		fcancel()
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: stream ended with %v, want PermissionDenied before any configuration", what, err)
		} else {
			t.Logf("%s refused: %v", what, err)
		}
	}
}

// streamErr is why a stream's Send failed: io.EOF means the server ended
// the stream (a refusal, say), and only Recv returns its status.
func streamErr(s grpc.ClientStream, err error) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	for {
		if rerr := s.RecvMsg(&discoveryv3.DiscoveryResponse{}); rerr != nil {
			return rerr
		}
	}
}
