package app

import (
	"bytes"
	"context"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/metadata"
)

// serverGoroutines counts this process's goroutines that are not the test's
// gRPC client's. The client of the test shares the process; per stream it
// has one goroutine (grpc-go's clientStream watching the stream's context),
// created by newClientStreamWithParams, which is left out; so is anything
// on the client's transport.
func serverGoroutines() (int, string) {
	var b bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	n := 0
	for _, g := range strings.Split(b.String(), "\n\n") {
		if strings.TrimSpace(g) == "" || strings.Contains(g, "newClientStreamWithParams") || strings.Contains(g, "(*http2Client)") {
			continue
		}
		n++
	}
	return n, b.String()
}

// TestGoroutinesPerStream: an authenticated, configured xDS stream costs the
// server at most 2 goroutines — gRPC's handler goroutine (which runs
// go-control-plane's loop) and go-control-plane's receiving goroutine (its
// StreamHandler moves Recv to one) — plus its connection's (3 in grpc-go:
// reader, writer, keepalive; shared here by all K streams). Token expiry is a
// timer and re-verification one goroutine per process, so neither is per
// stream. Before, a stream had 4: a goroutine per receive (so a receive was
// parked in two) and a token watcher each. The bound (2.2 per stream with
// K=100 on one connection: 2 plus the token registry and slack for a
// goroutine of the test's own) fails as soon as anything adds one per
// stream. Both SotW and delta ADS are measured; when the streams end, the
// goroutines go.
func TestGoroutinesPerStream(t *testing.T) {
	e := newTestEnvCfg(t, false, func(c *Config) { c.Limits.MaxStreamsPerProxy = 200 })
	tok := e.token("default", "web-1", e.keys, time.Hour)
	const k = 100
	const bound = 2.2

	// A first stream so that the connection, the token registry and
	// everything shared exist before counting.
	warm, cancelWarm := context.WithCancel(metadata.AppendToOutgoingContext(e.ctx, "authorization", "Bearer "+tok))
	defer cancelWarm()
	ws, err := discoveryv3.NewAggregatedDiscoveryServiceClient(e.conn).StreamAggregatedResources(warm)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.Send(&discoveryv3.DiscoveryRequest{Node: node("default.web-1", "envoy"), TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.Recv(); err != nil {
		t.Fatal(err)
	}

	// settle waits (with a deadline) until the server's goroutines are at
	// most want; it returns the last count.
	settle := func(want int) (int, string) {
		deadline := time.Now().Add(15 * time.Second)
		for {
			n, dump := serverGoroutines()
			if n <= want || time.Now().After(deadline) {
				return n, dump
			}
			time.Sleep(20 * time.Millisecond) // polling the count, not synchronising
		}
	}
	base, _ := serverGoroutines()

	for _, kind := range []string{"sotw", "delta"} {
		t.Run(kind, func(t *testing.T) {
			ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(e.ctx, "authorization", "Bearer "+tok))
			defer cancel()
			client := discoveryv3.NewAggregatedDiscoveryServiceClient(e.conn)
			for i := range k {
				if kind == "sotw" {
					s, err := client.StreamAggregatedResources(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if err := s.Send(&discoveryv3.DiscoveryRequest{Node: node("default.web-1", "envoy"), TypeUrl: resourcev3.ListenerType}); err != nil {
						t.Fatal(err)
					}
					if _, err := s.Recv(); err != nil {
						t.Fatalf("stream %d: %v", i, err)
					}
					continue
				}
				s, err := client.DeltaAggregatedResources(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node("default.web-1", "envoy"), TypeUrl: resourcev3.ListenerType}); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Recv(); err != nil {
					t.Fatalf("delta stream %d: %v", i, err)
				}
			}
			// The first request's timeout goroutine (FirstRequestLimit)
			// ends just after the first receive: wait for those.
			n, dump := settle(base + int(bound*k))
			per := float64(n-base) / k
			t.Logf("%s: %d streams, %d server goroutines more: %.2f per stream", kind, k, n-base, per)
			if per > bound {
				t.Fatalf("%.2f server goroutines per %s stream, want ≤ %.1f; goroutines:\n%s", per, kind, bound, dump)
			}
			cancel()
			// Other parts of the server (insights, etcd watches) may have
			// started a goroutine or two meanwhile; one left per stream
			// would be 100.
			if n, dump := settle(base + 10); n > base+10 {
				t.Fatalf("%d server goroutines after the streams ended, %d before; goroutines:\n%s", n, base, dump)
			}
		})
	}
}
