package grpcx_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/weftmesh/weft/pkg/grpcx"
)

func recorder(t *testing.T) (*tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return rec, tp
}

func waitSpans(t *testing.T, rec *tracetest.SpanRecorder, what string, ok func([]sdktrace.ReadOnlySpan) bool) []sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		spans := rec.Ended()
		if ok(spans) {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; have %d spans", what, len(spans))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTracing: calls are traced with the service's own provider, the
// client's trace continues on the server, a method WithoutSpans gets no
// server span, and a call the client cancels is not an ERROR span.
func TestTracing(t *testing.T) {
	srvRec, srvTP := recorder(t)
	cliRec, cliTP := recorder(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpcx.ServerOptions(slog.New(slog.DiscardHandler), nil, "test", nil, nil,
		grpcx.WithTracerProvider(srvTP), grpcx.WithoutSpans(healthpb.Health_Watch_FullMethodName))...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), append(grpcx.ClientOptions(grpcx.WithTracerProvider(cliTP)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	spans := waitSpans(t, srvRec, "the Check server span", func(s []sdktrace.ReadOnlySpan) bool { return len(s) > 0 })
	cli := waitSpans(t, cliRec, "the Check client span", func(s []sdktrace.ReadOnlySpan) bool { return len(s) > 0 })
	if spans[0].Parent().SpanID() != cli[0].SpanContext().SpanID() || spans[0].SpanContext().TraceID() != cli[0].SpanContext().TraceID() {
		t.Fatal("the server span does not continue the client's trace")
	}

	// A long-lived stream, cancelled by the client.
	wctx, wcancel := context.WithCancel(ctx)
	w, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	wcancel()
	cli = waitSpans(t, cliRec, "the Watch client span", func(s []sdktrace.ReadOnlySpan) bool { return len(s) == 2 })
	for _, s := range cli {
		if s.Status().Code == codes.Error {
			t.Errorf("client span %s is an ERROR: %s", s.Name(), s.Status().Description)
		}
	}
	// The server answered the stream, so it would have started its span.
	for _, s := range srvRec.Started() {
		if s.Name() == "grpc.health.v1.Health/Watch" {
			t.Error("a method WithoutSpans got a server span")
		}
	}
}
