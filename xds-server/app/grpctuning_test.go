package app

import (
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// TestGRPCTuningServes: with the per-connection buffers at their smallest
// (no read or write buffer), a TLS ADS stream is authenticated, served,
// and gets a push after an ACK.
func TestGRPCTuningServes(t *testing.T) {
	e := newTestEnvCfg(t, true, func(c *Config) {
		c.GRPC = GRPCTuning{ReadBufferSize: 0, WriteBufferSize: 0}
	})
	s := e.stream(e.token("default", "web-1", e.keys, time.Hour))
	if err := s.Send(&discoveryv3.DiscoveryRequest{Node: node("default.web-1", "envoy"), TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(listenerNames(t, resp), ","); got != "inbound:127.0.0.1:10001,outbound:127.0.0.1:20001" {
		t.Fatalf("listeners: %s", got)
	}
	if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	e.apply(`
type: TrafficPermission
mesh: default
name: backend-to-web
sources:
- match:
    weft.io/service: backend
destinations:
- match:
    weft.io/service: web
`)
	next, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if next.GetVersionInfo() == resp.GetVersionInfo() {
		t.Fatalf("no new version after a TrafficPermission change: %s", next.GetVersionInfo())
	}
}

func TestGRPCTuningValidate(t *testing.T) {
	for _, g := range []GRPCTuning{{ReadBufferSize: -1}, {WriteBufferSize: -1}, {ReadBufferSize: 2 << 20}} {
		c := Default()
		c.GRPC = g
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "grpc-read-buffer-size, grpc-write-buffer-size") {
			t.Errorf("Validate(%+v) = %v, want a grpc buffer size error", g, err)
		}
	}
	c := Default()
	c.GRPC = GRPCTuning{}
	if err := c.Validate(); err != nil && strings.Contains(err.Error(), "grpc-") {
		t.Errorf("zero buffers refused: %v", err)
	}
}
