package app

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/xds-server/internal/ads"
)

// recvErr reads until the stream fails and returns the error.
func recvErr(t *testing.T, s discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient) error {
	t.Helper()
	for {
		if _, err := s.Recv(); err != nil {
			return err
		}
	}
}

// TestUnknownTypeURLRefused: made-up type URLs (first request or NACKs)
// end the stream with InvalidArgument and leave no metric series and no
// insight entry.
func TestUnknownTypeURLRefused(t *testing.T) {
	e := newTestEnv(t)
	tok := e.token("default", "web-1", e.keys, time.Hour)
	bogus := "type.googleapis.com/made.up.Type1"

	s := e.stream(tok)
	if err := s.Send(&discoveryv3.DiscoveryRequest{Node: node("default.web-1", "envoy"), TypeUrl: bogus}); err != nil {
		t.Fatal(err)
	}
	if err := recvErr(t, s); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "not served here") {
		t.Fatalf("first request: err = %v, want InvalidArgument", err)
	}

	// A valid stream, then a NACK of a made-up type.
	s = e.stream(tok)
	if err := s.Send(&discoveryv3.DiscoveryRequest{Node: node("default.web-1", "envoy"), TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: bogus, ResponseNonce: resp.GetNonce(),
		ErrorDetail: &statuspb.Status{Code: 3, Message: "nope"}}); err != nil {
		t.Fatal(err)
	}
	if err := recvErr(t, s); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("NACK of an unknown type: err = %v, want InvalidArgument", err)
	}
	body := get(t, "http://"+e.app.AdminAddr()+"/metrics")
	if strings.Contains(body, "Type1") {
		t.Fatal("a metric series for the made-up type exists")
	}
	r, err := e.st.Get(e.ctx, resource.DataplaneInsightType, "default", "web-1")
	if err == nil {
		for _, sub := range r.Spec.(*meshv1.DataplaneInsight).GetSubscriptions() {
			if _, ok := sub.GetTypes()[bogus]; ok {
				t.Fatal("insight holds the made-up type")
			}
		}
	}
}

