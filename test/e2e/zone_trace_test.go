package e2e_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	apiapp "github.com/weftmesh/weft/api-server/app"
	caapp "github.com/weftmesh/weft/ca-service/app"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/run"
	"github.com/weftmesh/weft/pkg/telemetry"
	"github.com/weftmesh/weft/pkg/token"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	xdsapp "github.com/weftmesh/weft/xds-server/app"
	zsapp "github.com/weftmesh/weft/zone-sync/app"
	"github.com/weftmesh/weft/zone-sync/apptest"
)

// TestPolicyPutOnGlobalIsOneTraceToTheZonesProxyPush: a global control
// plane (api-server, zone-sync) and one zone (zone-sync, ca-service,
// xds-server with a connected proxy), each control plane with its own
// etcd and every service with its own tracer provider exporting to a real
// OTLP receiver. A REST PUT of a TrafficPermission on global, carrying a
// traceparent, must be one trace: the HTTP span and global's store write
// (api-server), global's zonesync.Send and the zone's zonesync.Apply and
// store write (zone-sync), and the zone's xds.Reconcile and xds.Push to
// the proxy (xds-server). The trace context crosses etcd twice (recorded
// with the stored value) and the zone link once.
func TestPolicyPutOnGlobalIsOneTraceToTheZonesProxyPush(t *testing.T) {
	rcv := startReceiver(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	tracing := func(service, cp string) *telemetry.Tracing {
		t.Helper()
		tr, err := telemetry.NewTracing(ctx, service, log, attribute.String("weft.control_plane", cp))
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	apiTr, xdsTr, caTr := tracing(apiapp.ServiceName, "global"), tracing("xds-server", "zone-1"), tracing(caapp.Service, "zone-1")
	zsTr := map[string]*telemetry.Tracing{"global": tracing(zsapp.Service, "global"), "zone-1": tracing(zsapp.Service, "zone-1")}
	c := apptest.Start(t, apptest.Options{Zones: 1, TracerProvider: func(cp string) trace.TracerProvider { return zsTr[cp].Provider }})
	g, z := c.Global, c.Zones[0]

	apiCfg := apiapp.Default()
	apiCfg.GRPCAddress, apiCfg.HTTPAddress, apiCfg.AdminAddress, apiCfg.InstanceID = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "global-api"
	apiCfg.Etcd.Client, apiCfg.Encryption.Keyring, apiCfg.Logger = g.Client, g.Keyring, log
	apiCfg.TracerProvider = apiTr.Provider
	api, err := apiapp.New(ctx, apiCfg)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := api.IssueAdminToken(ctx, "admin", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caCfg := caapp.Default()
	caCfg.Address, caCfg.AdminAddress, caCfg.InstanceID = "127.0.0.1:0", "127.0.0.1:0", "zone-1-ca"
	caCfg.Etcd.Client, caCfg.Encryption.Keyring, caCfg.Logger = z.Client, z.Keyring, log
	caCfg.TracerProvider = caTr.Provider
	ca, err := caapp.New(caCfg)
	if err != nil {
		t.Fatal(err)
	}
	xdsCfg := xdsapp.Default()
	xdsCfg.Address, xdsCfg.AdminAddress, xdsCfg.InstanceID = "127.0.0.1:0", "127.0.0.1:0", "zone-1-xds"
	xdsCfg.Etcd.Client, xdsCfg.Encryption.Keyring, xdsCfg.Logger = z.Client, z.Keyring, log
	xdsCfg.CA.Address = ca.Addr()
	xdsCfg.InsecureDev = true // the proxy's side; xds-server to ca-service is TLS
	xdsCfg.TracerProvider = xdsTr.Provider
	xds, err := xdsapp.New(xdsCfg)
	if err != nil {
		t.Fatal(err)
	}
	grp := run.New(log)
	grp.Add("api-server", api.Run)
	grp.Add("ca-service", ca.Run)
	grp.Add("xds-server", xds.Run)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- grp.Run(runCtx) }()
	defer stop()

	put := func(path, body, traceparent string) {
		t.Helper()
		restPut(ctx, t, api.HTTPAddr(), admin, path, body, traceparent, http.StatusCreated, http.StatusOK)
	}
	// mTLS on (the builtin CA's secret is made on global and synced), so
	// permissions are enforced in the proxy's listeners.
	put("/meshes/default", `{"type":"Mesh","name":"default","mtls":{"enabledBackend":"ca-1","backends":[{"name":"ca-1","type":"builtin"}]}}`, "")
	apptest.Eventually(t, time.Minute, func() error {
		m, err := z.Store.Get(ctx, resource.MeshType, "", "default")
		if err != nil || m.Spec.(*meshv1.Mesh).GetMtls().GetEnabledBackend() == "" {
			return fmt.Errorf("mesh with mTLS not synced to the zone yet (err %v)", err)
		}
		return nil
	})
	dp := resource.New(resource.DataplaneType, "default", "web-1")
	dp.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "127.0.0.1",
		Inbound: []*meshv1.Dataplane_Networking_Inbound{{Port: 10001, ServicePort: 8080,
			Tags: map[string]string{resource.ServiceTag: "web", resource.ProtocolTag: "http"}}}}}
	if _, err := z.Store.Create(ctx, dp); err != nil {
		t.Fatal(err)
	}
	claims := token.Claims{Kind: token.KindDataplane, Mesh: "default", Services: []string{"web"}}
	claims.Subject = "web-1"
	tok, _, err := token.New(z.Store).Issue(ctx, claims, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	// The proxy: an ADS client that ACKs every listener update.
	conn, err := grpc.NewClient(xds.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	ads, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := structpb.NewStruct(map[string]any{"kind": "envoy", "dataplane.token": tok})
	if err := ads.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "default.web-1", Metadata: md}, TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	versions := make(chan string, 64)
	go func() {
		defer close(versions)
		for {
			resp, err := ads.Recv()
			if err != nil {
				return
			}
			versions <- resp.GetVersionInfo()
			_ = ads.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()})
		}
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case v, ok := <-versions:
			if !ok {
				t.Fatalf("ADS stream ended waiting for %s", what)
			}
			return v
		case <-time.After(time.Minute):
			t.Fatalf("no listener push within a minute: %s", what)
		}
		return ""
	}
	first := next("the first configuration")

	const traceID = "5bf92f3577b34da6a3ce929d0e0e4736"
	const callerSpan = "10f067aa0ba902b7"
	put("/meshes/default/traffic-permissions/backend-to-web",
		`{"type":"TrafficPermission","sources":[{"match":{"weft.io/service":"backend"}}],"destinations":[{"match":{"weft.io/service":"web"}}]}`,
		fmt.Sprintf("00-%s-%s-01", traceID, callerSpan))
	for v := first; v == first; {
		v = next("the permission's push")
	}
	apptest.Eventually(t, time.Minute, func() error {
		_, err := z.Store.Get(ctx, resource.TrafficPermissionType, "default", "backend-to-web")
		return err
	})
	// The recorded traceparent is internal: the API never returns it.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+api.HTTPAddr()+"/meshes/default/traffic-permissions/backend-to-web", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.Contains(strings.ToLower(string(body)), "traceparent") || strings.Contains(string(body), traceID) {
		t.Errorf("GET of the permission: %d %s: want 200 without the trace context", resp.StatusCode, body)
	}

	// Stop everything, then flush: what a shutdown exports.
	scancel()
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("services did not stop")
	}
	c.Global.Stop(t)
	z.Stop(t)
	run.Flush(log, apiTr, xdsTr, caTr, zsTr["global"], zsTr["zone-1"])

	var inTrace []span
	for _, s := range rcv.all() {
		if s.traceID == traceID {
			inTrace = append(inTrace, s)
		}
	}
	var names []string
	for _, s := range inTrace {
		names = append(names, s.service+":"+s.name)
	}
	find := func(service, name string) span {
		t.Helper()
		for _, s := range inTrace {
			if s.service == service && strings.HasPrefix(s.name, name) {
				return s
			}
		}
		t.Fatalf("no %s span %q in the PUT's trace %s; it has %v", service, name, traceID, names)
		return span{}
	}
	httpSpan := find("api-server", "PUT /meshes/{mesh}/traffic-permissions/{name}")
	globalWrite := find("api-server", "store.Create")
	send := find("zone-sync", "zonesync.Send")
	apply := find("zone-sync", "zonesync.Apply")
	zoneWrite := find("zone-sync", "store.")
	reconcile := find("xds-server", "xds.Reconcile")
	push := find("xds-server", "xds.Push")
	// Not only the same trace id: each hop is the child of the one before.
	for _, hop := range []struct {
		child, parent span
		why           string
	}{
		{send, globalWrite, "global's sync of the change continues global's store write (through etcd)"},
		{apply, send, "the zone's apply continues global's send (over the zone link)"},
		{zoneWrite, apply, "the zone's store write is part of the apply"},
		{reconcile, zoneWrite, "the proxy's reconcile continues the zone's store write (through etcd)"},
		{push, reconcile, "the push is part of the reconcile"},
	} {
		if hop.child.parentID != hop.parent.spanID {
			t.Errorf("%s: %s's parent is %s, not %s %s", hop.why, hop.child.name, hop.child.parentID, hop.parent.name, hop.parent.spanID)
		}
	}
	if httpSpan.parentID != callerSpan {
		t.Errorf("the HTTP span's parent is %q, not the caller's %q", httpSpan.parentID, callerSpan)
	}
	for _, s := range inTrace {
		switch s.service {
		case "api-server", "zone-sync", "xds-server":
		default:
			t.Errorf("span %q in the trace names service %q", s.name, s.service)
		}
	}
	t.Logf("the PUT's trace: %d spans: %v", len(inTrace), names)
}
