package app

import (
	"slices"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
	"github.com/weftmesh/weft/pkg/xdsnames"
)

func (e *testEnv) ingressToken(zone, name string) string {
	e.t.Helper()
	c := token.Claims{Kind: token.KindIngress, Zone: zone}
	c.Subject = name
	tok, _, err := e.keys.Issue(e.ctx, c, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func chainNames(t *testing.T, resp *discoveryv3.DiscoveryResponse) (string, []string) {
	t.Helper()
	if len(resp.GetResources()) != 1 {
		t.Fatalf("%d listeners, want the ingress's one", len(resp.GetResources()))
	}
	l := &listenerv3.Listener{}
	if err := resp.GetResources()[0].UnmarshalTo(l); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range l.GetFilterChains() {
		out = append(out, c.GetFilterChainMatch().GetServerNames()...)
	}
	return l.GetName(), out
}

// TestIngressADS: a zone ingress authenticated by its ingress token gets
// GenerateIngress's configuration over ADS (every mesh of the zone), and a
// new one when a Dataplane or its ZoneIngress changes; it gets no secret.
func TestIngressADS(t *testing.T) {
	e := newTestEnvCfg(t, false, func(c *Config) { c.Zone = "zone-1" })
	s := e.stream(e.ingressToken("zone-1", "ingress"))
	n := node(xdsnames.IngressNodeID("zone-1", "ingress"), "ingress")
	if err := s.Send(&discoveryv3.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	// Receive and ACK until the listener is as wanted (the store writes
	// reach the model in their own time).
	await := func(want func(name string, chains []string) bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
				t.Fatal(err)
			}
			name, chains := chainNames(t, resp)
			if want(name, chains) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("last listener %s chains %v", name, chains)
			}
		}
	}
	await(func(name string, chains []string) bool {
		return name == "ingress:0.0.0.0:10001" && strings.Join(chains, ",") == "backend.default.mesh,web.default.mesh"
	})
	// A new local service in a second mesh, and this ingress's
	// ZoneIngress naming its listen address.
	e.apply(`
type: Mesh
name: payments
---
type: Dataplane
mesh: payments
name: ledger-1
networking:
  address: 127.0.0.3
  inbound:
  - port: 7000
    tags:
      weft.io/service: ledger
---
type: ZoneIngress
name: ingress
zone: zone-1
networking:
  address: 127.0.0.9
  port: 10443
`)
	await(func(name string, chains []string) bool {
		return name == "ingress:127.0.0.9:10443" && slices.Contains(chains, "ledger.payments.mesh")
	})
	// No workload secret for an ingress, ever.
	ss := e.stream(e.ingressToken("zone-1", "ingress"))
	if err := ss.Send(&discoveryv3.DiscoveryRequest{Node: n, TypeUrl: resourcev3.SecretType}); err != nil {
		t.Fatal(err)
	}
	sresp, err := ss.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(sresp.GetResources()) != 0 {
		t.Fatalf("an ingress got %d secrets", len(sresp.GetResources()))
	}
}

// TestIngressForgery: an ingress node id authenticates only with an
// ingress token for that zone (this xds-server's) and that name, and an
// ingress token authenticates nothing else.
func TestIngressForgery(t *testing.T) {
	e := newTestEnvCfg(t, false, func(c *Config) { c.Zone = "zone-1" })
	zoneTok := func() string {
		c := token.Claims{Kind: token.KindZone, Zone: "zone-1"}
		c.Subject = "zone-1"
		tok, _, err := e.keys.Issue(e.ctx, c, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}()
	foreign := token.New(newStoreForKeys(t))
	foreignTok := func() string {
		c := token.Claims{Kind: token.KindIngress, Zone: "zone-1"}
		c.Subject = "ingress"
		tok, _, err := foreign.Issue(e.ctx, c, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}()
	ing := xdsnames.IngressNodeID("zone-1", "ingress")
	for name, tc := range map[string]struct{ tok, node, want string }{
		"dataplane token as ingress":     {e.token("default", "web-1", e.keys, time.Hour), ing, "a dataplane token is not an ingress token"},
		"zone token as ingress":          {zoneTok, ing, "a zone token is not an ingress token"},
		"ingress token as dataplane":     {e.ingressToken("zone-1", "ingress"), "default.web-1", "a ingress token is not a dataplane token"},
		"ingress token for another name": {e.ingressToken("zone-1", "ingress"), xdsnames.IngressNodeID("zone-1", "other"), "token is for ingress zone-1/ingress, not zone-1/other"},
		"another zone's ingress":         {e.ingressToken("zone-2", "ingress"), xdsnames.IngressNodeID("zone-2", "ingress"), "zone \"zone-1\"'s"},
		"another control plane's token":  {foreignTok, ing, "does not hold"},
		"no token":                       {"", ing, "no token"},
	} {
		t.Run(name, func(t *testing.T) {
			s := e.stream(tc.tok)
			if err := s.Send(&discoveryv3.DiscoveryRequest{Node: node(tc.node, "ingress"), TypeUrl: resourcev3.ListenerType}); err != nil {
				t.Fatal(err)
			}
			resp, err := s.Recv()
			if resp != nil {
				t.Fatalf("got a response: %v", resp)
			}
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want PermissionDenied with %q", err, tc.want)
			}
		})
	}
	// Standalone (no --zone): no ingress at all.
	sa := newTestEnv(t)
	s := sa.stream(sa.ingressToken("zone-1", "ingress"))
	_ = s.Send(&discoveryv3.DiscoveryRequest{Node: node(ing, "ingress"), TypeUrl: resourcev3.ListenerType})
	if _, err := s.Recv(); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "serves no ingress") {
		t.Fatalf("standalone: err = %v", err)
	}
}

// newStoreForKeys is another control plane's store (its own signing key).
func newStoreForKeys(t *testing.T) *store.Store {
	ring, err := seal.Parse("k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
	if err != nil {
		t.Fatal(err)
	}
	return store.New(etcdtest.Client(t, nil), store.WithKeyring(ring))
}

// TestIngressTokenRevoked: an ingress stream does not outlive its token:
// revoking it closes the stream (Unauthenticated, naming the ingress) and a
// reconnect with it is refused.
func TestIngressTokenRevoked(t *testing.T) {
	e := newTestEnvCfg(t, false, func(c *Config) { c.Zone = "zone-1" })
	c := token.Claims{Kind: token.KindIngress, Zone: "zone-1"}
	c.Subject = "ingress"
	tok, claims, err := e.keys.IssueClaims(e.ctx, c, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	n := node(xdsnames.IngressNodeID("zone-1", "ingress"), "ingress")
	s := e.stream(tok)
	if err := s.Send(&discoveryv3.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.keys.Revoke(e.ctx, claims.ID, claims.ExpiresAt.Time); err != nil {
		t.Fatal(err)
	}
	// The stream's own deadline (20 s) bounds the wait.
	for {
		_, err := s.Recv()
		if err == nil {
			continue
		}
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "ingress zone-1/ingress") || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("err = %v, want Unauthenticated naming the ingress and the revocation", err)
		}
		break
	}
	s2 := e.stream(tok)
	_ = s2.Send(&discoveryv3.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ListenerType})
	if _, err := s2.Recv(); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("reconnect with a revoked token: %v", err)
	}
}