// TestOversizedFieldsBounded: a long version or nonce is refused, a long
// NACK detail is cut before it reaches the insight.
func TestOversizedFieldsBounded(t *testing.T) {
	e := newTestEnv(t)
	tok := e.token("default", "web-1", e.keys, time.Hour)
	long := strings.Repeat("v", 100_000)
	for name, req := range map[string]*discoveryv3.DiscoveryRequest{
		"version": {VersionInfo: long},
		"nonce":   {ResponseNonce: long},
		"names":   {ResourceNames: []string{strings.Repeat("n", ads.MaxResourceNameLength+1)}},
	} {
		t.Run(name, func(t *testing.T) {
			s := e.stream(tok)
			req.Node, req.TypeUrl = node("default.web-1", "envoy"), resourcev3.ListenerType
			if err := s.Send(req); err != nil {
				t.Fatal(err)
			}
			if err := recvErr(t, s); status.Code(err) != codes.InvalidArgument {
				t.Fatalf("err = %v, want InvalidArgument", err)
			}
		})
	}

	s := e.stream(tok)
	if err := s.Send(&discoveryv3.DiscoveryRequest{Node: node("default.web-1", "envoy"), TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType, ResponseNonce: resp.GetNonce(),
		ErrorDetail: &statuspb.Status{Code: 3, Message: long}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := e.st.Get(e.ctx, resource.DataplaneInsightType, "default", "web-1")
		if err == nil {
			subs := r.Spec.(*meshv1.DataplaneInsight).GetSubscriptions()
			if len(subs) == 1 && subs[0].GetTypes()[resourcev3.ListenerType].GetNacks() == 1 {
				if got := len(subs[0].GetTypes()[resourcev3.ListenerType].GetLastError()); got > ads.MaxErrorDetailLength {
					t.Fatalf("insight error detail is %d bytes, want ≤ %d", got, ads.MaxErrorDetailLength)
				}
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no NACK in the insight: %v %v", r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSilentStreamsBounded: a stream that never sends its first request is
// ended after --first-request-timeout, and beyond --max-pending-streams
// such streams are refused at once.
func TestSilentStreamsBounded(t *testing.T) {
	e := newTestEnvCfg(t, false, func(c *Config) {
		c.Limits.FirstRequestTimeout = 3 * time.Second
		c.Limits.MaxPendingStreams = 2
	})
	const n = 5
	start := time.Now()
	errs := make(chan error, n)
	for range n {
		s := e.stream("")
		go func() { errs <- recvErr(t, s) }()
	}
	exhausted, timedOut := 0, 0
	for range n {
		select {
		case err := <-errs:
			switch status.Code(err) {
			case codes.ResourceExhausted:
				exhausted++
			case codes.DeadlineExceeded:
				if !strings.Contains(err.Error(), "no first xDS request") {
					t.Fatalf("err = %v", err)
				}
				timedOut++
			default:
				t.Fatalf("err = %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a silent stream is still held after 30s")
		}
	}
	if exhausted != n-2 || timedOut != 2 {
		t.Fatalf("refused %d, timed out %d; want %d, 2", exhausted, timedOut, n-2)
	}
	if d := time.Since(start); d < 3*time.Second {
		t.Fatalf("timed out after %s, before the 3s deadline", d)
	}
	// Slots are free again: a real proxy gets in.
	s := e.stream(e.token("default", "web-1", e.keys, time.Hour))
	if err := s.Send(&discoveryv3.DiscoveryRequest{Node: node("default.web-1", "envoy"), TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
}

// TestStreamsPerProxyCapped: one token cannot open unbounded streams (each
// would be a subscription in its DataplaneInsight).
func TestStreamsPerProxyCapped(t *testing.T) {
	e := newTestEnvCfg(t, false, func(c *Config) { c.Limits.MaxStreamsPerProxy = 2 })
	tok := e.token("default", "web-1", e.keys, time.Hour)
	open := func() (discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, error) {
		s := e.stream(tok)
		if err := s.Send(&discoveryv3.DiscoveryRequest{Node: node("default.web-1", "envoy"), TypeUrl: resourcev3.ListenerType}); err != nil {
			t.Fatal(err)
		}
		_, err := s.Recv()
		return s, err
	}
	for i := range 2 {
		if _, err := open(); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	if _, err := open(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third stream: err = %v, want ResourceExhausted", err)
	}
}

// TestMaxConnectionAge: connections are closed after --max-connection-age
// (+grace), so the proxy reconnects (to any replica).
func TestMaxConnectionAge(t *testing.T) {
	e := newTestEnvCfg(t, false, func(c *Config) {
		c.MaxConnectionAge, c.MaxConnectionAgeGrace = time.Second, time.Second
	})
	ctx := metadata.AppendToOutgoingContext(e.ctx, "authorization", "Bearer "+e.token("default", "web-1", e.keys, time.Hour))
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(e.conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&discoveryv3.DiscoveryRequest{Node: node("default.web-1", "envoy"), TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = recvErr(t, s)
	if ctx.Err() != nil {
		t.Fatalf("stream not closed by max connection age: %v", err)
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	t.Logf("stream closed %s after its first response: %v", time.Since(start), err)
}

// TestReadyThroughEtcdOutage: a replica that synced once stays ready while
// etcd is down (it serves last-known configuration); weft_etcd_up says
// etcd is down, and a connected proxy keeps its configuration.
func TestReadyThroughEtcdOutage(t *testing.T) {
	e := newTestEnv(t)
	admin := "http://" + e.app.AdminAddr()
	waitFor(t, 30*time.Second, "ready", func() bool {
		return status200(admin+"/readyz") && strings.Contains(get(t, admin+"/metrics"), "weft_etcd_up 1")
	})
	s := e.stream(e.token("default", "web-1", e.keys, time.Hour))
	if err := s.Send(&discoveryv3.DiscoveryRequest{Node: node("default.web-1", "envoy"), TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	e.etcd.Close()
	waitFor(t, 30*time.Second, "weft_etcd_up 0", func() bool { return strings.Contains(get(t, admin+"/metrics"), "weft_etcd_up 0") })
	if !status200(admin + "/readyz") {
		t.Fatal("not ready while etcd is down, after a sync")
	}
	// The stream is still served: an ACK is accepted, the stream stays up.
	if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	if !status200(admin + "/readyz") {
		t.Fatal("not ready after an ACK while etcd is down")
	}
}

func status200(url string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
