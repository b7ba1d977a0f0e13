package app

import (
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/pkg/token"
)

// TestTokenCutEndsSotWAndDelta: a stream is cut while its proxy is silent
// (its receive parked in gRPC) when its token is revoked or expires, on
// SotW and on delta ADS alike: go-control-plane's loops look only at their
// server context, which ads.Server makes the stream's own.
func TestTokenCutEndsSotWAndDelta(t *testing.T) {
	e := newTestEnv(t)
	// open starts a SotW or delta stream, reads its first response and
	// returns a function waiting for the stream's end (bounded by the
	// stream's 20 s deadline).
	open := func(t *testing.T, tok string, delta bool) func() error {
		t.Helper()
		ctx := metadata.AppendToOutgoingContext(e.ctx, "authorization", "Bearer "+tok)
		client := discoveryv3.NewAggregatedDiscoveryServiceClient(e.conn)
		if delta {
			s, err := client.DeltaAggregatedResources(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node("default.web-1", "envoy"), TypeUrl: resourcev3.ListenerType}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Recv(); err != nil {
				t.Fatal(err)
			}
			return func() error {
				for {
					if _, err := s.Recv(); err != nil {
						return err
					}
				}
			}
		}
		s := e.stream(tok)
		if err := s.Send(&discoveryv3.DiscoveryRequest{Node: node("default.web-1", "envoy"), TypeUrl: resourcev3.ListenerType}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
		return func() error { return recvErr(t, s) }
	}
	for _, delta := range []bool{false, true} {
		name := "sotw"
		if delta {
			name = "delta"
		}
		t.Run(name+"/revoked", func(t *testing.T) {
			c := token.Claims{Kind: token.KindDataplane, Mesh: "default"}
			c.Subject = "web-1"
			tok, claims, err := e.keys.IssueClaims(e.ctx, c, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			wait := open(t, tok, delta)
			if _, err := e.keys.Revoke(e.ctx, claims.ID, claims.ExpiresAt.Time); err != nil {
				t.Fatal(err)
			}
			if err := wait(); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "revoked") {
				t.Fatalf("err = %v, want Unauthenticated saying the token was revoked", err)
			}
		})
		t.Run(name+"/expired", func(t *testing.T) {
			start := time.Now()
			wait := open(t, e.token("default", "web-1", e.keys, 2*time.Second), delta)
			if err := wait(); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "token expired") {
				t.Fatalf("err = %v, want Unauthenticated saying the token expired", err)
			}
			t.Logf("cut %s after the token was issued", time.Since(start).Round(time.Millisecond))
		})
	}
}
