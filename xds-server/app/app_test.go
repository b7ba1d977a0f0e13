package app

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/pkg/config"
	"github.com/weftmesh/weft/pkg/cptls"
	"github.com/weftmesh/weft/pkg/etcdembed"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/xds-server/internal/catest"
)

type testEnv struct {
	t    *testing.T
	etcd *etcdembed.Server
	ctx  context.Context
	st   *store.Store
	keys *token.Keys
	app  *App
	conn *grpc.ClientConn
}

const resourcesYAML = `
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
---
type: Dataplane
mesh: default
name: web-1
networking:
  address: 127.0.0.1
  inbound:
  - port: 10001
    servicePort: 8080
    tags:
      weft.io/service: web
      weft.io/protocol: http
  outbound:
  - port: 20001
    tags:
      weft.io/service: backend
---
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 127.0.0.2
  inbound:
  - port: 10002
    tags:
      weft.io/service: backend
`

func newTestEnv(t *testing.T) *testEnv { return newTestEnvTLS(t, false) }

func newTestEnvTLS(t *testing.T, secure bool) *testEnv { return newTestEnvCfg(t, secure, nil) }

// newTestEnvCfg is newTestEnvTLS with a change to the configuration.
func newTestEnvCfg(t *testing.T, secure bool, change func(*Config)) *testEnv {
	t.Helper()
	ring, err := seal.Parse("k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
	if err != nil {
		t.Fatal(err)
	}
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	st := store.New(cli, store.WithKeyring(ring))
	ca := catest.Start(t, st)
	caConn, err := grpc.NewClient(ca.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { caConn.Close() })
	cfg := Default()
	cfg.Address, cfg.AdminAddress, cfg.InstanceID = "127.0.0.1:0", "127.0.0.1:0", "test"
	cfg.Etcd = config.Etcd{Client: cli}
	cfg.Encryption = config.Encryption{Keyring: ring}
	cfg.CA = CAConfig{Conn: caConn}
	cfg.InsightTTL = 2 * time.Second
	cfg.InsecureDev = !secure
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if change != nil {
		change(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	creds := insecure.NewCredentials()
	if secure {
		// A data plane trusts the control-plane CA (weft-dp --cp-ca-file).
		tc, err := cptls.ClientConfig(context.Background(), st)
		if err != nil {
			t.Fatal(err)
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(a.Addr(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e := &testEnv{t: t, etcd: srv, ctx: ctx, st: st, keys: token.New(st), app: a, conn: conn}
	e.apply(resourcesYAML)
	return e
}

func (e *testEnv) apply(y string) {
	e.t.Helper()
	rs, err := resource.UnmarshalAll(strings.NewReader(y))
	if err != nil {
		e.t.Fatal(err)
	}
	for _, r := range rs {
		if _, _, err := e.st.Upsert(e.ctx, r); err != nil {
			e.t.Fatal(err)
		}
	}
}

// waitUntil polls f (10 ms apart) until it holds, failing the test after
// 10 s.
func (e *testEnv) waitUntil(what string, f func() bool) {
	e.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !f(); {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// setBackendProtocol re-registers backend-1 (resourcesYAML) with
// weft.io/protocol p.
func (e *testEnv) setBackendProtocol(p string) {
	e.t.Helper()
	e.apply(`
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 127.0.0.2
  inbound:
  - port: 10002
    tags:
      weft.io/service: backend
      weft.io/protocol: ` + p + "\n")
}

func (e *testEnv) token(mesh, name string, keys *token.Keys, d time.Duration) string {
	e.t.Helper()
	c := token.Claims{Kind: token.KindDataplane, Mesh: mesh}
	c.Subject = name
	// Bound, as the API binds by default, to the registered Dataplane's
	// services.
	if r, err := e.st.Get(e.ctx, resource.DataplaneType, mesh, name); err == nil {
		c.Services = resource.DataplaneServices(r.Spec.(*meshv1.Dataplane))
	}
	tok, _, err := keys.Issue(e.ctx, c, d)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func node(id, kind string) *corev3.Node {
	md, _ := structpb.NewStruct(map[string]any{"kind": kind})
	return &corev3.Node{Id: id, Metadata: md}
}

func (e *testEnv) stream(tok string) discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 20*time.Second)
	e.t.Cleanup(cancel)
	if tok != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(e.conn).StreamAggregatedResources(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func TestTokenDenied(t *testing.T) {
	e := newTestEnv(t)
	past := token.New(e.st).WithClock(func() time.Time { return time.Now().Add(-2 * time.Hour) })
	for name, tc := range map[string]struct {
		tok  string
		want string
	}{
		"no token":          {"", "no token"},
		"wrong token":       {"not-a-jwt", "malformed token"},
		"expired":           {e.token("default", "web-1", past, time.Hour), "token expired"},
		"other dataplane's": {e.token("default", "backend-1", e.keys, time.Hour), "token is for dataplane default/backend-1, not default/web-1"},
		"other mesh's":      {e.token("other", "web-1", e.keys, time.Hour), "token is for dataplane other/web-1"},
	} {
		t.Run(name, func(t *testing.T) {
			s := e.stream(tc.tok)
			if err := s.Send(&discoveryv3.DiscoveryRequest{Node: node("default.web-1", "envoy"), TypeUrl: resourcev3.ListenerType}); err != nil {
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
	t.Run("switching node mid-stream", func(t *testing.T) {
		s := e.stream(e.token("default", "web-1", e.keys, time.Hour))
		_ = s.Send(&discoveryv3.DiscoveryRequest{Node: node("default.web-1", "envoy"), TypeUrl: resourcev3.ListenerType})
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
		_ = s.Send(&discoveryv3.DiscoveryRequest{Node: node("default.backend-1", "envoy"), TypeUrl: resourcev3.ClusterType})
		for {
			if _, err := s.Recv(); err != nil {
				if status.Code(err) != codes.PermissionDenied {
					t.Fatalf("err = %v", err)
				}
				return
			}
		}
	})
}

// TestADSRoundTrip: request → response → ACK → store change → update, over
// SotW with an Envoy node, plus the token in node metadata.
func TestADSRoundTrip(t *testing.T) {
	e := newTestEnv(t)
	tok := e.token("default", "web-1", e.keys, time.Hour)
	s := e.stream("")
	n := node("default.web-1", "envoy")
	n.Metadata.Fields["dataplane.token"] = structpb.NewStringValue(tok)
	if err := s.Send(&discoveryv3.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	names := listenerNames(t, resp)
	if strings.Join(names, ",") != "inbound:127.0.0.1:10001,outbound:127.0.0.1:20001" {
		t.Fatalf("listeners: %v", names)
	}
	v1 := resp.GetVersionInfo()
	// ACK, then change the store: a TrafficPermission for web changes the
	// inbound RBAC, so LDS gets a new version.
	if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType, VersionInfo: v1, ResponseNonce: resp.GetNonce()}); err != nil {
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
	resp, err = s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetVersionInfo() == v1 {
		t.Fatal("no new version after a permission change")
	}
	if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	// Insight shows the stream and its ACK; metrics show the push.
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := e.st.Get(e.ctx, resource.DataplaneInsightType, "default", "web-1")
		if err == nil && strings.Contains(r.Spec.(interface{ String() string }).String(), resp.GetVersionInfo()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("insight: %v %v", r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A NACK is recorded with the proxy's error detail.
	e.apply(`
type: TrafficPermission
mesh: default
name: all-to-web
sources:
- match:
    weft.io/service: '*'
destinations:
- match:
    weft.io/service: web
`)
	resp3, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp3.GetNonce(),
		ErrorDetail: &statuspb.Status{Code: int32(codes.InvalidArgument), Message: "listener rejected by the test"}}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		r, err := e.st.Get(e.ctx, resource.DataplaneInsightType, "default", "web-1")
		if err == nil {
			ts := r.Spec.(*meshv1.DataplaneInsight).GetSubscriptions()[0].GetTypes()[resourcev3.ListenerType]
			if ts.GetNacks() == 1 && ts.GetLastError() == "listener rejected by the test" && ts.GetAcks() >= 2 && ts.GetLastVersion() == resp.GetVersionInfo() {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("insight after NACK: %v %v", r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	body := get(t, "http://"+e.app.AdminAddr()+"/metrics")
	for _, want := range []string{`weft_xds_connected_proxies{kind="envoy"} 1`, `weft_xds_push_latency_seconds_count{type="Listener"}`, `weft_xds_generation_seconds_count{kind="envoy"}`, `weft_xds_nacks_total{type="Listener"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Only what the stream subscribed to (listeners) was sent and counted.
	if !strings.Contains(body, `weft_xds_pushes_total{type="Listener"}`) {
		t.Error("metrics lack weft_xds_pushes_total for listeners")
	}
	for _, never := range []string{"Cluster", "ClusterLoadAssignment", "RouteConfiguration", "Secret"} {
		if strings.Contains(body, `weft_xds_pushes_total{type="`+never+`"}`) {
			t.Errorf("weft_xds_pushes_total counts %s responses the proxy never subscribed to", never)
		}
	}
}

func TestDeltaADS(t *testing.T) {
	// Served over TLS from the control-plane CA (the default).
	e := newTestEnvTLS(t, true)
	ctx := metadata.AppendToOutgoingContext(e.ctx, "authorization", "Bearer "+e.token("default", "web-1", e.keys, time.Hour))
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(e.conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node("default.web-1", "envoy"), TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if pem := get(t, "http://"+e.app.AdminAddr()+"/control-plane-ca.pem"); !strings.HasPrefix(pem, "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("control-plane-ca.pem: %q", pem)
	}
	var names []string
	for _, r := range resp.GetResources() {
		names = append(names, r.GetName())
	}
	if strings.Join(names, ",") != "backend,localhost:127.0.0.1:8080" && strings.Join(names, ",") != "localhost:127.0.0.1:8080,backend" {
		t.Fatalf("clusters: %v", names)
	}
	// ACK, then change only the backend service (http2 now): the next delta
	// carries the backend cluster alone — unchanged resources are not resent.
	if err := s.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	// A delta ACK names only the nonce: it is matched to the response's
	// system version, so it counts and ends the push (latency observed).
	for deadline := time.Now().Add(10 * time.Second); ; {
		body := get(t, "http://"+e.app.AdminAddr()+"/metrics")
		if strings.Contains(body, `weft_xds_acks_total{type="Cluster"} 1`) && strings.Contains(body, `weft_xds_push_latency_seconds_count{type="Cluster"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delta ACK not counted: %s", grepLines(body, "weft_xds_acks_total", "weft_xds_push_latency_seconds_count"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.setBackendProtocol("http2")
	resp, err = s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	names = nil
	for _, r := range resp.GetResources() {
		names = append(names, r.GetName())
	}
	if strings.Join(names, ",") != "backend" || len(resp.GetRemovedResources()) != 0 {
		t.Fatalf("delta after a backend change: %v removed %v", names, resp.GetRemovedResources())
	}
	// A denied delta stream gets nothing.
	bad, err := discoveryv3.NewAggregatedDiscoveryServiceClient(e.conn).DeltaAggregatedResources(metadata.AppendToOutgoingContext(e.ctx, "authorization", "Bearer x"))
	if err != nil {
		t.Fatal(err)
	}
	_ = bad.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node("default.web-1", "envoy"), TypeUrl: resourcev3.ClusterType})
	if _, err := bad.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("err = %v", err)
	}
}

func listenerNames(t *testing.T, resp *discoveryv3.DiscoveryResponse) []string {
	var out []string
	for _, a := range resp.GetResources() {
		l := &listenerv3.Listener{}
		if err := a.UnmarshalTo(l); err != nil {
			t.Fatal(err)
		}
		out = append(out, l.GetName())
	}
	sort.Strings(out) // the cache answers in map order
	return out
}

func get(t *testing.T, url string) string {
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestConfigValidate(t *testing.T) {
	c := Default()
	c.Address, c.InsightTTL, c.InstanceID, c.Zone = "", 0, "", "Zone_1"
	c.Limits.MaxConcurrentHandshakes = -1
	err := c.Validate()
	for _, want := range []string{"address", "insight-ttl", "instance-id", "zone", "max-concurrent-handshakes: not negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want mention of %s", err, want)
		}
	}
}

// grepLines is body's lines that start with any of prefixes.
func grepLines(body string, prefixes ...string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}
