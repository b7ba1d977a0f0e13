package e2e_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"

	apiapp "github.com/weftmesh/weft/api-server/app"
	caapp "github.com/weftmesh/weft/ca-service/app"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/run"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/telemetry"
)

// receiver is an in-process OTLP/gRPC trace receiver: what a collector
// would get from the services.
type receiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []span
}

type span struct {
	service, name, traceID, parentID, spanID string
	status                                   tracepb.Status_StatusCode
	statusMsg                                string
}

func (r *receiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, span{service: service, name: s.GetName(), traceID: hex.EncodeToString(s.GetTraceId()),
					spanID: hex.EncodeToString(s.GetSpanId()), parentID: hex.EncodeToString(s.GetParentSpanId()),
					status: s.GetStatus().GetCode(), statusMsg: s.GetStatus().GetMessage()})
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (r *receiver) all() []span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]span(nil), r.spans...)
}

func startReceiver(t *testing.T) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, r)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "")
	return r
}

// TestRESTWriteIsOneTraceWithEachServiceNamed runs api-server and
// ca-service in one process (as weftctl up does), each with its own tracer
// provider, exporting to a real OTLP receiver. A REST PUT carrying a
// traceparent must be one trace from the HTTP span through the gRPC
// ResourceService/Put to the store write in etcd, all named api-server;
// ca-service's spans must name ca-service.
func TestRESTWriteIsOneTraceWithEachServiceNamed(t *testing.T) {
	rcv := startReceiver(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cli := etcdtest.Client(t, nil)
	keys, err := seal.New(seal.Key{ID: "k1", Bytes: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)

	caTr, err := telemetry.NewTracing(ctx, caapp.Service, log)
	if err != nil {
		t.Fatal(err)
	}
	apiTr, err := telemetry.NewTracing(ctx, apiapp.ServiceName, log)
	if err != nil {
		t.Fatal(err)
	}

	caCfg := caapp.Default()
	caCfg.Address, caCfg.AdminAddress, caCfg.InstanceID = "127.0.0.1:0", "127.0.0.1:0", "e2e"
	caCfg.Etcd.Client, caCfg.Encryption.Keyring, caCfg.Logger = cli, keys, log
	caCfg.TracerProvider = caTr.Provider
	ca, err := caapp.New(caCfg)
	if err != nil {
		t.Fatal(err)
	}
	apiCfg := apiapp.Default()
	apiCfg.GRPCAddress, apiCfg.HTTPAddress, apiCfg.AdminAddress = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	apiCfg.Etcd.Client, apiCfg.Encryption.Keyring, apiCfg.Logger = cli, keys, log
	apiCfg.TracerProvider = apiTr.Provider
	api, err := apiapp.New(ctx, apiCfg)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := api.IssueAdminToken(ctx, "admin", time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	g := run.New(log)
	g.Add("ca-service", ca.Run)
	g.Add("api-server", api.Run)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(runCtx) }()

	put := func(path, body, traceparent string) {
		t.Helper()
		restPut(ctx, t, api.HTTPAddr(), tok, path, body, traceparent, http.StatusCreated)
	}
	put("/meshes/default", `{"type":"Mesh","name":"default"}`, "")
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	const callerSpan = "00f067aa0ba902b7"
	put("/meshes/default/traffic-permissions/x",
		`{"type":"TrafficPermission","sources":[{"match":{"weft.io/service":"*"}}],"destinations":[{"match":{"weft.io/service":"*"}}]}`,
		fmt.Sprintf("00-%s-%s-01", traceID, callerSpan))

	// Stop everything, then flush: what a shutdown exports.
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("services did not stop")
	}
	run.Flush(log, apiTr, caTr)

	spans := rcv.all()
	byID := map[string]span{}
	var trace []span
	for _, s := range spans {
		byID[s.spanID] = s
		if s.traceID == traceID {
			trace = append(trace, s)
		}
	}
	find := func(name string) span {
		t.Helper()
		for _, s := range trace {
			if s.name == name {
				return s
			}
		}
		var names []string
		for _, s := range trace {
			names = append(names, s.service+":"+s.name)
		}
		t.Fatalf("no span %q in the PUT's trace %s; it has %v", name, traceID, names)
		return span{}
	}
	httpSpan := find("PUT /meshes/{mesh}/traffic-permissions/{name}")
	grpcSpan := find("weft.api.v1.ResourceService/Put")
	storeSpan := find("store.Create")
	if httpSpan.parentID != callerSpan {
		t.Errorf("the HTTP span's parent is %q, not the caller's traceparent %q", httpSpan.parentID, callerSpan)
	}
	// store.Create descends from the gRPC server span, which descends from
	// the HTTP span (through the gateway's client span).
	descends := func(child, ancestor span) bool {
		for s, ok := child, true; ok; s, ok = byID[s.parentID] {
			if s.spanID == ancestor.spanID {
				return true
			}
		}
		return false
	}
	if !descends(storeSpan, grpcSpan) || !descends(grpcSpan, httpSpan) {
		t.Errorf("spans are not one chain: http %+v grpc %+v store %+v", httpSpan, grpcSpan, storeSpan)
	}
	for _, s := range trace {
		if s.service != "api-server" {
			t.Errorf("span %q in the REST trace names service %q, want api-server", s.name, s.service)
		}
	}
	// ca-service's own work (loading the control-plane CA, its watches)
	// names ca-service, and nothing of api-server does.
	ca0 := 0
	for _, s := range spans {
		if s.service == "ca-service" {
			ca0++
			if strings.HasPrefix(s.name, "PUT ") || strings.Contains(s.name, "ResourceService") {
				t.Errorf("api-server's span %q is labelled ca-service", s.name)
			}
		}
		if s.service != "ca-service" && s.service != "api-server" {
			t.Errorf("span %q names service %q", s.name, s.service)
		}
		// A shutdown is not a failure.
		if s.status == tracepb.Status_STATUS_CODE_ERROR && strings.Contains(s.statusMsg, "context canceled") {
			t.Errorf("span %s:%s is an ERROR for a cancelled context", s.service, s.name)
		}
	}
	if ca0 == 0 {
		t.Error("no span from ca-service was exported")
	}
	t.Logf("%d spans exported, %d in the REST trace, %d from ca-service", len(spans), len(trace), ca0)
}

// restPut PUTs a JSON body to the api-server at addr with a bearer token
// (and a traceparent header when given), and fails the test unless the
// answer's status is one of want.
func restPut(ctx context.Context, t *testing.T, addr, token, path, body, traceparent string, want ...int) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+addr+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !slices.Contains(want, resp.StatusCode) {
		t.Fatalf("PUT %s: %d %s", path, resp.StatusCode, b)
	}
}
